"""``python -m mpitalk.evaluate --footage``: self- and cross-reenactment on real footage.

End to end on a tiny fake footage split in the format ``python -m mpitalk.footage`` writes
(docs/dataset.md plus a head mask, no extra views): crops of ``data/identity.png`` moved over
time, 64 px, one 4-frame clip from each of two "videos". The model is
``mpitalk.model.sample_mpi`` replaced by a stand-in that returns a fixed MPI (as in
test_evaluate.py). And the two new measures checked
against independent constructions: expression agreement on series of known correlation and
amplitude, sharpness on a copy and a blurred copy of a photo.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mpitalk import UserError, camera, controls, data_dir, evaluate
from mpitalk.evaluate import footage as fe
from mpitalk.evaluate import scores

S, T = 64, 4
FPS = 12.5
CLIPS = (("carphone_pristine", 0), ("cap13_edit2", 0))


def _photo(size: int) -> np.ndarray:
    """data/identity.png as a (size,size,3) uint8 square around the face (no MediaPipe)."""
    from PIL import Image

    im = Image.open(data_dir() / "identity.png").convert("RGB")
    w, h = im.size
    s = min(w, h)
    sq = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(sq.resize((size, size), Image.LANCZOS))


def write_fake_footage(root: Path) -> Path:
    """A test split of two 4-frame clips: the face slides sideways by 1 px a frame (and is
    scaled a little) inside a fixed crop, as a head moves inside a real clip's fixed crop."""
    from PIL import Image

    big = Image.fromarray(_photo(S + 24))
    K = camera.intrinsics(1.5 * S, S, S).astype(np.float32)
    track = controls.load(str(data_dir() / "default_track.csv"))
    (root / "test").mkdir(parents=True)
    files, meta = [], {}
    for n, (video, number) in enumerate(CLIPS):
        def frame(dx: float, scale: float) -> np.ndarray:
            """The crop window (S + 8 px of the photo at S + 24) moved by dx, zoomed by scale."""
            side = (S + 8) / scale
            x0, y0 = (S + 24 - side) / 2 - dx, (S + 24 - side) / 2
            return np.asarray(big.resize((S, S), Image.LANCZOS, box=(x0, y0, x0 + side,
                                                                     y0 + side)))
        pose = np.tile(camera.default_head_pose().astype(np.float32), (T, 1))
        pose[:, 3] = -0.6 / (1.5 * S) * np.arange(T)  # 1 px a frame at 0.6 m, K = 1.5 S
        yy, xx = np.mgrid[0:S, 0:S]
        masks = np.stack([(((xx - S / 2 + t) / (0.3 * S)) ** 2 + ((yy - S / 2) / (0.4 * S)) ** 2
                           < 1).astype(np.uint8) * 255 for t in range(T)])
        clip = {"identity_rgb": frame(2.0, 1.0), "identity_controls": track.values[0],
                "identity_pose": camera.default_head_pose().astype(np.float32),
                "identity_cond": np.zeros((S, S, 4), np.uint8), "K": K,
                "controls": track.values[10 * n:10 * n + T], "pose": pose,
                "cond": np.zeros((T, S, S, 4), np.uint8),
                "target_rgb": np.stack([frame(-t, 1.0 + 0.02 * t) for t in range(T)]),
                "target_alpha": masks}
        name = f"test/clip-{video}-{number:04d}.npz"
        np.savez(root / name, **clip)
        files.append(name)
        meta[name] = {"video": video, "split": "test", "frames": list(range(T)), "fps": FPS}
    manifest = {"version": 1, "source": "video", "size": S, "frames_per_clip": T, "fps": FPS,
                "views": [], "splits": {"train": [], "val": [], "test": files},
                "identities": {"test": ["carphone_pristine", "cap13_edit2"]}, "clips": meta}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> Path:
    return write_fake_footage(tmp_path_factory.mktemp("fake-footage"))


def _stand_in_sample_mpi(model, config, identity, cond, key, steps=4, sampler="euler"):
    """A fixed MPI: the identity image on the far (opaque) plane."""
    identity = np.asarray(identity, np.float32)
    rgba = np.zeros((identity.shape[0], config.num_planes, S, S, 4), np.float32)
    rgba[:, 0, ..., :3] = identity
    rgba[:, 0, ..., 3] = 1.0
    return rgba


def test_footage_end_to_end(footage, tmp_path, monkeypatch):
    import mpitalk.model

    seen = []

    def recording(model, config, identity, cond, key, steps=4, sampler="euler"):
        seen.append({k: np.asarray(v) for k, v in cond.items()} | {"steps": steps})
        return _stand_in_sample_mpi(model, config, identity, cond, key, steps, sampler)

    monkeypatch.setattr(mpitalk.model, "sample_mpi", recording)
    monkeypatch.setattr(evaluate.cli, "load_model", lambda checkpoint: (
        dataclasses.replace(mpitalk.model.micro(), image_size=S), object()))
    out = tmp_path / "eval"
    assert evaluate.main(["--footage", str(footage), "--out", str(out), "--max-pairs", "4",
                          "--max-frames", str(T), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for task, names in (("self_reenactment", fe.SELF_METRICS),
                        ("cross_reenactment", fe.CROSS_METRICS)):
        assert set(m[task]) == set(fe.METHODS)
        for method in fe.METHODS:
            assert set(m[task][method]) == set(names)
    s, c = m["self_reenactment"], m["cross_reenactment"]
    # every image metric is a number; the stand-in moves the identity image with the head
    for method in fe.METHODS:
        assert 8.0 < s[method]["psnr"] < 60.0 and 0.0 <= s[method]["lpips"] < 1.0
        assert 0.0 <= s[method]["face_lpips"] < 1.0
        assert s[method]["face_found"] > 0.5
    assert s["model"]["psnr"] == pytest.approx(s["flat"]["psnr"], abs=3.0)
    # the identity image repeated does not move: its flicker is 0 and it follows nothing
    assert s["identity_image"]["flicker"] == 0.0
    assert c["identity_image"]["expr_corr"] == 0.0
    assert c["identity_image"]["amplitude"] == 0.0
    # ... and it is the photo: as sharp as itself, at distance 0 from itself
    assert c["identity_image"]["sharpness"] == pytest.approx(1.0)
    assert c["identity_image"]["identity_distance"] == pytest.approx(0.0, abs=1e-9)
    assert c["identity_image"]["identity_same"] == 1.0  # every frame is the photo's person
    assert m["reference"]["real_frames"]["flicker"] > 0.0
    assert set(m["by_source"]["self_reenactment"]) == {"carphone_pristine", "cap13_edit2"}
    assert set(m["by_source"]["cross_reenactment"]) == {"identity", "carphone_pristine",
                                                        "cap13_edit2"}
    # the main job's generation: its default 4 steps; cross-reenactment with the head still
    from mpitalk.job import JobOptions

    assert {x["steps"] for x in seen} == {JobOptions().steps}
    details = json.loads((out / "details.json").read_text())
    assert len(details["self_reenactment"]) == 2 and details["pairs"] == 4
    # T = 4 frames = one batch: one call per clip, then one per pair
    poses = [x["expression"][:, 52:] for x in seen]
    assert len(poses) == 2 + 4
    assert not np.allclose(poses[0], poses[0][0])  # self: the clip's own head motion
    for pose in poses[2:]:  # cross: the head held still
        assert np.allclose(pose, pose[0], atol=1e-6)
    assert all(r["photo"] != r["driver"] for r in details["cross_reenactment"])
    html = (out / "report.html").read_text()
    assert "<table>" in html and html.count("data:image/jpeg;base64,") >= 4
    assert set(m["expression_pooled"]["self_reenactment"]) == {"all", "carphone_pristine",
                                                               "cap13_edit2"}
    assert not list(out.glob(".*tmp*"))  # the temporary files were renamed


def test_head_scores_see_the_head_alone(footage):
    clip = fe.load_clips(footage, "test", S)[0]
    real = clip.data["target_rgb"].astype(np.float32) / 255.0
    head = (clip.data["target_alpha"] > 127)[..., None]
    K = clip.data["K"]
    other_background, _ = fe.self_clip(clip, np.where(head, real, 0.5), K)
    m = other_background["model"]
    assert m["lpips_head"] == pytest.approx(0.0, abs=1e-6) and m["lpips"] > 0.05
    assert m["psnr_head"] > 60.0 > m["psnr"]
    grey_head, _ = fe.self_clip(clip, np.where(head, 0.5, real), K)
    g = grey_head["model"]
    assert g["lpips_head"] > 0.05 and g["psnr_head"] < 20.0
    assert g["lpips_head"] == pytest.approx(g["lpips"], abs=1e-6)  # the same images


def test_footage_baselines_only_and_errors(footage, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluate.main(["--footage", str(footage), "--out", str(out), "--baselines-only",
                          "--max-clips", "1", "--max-pairs", "2", "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["self_reenactment"]) == {"flat", "identity_image"}
    assert evaluate.main(["--footage", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0]
    with pytest.raises(UserError, match="px"):
        fe.load_clips(footage, "test", 128)


def test_cross_pairs_cover_every_photo_first():
    # 3 photos: the photo (no clip), clip 1's frame, clip 0's frame; drivers: clips 0, 1, track 2
    pairs = fe.cross_pairs(3, 3, [None, 1, 0], None)
    assert pairs[:3] == [(0, 2), (1, 2), (2, 2)]  # every photo with the driving track first
    assert all(j != {1: 1, 2: 0}.get(i) for i, j in pairs)  # never its own clip
    assert len(pairs) == 3 + 2 + 2 and len(set(pairs)) == len(pairs)  # all but own clips
    assert fe.cross_pairs(3, 3, [None, 1, 0], 4) == pairs[:4]
    assert fe.interleave_sources(["a", "a", "b", "a", "b"]) == [0, 2, 1, 4, 3]


def test_expression_agreement_on_known_series():
    """Driver channels sin/cos; responses built as a * driver + b * a series orthogonal to it
    (zero mean, zero covariance), so correlation and std ratio are known in closed form."""
    t = np.arange(200)
    driver = np.zeros((200, 52))
    driver[:, 0] = 0.3 + 0.2 * np.sin(t / 7.0)  # std 0.14
    driver[:, 1] = 0.5 + 0.15 * np.cos(t / 5.0)  # std 0.106
    driver[:, 2] = 0.01 * np.sin(t)  # std 0.007 < 0.08: not counted, whatever the response
    rng = np.random.default_rng(0)
    response = np.zeros_like(driver)
    want_corr, want_amp = [], []
    for c, (a, b) in enumerate(((0.5, 0.05), (-1.0, 0.1))):
        d = driver[:, c] - driver[:, c].mean()
        noise = rng.normal(size=200)
        noise -= noise.mean()
        noise -= d * (noise @ d) / (d @ d)  # Gram-Schmidt: orthogonal to the driver
        noise /= noise.std()
        response[:, c] = 0.2 + a * d + b * noise
        sd = d.std()
        want_corr.append(a * sd / math.hypot(a * sd, b))
        want_amp.append(math.hypot(a * sd, b) / sd)
    response[:, 2] = -driver[:, 2]  # anti-correlated, but the driver does not move enough
    corr, amp, n = scores.expression_agreement(driver, response)
    assert n == 2
    assert corr == pytest.approx(np.mean(want_corr), abs=1e-9)
    assert amp == pytest.approx(np.mean(want_amp), abs=1e-9)
    # a response that does not move follows nothing: correlation 0, amplitude 0
    corr, amp, n = scores.expression_agreement(driver, np.full_like(driver, 0.4))
    assert (corr, amp, n) == (0.0, 0.0, 2)
    # the driver itself: perfect agreement; nothing moves: NaN
    assert scores.expression_agreement(driver, driver)[:2] == pytest.approx((1.0, 1.0))
    assert math.isnan(scores.expression_agreement(np.zeros((9, 52)), driver[:9])[0])


def test_pooled_expression_concatenates_the_rows():
    t = np.arange(24)
    driver = np.zeros((24, 52))
    driver[:, 17] = 0.3 + 0.2 * np.sin(t / 3.0)
    model = driver * 0.5
    # two rows at different levels (another identity frame each): the level is not motion
    rows = [{"tracks": {"real": driver[:12], "model": model[:12] + 0.3, "flat": None,
                        "identity_image": np.full((12, 52), 0.1)}},
            {"tracks": {"real": driver[12:], "model": model[12:], "flat": None,
                        "identity_image": np.full((12, 52), 0.6)}}]
    out = fe.pooled_expression(rows, "real", ["model", "flat", "identity_image"])
    assert set(out) == {"model", "identity_image"}  # no flat series: nothing pooled for it
    centred = [x - x.mean(0) for x in (driver[:12], driver[12:], model[:12], model[12:])]
    want = scores.expression_agreement(np.concatenate(centred[:2]), np.concatenate(centred[2:]))
    assert (out["model"]["expr_corr"], out["model"]["amplitude"],
            out["model"]["expr_channels"]) == pytest.approx(want)
    assert want[:2] == pytest.approx((1.0, 0.5))
    # a still image at a different level in each row: still (pooled raw, it would "move" 0.25)
    assert out["identity_image"]["expr_corr"] == 0.0
    assert out["identity_image"]["amplitude"] == pytest.approx(0.0, abs=1e-12)


def test_sharpness_copy_is_one_blur_is_lower():
    from PIL import Image, ImageFilter

    photo = _photo(128).astype(np.float32) / 255.0
    box = (24, 20, 104, 100)
    blurred = np.asarray(Image.fromarray((photo * 255).round().astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(2.0)), np.float32) / 255.0
    assert scores.sharpness(photo[None], photo, box) == pytest.approx(1.0)
    blur = scores.sharpness(blurred[None], photo, box)
    assert 0.0 < blur < 0.5
    assert scores.sharpness(np.stack([photo, blurred]), photo, box) == pytest.approx(
        (1.0 + blur) / 2)
    # the measure itself, by hand on a 0/1 checkerboard: the 4-neighbour Laplacian is -4 on a 1
    # (four 0 neighbours) and +4 on a 0, half each: variance 16
    board = np.indices((10, 10)).sum(0) % 2
    assert scores.laplacian_variance(np.repeat(board[..., None], 3, -1).astype(float)) == \
        pytest.approx(16.0)


def test_sampled_fields_relaid_are_what_the_job_stores(footage):
    """``footage.sample_fields`` keeps the model's soft layers so that the scripts can compare
    ways of storing them; re-laid as a surface they are the job's own fields
    (``generate.generate_fields`` with its defaults, sampled separately) for the same clip.
    Sampled with the model's own paint, its first batch with the blend set to the copy where
    ``paint.copy_mask`` of the prior's validity says so is the job's too."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from mpitalk import generate, paint, surface
    from mpitalk import model as M

    cfg = M.micro().replace(image_size=S, flow_bound=0.1)
    model = M.MPIModel(cfg, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)  # moved off the zero-initialised heads: fields that vary
    nnx.update(model, jax.tree.map(lambda p: jnp.asarray(
        np.asarray(p) + 0.3 * rng.standard_normal(p.shape).astype(np.float32)),
        nnx.state(model, nnx.Param)))
    clip = fe.load_clips(footage, "test", S)[0]
    got = fe.sample_fields(model, cfg, clip, steps=2, batch_size=2)
    own = fe.sample_fields(model, cfg, clip, steps=2, batch_size=2, paint="model")
    assert len(got.fields) == T and got.frame_from_mpi.shape == (T, 4, 4)
    assert got.prior_valid.shape == (T, S, S) and got.real.shape == (T, S, S, 3)
    _, K = generate.mpi_geometry(cfg)
    # the identity frame's expression as the dataset read it, on the whole frame like the
    # clip's track (generate.photo_expression's rule), not MediaPipe's reading of the crop
    info = generate.identity_conditions(got.identity, K, align=True,
                                        values=clip.data["identity_controls"])
    track = generate.motion_from_photo(clip.track, clip.data["identity_pose"], info)
    job = list(generate.generate_fields(model, cfg, got.identity, track, steps=2, batch_size=2,
                                        identity_info=info))
    groups = model.heads.plane_groups
    for t, (fields, pose) in enumerate(job):
        assert np.ptp(surface.median_plane(got.fields[t]["alpha"])) > 1.0  # relief
        assert np.ptp(own.fields[t]["blend"]) > 0.1 and np.ptp(got.fields[t]["flow"]) > 0
        candidates = [got.fields[t]]
        if t < 2:  # the first batch: the model's own paint, painted only in the holes
            f = dict(own.fields[t])
            copy = paint.copy_mask(own.prior_valid[t])[None] > 0.5
            # the job sets the copy's validity there; the photo's camera sees all of it: 1
            candidates.append({**f, "blend": np.where(copy, 1.0, f["blend"]).astype(np.float32)})
        for c in candidates:
            relaid = surface.surface_fields(c, groups)
            for k in ("alpha", "blend", "color", "flow"):
                np.testing.assert_allclose(relaid[k], fields[k], atol=1e-5, err_msg=f"{k} {t}")
        np.testing.assert_allclose(pose, got.frame_from_mpi[t], atol=1e-6)
    # later frames of the model's own paint are conditioned on a frame painted otherwise
    assert not np.allclose(own.fields[2]["alpha"], got.fields[2]["alpha"], atol=1e-5)
