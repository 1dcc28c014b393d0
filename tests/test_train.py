"""Training: one step of a reduced config, sharded == single-device, exact resume, export."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mpitalk import checkpoint, train
from mpitalk import model as M

CFG = M.micro()


def write_fake_dataset(root, clips_per_split=2, size=32, frames=4, video=False):
    """A dataset folder in the docs/dataset.md layout (training keys only), random content;
    ``video``: as ``mpitalk.footage`` writes it (source video, the head mask in target_alpha)."""
    splits = {}
    for i, split in enumerate(("train", "val")):
        names = []
        for c, clip in enumerate(train.fake_clips(clips_per_split, size, frames, seed=i,
                                                  head_mask=video)):
            if video:
                clip["target_alpha"] = clip.pop("head_mask")
            name = f"{split}/clip-{i:04d}-{c:02d}.npz"
            (root / split).mkdir(parents=True, exist_ok=True)
            np.savez(root / name, **clip)
            names.append(name)
        splits[split] = names
    manifest = {"version": 1, "size": size, "splits": splits}
    if video:
        manifest["source"] = "video"
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_samples_are_a_pure_function_of_their_number():
    clips = train.fake_clips(3, 32, 4)
    a, b = train.make_sample(clips, CFG, 17), train.make_sample(clips, CFG, 17)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    batch = next(train.batches(clips, CFG, 5, 4))
    np.testing.assert_array_equal(batch["target"][1], train.make_sample(clips, CFG, 21)["target"])


def test_one_training_step_changes_parameters_and_is_finite():
    trainer = train.Trainer(CFG, "/nonexistent")
    before = jax.tree.map(np.array, trainer.ema)
    batch = train.shard_batch(trainer.mesh, next(train.batches(train.fake_clips(2, 32, 4), CFG,
                                                               0, 4)))
    ema, m = train.train_step(trainer.model, trainer.optimizer, trainer.ema, batch,
                              jax.random.key(0), jnp.asarray(0.0))
    assert np.isfinite(float(m["loss"])) and float(m["loss"]) > 0
    assert {"mse_target", "mse_reference", "grad_norm"} <= set(m)
    changed = [not np.allclose(x, y) for x, y in zip(jax.tree.leaves(before),
                                                    jax.tree.leaves(ema), strict=True)]
    assert any(changed)


SHARDED = textwrap.dedent("""
    import json, jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    from mpitalk import model as M, train
    assert jax.device_count() == 4
    cfg = M.micro()
    batch = next(train.batches(train.fake_clips(2, 32, 4), cfg, 0, 4))
    out = []
    for devices in (jax.devices()[:1], jax.devices()):
        t = train.Trainer(cfg, "/nonexistent", mesh=Mesh(np.array(devices), ("data",)))
        ema, m = train.train_step(t.model, t.optimizer, t.ema, train.shard_batch(t.mesh, batch),
                                  jax.random.key(0), jnp.asarray(0.0))
        out.append([float(m["loss"])] + [float(jnp.sum(x)) for x in jax.tree.leaves(ema)])
    print(json.dumps(out))
""")


def test_sharded_step_equals_single_device_step():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    r = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    one, four = json.loads(r.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(four, one, rtol=2e-4, atol=1e-5)


def test_resume_reproduces_uninterrupted_losses_and_export(tmp_path):
    data = write_fake_dataset(tmp_path / "data")
    full = train.train_and_evaluate(CFG, tmp_path / "a", data, 4, progress=False)
    part = train.train_and_evaluate(CFG, tmp_path / "b", data, 4, progress=False, stop_after=2)
    with pytest.raises(Exception, match="--resume"):
        train.train_and_evaluate(CFG, tmp_path / "b", data, 4, progress=False)
    # a kill after logging a step the last checkpoint (step 2) does not hold
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "loss": -1.0}) + "\n")
    rest = train.train_and_evaluate(CFG, tmp_path / "b", data, 4, progress=False, resume=True)
    assert [x["step"] for x in part + rest] == [1, 2, 3, 4]
    np.testing.assert_allclose([x["loss"] for x in part + rest], [x["loss"] for x in full],
                               rtol=1e-5)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]  # the killed run's 3 dropped
    assert json.loads(lines[2])["loss"] != -1.0
    out = train.export(tmp_path / "b", tmp_path / "exported")
    config, model = checkpoint.load(out)
    assert config == CFG
    assert json.loads((out / checkpoint.META_FILE).read_text())["step"] == 4
    with pytest.raises(train.UserError, match="not a training run"):
        train.export(tmp_path / "data", tmp_path / "nothing")


def test_init_from_a_saved_model_takes_its_weights_and_checks_the_architecture(tmp_path):
    # a saved model whose weights differ from a fresh run's (another seed)
    other = M.MPIModel(CFG, rngs=nnx.Rngs(7))
    # every parameter moved off its initial value
    nnx.update(other, jax.tree.map(lambda p: p + 0.25, nnx.state(other, nnx.Param)))
    saved = checkpoint.save(tmp_path / "saved", CFG, other, step=123)
    trainer = train.Trainer(CFG, tmp_path / "run")
    fresh = jax.tree.leaves(nnx.state(trainer.model, nnx.Param))
    assert trainer.init_from(saved) == 123
    want = jax.tree.leaves(nnx.state(other, nnx.Param))
    got_model = jax.tree.leaves(nnx.state(trainer.model, nnx.Param))
    got_ema = jax.tree.leaves(trainer.ema)
    assert len(want) == len(got_model) == len(got_ema) == len(fresh)
    for w, m, e, f in zip(want, got_model, got_ema, fresh, strict=True):
        np.testing.assert_array_equal(np.asarray(m), np.asarray(w))
        np.testing.assert_array_equal(np.asarray(e), np.asarray(w))
        assert not np.array_equal(np.asarray(m), np.asarray(f))
    wider = train.Trainer(CFG.replace(channels=(8, 24)), tmp_path / "run2")
    with pytest.raises(train.UserError, match="channels"):
        wider.init_from(saved)
    # other plane depths: same shapes, so the weights carry over (the fine-tune re-learns depth)
    moved = train.Trainer(CFG.replace(near_m=CFG.near_m + 0.05), tmp_path / "run3")
    assert moved.init_from(saved) == 123
    got = jax.tree.leaves(nnx.state(moved.model, nnx.Param))
    for w, m in zip(want, got, strict=True):
        np.testing.assert_array_equal(np.asarray(m), np.asarray(w))


def test_init_from_cli_starts_a_run_and_records_where_from(tmp_path):
    data = write_fake_dataset(tmp_path / "data")
    train.train_and_evaluate(CFG, tmp_path / "a", data, 2, progress=False)
    saved = train.export(tmp_path / "a", tmp_path / "saved")
    rc = train.main(["--init-from", str(saved), "--data", str(data), "--workdir",
                     str(tmp_path / "b"), "--steps", "2", "--quiet", "--set", "p_drop_prev=0.9",
                     "--set", "prev_noise=0.1"])
    assert rc == 0
    info = json.loads((tmp_path / "b" / "init_from.json").read_text())
    assert info["step"] == 2 and info["path"] == str(saved.resolve())
    run_config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert run_config["p_drop_prev"] == 0.9 and run_config["prev_noise"] == 0.1
    assert run_config["channels"] == list(CFG.channels)
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 2
    rc = train.main(["--init-from", str(saved), "--config", "tiny", "--data", str(data),
                     "--workdir", str(tmp_path / "c"), "--quiet"])
    assert rc == 1 and not (tmp_path / "c").exists()


def test_config_overrides_parse_and_reject_bad_fields():
    got = train.parse_overrides(["p_drop_prev=1", "channels=[8,16]", "sample_steps=4"], CFG)
    assert got == {"p_drop_prev": 1.0, "channels": (8, 16), "sample_steps": 4}
    for bad in (["nope=1"], ["p_drop_prev"], ["sample_steps=0.5"], ["p_drop_prev=abc"],
                ["replace=1"], ["channels=[8.5,16]"]):
        with pytest.raises(train.UserError, match="--set"):
            train.parse_overrides(bad, CFG)


def test_learning_rate_schedule_warms_up_then_decays_by_cosine():
    config = CFG.replace(warmup_steps=10, decay_steps=110, learning_rate=2.0,
                         final_lr_fraction=0.1)
    sched = train.lr_schedule(config)
    for k in (0, 5, 10, 35, 60, 100, 110, 200):
        if k < 10:  # linear from peak/warmup to peak
            want = 0.2 + (2.0 - 0.2) * k / 10
        else:  # half a cosine period over the 100 decay steps, floor 10 %
            u = min(k - 10, 100) / 100
            want = 2.0 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * u)))
        np.testing.assert_allclose(float(sched(k)), want, rtol=1e-5, err_msg=f"step {k}")
    with pytest.raises(train.UserError, match="decay_steps"):
        train.lr_schedule(CFG.replace(warmup_steps=10, decay_steps=5))
    constant = train.lr_schedule(CFG.replace(warmup_steps=4, learning_rate=2.0))
    np.testing.assert_allclose([float(constant(k)) for k in (4, 50, 10_000)], 2.0)


def test_sample_grid_and_loss_curve_are_written(tmp_path):
    from PIL import Image

    clips = train.fake_clips(3, CFG.image_size, 4)
    preview = train.preview_batch(clips, CFG)
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(
        {"step": s, "loss": 1.0 / s, "mse_target": 0.1, "mse_reference": 0.2}) for s in (1, 2)))
    model = M.MPIModel(CFG, rngs=nnx.Rngs(0))
    train.write_report(tmp_path, model, preview, 7)
    grid = np.asarray(Image.open(tmp_path / "samples_0000007.png"))
    S = CFG.image_size
    assert grid.shape == (5 * S, 3 * S, 3)  # identity, target, render, depth, side; 3 clips
    np.testing.assert_array_equal(grid[:S, :S], np.round(clips[0]["identity_rgb"]))
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000


def test_several_dataset_folders_pool_their_train_splits(tmp_path):
    a = write_fake_dataset(tmp_path / "a", clips_per_split=2)
    b = write_fake_dataset(tmp_path / "b", clips_per_split=3)
    pooled = train.load_clips([a, b], "train")
    assert len(pooled) == 5
    for got, want in zip(pooled, train.load_clips(a, "train") + train.load_clips(b, "train"),
                         strict=True):
        np.testing.assert_array_equal(got["target_rgb"], want["target_rgb"])
    rc = train.main(["--config", "micro", "--data", str(a), str(b), "--workdir",
                     str(tmp_path / "run"), "--steps", "1", "--quiet"])
    assert rc == 0 and (tmp_path / "run" / "metrics.jsonl").is_file()
    rc = train.main(["--config", "micro", "--data", str(a), str(tmp_path / "missing"),
                     "--workdir", str(tmp_path / "run2"), "--steps", "1", "--quiet"])
    assert rc == 1  # a missing folder is a one-line error, not a traceback


def test_data_weights_draw_each_dataset_in_its_share(tmp_path):
    groups = [train.fake_clips(1, 32, 2, seed=0), train.fake_clips(9, 32, 2, seed=1)]
    mix = train.Mix.of(groups, [3, 1])
    assert mix.weights == (0.75, 0.25) and len(mix) == 10
    n = 4000
    share = np.mean([mix.draw(np.random.default_rng((0, k))) is groups[0][0] for k in range(n)])
    # pooled by clip count the one-clip dataset would give 10 % of the samples; weighted, 75 %
    assert abs(share - 0.75) < 3 * np.sqrt(0.75 * 0.25 / n)
    for bad in ([1.0], [1.0, -1.0], [0.0, 0.0]):
        with pytest.raises(train.UserError, match="--data-weights"):
            train.Mix.of(groups, bad)


def test_reference_mse_is_a_masked_mean_by_hand():
    rng = np.random.default_rng(0)
    rgb, target = rng.random((2, 5, 6, 3)), rng.random((2, 5, 6, 3))
    cover, head = rng.random((2, 5, 6)), (rng.random((2, 5, 6)) > 0.5).astype(float)
    got = np.asarray(train.reference_mse(jnp.asarray(rgb), jnp.asarray(cover),
                                         jnp.asarray(target), jnp.asarray(head)))
    for i in range(2):
        num = den = 0.0
        for y in range(5):
            for x in range(6):
                w = cover[i, y, x] * head[i, y, x]
                for c in range(3):
                    num += w * (2 * (rgb[i, y, x, c] - cover[i, y, x] * target[i, y, x, c])) ** 2
                den += 3 * w
        np.testing.assert_allclose(got[i], num / den, rtol=1e-5)
    # target pixels outside the head (video: the background, still while the head moves) do
    # not count
    moved = np.where(head[..., None] == 0, 1.0 - target, target)
    np.testing.assert_allclose(train.reference_mse(rgb, cover, moved, head), got, rtol=1e-6)


def test_loss_mask_reaches_the_reference_loss_only():
    clips = train.fake_clips(2, 32, 3, head_mask=True)
    batch = train.collate([train.make_sample(clips, CFG, k) for k in range(4)])
    assert batch["loss_mask"].shape == (4, 32, 32)
    assert set(np.unique(batch["loss_mask"])) == {0, 255}
    assert (train.make_sample(train.fake_clips(1, 32, 3), CFG, 0)["loss_mask"] == 255).all()
    whole = dataclasses.replace(CFG, video_full_frame_loss=True)
    assert all((train.make_sample(clips, whole, k)["loss_mask"] == 255).all() for k in range(4))
    model = M.MPIModel(CFG, rngs=nnx.Rngs(0))
    key = jax.random.key(3)
    out = {}
    for value in (0, 255):
        b = dict(batch, loss_mask=np.full_like(batch["loss_mask"], value))
        out[value] = train.loss_fn(model, {k: jnp.asarray(v) for k, v in b.items()}, key)[1]
    assert float(out[0]["mse_reference"]) == 0.0 < float(out[255]["mse_reference"])
    np.testing.assert_allclose(float(out[0]["mse_target"]), float(out[255]["mse_target"]),
                               rtol=1e-6)


def test_one_training_step_on_a_real_and_synthetic_mix(tmp_path):
    real = write_fake_dataset(tmp_path / "real", video=True)
    synthetic = write_fake_dataset(tmp_path / "synth")
    got = train.load_clips(real, "train")
    assert "head_mask" in got[0] and "identity_alpha" not in got[0]
    assert "head_mask" not in train.load_clips(synthetic, "train")[0]
    rc = train.main(["--config", "micro", "--data", str(real), str(synthetic),
                     "--data-weights", "0.5", "0.5", "--workdir", str(tmp_path / "run"),
                     "--steps", "1", "--quiet"])
    assert rc == 0
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(line["loss"]) and np.isfinite(line["mse_reference"])
    assert json.loads((tmp_path / "run" / "data.json").read_text())["weights"] == [0.5, 0.5]
    rc = train.main(["--config", "micro", "--data", str(real), "--data-weights", "0.5", "0.5",
                     "--workdir", str(tmp_path / "run2"), "--steps", "1", "--quiet"])
    assert rc == 1
