"""Cameras: intrinsics, rigid poses, head pose, stereo eyes and camera paths.

Conventions (README "Conventions"): metres; OpenCV camera axes (x right, y down, z forward);
a pose named ``tgt_from_src`` maps points in the source frame into the target frame, as a
4x4 matrix acting on column vectors. Pixel centres are at (j + 0.5, i + 0.5).

Every function is pure and takes numpy or jax arrays; it returns the same kind it was given
(numpy in -> numpy out, jax in -> jax out), so the same code serves data tools and jitted models.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = Any  # numpy or jax array

DEFAULT_HEAD_DEPTH_M = 0.6  # camera-to-head-centre distance used throughout
DEFAULT_IPD_M = 0.063  # stereo baseline: a typical adult inter-pupillary distance


def _xp(*arrays: Array):
    """jax.numpy if any argument is a jax array (or tracer), else numpy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def intrinsics(focal_px: float, width: int, height: int) -> np.ndarray:
    """(3,3) pinhole intrinsics, square pixels, principal point at (width/2, height/2)."""
    return np.array(
        [[focal_px, 0.0, width / 2.0], [0.0, focal_px, height / 2.0], [0.0, 0.0, 1.0]],
        dtype=np.float32,
    )


def focal_from_fov(fov_deg: float, size_px: int) -> float:
    """Focal length in pixels giving a field of view of ``fov_deg`` across ``size_px`` pixels."""
    return 0.5 * size_px / float(np.tan(np.radians(fov_deg) / 2.0))


def scale_intrinsics(K: Array, sx: float, sy: float | None = None) -> Array:
    """Intrinsics of the same camera when the image is resized by (sx, sy)."""
    sy = sx if sy is None else sy
    xp = _xp(K)
    return xp.asarray(K) * xp.asarray([[sx], [sy], [1.0]], dtype=xp.asarray(K).dtype)


def rot_x(a: Array) -> Array:
    """(...,3,3) right-handed rotation by ``a`` radians about the x axis."""
    xp = _xp(a)
    c, s = xp.cos(a), xp.sin(a)
    o, z = xp.ones_like(c), xp.zeros_like(c)
    rows = [xp.stack([o, z, z], -1), xp.stack([z, c, -s], -1), xp.stack([z, s, c], -1)]
    return xp.stack(rows, -2)


def rot_y(a: Array) -> Array:
    """(...,3,3) right-handed rotation by ``a`` radians about the y axis."""
    xp = _xp(a)
    c, s = xp.cos(a), xp.sin(a)
    o, z = xp.ones_like(c), xp.zeros_like(c)
    rows = [xp.stack([c, z, s], -1), xp.stack([z, o, z], -1), xp.stack([-s, z, c], -1)]
    return xp.stack(rows, -2)


def rot_z(a: Array) -> Array:
    """(...,3,3) right-handed rotation by ``a`` radians about the z axis."""
    xp = _xp(a)
    c, s = xp.cos(a), xp.sin(a)
    o, z = xp.ones_like(c), xp.zeros_like(c)
    rows = [xp.stack([c, -s, z], -1), xp.stack([s, c, z], -1), xp.stack([z, z, o], -1)]
    return xp.stack(rows, -2)


def make_pose(R: Array, t: Array) -> Array:
    """(...,4,4) rigid transform [R | t] from rotation (...,3,3) and translation (...,3)."""
    xp = _xp(R, t)
    R, t = xp.asarray(R), xp.asarray(t)
    batch = R.shape[:-2]
    top = xp.concatenate([R, t[..., :, None]], axis=-1)
    bottom = xp.broadcast_to(xp.asarray([0.0, 0.0, 0.0, 1.0], dtype=R.dtype), batch + (1, 4))
    return xp.concatenate([top, bottom], axis=-2)


def translation(t: Array) -> Array:
    """(...,4,4) pure translation by (...,3)."""
    xp = _xp(t)
    t = xp.asarray(t, dtype=xp.float32) if xp is np else t
    eye = xp.broadcast_to(xp.eye(3, dtype=t.dtype), t.shape[:-1] + (3, 3))
    return make_pose(eye, t)


def invert_pose(T: Array) -> Array:
    """Inverse of a rigid (...,4,4) transform: [R | t]^-1 = [R^T | -R^T t]."""
    xp = _xp(T)
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    Rt = xp.swapaxes(R, -1, -2)
    return make_pose(Rt, -(Rt @ t[..., None])[..., 0])


def compose(*poses: Array) -> Array:
    """Matrix product of poses left to right: ``compose(c_from_b, b_from_a) = c_from_a``."""
    out = poses[0]
    for p in poses[1:]:
        out = out @ p
    return out


def transform_points(T: Array, points: Array) -> Array:
    """Apply a (4,4) pose to points (...,3)."""
    return points @ T[:3, :3].T + T[:3, 3]


def project(K: Array, points_cam: Array) -> Array:
    """Pixel coordinates (...,2) of camera-frame points (...,3) (continuous, centres at +0.5)."""
    uvw = points_cam @ K.T
    return uvw[..., :2] / uvw[..., 2:3]


def head_pose_matrix(pose6: Array) -> Array:
    """``cam_from_head`` (...,4,4) from (...,6) = (yaw, pitch, roll, tx, ty, tz), rad and metres.

    R = Ry(yaw) @ Rx(pitch) @ Rz(roll) (right-handed, about the camera's own y, x, z axes) and
    t = the head centre in camera coordinates. This is the one conversion every importer uses.
    """
    xp = _xp(pose6)
    pose6 = xp.asarray(pose6)
    if xp is np:
        pose6 = pose6.astype(np.float32)
    R = rot_y(pose6[..., 0]) @ rot_x(pose6[..., 1]) @ rot_z(pose6[..., 2])
    return make_pose(R, pose6[..., 3:6])


def head_motion(pose_tgt: Array, pose_ref: Array) -> Array:
    """``tgt_from_ref`` (...,4,4): the camera transform that moves what the camera saw of a head
    at ``pose_ref`` to where it is at ``pose_tgt`` (both (...,6), the head rigid, the camera
    fixed): ``cam_from_head(pose_tgt) @ inv(cam_from_head(pose_ref))``. It renders an MPI made
    in the identity image's camera into a frame's camera (training, generation, evaluation)."""
    return head_pose_matrix(pose_tgt) @ invert_pose(head_pose_matrix(pose_ref))


def head_pose_from_matrix(cam_from_head: Array) -> np.ndarray:
    """Inverse of :func:`head_pose_matrix`: (...,4,4) -> (...,6) (yaw, pitch, roll, tx, ty, tz).

    With R = Ry(y) Rx(p) Rz(r): R[1,2] = -sin(p), R[0,2] = sin(y) cos(p), R[2,2] = cos(y) cos(p),
    R[1,0] = cos(p) sin(r), R[1,1] = cos(p) cos(r). Pitch is returned in [-pi/2, pi/2].
    """
    xp = _xp(cam_from_head)
    M = xp.asarray(cam_from_head)
    R = M[..., :3, :3]
    pitch = xp.arcsin(xp.clip(-R[..., 1, 2], -1.0, 1.0))
    yaw = xp.arctan2(R[..., 0, 2], R[..., 2, 2])
    roll = xp.arctan2(R[..., 1, 0], R[..., 1, 1])
    return xp.concatenate([xp.stack([yaw, pitch, roll], -1), M[..., :3, 3]], axis=-1)


def default_head_pose(depth_m: float = DEFAULT_HEAD_DEPTH_M) -> np.ndarray:
    """(6,) the neutral head pose: facing the camera, centred, ``depth_m`` away."""
    return np.array([0.0, 0.0, 0.0, 0.0, 0.0, depth_m], dtype=np.float32)


def look_at(eye: Array, target: Array, up: Array = (0.0, -1.0, 0.0)) -> np.ndarray:
    """``cam_from_world`` (4,4) of an OpenCV camera at ``eye`` looking at ``target``.

    ``up`` is the world direction that should appear up in the image; with OpenCV axes the
    default world up is -y.
    """
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)  # with up=-y and z=+z this gives +x (image right)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)  # completes a right-handed frame, pointing down in the image
    R = np.stack([x, y, z])  # rows are the camera axes in world coordinates
    return make_pose(R, -R @ eye).astype(np.float32)


def stereo_eyes(ipd_m: float = DEFAULT_IPD_M) -> tuple[np.ndarray, np.ndarray]:
    """``(left_from_center, right_from_center)`` 4x4 poses of two parallel eyes.

    The left eye sits at x = -ipd/2 in the centre camera's frame, so a centre-frame point p has
    left-eye coordinates p + (ipd/2, 0, 0); the right eye mirrors it.
    """
    half = ipd_m / 2.0
    left = translation(np.array([half, 0.0, 0.0], dtype=np.float32))
    right = translation(np.array([-half, 0.0, 0.0], dtype=np.float32))
    return left, right


def orbit_pose(yaw: Array, pitch: Array, pivot: Array) -> Array:
    """``tgt_from_src`` (...,4,4) of a camera orbited about ``pivot`` (a src-frame point, (...,3)).

    The new camera is the source camera rotated by R = Ry(yaw) @ Rx(pitch) about the pivot:
    ``src_from_tgt = T(pivot) R T(-pivot)``. Its centre goes to ``pivot - R pivot``: for a pivot
    (0, 0, d) in front of the camera and a positive yaw that is (-d sin(yaw), 0, d(1 - cos(yaw))),
    toward the viewer's left, still looking at the pivot.
    """
    xp = _xp(yaw, pitch, pivot)
    yaw = xp.asarray(yaw, dtype=xp.float32)
    pitch = xp.asarray(pitch, dtype=xp.float32)
    pivot = xp.asarray(pivot, dtype=xp.float32)
    R = rot_y(yaw) @ rot_x(pitch)
    Rt = xp.swapaxes(R, -1, -2)
    # tgt_from_src = T(pivot) R^T T(-pivot): x_tgt = R^T (x_src - pivot) + pivot
    t = pivot - (Rt @ pivot[..., None])[..., 0]
    return make_pose(Rt, t)


def path_orbit(num_frames: int, pivot_depth_m: float = DEFAULT_HEAD_DEPTH_M,
               yaw_deg: float = 15.0) -> np.ndarray:
    """(T,4,4) ``tgt_from_src`` poses sweeping yaw through +-``yaw_deg`` and back, about a pivot
    on the optical axis at ``pivot_depth_m`` (one full period over the clip)."""
    s = np.sin(2 * np.pi * np.arange(num_frames) / max(num_frames, 1))
    pivot = np.array([0.0, 0.0, pivot_depth_m], dtype=np.float32)
    pivots = np.broadcast_to(pivot, (num_frames, 3))
    return orbit_pose(np.radians(yaw_deg) * s, np.zeros_like(s), pivots)


def path_swing(num_frames: int, pivot_depth_m: float = DEFAULT_HEAD_DEPTH_M,
               yaw_deg: float = 12.0, pitch_deg: float = 6.0) -> np.ndarray:
    """(T,4,4) poses going once round an ellipse in (yaw, pitch) about the pivot."""
    phase = 2 * np.pi * np.arange(num_frames) / max(num_frames, 1)
    pivot = np.array([0.0, 0.0, pivot_depth_m], dtype=np.float32)
    return orbit_pose(np.radians(yaw_deg) * np.sin(phase), np.radians(pitch_deg) * np.cos(phase) -
                      np.radians(pitch_deg), np.broadcast_to(pivot, (num_frames, 3)))


def path_dolly(num_frames: int, pivot_depth_m: float = DEFAULT_HEAD_DEPTH_M,
               travel_m: float = 0.15) -> np.ndarray:
    """(T,4,4) poses moving the camera toward the head by up to ``travel_m`` and back."""
    s = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(num_frames) / max(num_frames, 1))
    travel = np.minimum(travel_m, 0.5 * pivot_depth_m)
    t = np.zeros((num_frames, 3), dtype=np.float32)
    t[:, 2] = -travel * s  # camera moves +z, so scene points move -z in the new frame
    return translation(t)


CAMERA_PATHS = {"orbit": path_orbit, "swing": path_swing, "dolly": path_dolly}
