"""The ARKit face rig decoded from facecap.glb: counts, names, motion of key shapes, performance."""

from __future__ import annotations

import numpy as np
import pytest

from mpitalk import camera, rig
from mpitalk.controls import ARKIT_NAMES


@pytest.fixture(scope="module")
def r() -> rig.Rig:
    return rig.load()


def test_counts_and_names(r):
    assert r.neutral.shape == (2694, 3) and r.neutral.dtype == np.float32
    assert r.triangles.shape == (5032, 3) and r.triangles.max() < len(r.neutral)
    assert r.uv.shape == (2694, 2) and 0 <= r.uv.min() and r.uv.max() <= 1
    assert list(r.targets) == list(ARKIT_NAMES)
    assert r.target_stack.shape == (52, 2694, 3)
    for part in (r.eye_left, r.eye_right, r.teeth):
        v, t, uv = part
        assert v.ndim == 2 and v.shape[1] == 3 and t.max() < len(v) and uv.shape == (len(v), 2)
    # every target moves something, except tongueOut: the file has no tongue mesh
    moves = np.abs(r.target_stack).reshape(52, -1).max(1) > 1e-4
    assert [n for n, m in zip(ARKIT_NAMES, moves, strict=True) if not m] == ["tongueOut"]


def test_head_frame_conventions(r):
    lo, hi = r.neutral.min(0), r.neutral.max(0)
    width, height = hi[0] - lo[0], hi[1] - lo[1]
    assert 0.15 < width < 0.22 and 0.18 < height < 0.28  # an adult head, metres
    nose = r.neutral[np.argmin(r.neutral[:, 2])]  # the face looks toward -z
    assert abs(nose[0]) < 0.005
    chin_y = r.neutral[np.abs(r.neutral[:, 0]) < 0.005, 1].max()
    assert nose[1] < chin_y  # y points down: the chin is below the nose
    assert np.abs(r.neutral.mean(0)[:1]).max() < 0.01
    # the subject's left eye is on image right (+x); its blink target acts there too
    assert r.eye_centers[0, 0] > 0.02 and r.eye_centers[1, 0] < -0.02
    blink = np.linalg.norm(r.targets["eyeBlinkLeft"], axis=1)
    assert r.neutral[np.argmax(blink), 0] > 0.02


def test_jaw_open_moves_chin_down(r):
    mid = np.abs(r.neutral[:, 0]) < 0.005
    chin = np.flatnonzero(mid)[np.argmax(r.neutral[mid, 1])]
    posed = rig.pose({"jawOpen": 1.0})
    dy = posed[chin, 1] - r.neutral[chin, 1]
    assert 0.01 < dy < 0.06  # cm scale, downward (+y)
    assert np.allclose(rig.pose(np.zeros(52)), r.neutral)


def _covered(vertices: np.ndarray, triangles: np.ndarray, point: np.ndarray) -> bool:
    """Does any triangle cross the camera ray (along +z) through ``point`` in front of it?"""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    v0, v1 = b[:, :2] - a[:, :2], c[:, :2] - a[:, :2]
    v2 = point[:2] - a[:, :2]
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    ok = np.abs(den) > 1e-12
    s = np.where(ok, (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / np.where(ok, den, 1), -1)
    t = np.where(ok, (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / np.where(ok, den, 1), -1)
    inside = ok & (s >= 0) & (t >= 0) & (s + t <= 1)
    z = a[:, 2] + s * (b[:, 2] - a[:, 2]) + t * (c[:, 2] - a[:, 2])
    return bool((inside & (z < point[2])).any())


@pytest.mark.parametrize("side,index", [("Left", 0), ("Right", 1)])
def test_blink_closes_eyelid(r, side, index):
    eye_v = r.eye_left[0] if index == 0 else r.eye_right[0]
    front = eye_v[np.argmin(eye_v[:, 2])]  # the cornea, seen by a frontal camera
    assert not _covered(r.neutral, r.triangles, front)
    closed = rig.pose({f"eyeBlink{side}": 1.0})
    assert _covered(closed, r.triangles, front)
    other = rig.pose({f"eyeBlink{'Right' if side == 'Left' else 'Left'}": 1.0})
    assert not _covered(other, r.triangles, front)


def test_performance(r):
    p = r.performance
    seconds = len(p) / p.fps
    assert 10.5 < seconds < 11.8 and p.fps == 30.0
    assert p.values.shape == (len(p), 52) and p.values.min() >= 0 and p.values.max() <= 1
    assert p.values[:, ARKIT_NAMES.index("jawOpen")].max() > 0.2  # it talks
    assert p.values[:, ARKIT_NAMES.index("eyeBlinkLeft")].max() > 0.5  # it blinks
    assert np.abs(np.degrees(p.pose[:, :3])).max() < 25
    assert np.allclose(p.pose[:, 3:].mean(0), [0, 0, camera.DEFAULT_HEAD_DEPTH_M], atol=1e-3)
    assert np.degrees(p.pose[:, :3]).std(0).max() > 0.5  # the head moves


def test_quaternion_matches_camera_rotation():
    """A glTF quaternion for a turn about y equals camera.rot_y of the same angle."""
    a = 0.4
    q = np.array([0.0, np.sin(a / 2), 0.0, np.cos(a / 2)])
    assert np.allclose(rig._quat_to_matrix(q), camera.rot_y(np.float64(a)), atol=1e-6)


def test_performance_yaw_sign(r):
    """A known turn: the file's head node turning about the scene's up axis (+y) by +a turns the
    face toward the viewer's right (+x in glTF, image right), which is yaw = -a in our
    convention (R = Ry(yaw): the nose (0,0,-d) goes to x = -d sin(yaw))."""
    a = 0.3
    turn_scene = camera.rot_y(np.float64(a))
    turn_model = r.scene_from_model.T @ turn_scene @ r.scene_from_model
    R = rig.head_rotation_from_model(turn_model, r.head_from_model)
    M = np.eye(4)
    M[:3, :3] = R
    yaw, pitch, roll = camera.head_pose_from_matrix(M)[:3]
    assert np.isclose(yaw, -a, atol=1e-6) and abs(pitch) < 1e-6 and abs(roll) < 1e-6
    nose_cam = R @ np.array([0.0, 0.0, -0.1])
    assert nose_cam[0] > 0  # image right


def test_render_condition(r):
    S = 64
    K = camera.intrinsics(1.5 * S, S, S)
    img = rig.render_condition(np.zeros(52), camera.default_head_pose(), K, S)
    assert img.shape == (S, S, 4) and img.dtype == np.uint8
    mask = img[..., 3] > 0
    assert 0.1 < mask.mean() < 0.6
    ii, jj = np.nonzero(mask)
    assert abs(jj.mean() - S / 2) < 3  # centred
    # normals face the camera: z component (blue) negative at the face centre
    centre = img[S // 2 - 2 : S // 2 + 2, S // 2 - 2 : S // 2 + 2].astype(float)
    assert centre[..., 2].mean() < 100
    # a head moved to image right (+x) renders to the right
    moved = rig.render_condition(np.zeros(52), np.array([0, 0, 0, 0.08, 0, 0.6]), K, S)
    assert np.nonzero(moved[..., 3])[1].mean() > jj.mean() + 5
    # the mouth opens in the condition
    jaw = rig.render_condition({"jawOpen": 1.0}, camera.default_head_pose(), K, S)
    assert (jaw[..., :3] != img[..., :3]).any(-1).sum() > 20
