"""Benchmark: render a 32-plane 512x512 MPI to both stereo eyes.

Compares ``mpi.render`` (jit, warm, the MPI passed as an argument) with a straightforward numpy
loop (per plane: homography, bilinear gather, over). Prints ms per stereo frame and writes JSON.

    python bench/bench_render.py [--planes 32] [--size 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mpitalk import camera, mpi


def numpy_render(rgba: np.ndarray, depths: np.ndarray, K: np.ndarray, tgt_from_src: np.ndarray):
    """Reference-style loop: warp each premultiplied plane with its homography, composite."""
    D, H, W, _ = rgba.shape
    Hs = np.asarray(mpi.homographies(depths, K, tgt_from_src, K))
    ys, xs = np.mgrid[0:H, 0:W]
    pix = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, dtype=np.float64)], -1).reshape(-1, 3)
    out = np.zeros((H * W, 4), np.float32)
    for k in range(D):
        q = pix @ Hs[k].T
        u = q[:, 0] / q[:, 2] - 0.5
        v = q[:, 1] / q[:, 2] - 0.5
        x0 = np.floor(u).astype(np.int64)
        y0 = np.floor(v).astype(np.int64)
        fx = (u - x0)[:, None].astype(np.float32)
        fy = (v - y0)[:, None].astype(np.float32)
        plane = rgba[k].copy()
        plane[..., :3] *= plane[..., 3:]
        flat = plane.reshape(-1, 4)
        acc = np.zeros((H * W, 4), np.float32)
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                xi, yi = x0 + dx, y0 + dy
                ok = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
                idx = np.clip(yi, 0, H - 1) * W + np.clip(xi, 0, W - 1)
                acc += wy * wx * flat[idx] * ok[:, None]
        out = acc + out * (1 - acc[:, 3:])
    return out.reshape(H, W, 4)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (compilation)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats * 1000.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--planes", type=int, default=32)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=str(Path(__file__).with_name("results_render.json")))
    args = ap.parse_args(argv)
    D, S = args.planes, args.size
    rng = np.random.default_rng(0)
    rgba = rng.random((D, S, S, 4), dtype=np.float32)
    rgba[0, ..., 3] = 1.0
    depths = np.asarray(mpi.plane_depths(0.4, 1.2, D))
    K = camera.intrinsics(1.5 * S, S, S)
    eyes = np.stack(camera.stereo_eyes(0.063))
    rotated = np.stack([camera.orbit_pose(np.float32(np.radians(a)), np.float32(0.0),
                                          np.array([0, 0, 0.6], np.float32)) for a in (-5, 5)])

    fn = jax.jit(mpi.render_many)
    rgba_j = jnp.asarray(rgba)
    rows = {
        "jax_stereo_eyes_ms": timed(lambda: jax.block_until_ready(fn(rgba_j, depths, K, eyes)),
                                    args.repeats),
        "jax_two_rotated_views_ms": timed(
            lambda: jax.block_until_ready(fn(rgba_j, depths, K, rotated)), args.repeats),
        "numpy_stereo_eyes_ms": timed(lambda: [numpy_render(rgba, depths, K, T) for T in eyes],
                                      max(1, args.repeats // 3)),
    }
    rows["numpy_over_jax"] = rows["numpy_stereo_eyes_ms"] / rows["jax_stereo_eyes_ms"]
    print(f"render {D} planes x {S}x{S}, both eyes, {jax.devices()[0].platform}")
    print(f"{'measure':<28}{'value':>12}")
    for k, v in rows.items():
        print(f"{k:<28}{v:>12.1f}")
    result = {"benchmark": "render", "planes": D, "size": S, "machine": platform.platform(),
              "processor": platform.processor(), "cpu_count": __import__("os").cpu_count(),
              "jax_backend": jax.devices()[0].platform, **rows}
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
