"""scripts/eval_oracle.py's ground-truth-depth MPI, against hand-built expectations."""

import importlib.util
from pathlib import Path

import numpy as np

from mpitalk import mpi

_SPEC = importlib.util.spec_from_file_location(
    "eval_oracle", Path(__file__).resolve().parent.parent / "scripts" / "eval_oracle.py")
eval_oracle = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(eval_oracle)

DEPTHS = np.array([1.2, 0.9, 0.6, 0.45], np.float32)  # back to front


def test_pixels_land_on_the_nearest_plane_in_disparity_and_composite_back():
    rng = np.random.default_rng(0)
    rgb = rng.random((6, 8, 3)).astype(np.float32)
    # per column a depth and the plane it must land on, chosen by hand in disparity
    # (1/d: 0.83, 1.11, 1.67, 2.22); 0.7 m has disparity 1.43, nearer 1.67 than 1.11
    column_depth = [1.2, 3.0, 0.9, 0.7, 0.6, 0.45, 0.2, 1.0]
    column_plane = [0, 0, 1, 2, 2, 3, 3, 1]
    depth = np.broadcast_to(np.array(column_depth, np.float32), (6, 8))
    fg = np.zeros((6, 8), bool)
    rgba = eval_oracle.oracle_mpi(rgb, depth, fg, DEPTHS)
    assert rgba.shape == (4, 6, 8, 4)
    for j, k in enumerate(column_plane):
        expected = np.zeros(4)
        expected[k] = 1.0
        expected[0] = 1.0  # the back plane is opaque everywhere
        np.testing.assert_array_equal(rgba[:, 0, j, 3], expected)
    out, alpha = mpi.composite(rgba)
    np.testing.assert_allclose(np.asarray(out), rgb, atol=1e-6)
    np.testing.assert_allclose(np.asarray(alpha), 1.0)


def test_back_plane_behind_the_foreground_takes_the_nearest_background_pixel():
    rng = np.random.default_rng(1)
    rgb = rng.random((5, 10, 3)).astype(np.float32)
    fg = np.zeros((5, 10), bool)
    fg[:, 6:] = True  # foreground: columns 6..9; the nearest background is column 5, same row
    depth = np.where(fg, 0.6, 1.2).astype(np.float32)
    rgba = eval_oracle.oracle_mpi(rgb, depth, fg, DEPTHS)
    np.testing.assert_array_equal(rgba[0, :, :6, :3], rgb[:, :6])
    for j in range(6, 10):
        np.testing.assert_array_equal(rgba[0, :, j, :3], rgb[:, 5])
    np.testing.assert_array_equal(rgba[2, :, 6:, 3], 1.0)  # the foreground on its own plane
    np.testing.assert_array_equal(rgba[2, :, :6, 3], 0.0)
