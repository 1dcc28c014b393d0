"""Geometry from an MPI: the visible surface as a coloured point cloud (.ply, via open3d).

Each pixel of the MPI's own camera gives one point at the alpha-weighted expected depth of its
ray (:func:`mpitalk.mpi.alpha_weighted_depth`), coloured by the composited colour divided by the
accumulated alpha (straight colour). Pixels that are mostly transparent, or whose colour comes
mostly from the farthest (background) plane, are left out, so the cloud is the head.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mpitalk import UserError


def surface_points(rgba: np.ndarray, depths: np.ndarray, K: np.ndarray, *,
                   min_alpha: float = 0.5, keep_background: bool = False,
                   frame_from_mpi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(points (N,3) metres, colours (N,3) in [0,1])`` of the visible surface, in the MPI's
    camera or, given ``frame_from_mpi`` (4,4; ``mpi_io``), moved into the frame's camera.

    rgba: (D,H,W,4) straight alpha, back to front; depths (D,) metres; K (3,3).
    """
    from mpitalk import mpi

    rgba = np.asarray(rgba, dtype=np.float32)
    D, H, W, _ = rgba.shape
    weights = np.asarray(mpi.over_weights(rgba[..., 3]))  # (D,H,W) compositing weights
    alpha = weights.sum(0)
    depth = np.asarray(mpi.alpha_weighted_depth(rgba, depths))
    rgb = np.einsum("dhw,dhwc->hwc", weights, rgba[..., :3]) / np.maximum(alpha, 1e-6)[..., None]
    keep = alpha >= min_alpha
    if not keep_background and D > 1:
        keep &= weights[0] < 0.5 * np.maximum(alpha, 1e-6)
    i, j = np.nonzero(keep)
    pix = np.stack([j + 0.5, i + 0.5, np.ones_like(j, dtype=np.float64)], axis=1)
    rays = pix @ np.linalg.inv(np.asarray(K, dtype=np.float64)).T  # z = 1
    points = rays * depth[i, j][:, None]
    if frame_from_mpi is not None:
        T = np.asarray(frame_from_mpi, dtype=np.float64)
        points = points @ T[:3, :3].T + T[:3, 3]
    return points, np.clip(rgb[i, j], 0.0, 1.0)


def save_ply(path: str | os.PathLike, rgba: np.ndarray, depths: np.ndarray, K: np.ndarray,
             **kwargs) -> Path:
    """Write :func:`surface_points` of one MPI frame as a coloured .ply; return the path."""
    try:
        import open3d as o3d
    except ImportError as exc:
        raise UserError("writing .ply needs open3d: pip install 'mpitalk[geometry]'") from exc
    points, colors = surface_points(rgba, depths, K, **kwargs)
    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(points)
    cloud.colors = o3d.utility.Vector3dVector(colors.astype(np.float64))
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    if not o3d.io.write_point_cloud(str(tmp), cloud):
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write the point cloud here; choose another folder")
    os.replace(tmp, path)
    return path
