"""Benchmark: generation frames/s and the end-to-end default job, split by stage.

    python bench/bench_generate.py [--frames 100] [--steps N] [--quick]

Runs the default job (shipped identity, track and checkpoint; 128x128 MPI; stereo export with
512-pixel eyes) for ``--frames`` frames into a temporary folder, as ``python -m mpitalk.render``
would, cold (JIT compilation included: the end-to-end time a user waits), and prints its
per-stage wall times; then runs 24 frames again in the same process (compiled, warm) for the
steady generation rate (frames/s with and without condition rendering); then the cold job once
more in a new process whose persistent compilation cache (``job.enable_compile_cache``) that
first run filled: what every later job waits for (``cached_*`` rows; the ``cold_*`` rows are a
first run, nothing cached: the bench gives both runs a cache folder of their own, never the
user's). ``--no-cached`` skips that third run. Also records the
stored MPI's size (per frame, the photo of a factored MPI counted over the frames, and the whole
folder). ``--keep DIR`` keeps the cold job's output there. Writes bench/results_generate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def storage(mpi_dir: Path) -> dict:
    """Bytes of a stored MPI sequence: frames, the photo (version 3), per frame."""
    frames = sorted((mpi_dir / "frames").glob("*.npz"))
    frame_bytes = sum(p.stat().st_size for p in frames)
    photo = mpi_dir / "photo.png"
    photo_bytes = photo.stat().st_size if photo.is_file() else 0
    total = sum(p.stat().st_size for p in mpi_dir.rglob("*") if p.is_file())
    meta = json.loads((mpi_dir / "mpi.json").read_text())
    return {"version": meta["version"], "frames": len(frames),
            "frame_bytes_mean": frame_bytes / len(frames), "photo_bytes": photo_bytes,
            "bytes_per_frame_photo_shared": (frame_bytes + photo_bytes) / len(frames),
            "mpi_folder_bytes": total}


def _cpu_s() -> float:
    """CPU seconds so far of this process (every thread) and its finished children (ffmpeg):
    on a shared machine, a job's cost independent of what else runs."""
    import resource

    own, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                       resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _same_files(a: Path, b: Path) -> bool:
    """Whether two job folders hold byte-identical MPI frames, photo, videos and preview."""
    names = [p.relative_to(a) for p in sorted(a.rglob("*"))
             if p.is_file() and p.suffix in (".npz", ".png", ".mp4")]
    return bool(names) and all((b / n).is_file() and (a / n).read_bytes() == (b / n).read_bytes()
                               for n in names)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--frames", type=int, default=100, help="frames (100 = 4 s at 25 fps)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default: the job's)")
    ap.add_argument("--quick", action="store_true", help="24 frames instead")
    ap.add_argument("--json", default=str(Path(__file__).with_name("results_generate.json")))
    ap.add_argument("--keep", help="copy the cold job's output folder here")
    ap.add_argument("--no-cached", action="store_true",
                    help="skip the cold run with the compilation cache filled")
    ap.add_argument("--cached-run", help=argparse.SUPPRESS)  # internal: that run's JSON out
    args = ap.parse_args(argv)
    frames = 24 if args.quick else args.frames
    import jax

    from mpitalk import job

    if args.steps is None:
        args.steps = job.JobOptions().steps
    if args.cached_run:  # the third run, in its own process (MPITALK_COMPILE_CACHE set by main)
        out = Path(args.cached_run)
        t0, c0 = time.perf_counter(), _cpu_s()
        report = job.run_job(job.JobOptions(out=str(out.with_suffix("")), frames=frames,
                                            steps=args.steps, quiet=True))
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
        out.write_text(json.dumps({**report["timings_s"], "wall_s": wall, "cpu_s": cpu}))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        # the compilation cache: empty for the first run, the same folder for the cached one
        cache = Path(tmp) / "jax-cache"
        os.environ[job.COMPILE_CACHE_ENV] = str(cache)
        # cold: what a user waits for, JIT compilation included
        t0, c0 = time.perf_counter(), _cpu_s()
        report = job.run_job(job.JobOptions(out=os.path.join(tmp, "cold"), frames=frames,
                                            steps=args.steps, quiet=True))
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
        stored = storage(Path(tmp) / "cold" / "mpi")
        if args.keep:
            shutil.copytree(Path(tmp) / "cold", args.keep, dirs_exist_ok=True)
        # warm: the same process again, compiled functions cached: the steady generation rate
        warm_frames = min(frames, 24)
        warm = job.run_job(job.JobOptions(out=os.path.join(tmp, "warm"), frames=warm_frames,
                                          steps=args.steps, quiet=True))
        cached = None
        if not args.no_cached:
            out = Path(tmp) / "cached.json"
            cmd = [sys.executable, __file__, "--frames", str(frames), "--steps", str(args.steps),
                   "--cached-run", str(out)]
            subprocess.run(cmd, check=True, env=os.environ | {job.COMPILE_CACHE_ENV: str(cache)})
            cached = json.loads(out.read_text())
            # loaded compiled code computes what compiling computes: the same files
            cached["output_identical"] = _same_files(Path(tmp) / "cold", out.with_suffix(""))
    t = report["timings_s"]
    rows = {f"cold_{k}": v for k, v in t.items()}
    rows["cold_wall_s"] = wall
    rows["cold_cpu_s"] = cpu  # this process's threads and its ffmpeg children
    rows["end_to_end_default_job_s"] = wall
    w = warm["timings_s"]
    rows["warm_generate_s_per_frame"] = w["generate_s"] / warm_frames
    rows["generation_frames_per_s"] = warm_frames / w["generate_s"]
    rows["sampling_frames_per_s"] = warm_frames / w["generate_sampling_s"]
    if cached is not None:
        rows.update({f"cached_{k}": v for k, v in cached.items()})
        rows["end_to_end_default_job_cached_s"] = cached["wall_s"]
    rows.update({f"storage_{k}": v for k, v in stored.items()})
    print(f"default job: {frames} frames, {args.steps} steps, 128x128x"
          f"{report['num_planes']} MPI, 512-pixel eyes, {jax.devices()[0].platform}")
    print(f"{'stage':<28}{'value':>10}")
    for k, v in rows.items():
        print(f"{k:<28}{v:>10.2f}" if not isinstance(v, bool) else f"{k:<28}{v!s:>10}")
    result = {"benchmark": "generate", "frames": frames, "steps": args.steps,
              "machine": platform.platform(), "cpu_count": os.cpu_count(),
              "jax_backend": jax.devices()[0].platform,
              "load_average_1_5_15_min_after": list(os.getloadavg()), **rows}
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
