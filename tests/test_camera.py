"""Camera math against constructions written out by hand from the README's definitions."""

import numpy as np
import pytest

from mpitalk import camera


def test_intrinsics_principal_point_at_centre():
    K = camera.intrinsics(100.0, 64, 48)
    assert K[0, 0] == K[1, 1] == 100.0
    assert (K[0, 2], K[1, 2]) == (32.0, 24.0)


def _Ry(a):  # right-handed rotation about y, written from the textbook definition
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def _Rx(a):
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _Rz(a):
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_head_pose_matrix_is_the_written_definition():
    pose = np.array([0.3, -0.2, 0.1, 0.01, -0.02, 0.65])
    expect = np.eye(4)
    expect[:3, :3] = _Ry(0.3) @ _Rx(-0.2) @ _Rz(0.1)
    expect[:3, 3] = pose[3:]
    np.testing.assert_allclose(camera.head_pose_matrix(pose), expect, atol=1e-6)
    np.testing.assert_allclose(camera.head_pose_from_matrix(expect), pose, atol=1e-6)


def test_yaw_and_pitch_signs_move_the_nose_as_defined():
    # Ry(yaw) @ (0,0,-0.1) = (-0.1 sin(yaw), 0, -0.1 cos(yaw)): for yaw > 0 the nose tip's x
    # becomes negative, i.e. it moves toward image left (smaller u). Rx(pitch) @ (0,0,-0.1) =
    # (0, 0.1 sin(pitch), -0.1 cos(pitch)): for pitch > 0, y grows, i.e. the nose moves down.
    K = camera.intrinsics(500.0, 256, 256)
    nose_head = np.array([0.0, 0.0, -0.1])

    def nose_px(pose6):
        T = camera.head_pose_matrix(np.asarray(pose6, dtype=np.float32))
        return camera.project(K, camera.transform_points(T, nose_head))

    centre = nose_px([0, 0, 0, 0, 0, 0.6])
    np.testing.assert_allclose(centre, [128.0, 128.0], atol=1e-4)
    yawed = nose_px([0.1, 0, 0, 0, 0, 0.6])
    assert yawed[0] < centre[0] - 5 and abs(yawed[1] - centre[1]) < 1e-3
    pitched = nose_px([0, 0.1, 0, 0, 0, 0.6])
    assert pitched[1] > centre[1] + 5 and abs(pitched[0] - centre[0]) < 1e-3


def test_invert_and_compose():
    T = camera.head_pose_matrix(np.array([0.2, 0.1, -0.3, 0.1, 0.2, 0.5], dtype=np.float32))
    np.testing.assert_allclose(camera.compose(T, camera.invert_pose(T)), np.eye(4), atol=1e-6)
    np.testing.assert_allclose(camera.invert_pose(T), np.linalg.inv(T), atol=1e-6)


def test_stereo_eyes_positions():
    left, right = camera.stereo_eyes(0.064)
    # an eye's centre in the centre frame is inv(eye_from_center) applied to the origin
    np.testing.assert_allclose(np.linalg.inv(left)[:3, 3], [-0.032, 0, 0], atol=1e-7)
    np.testing.assert_allclose(np.linalg.inv(right)[:3, 3], [0.032, 0, 0], atol=1e-7)


def test_look_at_centres_the_target_and_keeps_right_right():
    cam_from_world = camera.look_at([0.3, -0.1, -1.0], [0.0, 0.0, 0.0])
    K = camera.intrinsics(400.0, 200, 100)
    np.testing.assert_allclose(camera.project(K, camera.transform_points(cam_from_world,
                                                                         np.zeros(3))),
                               [100.0, 50.0], atol=1e-3)
    R = cam_from_world[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
    assert np.linalg.det(R) > 0
    straight = camera.look_at([0, 0, 0], [0, 0, 1])
    np.testing.assert_allclose(straight, np.eye(4), atol=1e-6)


def test_orbit_pose_keeps_the_pivot_and_moves_the_camera_left_for_positive_yaw():
    pivot = np.array([0.0, 0.0, 0.6], dtype=np.float32)
    T = camera.orbit_pose(np.float32(np.radians(10)), np.float32(0.0), pivot)
    np.testing.assert_allclose(camera.transform_points(T, pivot), pivot, atol=1e-6)
    centre_in_src = np.linalg.inv(T)[:3, 3]
    a = np.radians(10)
    np.testing.assert_allclose(centre_in_src, [-0.6 * np.sin(a), 0, 0.6 * (1 - np.cos(a))],
                               atol=1e-6)


@pytest.mark.parametrize("name", sorted(camera.CAMERA_PATHS))
def test_paths_are_rigid_and_start_near_identity(name):
    poses = camera.CAMERA_PATHS[name](24)
    assert poses.shape == (24, 4, 4)
    R = poses[:, :3, :3]
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape),
                               atol=1e-5)
    assert np.abs(poses[0] - np.eye(4)).max() < 1e-6
    assert np.abs(poses - np.eye(4)).max() > 0.01  # the camera actually moves
