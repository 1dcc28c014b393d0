"""Synthetic dataset: contract (docs/dataset.md), 3D consistency, determinism, splits, loader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mpitalk import UserError, camera, synth
from mpitalk.controls import ARKIT_NAMES

SMALL = dict(identities=3, clips_per_identity=1, frames=2, size=48, seed=3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_a")
    synth.generate(out, preview=True, progress=False, **SMALL)
    return out


def _clip(dataset) -> dict[str, np.ndarray]:
    m = json.loads((dataset / "manifest.json").read_text())
    path = dataset / m["splits"]["train"][0]
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_contract(dataset):
    m = json.loads((dataset / "manifest.json").read_text())
    S, T = SMALL["size"], SMALL["frames"]
    assert m["size"] == S and m["frames_per_clip"] == T and m["views"] == list(synth.VIEWS)
    assert (m["near_m"], m["far_m"]) == (0.48, 1.1) and m["fps"] > 0
    assert (dataset / "preview.png").is_file() and (dataset / "synth.log").is_file()
    a = _clip(dataset)
    expect = {
        "identity_rgb": ((S, S, 3), np.uint8),
        "identity_alpha": ((S, S), np.uint8),
        "identity_controls": ((52,), np.float32),
        "identity_pose": ((6,), np.float32),
        "identity_cond": ((S, S, 4), np.uint8),
        "K": ((3, 3), np.float32),
        "controls": ((T, 52), np.float32),
        "pose": ((T, 6), np.float32),
        "cond": ((T, S, S, 4), np.uint8),
    }
    for v in ("target",) + synth.VIEWS:
        expect[f"{v}_rgb"] = ((T, S, S, 3), np.uint8)
        expect[f"{v}_alpha"] = ((T, S, S), np.uint8)
        expect[f"{v}_depth"] = ((T, S, S), np.float32)
        if v != "target":
            expect[f"{v}_from_target"] = ((T, 4, 4), np.float32)
    assert set(a) == set(expect)
    for k, (shape, dtype) in expect.items():
        assert a[k].shape == shape and a[k].dtype == dtype, k
    assert np.allclose(a["K"], camera.intrinsics(1.5 * S, S, S))
    assert 0 <= a["controls"].min() and a["controls"].max() <= 1
    assert np.abs(np.degrees(a["pose"][:, :2])).max() <= 20.01
    fg = a["target_alpha"] > 127
    assert 0.15 < fg.mean() < 0.9
    d = a["target_depth"]
    assert 0.45 < d[fg].min() and d[fg].max() < 1.0  # the head ~0.6 m away
    assert np.all(d[a["target_alpha"] == 0] > 0.9)  # the backdrop sits 0.5 m behind the head centre
    left, _ = camera.stereo_eyes(0.063)
    assert np.allclose(a["left_eye_from_target"][0], left)
    assert len(ARKIT_NAMES) == a["controls"].shape[1]


def _reproject(depth_src, K, tgt_from_src):
    S = depth_src.shape[0]
    jj, ii = np.meshgrid(np.arange(S) + 0.5, np.arange(S) + 0.5)
    rays = np.stack([jj, ii, np.ones_like(jj)], -1) @ np.linalg.inv(K).T
    pts = rays * depth_src[..., None]
    pts_t = pts @ tgt_from_src[:3, :3].T + tgt_from_src[:3, 3]
    uv = pts_t @ K.T
    return uv[..., :2] / uv[..., 2:3], pts_t[..., 2]


@pytest.mark.parametrize("view", synth.VIEWS)
def test_views_are_3d_consistent(dataset, view):
    """Lift target pixels with the target depth, move them with <view>_from_target, and compare
    colours where the point is visible in the other view (its depth agrees there)."""
    a = _clip(dataset)
    K = a["K"].astype(np.float64)
    S = K.shape[0] and a["target_depth"].shape[1]
    agree, total = 0, 0
    for t in range(a["pose"].shape[0]):
        uv, z = _reproject(a["target_depth"][t], K, a[f"{view}_from_target"][t].astype(np.float64))
        j, i = np.floor(uv[..., 0]).astype(int), np.floor(uv[..., 1]).astype(int)
        inside = (i >= 0) & (i < S) & (j >= 0) & (j < S)
        i, j = np.clip(i, 0, S - 1), np.clip(j, 0, S - 1)
        visible = inside & (np.abs(a[f"{view}_depth"][t][i, j] - z) < 0.01)
        # interior pixels only: away from alpha edges, where 2x2 supersampling mixes surfaces
        al = a["target_alpha"][t]
        solid = (al == 0) | (al == 255)
        ok = visible & solid
        diff = np.abs(a["target_rgb"][t].astype(int) - a[f"{view}_rgb"][t][i, j].astype(int)).max(
            -1
        )
        agree += int((diff[ok] < 40).sum())
        total += int(ok.sum())
        assert np.median(diff[ok]) < 12
    assert total > 0.5 * a["pose"].shape[0] * S * S
    assert agree > 0.9 * total


def test_deterministic(dataset, tmp_path):
    out = tmp_path / "b"
    assert (
        synth.main(
            [
                "--out",
                str(out),
                "--identities",
                "3",
                "--clips-per-identity",
                "1",
                "--frames",
                "2",
                "--size",
                "48",
                "--seed",
                "3",
                "--preview",
                "--quiet",
            ]
        )
        == 0
    )
    files_a = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.name != "synth.log":  # timings live there and only there
            assert (dataset / rel).read_bytes() == (out / rel).read_bytes(), rel


def test_splits_disjoint():
    for n in range(1, 40):
        s = synth.split_identities(n, seed=0)
        ids = [set(s[k]) for k in ("train", "val", "test")]
        assert sum(len(x) for x in ids) == n and set().union(*ids) == set(range(n))
        if n >= 3:
            assert all(len(x) >= 1 for x in ids)
    s = synth.split_identities(100, seed=0)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (80, 10, 10)


def test_manifest_splits_match_files(dataset):
    m = json.loads((dataset / "manifest.json").read_text())
    seen = set()
    for split, paths in m["splits"].items():
        ids = {int(p.split("-")[1]) for p in paths}
        assert ids == set(m["identities"][split])
        assert not ids & seen
        seen |= ids
        for p in paths:
            assert (dataset / p).is_file() and p.startswith(split + "/")


def test_loader_hides_ground_truth(dataset, monkeypatch):
    read = []
    original = np.lib.npyio.NpzFile.__getitem__

    def spy(self, key):
        read.append(key)
        return original(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", spy)
    ds = synth.ClipDataset(dataset, "train")
    assert len(ds) == len(json.loads((dataset / "manifest.json").read_text())["splits"]["train"])
    item = ds[0]
    assert not any("depth" in k or "alpha" in k and k != "identity_alpha" for k in read)
    assert not any(k.startswith(synth.VIEWS) for k in read + list(item))
    assert "target_rgb" in item and "target_depth" not in item and "cond" in item
    full = synth.ClipDataset(dataset, "train", hide_ground_truth=False)[0]
    assert "target_depth" in full and "yaw_plus10_rgb" in full


def test_cli_errors(tmp_path, capsys):
    assert synth.main(["--out", str(tmp_path / "x"), "--identities", "0"]) == 1
    assert "error:" in capsys.readouterr().err
    with pytest.raises(UserError):
        synth.ClipDataset(tmp_path / "missing")


def test_baking_the_atlas_leaves_the_shared_gl_context_clean():
    """synth.identity's atlas bake (run by make_identity, and by prior_align for the rig's skin
    during a job) leaves no released framebuffer bound: the next render sets no GL error."""
    from mpitalk import gl, rig
    from mpitalk.synth import identity

    ctx = gl.context()
    _ = ctx.error  # read off whatever an earlier test left
    identity._atlas_maps()
    rig.render_condition(np.zeros(52), camera.default_head_pose(),
                         camera.intrinsics(192.0, 128, 128), 128)
    assert ctx.error == "GL_NO_ERROR"
