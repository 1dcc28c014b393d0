"""Warp and paint (issue 20): the colour branch's flow, held against the model it starts from,
``mpi.materialize`` and an independent scipy warp; the flow layers and the prior gate are live."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import ndimage

from mpitalk import UserError, camera, checkpoint, mpi
from mpitalk import model as M

CFG = M.micro()
S, D = CFG.image_size, CFG.num_planes
SHIPPED = Path(__file__).resolve().parents[1] / "data" / "checkpoint"


def _moved(model, seed=0, scale=0.3):
    """``model`` with every parameter moved off its initial value (numpy noise: no compiles)."""
    rng = np.random.default_rng(seed)
    nnx.update(model, jax.tree.map(lambda p: jnp.asarray(
        np.asarray(p) + scale * rng.standard_normal(p.shape).astype(np.float32)),
        nnx.state(model, nnx.Param)))
    return model


def _inputs(B=2, seed=0, space=1.0, size=S):
    """Identity, conditions with a non-zero prior (so that a zero flow is not vacuous)."""
    rng = np.random.default_rng(seed)
    pose = np.tile(camera.default_head_pose(), (B, 1))
    pose[:, 0] = 0.15
    cond = {"cond_render": rng.random((B, size, size, 4), np.float32),
            "expression": np.concatenate([rng.random((B, 52)), pose], 1).astype(np.float32),
            "prev_frame": np.zeros((B, size, size, 3), np.float32),
            "has_prev": np.zeros(B, np.float32),
            "camera_space": np.full(B, space, np.float32),
            "prior_flow": (0.05 * rng.standard_normal((B, size, size, 2))).astype(np.float32),
            "prior_valid": (rng.random((B, size, size)) > 0.3).astype(np.float32)}
    return rng.random((B, size, size, 3), np.float32), cond


@nnx.jit(static_argnums=3)
def _run(m, identity, cond, reference_space):
    c = M.build_conditioning(m.config, identity, cond, reference_space=reference_space)
    x = jax.random.normal(jax.random.key(1), identity.shape)
    sigma = jnp.full(identity.shape[:1], 0.3)
    return m(x, sigma, c), m.fields(x, sigma, c)


def _forward(model, identity, cond, reference_space):
    """(rgba, fields) of one denoiser call (one compile per model structure and space)."""
    rgba, fields = _run(model, jnp.asarray(identity), {k: jnp.asarray(v) for k, v in
                                                        cond.items()}, reference_space)
    return np.asarray(rgba), {k: np.asarray(v) for k, v in fields.items()}


@pytest.fixture(scope="module")
def old():
    return _moved(M.MPIModel(CFG, rngs=nnx.Rngs(0)))


@pytest.mark.parametrize("reference_space", [True, None])  # static photo camera; per sample
def test_with_flow_starts_exactly_as_the_model_it_was_made_from(old, reference_space):
    new = M.with_flow(old, 0.1)
    assert new.config.flow_bound == 0.1 and float(new.heads.prior_gate[...]) == 0.0
    identity, cond = _inputs()
    cond["camera_space"] = np.array([1.0, 0.0], np.float32)  # one of each when per sample
    rgba_old, f_old = _forward(old, identity, cond, reference_space)
    rgba_new, f_new = _forward(new, identity, cond, reference_space)
    assert not np.any(f_new["flow"])
    assert float(np.std(f_old["blend"])) > 0.05  # the copy matters: the check is not vacuous
    np.testing.assert_allclose(rgba_new, rgba_old, rtol=0, atol=1e-6)
    for k in ("alpha", "blend", "color"):
        np.testing.assert_allclose(f_new[k], f_old[k], rtol=0, atol=1e-6)


def test_the_shipped_checkpoint_flows_by_the_gated_rig_prior_alone():
    """data/checkpoint (issue 20's stage 5) has the flow branch with its learned layer at zero
    (data/README.md): in the photo's camera its flow is bound * tanh(gate * prior / bound)
    exactly, the prior taken where valid; in the target camera it is zero."""
    config, shipped = checkpoint.load(SHIPPED)
    assert config.flow_bound > 0
    assert not np.any(np.asarray(shipped.heads.flow.kernel[...]))
    assert not np.any(np.asarray(shipped.heads.flow.bias[...]))
    gate = float(shipped.heads.gate())
    assert 0.3 < gate < 1.5
    identity, cond = _inputs(B=2, size=config.image_size)
    cond["camera_space"] = np.array([1.0, 0.0], np.float32)  # one of each
    _, f = _forward(shipped, identity, cond, None)
    prior = cond["prior_flow"] * cond["prior_valid"][..., None]
    b = config.flow_bound
    np.testing.assert_allclose(f["flow"][0, 0], b * np.tanh(gate * prior[0] / b),
                               rtol=0, atol=1e-6)
    np.testing.assert_array_equal(f["flow"][1, 0], 0.0)
    # generation's base carried past the face (mpitalk.flow_fill) replaces the flow's base
    # only: the input channels keep the prior as trained, so nothing else changes
    base = 0.03 * np.random.default_rng(5).standard_normal(prior.shape).astype(np.float32)
    _, g = _forward(shipped, identity, {**cond, "prior_base_flow": base}, None)
    np.testing.assert_allclose(g["flow"][0, 0], b * np.tanh(gate * base[0] / b),
                               rtol=0, atol=1e-6)
    np.testing.assert_array_equal(g["flow"][1, 0], 0.0)
    for k in ("alpha", "blend", "color"):
        np.testing.assert_array_equal(g[k], f[k])
    with pytest.raises(UserError, match="already has a flow branch"):
        M.with_flow(shipped, 0.1)


def test_flow_layers_and_gate_are_live(old):
    """Moving the flow layer moves the flow and the output; at zero flow layers the gate
    alone gives bound * tanh(prior / bound) in the photo's camera and nothing in the target's;
    the loss has a gradient in the (zero) flow kernel and gate at initialisation."""
    new = M.with_flow(old, 0.1)
    identity, cond = _inputs()
    rgba0, _ = _forward(new, identity, cond, True)
    gated = M.with_flow(old, 0.1)
    gated.heads.prior_gate[...] = jnp.ones(()) / M.heads.PRIOR_GATE_SCALE
    assert abs(float(gated.heads.gate()) - 1.0) < 1e-6
    for space in (True, False):
        _, f = _forward(gated, identity, dict(cond, camera_space=np.full(2, float(space))),
                        True if space else None)
        prior = cond["prior_flow"] * cond["prior_valid"][..., None]
        want = 0.1 * np.tanh(prior / 0.1) if space else np.zeros_like(prior)
        np.testing.assert_allclose(f["flow"][:, 0], want, rtol=0, atol=1e-6)

    c = M.build_conditioning(new.config, identity, cond, reference_space=True)
    x = jnp.asarray(identity) * 2 - 1

    def loss(m):
        return jnp.mean((m(x, jnp.full((2,), 0.3), c)[..., :3] - 0.5) ** 2)

    grads = nnx.jit(lambda m: nnx.grad(loss)(m))(new)
    assert float(jnp.abs(grads.heads.flow.kernel[...]).max()) > 0
    assert float(jnp.abs(grads.heads.prior_gate[...])) > 0
    assert float(jnp.abs(grads.unet.extra_stem.kernel[...]).max()) > 0

    rng = np.random.default_rng(3)
    new.heads.flow.kernel[...] = jnp.asarray(
        0.05 * rng.standard_normal(new.heads.flow.kernel.shape), jnp.float32)
    rgba1, f1 = _forward(new, identity, cond, True)
    assert 0.002 < np.abs(f1["flow"]).mean() and np.abs(f1["flow"]).max() <= 0.1
    assert np.abs(rgba1 - rgba0).max() > 0.01


@pytest.fixture(scope="module")
def flowing(old):
    """A flow model with a clearly non-zero flow, two plane groups."""
    return _moved(M.with_flow(old, 0.1, flow_groups=2), seed=5, scale=0.1)


def test_photo_camera_output_is_materialize_of_its_fields(flowing):
    identity, cond = _inputs()
    rgba, fields = _forward(flowing, identity, cond, True)
    assert fields["flow"].shape == (2, 2, S, S, 2)
    assert np.abs(fields["flow"]).mean() * S > 0.3  # a third of a pixel and more: not vacuous
    groups = flowing.heads.plane_groups
    np.testing.assert_array_equal(groups, [0, 0, 1, 1])
    for b in range(2):
        dense = mpi.materialize({k: v[b] for k, v in fields.items()}, identity[b], S,
                                plane_groups=groups)
        np.testing.assert_allclose(np.asarray(dense), rgba[b], rtol=0, atol=1e-5)


def test_target_camera_copy_reads_the_plane_sweep_point_plus_the_flow(flowing):
    """Per plane: the identity sampled (scipy, order 1, zero outside) at the plane's
    homography of each pixel centre plus flow * S, with its validity, blended with the
    colour: an independent construction of ``compose``."""
    identity, cond = _inputs(space=0.0)
    rgba, fields = _forward(flowing, identity, cond, None)
    depths, K = M.mpi_geometry(CFG)
    tgt_from_ref = camera.head_motion(cond["expression"][:, 52:],
                                      np.tile(camera.default_head_pose(), (2, 1)))
    groups = flowing.heads.plane_groups
    jj, ii = np.meshgrid(np.arange(S) + 0.5, np.arange(S) + 0.5)
    for b in range(2):
        Hs = np.asarray(mpi.plane_homographies(depths, K, camera.invert_pose(tgt_from_ref[b]),
                                               K))
        for i in range(D):
            q = np.stack([jj, ii, np.ones_like(jj)], -1) @ Hs[i].T
            xy0 = q[..., :2] / q[..., 2:]
            rgb1 = np.concatenate([identity[b], np.ones((S, S, 1), np.float32)], -1)

            def sample(xy, rgb1=rgb1):  # scipy: texel centres at integers
                coords = [xy[..., 1] - 0.5, xy[..., 0] - 0.5]
                return np.stack([ndimage.map_coordinates(rgb1[..., c], coords, order=1,
                                                         mode="grid-constant", cval=0.0)
                                 for c in range(4)], -1)

            pv0, pv = sample(xy0), sample(xy0 + fields["flow"][b, groups[i]] * S)
            # fields' blend holds the unmoved point's validity; the moved point's replaces it
            v = np.where(pv0[..., 3:] > 0, pv[..., 3:] / np.maximum(pv0[..., 3:], 1e-12), 0)
            blend = fields["blend"][b, i][..., None] * v
            want = blend * pv[..., :3] + (1 - blend) * fields["color"][b]
            np.testing.assert_allclose(rgba[b, i, ..., :3], want, rtol=0, atol=2e-5)


def test_flow_checkpoint_round_trip_and_bad_upgrades(tmp_path, flowing):
    path = checkpoint.save(tmp_path / "ck", flowing.config, flowing, step=3)
    config, loaded = checkpoint.load(path)
    assert (config.flow_bound, config.flow_groups) == (0.1, 2)
    identity, cond = _inputs()
    np.testing.assert_allclose(_forward(loaded, identity, cond, True)[0],
                               _forward(flowing, identity, cond, True)[0], rtol=0, atol=1e-6)
    with pytest.raises(UserError):
        M.with_flow(flowing, 0.1)
    with pytest.raises(UserError):
        M.with_flow(M.MPIModel(CFG, rngs=nnx.Rngs(0)), 0.1, flow_groups=D + 1)


@pytest.mark.parametrize("space", ["reference", "target"])
def test_generation_gives_a_flow_model_the_rig_prior_of_its_camera(monkeypatch, space):
    """The cond a flow model is sampled with holds rig.render_prior_flow from the MPI's camera
    (the photo's: the frame's expression at the photo's pose; or the frame's) to the photo."""
    from mpitalk import controls, flow_fill, generate, rig

    cfg = CFG.replace(flow_bound=0.1)
    seen = {}

    def fake_sample(model, config, identity, cond, *a, **k):
        seen.update(cond)
        return np.zeros((identity.shape[0], D, S, S, 4), np.float32)

    monkeypatch.setattr(M, "sample_mpi", fake_sample)
    pose = np.tile(camera.default_head_pose(), (2, 1)).astype(np.float32)
    pose[1, 0] = 0.2
    values = np.zeros((2, 52), np.float32)
    values[:, controls.ARKIT_NAMES.index("jawOpen")] = [0.2, 0.9]
    info = {"identity_expression": np.concatenate([np.zeros(52), camera.default_head_pose()]
                                                  ).astype(np.float32),
            "identity_cond": np.zeros((S, S, 4), np.float32)}
    track = controls.Track(values, pose, 25.0)
    list(generate.generate_frames(None, cfg, np.full((S, S, 3), 0.5, np.float32), track,
                                  batch_size=2, identity_info=info, space=space))
    _, K = generate.mpi_geometry(cfg)
    for k in range(2):
        target_pose = camera.default_head_pose() if space == "reference" else pose[k]
        flow, valid = rig.render_prior_flow(np.zeros(52), camera.default_head_pose(),
                                            values[k], target_pose, K, S, unit="crop")
        np.testing.assert_allclose(seen["prior_flow"][k], flow, atol=1e-7)
        np.testing.assert_array_equal(seen["prior_valid"][k], valid)
    assert np.abs(seen["prior_flow"][1]).max() > 0.5 / S  # the open jaw moves pixels
    if space == "reference":  # the flow's base carried past the face (the job's default)
        np.testing.assert_array_equal(
            seen["prior_base_flow"], flow_fill.extend(seen["prior_flow"], seen["prior_valid"],
                                                      fill=False))
        assert np.abs(seen["prior_base_flow"][1][seen["prior_valid"][1] < 0.5]).max() > 0
    else:  # in the frame's camera the prior is an input only
        assert "prior_base_flow" not in seen
    seen.clear()
    list(generate.generate_frames(None, cfg, np.full((S, S, 3), 0.5, np.float32), track,
                                  batch_size=2, identity_info=info, space=space,
                                  prior_fill="none"))
    assert "prior_flow" in seen and "prior_base_flow" not in seen
    # a model without a flow branch is given no prior
    seen.clear()
    list(generate.generate_frames(None, CFG, np.full((S, S, 3), 0.5, np.float32), track,
                                  batch_size=2, identity_info=info, space=space))
    assert "prior_flow" not in seen


def test_generation_holds_the_person_and_room_sides_off_the_face(monkeypatch):
    """From the first frame made with an earlier frame to condition on (the anchor), a pixel
    off the face that a later frame moves from the person's planes to the room's gets the
    anchor's planes back; on the face (the prior's valid region) the frame's own stay; the very
    first frames (made without an earlier frame) are left as they are."""
    from mpitalk import controls, generate

    cfg = CFG.replace(flow_bound=0.1)
    seen = []

    def fake_sample(model, config, identity, cond, *a, **k):
        n = identity.shape[0]
        rgba = np.full((n, D, S, S, 4), 0.5, np.float32)
        rgba[..., 3] = 0.0
        rgba[:, 0, ..., 3] = 1.0  # the back plane opaque
        rgba[:, D - 1, ..., 3] = 1.0  # the person on the nearest plane everywhere
        if len(seen) == 1:  # the second batch: its second frame moves two pixels to the room
            rgba[1, D - 1, 0, 0, 3] = 0.0  # the corner: off the face
            rgba[1, D - 1, S // 2, S // 2, 3] = 0.0  # the centre: on the face
        if len(seen) == 0:  # the first batch, made without an earlier frame: left alone
            rgba[1, D - 1, 0, 0, 3] = 0.0
        seen.append({k_: np.array(v) for k_, v in cond.items()})
        return rgba

    monkeypatch.setattr(M, "sample_mpi", fake_sample)
    track = controls.Track(np.zeros((4, 52), np.float32),
                           np.tile(camera.default_head_pose(), (4, 1)).astype(np.float32), 25.0)
    info = {"identity_expression": np.concatenate([np.zeros(52), camera.default_head_pose()]
                                                  ).astype(np.float32),
            "identity_cond": np.zeros((S, S, 4), np.float32)}

    def frames(**kw):
        seen.clear()
        return [m for m, _ in generate.generate_frames(
            None, cfg, np.full((S, S, 3), 0.5, np.float32), track, batch_size=2,
            identity_info=info, geometry="layers", **kw)]

    held = frames()
    assert seen[1]["has_prev"][0] == 1 and seen[0]["has_prev"][0] == 0
    valid = seen[1]["prior_valid"][1]
    assert valid[S // 2, S // 2] > 0.5 and valid[:3, :3].max() < 0.5  # centre face, corner not
    assert held[3][D - 1, 0, 0, 3] == 1.0  # put back: the anchor (frame 2) has it there
    assert held[3][D - 1, S // 2, S // 2, 3] == 0.0  # the face's own change stays
    assert held[1][D - 1, 0, 0, 3] == 0.0  # before the anchor: untouched
    free = frames(hold_sides=False)
    assert free[3][D - 1, 0, 0, 3] == 0.0
