"""The GL renderer of this checkout against another checkout's (e.g. main before a change).

Both ``mpitalk/gl.py`` modules (each with its own ``shaders/``) are loaded into one process and
share one GL context; each round renders every case once with each, back to back (stereo, two
512x512 eyes, ``render_views`` packed side by side, readback included: bench_gl.py's setup), so
the load of a shared machine, which drifts a lot between two runs, hits both alike. Cases: a real
default-job frame (version 3) factored (``set_fields``) and dense (its 128-px dense MPI,
``set_mpi``), and bench_gl's face MPI as fields and dense at 512 px. Reported per case: the
median frames/s over rounds (wall clock and process CPU time, the latter less sensitive to other
processes), and the ratios of interest per round, then their median.

Run::

    mkdir -p /tmp/base && git archive REV mpitalk shaders | tar -x -C /tmp/base
    python bench/bench_gl_ab.py --base /tmp/base --label REV [--real-mpi DIR] [--rounds 5]

(prints a table, writes bench/results_gl_ab.json).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mpitalk import camera, gl, mpi

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gl  # noqa: E402 - the same MPIs and stereo setup

RATIOS = (("new real fields", "base real dense128"), ("new real fields", "base real fields"),
          ("new real dense128", "base real dense128"), ("new face fields", "base face fields"))


def load_gl(checkout: str):
    """The ``mpitalk/gl.py`` of another checkout, as its own module (its shaders its own)."""
    path = Path(checkout) / "mpitalk" / "gl.py"
    if not path.is_file():
        raise SystemExit(f"{path} not found: --base must be a checkout (or an extracted "
                         "`git archive REV mpitalk shaders`)")
    spec = importlib.util.spec_from_file_location("gl_base", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if module.shader_dir() == gl.shader_dir():
        raise SystemExit(f"--base {checkout} reads the same shaders as this checkout")
    return module


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the other checkout (its mpitalk/, shaders/)")
    ap.add_argument("--real-mpi", help="a default job's mpi/ folder (version 3); default: a "
                    "4-frame default job made on the spot")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (each: 5 renders per case)")
    ap.add_argument("--label", default="", help="what --base is (e.g. its git revision), "
                    "stored with the results")
    args = ap.parse_args(argv)
    gl_base = load_gl(args.base)
    ctx = gl.context()
    renderers = {"base": gl_base.GLRenderer(bench_gl.SIZE, bench_gl.SIZE, ctx=ctx),
                 "new": gl.GLRenderer(bench_gl.SIZE, bench_gl.SIZE, ctx=ctx)}
    S, P = 128, bench_gl.PLANES
    K_S = camera.intrinsics(camera.focal_from_fov(40.0, S), S, S)
    K = camera.intrinsics(camera.focal_from_fov(40.0, bench_gl.SIZE), bench_gl.SIZE,
                          bench_gl.SIZE)
    depths = np.asarray(mpi.plane_depths(0.4, 3.0, P), dtype=np.float32)
    face = bench_gl.face_mpi(np.random.default_rng(0))
    face_fields, face_photo = bench_gl.face_fields(face, S)
    face_views = gl.stereo_views(K, bench_gl.IPD_M, bench_gl.CONVERGENCE_M)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        seq = bench_gl.real_mpi(args.real_mpi, tmp)
        raw, _ = seq.fields_raw_and_pose(0)
        dense128, _ = seq.raw_and_pose(0)
        views = gl.stereo_views(seq.K_at(bench_gl.SIZE), bench_gl.IPD_M, bench_gl.CONVERGENCE_M)
        cases = {}
        for name, r in renderers.items():
            cases[f"{name} real fields"] = (
                lambda r=r: r.set_fields(raw, seq.photo_u8, seq.depths, seq.K, bench_gl.SIZE),
                r, views)
            cases[f"{name} real dense128"] = (
                lambda r=r: r.set_mpi(dense128, seq.depths, seq.K), r, views)
            cases[f"{name} face fields"] = (
                lambda r=r: r.set_fields(face_fields, face_photo, depths, K_S, bench_gl.SIZE),
                r, face_views)
            cases[f"{name} face dense512"] = (lambda r=r: r.set_mpi(face, depths, K), r,
                                              face_views)
        for setup, r, v in cases.values():  # compile, allocate
            setup()
            r.render_views(v, "sbs")
        wall = {k: [] for k in cases}
        cpu = {k: [] for k in cases}
        for _ in range(args.rounds):
            for k, (setup, r, v) in cases.items():
                setup()
                tw, tc = [], []
                for _ in range(5):
                    t0, c0 = time.perf_counter(), time.process_time()
                    r.render_views(v, "sbs")
                    tw.append(time.perf_counter() - t0)
                    tc.append(time.process_time() - c0)
                wall[k].append(1.0 / float(np.median(tw)))
                cpu[k].append(1.0 / float(np.median(tc)))
    results = {"base": str(Path(args.base).resolve()), "base_label": args.label,
               "rounds": args.rounds,
               "load_average_before": load_before, "load_average_after": os.getloadavg(),
               "gl_renderer": ctx.info["GL_RENDERER"], "cases": {}, "ratios": {}}
    print(f"stereo frames/s, 2x{bench_gl.SIZE}x{bench_gl.SIZE} packed, readback included, "
          f"{args.rounds} interleaved rounds (load average {load_before[0]:.1f} -> "
          f"{results['load_average_after'][0]:.1f} on {os.cpu_count()} cpus); base = "
          f"{args.base} {args.label}")
    print(f"{'case':22s} {'wall':>6s} {'range':>13s} {'CPU-time':>9s}")
    for k in cases:
        results["cases"][k] = {"wall_fps": wall[k], "cpu_fps": cpu[k],
                               "wall_fps_median": float(np.median(wall[k])),
                               "cpu_fps_median": float(np.median(cpu[k]))}
        print(f"{k:22s} {np.median(wall[k]):6.1f} [{min(wall[k]):5.1f}-{max(wall[k]):5.1f}] "
              f"{np.median(cpu[k]):9.1f}")
    for a, b in RATIOS:
        rw = np.asarray(wall[a]) / np.asarray(wall[b])
        rc = np.asarray(cpu[a]) / np.asarray(cpu[b])
        results["ratios"][f"{a} / {b}"] = {"wall_median": float(np.median(rw)),
                                           "wall_min": float(rw.min()),
                                           "wall_max": float(rw.max()),
                                           "cpu_median": float(np.median(rc))}
        print(f"{a} / {b}: {np.median(rw):.2f}x wall ({rw.min():.2f}-{rw.max():.2f}), "
              f"{np.median(rc):.2f}x CPU time")
    for r in renderers.values():
        r.release()
    out = Path(__file__).with_name("results_gl_ab.json")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
