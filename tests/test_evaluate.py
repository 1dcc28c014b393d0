"""End to end: ``python -m mpitalk.evaluate`` on a tiny fake dataset written in the
docs/dataset.md format (32 px, 2 identities x 1 clip x 3 frames).

The model runs through ``generate.generate_mpis`` with ``mpitalk.model.sample_mpi`` replaced by
a stand-in that returns a fixed MPI (the untrained micro model takes about a minute to build
and compile on two CPU cores); ``MPITALK_SLOW_TESTS=1`` also runs the real untrained micro model.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from mpitalk import UserError, camera, evaluate

S, T = 32, 3
VIEWS = ("yaw_plus10", "yaw_minus10", "left_eye", "right_eye")


def _view_from_target(pose6: np.ndarray) -> dict[str, np.ndarray]:
    pivot = np.asarray(pose6[3:6], np.float32)
    left, right = camera.stereo_eyes(0.063)
    return {"yaw_plus10": camera.orbit_pose(np.float32(np.radians(10)), np.float32(0), pivot),
            "yaw_minus10": camera.orbit_pose(np.float32(np.radians(-10)), np.float32(0), pivot),
            "left_eye": left, "right_eye": right}


def _image(rng: np.random.Generator, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A disk ("head") on a gradient backdrop: rgb uint8, alpha uint8, depth float32."""
    yy, xx = np.mgrid[0:S, 0:S] + 0.5
    disk = (xx - S / 2 - shift) ** 2 + (yy - S / 2) ** 2 < (S / 3) ** 2
    rgb = np.stack([xx / S, yy / S, np.full_like(xx, 0.3)], -1)
    rgb[disk] = [0.9, 0.6, 0.5]
    rgb = np.clip(rgb + rng.normal(0, 0.02, rgb.shape), 0, 1)
    depth = np.where(disk, 0.55, 1.1).astype(np.float32)
    return (rgb * 255).round().astype(np.uint8), disk.astype(np.uint8) * 255, depth


def write_fake_dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    K = camera.intrinsics(1.5 * S, S, S)
    (root / "test").mkdir(parents=True)
    files = []
    for ident in (3, 7):
        clip: dict[str, np.ndarray] = {}
        rgb, alpha, _ = _image(rng, 0.0)
        clip.update(identity_rgb=rgb, identity_alpha=alpha,
                    identity_controls=np.zeros(52, np.float32),
                    identity_pose=np.array([0, 0, 0, 0, 0, 0.6], np.float32),
                    identity_cond=np.zeros((S, S, 4), np.uint8), K=K)
        controls = np.zeros((T, 52), np.float32)
        controls[:, 17] = np.linspace(0, 0.5, T)  # jawOpen
        pose = np.tile(np.array([0, 0, 0, 0, 0, 0.6], np.float32), (T, 1))
        pose[:, 0] = np.radians(np.linspace(0, 4, T))
        clip.update(controls=controls, pose=pose, cond=np.zeros((T, S, S, 4), np.uint8))
        for v in ("target",) + VIEWS:
            frames = [_image(rng, t) for t in range(T)]
            clip[f"{v}_rgb"] = np.stack([f[0] for f in frames])
            clip[f"{v}_alpha"] = np.stack([f[1] for f in frames])
            clip[f"{v}_depth"] = np.stack([f[2] for f in frames])
            if v != "target":
                clip[f"{v}_from_target"] = np.stack(
                    [_view_from_target(pose[t])[v] for t in range(T)]).astype(np.float32)
        name = f"test/clip-{ident:04d}-00.npz"
        np.savez(root / name, **clip)
        files.append(name)
    manifest = {"version": 1, "size": S, "frames_per_clip": T, "fps": 15.0, "near_m": 0.42,
                "far_m": 1.2, "views": list(VIEWS), "splits": {"train": [], "val": [],
                                                               "test": files},
                "identities": {"train": [], "val": [], "test": [3, 7]}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_fake_dataset(tmp_path_factory.mktemp("fake-synth"))


HEADLINE = ({f"views.{v}.{m}" for v in evaluate.VIEWS for m in ("psnr", "ssim", "lpips")}
            | {"geometry.depth_mae_mm", "expression.mae", "identity.distance"})


def _leaves(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        out |= _leaves(v, key) if isinstance(v, dict) else {key}
    return out


def _check_metrics_json(out: Path) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) == {"views", "geometry", "expression", "identity", "baselines", "per_identity"}
    assert _leaves({k: m[k] for k in ("views", "geometry", "expression", "identity")}) == HEADLINE
    assert set(m["baselines"]) == {"flat"}
    assert _leaves(m["baselines"]["flat"]) == HEADLINE
    assert set(m["per_identity"]) == {"0003", "0007"}
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5 and "<table>" in html
    return m


def test_baselines_only(data, tmp_path):
    out = tmp_path / "eval"
    assert evaluate.main(["--data", str(data), "--out", str(out), "--baselines-only",
                          "--quiet"]) == 0
    m = _check_metrics_json(out)
    flat = m["baselines"]["flat"]
    assert 5.0 < flat["views"]["target"]["psnr"] < 60.0
    assert 0.0 <= flat["views"]["target"]["lpips"] < 1.0
    # the flat plane sits at the head centre (0.6 m), the fake head at 0.55 m
    assert flat["geometry"]["depth_mae_mm"] == pytest.approx(50.0, abs=2.0)
    assert m["views"]["target"]["psnr"] is None  # no model: null, not a number
    details = json.loads((out / "details.json").read_text())
    assert details["total"]["flat"]["geometry"]["chamfer_mm"] > 0
    for v in evaluate.VIEWS:  # the foreground PSNR: a real number, not the whole image's
        fg = details["total"]["flat"]["views"][v]["psnr_fg"]
        assert 5.0 < fg < 60.0 and fg != details["total"]["flat"]["views"][v]["psnr"]


def _stand_in_sample_mpi(model, config, identity, cond, key, steps=8, sampler="heun"):
    """A fixed MPI: the identity on the far plane (opaque), a faint copy on the nearest."""
    identity = np.asarray(identity, np.float32)
    B = identity.shape[0]
    rgba = np.zeros((B, config.num_planes, S, S, 4), np.float32)
    rgba[:, 0, ..., :3] = identity
    rgba[:, 0, ..., 3] = 1.0
    rgba[:, -1, ..., :3] = identity
    rgba[:, -1, ..., 3] = 0.2
    return rgba


def _model_api_missing() -> str | None:
    if importlib.util.find_spec("mpitalk.model") is None:
        return "mpitalk.model is not there yet"
    import mpitalk.model

    if not hasattr(mpitalk.model, "sample_mpi") or not hasattr(mpitalk.model, "micro"):
        return "mpitalk.model has no sample_mpi/micro yet"
    return None


def test_model_through_generate(data, tmp_path, monkeypatch):
    assert _model_api_missing() is None
    import mpitalk.model

    monkeypatch.setattr(mpitalk.model, "sample_mpi", _stand_in_sample_mpi)
    config = mpitalk.model.micro()
    out = tmp_path / "eval"
    evaluate.evaluate_dataset(data, "test", out, model=object(), config=config, steps=2,
                              progress=False)
    m = _check_metrics_json(out)
    # the stand-in shows the identity image in the target camera: close to the target frames
    assert m["views"]["target"]["psnr"] > 15.0
    assert m["geometry"]["depth_mae_mm"] > 0.0
    assert evaluate.summary_table(m).count("\n") == 18


def test_true_identity_info_reaches_the_model(data, tmp_path, monkeypatch):
    import mpitalk.model

    seen = []

    def recording(model, config, identity, cond, key, steps=8, sampler="heun"):
        seen.append({k: np.asarray(v) for k, v in cond.items()})
        return _stand_in_sample_mpi(model, config, identity, cond, key, steps, sampler)

    monkeypatch.setattr(mpitalk.model, "sample_mpi", recording)
    config = mpitalk.model.micro()
    out = tmp_path / "eval"
    evaluate.evaluate_dataset(data, "test", out, model=object(), config=config, steps=2,
                              max_clips=1, identity_info="true", progress=False)
    want = np.r_[np.zeros(52), 0, 0, 0, 0, 0, 0.6]  # the fake clip's identity controls + pose
    assert seen and all(np.allclose(c["identity_expression"], want) for c in seen)
    assert json.loads((out / "details.json").read_text())["identity_info"] == "true"
    with pytest.raises(UserError, match="identity_info"):
        evaluate.evaluate_dataset(data, "test", out, model=object(), config=config,
                                  identity_info="guessed", progress=False)


def test_relative_identity_info_gives_the_motion_from_the_photo(data, tmp_path, monkeypatch):
    import mpitalk.model
    from mpitalk import camera, generate, synth

    seen = []

    def recording(model, config, identity, cond, key, steps=8, sampler="heun"):
        seen.append({k: np.asarray(v) for k, v in cond.items()})
        return _stand_in_sample_mpi(model, config, identity, cond, key, steps, sampler)

    # the photo's pose as MediaPipe would misread it: 2 degrees of yaw, 1 cm to the side
    est_pose = np.array([np.radians(2.0), 0.0, 0.0, 0.01, 0.0, 0.6], np.float32)
    est = {"identity_cond": np.zeros((32, 32, 4), np.float32),
           "identity_expression": np.r_[np.zeros(52), est_pose].astype(np.float32)}
    monkeypatch.setattr(mpitalk.model, "sample_mpi", recording)
    given = []

    def estimate(identity, K, align=False, values=None):
        given.append(values)
        return est

    monkeypatch.setattr(generate, "identity_conditions", estimate)
    config = mpitalk.model.micro()
    runs = {}
    for info in ("estimated", "relative", "relative_true_expression"):
        seen.clear()
        given.clear()
        evaluate.evaluate_dataset(data, "test", tmp_path / info, model=object(), config=config,
                                  steps=2, max_clips=1, identity_info=info, progress=False)
        runs[info] = np.concatenate([c["expression"][:, 52:] for c in seen])
        runs[info + "_values"] = given[0]
    clip = synth.ClipDataset(data, "test", hide_ground_truth=False)[0]
    assert runs["relative_values"] is None  # MediaPipe's reading
    np.testing.assert_array_equal(runs["relative_true_expression_values"],
                                  clip["identity_controls"])  # the dataset's own
    np.testing.assert_array_equal(runs["relative_true_expression"], runs["relative"])
    # each frame's motion from the photo, its translation scaled onto the model's depth
    motion = np.array(camera.head_motion(clip["pose"], clip["identity_pose"]), np.float64)
    motion[:, :3, 3] *= 0.6 / clip["identity_pose"][5]
    want = generate.drivable_pose(camera.head_pose_from_matrix(
        motion @ camera.head_pose_matrix(est_pose)))
    np.testing.assert_allclose(runs["relative"], want, atol=1e-6)
    np.testing.assert_allclose(runs["estimated"], generate.drivable_pose(clip["pose"]), atol=1e-6)
    assert not np.allclose(runs["relative"], runs["estimated"])


@pytest.mark.skipif(os.environ.get("MPITALK_SLOW_TESTS") != "1",
                    reason="slow (building + compiling the micro model takes ~1 min on 2 cores); "
                           "set MPITALK_SLOW_TESTS=1")
def test_untrained_micro_model(data, tmp_path):
    reason = _model_api_missing()
    if reason:
        pytest.skip(reason)
    from flax import nnx

    import mpitalk.model

    config = mpitalk.model.micro()
    model = mpitalk.model.MPIModel(config, rngs=nnx.Rngs(0))
    out = tmp_path / "eval"
    evaluate.evaluate_dataset(data, "test", out, model=model, config=config, steps=2,
                              max_clips=1, progress=False)
    m = json.loads((out / "metrics.json").read_text())
    assert m["views"]["target"]["psnr"] is not None


def test_user_errors_are_one_line(tmp_path, capsys):
    assert evaluate.main(["--data", str(tmp_path / "nowhere"), "--baselines-only"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "manifest.json" in err
    assert evaluate.main(["--portraits", str(tmp_path / "x.png")]) == 1
    assert "--controls" in capsys.readouterr().err
    assert evaluate.main([]) == 1


def test_model_views_are_rendered_through_the_stored_frame_pose(data):
    """An MPI made in the identity's camera and given with its ``frame_from_mpi`` poses is
    scored like the flat baseline when it is the flat baseline's plane: evaluate_clip renders
    each view at ``view_from_target @ frame_from_mpi``, as the baseline composes its own poses;
    without the poses the views (the head turns 0-4 degrees) come out different."""
    from mpitalk import synth

    clip = synth.ClipDataset(data, "test", hide_ground_truth=False)[0]
    rgba, depths = evaluate.flat_mpi(clip["identity_rgb"], clip["identity_pose"])
    K = np.asarray(clip["K"], np.float32)
    poses = np.stack([camera.head_motion(clip["pose"][t], clip["identity_pose"])
                      for t in range(T)]).astype(np.float32)
    posed, _ = evaluate.evaluate_clip(clip, 15.0, np.stack([rgba] * T), depths, K,
                                      mpi_poses=poses)
    unposed, _ = evaluate.evaluate_clip(clip, 15.0, np.stack([rgba] * T), depths, K)
    for v in evaluate.VIEWS:
        key = f"views.{v}.psnr"
        assert posed["model"][key] == pytest.approx(posed["flat"][key], abs=1e-4)
        assert abs(unposed["model"][key] - posed["flat"][key]) > 0.01
