"""What resampling a reference-space MPI into each frame's camera costs on the views around it.

    python scripts/eval_reproject.py --data synthdata_s1 --split val [--clips 24] [--frames 2]
        [--ckpt DIR] [--json OUT]

The model makes each MPI in the identity photo's camera. Before MPI format version 2 that MPI
was moved into the frame's camera (``mpi.reproject``: each warped plane laid flat on the frame
plane nearest its depth) and every view was rendered from the moved MPI; since then the MPI is
stored as made, with its pose ``frame_from_mpi``, and every view is rendered from it directly.
This scores both on the same generated MPIs (true identity pose and expression, 8 steps) against
the dataset's ground-truth views: the frame's own view must agree (the reprojection is exact
there), the side views and eyes show the difference.

Uses ground truth (hide_ground_truth=False): evaluation only, never training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

from mpitalk import checkpoint, controls, generate, metrics, mpi, run_cli, synth
from mpitalk.evaluate.dataset import clip_view_poses
from mpitalk.evaluate.generation import generate_clip
from mpitalk.evaluate.scores import VIEWS, render_frames


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="synthetic dataset folder (mpitalk.synth)")
    p.add_argument("--split", default="val")
    p.add_argument("--clips", type=int, default=24, help="first N clips of the split")
    p.add_argument("--frames", type=int, default=2, help="first N frames of each clip")
    p.add_argument("--steps", type=int, default=8, help="sampler steps")
    p.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args(argv)
    return run_cli(lambda: _evaluate(a))


def _evaluate(a: argparse.Namespace) -> int:
    config, model = checkpoint.load(a.ckpt)
    depths, K = generate.mpi_geometry(config)
    reproject = jax.jit(mpi.reproject)
    ds = synth.ClipDataset(a.data, a.split, hide_ground_truth=False)
    n = min(a.clips, len(ds))
    psnr = {m: {v: [] for v in VIEWS} for m in ("direct", "reprojected")}
    for i in range(n):
        clip = ds[i]
        T = min(a.frames, len(clip["controls"]))
        track = controls.Track(clip["controls"][:T], clip["pose"][:T], 25.0)
        mpis, frame_from_mpi = generate_clip(model, config, metrics.to_float(clip["identity_rgb"]),
                                             track, a.steps, 0, 4, "reference",
                                             synth.true_identity_info(clip))
        view_poses = np.stack([clip_view_poses(clip, t) for t in range(T)])  # view_from_frame
        direct, _ = render_frames(mpis, depths, K, view_poses @ frame_from_mpi[:, None])
        moved = [np.asarray(reproject(mpis[t], depths, K, frame_from_mpi[t])) for t in range(T)]
        resampled, _ = render_frames(moved, depths, K, view_poses)
        for j, v in enumerate(VIEWS):
            truth = metrics.to_float(clip[f"{v}_rgb"][:T])
            psnr["direct"][v].append(float(np.mean(metrics.psnr(direct[:, j], truth))))
            psnr["reprojected"][v].append(float(np.mean(metrics.psnr(resampled[:, j], truth))))
        print(f"clip {i + 1}/{n}: " + "  ".join(
            f"{v} {np.mean(psnr['direct'][v]):.2f}/{np.mean(psnr['reprojected'][v]):.2f}"
            for v in VIEWS) + "  (direct/reprojected, running mean dB)", flush=True)
    res = {"data": str(a.data), "split": a.split, "clips": n, "frames_per_clip": a.frames,
           "steps": a.steps, "identity_info": "true",
           "checkpoint": str(a.ckpt or checkpoint.default_path()),
           "psnr": {m: {v: float(np.mean(x)) for v, x in r.items()} for m, r in psnr.items()}}
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
