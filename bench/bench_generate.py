"""Benchmark: generation frames/s and the end-to-end default job, split by stage.

    python bench/bench_generate.py [--frames 100] [--steps N] [--quick]

Runs the default job (shipped identity, track and checkpoint; 128x128 MPI; stereo export with
512-pixel eyes) for ``--frames`` frames into a temporary folder, as ``python -m mpitalk.render``
would, cold (JIT compilation included: the end-to-end time a user waits), and prints its
per-stage wall times; then runs 24 frames again in the same process (compiled, warm) for the
steady generation rate (frames/s with and without condition rendering). Also records the
stored MPI's size (per frame, the photo of a factored MPI counted over the frames, and the whole
folder). ``--keep DIR`` keeps the cold job's output there. Writes bench/results_generate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--frames", type=int, default=100, help="frames (100 = 4 s at 25 fps)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default: the job's)")
    ap.add_argument("--quick", action="store_true", help="24 frames instead")
    ap.add_argument("--json", default=str(Path(__file__).with_name("results_generate.json")))
    ap.add_argument("--keep", help="copy the cold job's output folder here")
    args = ap.parse_args(argv)
    frames = 24 if args.quick else args.frames
    import jax

    from mpitalk import job

    if args.steps is None:
        args.steps = job.JobOptions().steps

    with tempfile.TemporaryDirectory() as tmp:
        # cold: what a user waits for, JIT compilation included
        t0 = time.perf_counter()
        report = job.run_job(job.JobOptions(out=os.path.join(tmp, "cold"), frames=frames,
                                            steps=args.steps, quiet=True))
        wall = time.perf_counter() - t0
        stored = storage(Path(tmp) / "cold" / "mpi")
        if args.keep:
            shutil.copytree(Path(tmp) / "cold", args.keep, dirs_exist_ok=True)
        # warm: the same process again, compiled functions cached: the steady generation rate
        warm_frames = min(frames, 24)
        warm = job.run_job(job.JobOptions(out=os.path.join(tmp, "warm"), frames=warm_frames,
                                          steps=args.steps, quiet=True))
    t = report["timings_s"]
    rows = {f"cold_{k}": v for k, v in t.items()}
    rows["cold_wall_s"] = wall
    rows["end_to_end_default_job_s"] = wall
    w = warm["timings_s"]
    rows["warm_generate_s_per_frame"] = w["generate_s"] / warm_frames
    rows["generation_frames_per_s"] = warm_frames / w["generate_s"]
    rows["sampling_frames_per_s"] = warm_frames / w["generate_sampling_s"]
    rows.update({f"storage_{k}": v for k, v in stored.items()})
    print(f"default job: {frames} frames, {args.steps} steps, 128x128x"
          f"{report['num_planes']} MPI, 512-pixel eyes, {jax.devices()[0].platform}")
    print(f"{'stage':<28}{'value':>10}")
    for k, v in rows.items():
        print(f"{k:<28}{v:>10.2f}")
    result = {"benchmark": "generate", "frames": frames, "steps": args.steps,
              "machine": platform.platform(), "cpu_count": os.cpu_count(),
              "jax_backend": jax.devices()[0].platform, **rows}
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
