"""The neck cut (mpitalk.body, the job's ``--body world``): texel heights against points placed
in the head frame and projected by hand, the cut following the rig's chin down as the jaw
opens, and the stream of frames ``body.cut_at_neck`` makes and the backdrop
``backdrop.from_first_frame`` makes with its fade."""

import numpy as np
import pytest

from mpitalk import backdrop, body, camera, rig

S = 32
K = camera.intrinsics(48.0, S, S).astype(np.float64)
DEPTHS = np.linspace(1.1, 0.45, 12)  # back to front, as the model's planes
POSE = np.array([0.15, -0.1, 0.05, 0.01, -0.02, 0.6])  # a turned, nodding, rolled head


def _texel_of(point_head: np.ndarray) -> tuple[float, float, float]:
    """(u, v, z): where a head-frame point lies in the camera (pixels, depth), by hand."""
    p = camera.head_pose_matrix(POSE).astype(np.float64) @ np.append(point_head, 1.0)
    return K[0, 0] * p[0] / p[2] + K[0, 2], K[1, 1] * p[1] / p[2] + K[1, 2], p[2]


def test_head_heights_are_the_heights_of_points_placed_in_the_head_frame():
    cam_from_head = camera.head_pose_matrix(POSE)
    heights = body.head_heights(DEPTHS, K, cam_from_head, S)
    assert heights.shape == (len(DEPTHS), S, S)
    rng = np.random.default_rng(0)
    for _ in range(20):
        # a point on a texel centre of a plane: walk back from the camera to the head frame
        d = int(rng.integers(len(DEPTHS)))
        r, c = rng.integers(S, size=2)
        ray = np.array([(c + 0.5 - K[0, 2]) / K[0, 0], (r + 0.5 - K[1, 2]) / K[1, 1], 1.0])
        head_point = np.linalg.solve(cam_from_head.astype(np.float64),
                                     np.append(ray * DEPTHS[d], 1.0))[:3]
        u, v, z = _texel_of(head_point)  # and forward again, by hand: the same texel
        assert (u, v, z) == pytest.approx((c + 0.5, r + 0.5, DEPTHS[d]), abs=1e-6)
        assert heights[d, r, c] == pytest.approx(head_point[1], abs=1e-6)


def _cut(chin_y: float = 0.1) -> body.NeckCut:
    heights = body.head_heights(DEPTHS, K, camera.head_pose_matrix(POSE), S)
    return body.NeckCut(heights, chin_y, np.zeros(52), cut_m=0.01, feather_m=0.02)


def test_keep_fades_linearly_across_the_cut_below_the_chin():
    cut = _cut()
    keep = cut.keep(np.zeros(52))
    h = cut.heights
    centre = 0.1 + 0.01
    np.testing.assert_array_equal(keep[h < centre - 0.01], 1.0)  # the head, above the fade
    np.testing.assert_array_equal(keep[h > centre + 0.01], 0.0)  # the body, below it
    fade = np.abs(h - centre) < 0.01
    assert fade.sum() > 10
    np.testing.assert_allclose(keep[fade], 0.5 - (h[fade] - centre) / 0.02, atol=1e-6)


def test_an_opening_jaw_takes_the_cut_down_with_the_rigs_chin():
    cut = _cut()
    open_jaw = np.zeros(52, np.float32)
    open_jaw[rig.ARKIT_NAMES.index("jawOpen")] = 0.8
    # the rig's own chin, posed by hand: its lowest midline point in front, before and after
    neutral, posed = rig.pose_head_frame(np.zeros(52)), rig.pose_head_frame(open_jaw)
    front = (np.abs(neutral[:, 0]) < 0.01) & (neutral[:, 2] < 0)
    chin = np.argmax(np.where(front, neutral[:, 1], -np.inf))
    drop = posed[chin, 1] - neutral[chin, 1]
    assert drop > 0.015  # down (y down), about 2 cm
    assert body.chin_drop(open_jaw, np.zeros(52)) == pytest.approx(drop, abs=1e-6)
    moved = body.NeckCut(cut.heights - drop, 0.1, np.zeros(52), 0.01, 0.02)
    np.testing.assert_allclose(cut.keep(open_jaw), moved.keep(np.zeros(52)), atol=1e-5)


def _surface_alpha(z: np.ndarray) -> np.ndarray:
    """(D,S,S) alphas of a surface at depths z (S,S): opaque from the nearest plane behind it."""
    index = np.interp(z, DEPTHS[::-1], np.arange(len(DEPTHS))[::-1])
    return np.clip(index[None] - np.arange(len(DEPTHS))[:, None, None] + 1, 0, 1).astype(
        np.float32)


def test_every_frame_is_cut_at_the_neck_and_the_backdrop_keeps_the_body():
    z = np.full((S, S), DEPTHS[8])  # a person on a plane near the head's depth, the room beyond
    z[:, :3] = z[:, -3:] = 1.1
    alpha = _surface_alpha(z)
    u, v, _ = _texel_of(np.array([0.0, 0.1, -0.06]))  # the chin
    info = {"identity_expression": np.concatenate([np.zeros(52), POSE]).astype(np.float32),
            "chin_px": np.array([u, v], np.float32)}
    rng = np.random.default_rng(2)
    photo = rng.random((S, S, 3)).astype(np.float32)
    frames = [({"alpha": alpha, "tag": t}, np.eye(4, dtype=np.float32)) for t in range(3)]
    values = np.zeros((3, 52), np.float32)
    values[2, rig.ARKIT_NAMES.index("jawOpen")] = 1.0
    stream, fade = body.cut_at_neck(iter(frames), DEPTHS, K, info, values)
    room, k, stream = backdrop.from_first_frame(stream, photo, DEPTHS, keep_photo=fade)
    out = list(stream)
    assert [f["tag"] for f, _ in out] == [0, 1, 2]
    cut = body.neck_cut(alpha, DEPTHS, K, info)
    assert cut.chin_y == pytest.approx(
        body.head_heights(DEPTHS[8:9], K, camera.head_pose_matrix(POSE), S)[
            0, int(v), int(u)], abs=1e-6)
    for t, (fields, _) in enumerate(out):
        np.testing.assert_allclose(fields["alpha"][:k], alpha[:k])  # the room's planes as made
        np.testing.assert_allclose(fields["alpha"][k:], alpha[k:] * cut.keep(values[t])[k:],
                                   atol=1e-6)
    body_px = body.head_heights(DEPTHS[8:9], K, camera.head_pose_matrix(POSE), S)[0] > \
        cut.chin_y + 0.03
    assert body_px.sum() > 20 and out[0][0]["alpha"][k:, body_px].max() == 0
    # the body and the fade keep the photo in the backdrop; the head above it is filled in
    np.testing.assert_allclose(room[body_px], photo[body_px], atol=1e-6)
    head_px = body.head_heights(DEPTHS[8:9], K, camera.head_pose_matrix(POSE), S)[0] < \
        cut.chin_y - 0.03
    head_px[:, :6] = head_px[:, -6:] = False
    assert np.abs(room[head_px] - photo[head_px]).mean() > 0.05


def test_without_a_face_read_on_the_photo_the_stream_is_unchanged():
    alpha = _surface_alpha(np.full((S, S), 0.6))
    frames = [({"alpha": alpha}, np.eye(4, dtype=np.float32))]
    stream, fade = body.cut_at_neck(iter(frames), DEPTHS, K, None, np.zeros((1, 52)))
    assert fade is None
    np.testing.assert_array_equal(next(stream)[0]["alpha"], alpha)
