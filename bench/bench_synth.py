"""Synthetic-data rendering speed: views/s and frames/s (all 5 views + condition) on this machine.

Run: ``python bench/bench_synth.py [--size 128] [--frames 24]``. Prints a table and writes
``bench/results_synth.json``. Identity setup (albedo/hair baking) is timed separately: it runs
once per identity and is amortised over its clips.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from mpitalk import camera, rig, synth


def bench(size: int, frames: int, seed: int = 0) -> dict:
    renderer = synth.SceneRenderer(size)
    t0 = time.perf_counter()
    ident = synth.make_identity(seed, 0)
    renderer.set_identity(ident)
    t_ident = time.perf_counter() - t0
    w, pose, _, _ = synth.make_motion(seed, 0, 0, frames)
    synth.render_clip(renderer, ident, seed, 0, 0, 2)  # warm up: shader compile, caches

    # views only: the 5 scene renders of each frame (pose upload once per frame)
    t0 = time.perf_counter()
    for t in range(frames):
        renderer.set_expression(w[t])
        M = camera.head_pose_matrix(pose[t])
        renderer.render(M, M)
        for T in synth.view_poses(pose[t]).values():
            renderer.render(T @ M, M)
    t_views = time.perf_counter() - t0
    views = frames * (1 + len(synth.VIEWS))

    t0 = time.perf_counter()
    for t in range(frames):
        rig.render_condition(w[t], pose[t], renderer.K, size)
    t_cond = time.perf_counter() - t0

    t0 = time.perf_counter()
    arrays = synth.render_clip(renderer, ident, seed, 0, 0, frames)
    t_clip = time.perf_counter() - t0
    t0 = time.perf_counter()
    synth.write_npz(Path("/tmp/_bench_synth.npz"), arrays)
    t_write = time.perf_counter() - t0
    Path("/tmp/_bench_synth.npz").unlink()
    return {
        "size": size,
        "frames": frames,
        "views_per_s": views / t_views,
        "cond_per_s": frames / t_cond,
        "frames_per_s_full": frames / t_clip,  # 5 views + condition + identity image
        "views_per_s_full": views / t_clip,
        "write_s_per_clip": t_write,
        "identity_setup_s": t_ident,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--frames", type=int, default=24)
    a = p.parse_args(argv)
    rows = [bench(s, a.frames) for s in a.sizes]
    keys = [
        "size",
        "views_per_s",
        "frames_per_s_full",
        "views_per_s_full",
        "cond_per_s",
        "write_s_per_clip",
        "identity_setup_s",
    ]
    print(" | ".join(f"{k:>17}" for k in keys))
    for r in rows:
        print(
            " | ".join(f"{r[k]:>17.1f}" if isinstance(r[k], float) else f"{r[k]:>17}" for k in keys)
        )
    out = Path(__file__).with_name("results_synth.json")
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "supersample": synth.SUPERSAMPLE,
                "results": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
