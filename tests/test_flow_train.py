"""Training a warp-and-paint model: samples carry the rig prior of their camera space, a run
starts from a checkpoint without a flow branch (the shipped one's case) and learns the flow."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mpitalk import checkpoint, rig, train
from mpitalk import model as M
from tests.test_train import write_fake_dataset

CFG = M.micro().replace(flow_bound=0.1, flow_smooth=0.01, p_drop_identity_info=0.0)


def test_samples_carry_the_rig_prior_of_their_camera_space():
    clips = train.fake_clips(2, CFG.image_size, 3)
    B, n_ref = CFG.batch_size, train.num_reference(CFG, CFG.batch_size)
    assert 0 < n_ref < B
    for n in (B - n_ref - 1, B - 1):  # the last target-space and the last reference sample
        s = train.make_sample(clips, CFG, n)
        rng = np.random.default_rng((CFG.seed, n))  # replay make_sample's draws: clip, frame
        clip = clips[rng.integers(len(clips))]
        t = int(rng.integers(clip["target_rgb"].shape[0]))
        assert np.array_equal(s["target"], clip["target_rgb"][t])
        reference = n % B >= B - n_ref
        pose = clip["identity_pose"] if reference else clip["pose"][t]
        flow, valid = rig.render_prior_flow(clip["identity_controls"], clip["identity_pose"],
                                            clip["controls"][t], pose, clip["K"],
                                            CFG.image_size, unit="crop")
        assert s["prior_flow"].shape == (CFG.image_size,) * 2 + (2,)
        assert valid.sum() > 20  # the rig covers part of the image: not vacuous
        np.testing.assert_allclose(s["prior_flow"], flow, atol=1e-6)
        np.testing.assert_array_equal(s["prior_valid"], valid)
    # without a flow branch nothing is rendered
    assert "prior_flow" not in train.make_sample(clips, M.micro(), 0)


def _two_flow_steps(tmp_path, *sets: str):
    """Two real training steps into tmp_path/run from a saved micro model without a flow
    branch (given one with flow_bound 0.1), with ``--set`` fields ``sets``; the saved model."""
    data = write_fake_dataset(tmp_path / "data")
    old = M.MPIModel(M.micro(), rngs=nnx.Rngs(3))
    saved = checkpoint.save(tmp_path / "saved", old.config, old, step=5)
    args = ["--init-from", str(saved), "--data", str(data), "--workdir", str(tmp_path / "run"),
            "--steps", "2", "--quiet", "--lr", "1e-2"]
    for field in ("flow_bound=0.1", "p_drop_identity_info=0.0", *sets):
        args += ["--set", field]
    assert train.main(args) == 0
    return old, saved


def test_a_flow_run_starts_from_a_model_without_one_and_learns_the_flow(tmp_path):
    old, saved = _two_flow_steps(tmp_path, "flow_smooth=0.01")
    text = (tmp_path / "run" / "metrics.jsonl").read_text()
    lines = [json.loads(x) for x in text.splitlines() if x]
    assert {"flow_tv_reference", "flow_px_reference", "flow_px_target",
            "prior_gate"} <= set(lines[-1])
    assert lines[0]["prior_gate"] == 0.0 != lines[-1]["prior_gate"]  # moved by step 1
    out = train.export(tmp_path / "run", tmp_path / "export")
    config, model = checkpoint.load(out)
    assert config.flow_bound == 0.1 and config.flow_groups == 1
    assert float(np.abs(np.asarray(model.heads.flow.kernel[...])).max()) > 0
    # the weights it started from were the saved model's (the trunk's stem, before training)
    trainer = train.Trainer(config, tmp_path / "fresh")
    trainer.init_from(saved)
    np.testing.assert_array_equal(np.asarray(trainer.model.unet.stem.kernel[...]),
                                  np.asarray(old.unet.stem.kernel[...]))
    assert not np.any(np.asarray(trainer.model.heads.flow.kernel[...]))


def test_the_flow_branch_is_clipped_apart_from_the_rest():
    """Its gradient is ~100x the rest's (crop units): one global clip would shrink the rest's."""
    model = M.MPIModel(CFG, rngs=nnx.Rngs(0))
    flow = [path for path, _ in jax.tree_util.tree_flatten_with_path(
        nnx.state(model, nnx.Param))[0] if train._is_flow_param(path)]
    names = sorted("/".join(str(getattr(k, "key", k)) for k in p[:-1]) for p in flow)
    assert names == ["heads/flow/bias", "heads/flow/kernel", "heads/prior_gate",
                     "unet/extra_stem/kernel"]


def test_the_prior_gate_can_learn_faster_than_the_rest():
    """prior_gate_lr_scale s: the gate's first Adam step is s times the rate (Adam's first step
    moves each parameter by the rate, whatever its gradient); every other parameter's step is
    the one it gets with s = 1."""
    steps = {}
    for s in (1.0, 10.0):
        cfg = CFG.replace(prior_gate_lr_scale=s, warmup_steps=1, learning_rate=1e-3)
        model = M.MPIModel(cfg, rngs=nnx.Rngs(0))
        params = nnx.state(model, nnx.Param)
        grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
        tx = train.make_optimizer(cfg)
        updates, _ = tx.update(grads, tx.init(params), params)
        steps[s] = jax.tree_util.tree_flatten_with_path(updates)[0]
    for (path, one), (_, ten) in zip(steps[1.0], steps[10.0], strict=True):
        if train._is_gate_param(path):
            np.testing.assert_allclose(float(one), -1e-3, rtol=1e-3)
            np.testing.assert_allclose(float(ten), -1e-2, rtol=1e-3)
        else:
            np.testing.assert_array_equal(np.asarray(one), np.asarray(ten))


def test_a_frozen_residual_flow_layer_stays_zero_while_the_gate_and_paint_learn(tmp_path):
    """freeze_flow_residual: two real steps from a model whose flow layer is zero leave that
    layer exactly zero (the flow is the gated prior alone), while the gate and the colour
    layer move; the optimizer steps everything outside the flow branch exactly as it would
    without the flag."""
    _two_flow_steps(tmp_path, "freeze_flow_residual=true")
    _, model = checkpoint.load(train.export(tmp_path / "run", tmp_path / "export"))
    assert not np.any(np.asarray(model.heads.flow.kernel[...]))
    assert not np.any(np.asarray(model.heads.flow.bias[...]))
    assert float(model.heads.gate()) != 0.0
    assert float(np.abs(np.asarray(model.heads.color.kernel[...])).max()) > 0
    # the update rule alone: the frozen group gets a zero step, every other one the flag-free step
    steps = {}
    for frozen in (False, True):
        cfg = CFG.replace(freeze_flow_residual=frozen, warmup_steps=1, learning_rate=1e-3)
        params = nnx.state(M.MPIModel(cfg, rngs=nnx.Rngs(0)), nnx.Param)
        grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
        tx = train.make_optimizer(cfg)
        steps[frozen] = jax.tree_util.tree_flatten_with_path(
            tx.update(grads, tx.init(params), params)[0])[0]
    residual = 0
    for (path, free), (_, held) in zip(steps[False], steps[True], strict=True):
        if train._is_residual_flow_param(path):
            residual += 1
            assert np.any(np.asarray(free)) and not np.any(np.asarray(held))
        elif train._is_flow_param(path):  # the gate, the stem: clipped without the frozen
            # layer, and Adam's first step is the rate whatever the clip did
            np.testing.assert_allclose(np.asarray(free), np.asarray(held), rtol=1e-5)
        else:
            np.testing.assert_array_equal(np.asarray(free), np.asarray(held))
    assert residual == 2  # kernel and bias


def test_depth_spread_is_the_variance_of_the_plane_under_the_weights():
    """``train.depth_spread`` against a plain per-pixel loop over the compositing weights
    (front to back: each plane's opacity times what is left to see), and on known cases: one
    opaque plane 0, two neighbouring planes sharing equally 1/4."""
    rng = np.random.default_rng(0)
    B, D, S = 2, 6, 3
    alpha = rng.random((B, D, S, S)).astype(np.float32)
    alpha[:, 0] = 1.0
    got = np.asarray(train.depth_spread(jnp.asarray(alpha)))
    for b in range(B):
        total = 0.0
        for y in range(S):
            for x in range(S):
                left, w = 1.0, np.zeros(D)
                for i in range(D - 1, -1, -1):
                    w[i] = alpha[b, i, y, x] * left
                    left *= 1.0 - alpha[b, i, y, x]
                m = np.sum(w * np.arange(D))
                total += np.sum(w * (np.arange(D) - m) ** 2)
        assert abs(got[b] - total / S**2) < 1e-4
    one = np.zeros((1, D, S, S), np.float32)
    one[:, 0], one[:, 3] = 1.0, 1.0
    assert float(train.depth_spread(jnp.asarray(one))[0]) < 1e-7
    one[:, 3] = 0.5  # half on plane 3, half behind on the opaque plane 2
    one[:, 2] = 1.0
    assert abs(float(train.depth_spread(jnp.asarray(one))[0]) - 0.25) < 1e-6


def test_a_run_with_the_depth_spread_loss_logs_it(tmp_path):
    _two_flow_steps(tmp_path, "flow_smooth=0.01", "depth_spread=0.001")
    text = (tmp_path / "run" / "metrics.jsonl").read_text()
    last = json.loads(text.splitlines()[-1])
    assert last["depth_spread_target"] > 0 and last["depth_spread_reference"] > 0


def test_samples_carry_generations_flow_base_and_the_holes_when_asked():
    """``prior_fill``: the flow's base is ``flow_fill.extend`` of the sample's prior (as
    generation gives it); ``hole_weight``: the prior's holes grown by HOLE_GROW ride along."""
    from mpitalk import flow_fill, paint

    clips = train.fake_clips(2, CFG.image_size, 3)
    plain = train.make_sample(clips, CFG, CFG.batch_size - 1)
    assert "prior_base_flow" not in plain and "hole_mask" not in plain
    s = train.make_sample(clips, CFG.replace(prior_fill=True, hole_weight=4.0),
                          CFG.batch_size - 1)
    np.testing.assert_array_equal(s["prior_flow"], plain["prior_flow"])
    np.testing.assert_array_equal(
        s["prior_base_flow"], flow_fill.extend(s["prior_flow"], s["prior_valid"], fill=False))
    np.testing.assert_array_equal(s["hole_mask"],
                                  paint.holes(s["prior_valid"], train.HOLE_GROW))


def test_the_hole_weight_reaches_the_reference_loss_only_in_the_holes():
    cfg = CFG.replace(hole_weight=9.0)
    model = M.MPIModel(cfg, rngs=nnx.Rngs(0))
    batch = train.collate([train.make_sample(train.fake_clips(2, cfg.image_size, 3), cfg, n)
                           for n in range(cfg.batch_size)])
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    S = cfg.image_size

    def loss(holes):
        b = {**batch, "hole_mask": jnp.asarray(holes, jnp.uint8)}
        return float(train.loss_fn(model, b, jax.random.key(0))[1]["mse_reference"])

    none = np.zeros((cfg.batch_size, S, S))
    some = none.copy()
    some[:, 8:20, 10:22] = 1
    assert loss(none) != loss(some)  # the weight is live
    without = {k: v for k, v in batch.items() if k != "hole_mask"}
    assert float(train.loss_fn(model, without, jax.random.key(0))[1]["mse_reference"]) == \
        loss(none)  # no holes: the loss of a run without the weight
