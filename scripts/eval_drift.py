"""Does quality drift over a long generated sequence? Target-view PSNR per frame over long
tracks, for each way of conditioning later clips on an earlier frame (``generate.PREV_MODES``).

Held-out synthetic clips are only 12 frames long, so each track is the clip played forwards and
backwards (0..11, 10..0, 1..11, ...) to ``--length`` frames: every frame still has its ground
truth. Generation is the main job's (``generate.generate_mpis``, identity expression and pose
read by MediaPipe, clips of ``--batch-size`` frames, one shared noise), except that the synthetic
identity image is used as it is (no portrait crop) and the track's true head poses are used as
they are (no ``--pose-mode relative``), so that frames can be scored against ground truth.

    python scripts/eval_drift.py --data synthdata_v2 [--ckpt DIR] [--clips 4] [--length 48]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mpitalk import checkpoint, controls, generate, metrics, mpi, synth


def ping_pong(num_frames: int, length: int) -> np.ndarray:
    """Frame indices 0..T-1, T-2..0, 1..T-1, ... (``length`` of them)."""
    if num_frames == 1:
        return np.zeros(length, int)
    period = np.concatenate([np.arange(num_frames), np.arange(num_frames - 2, 0, -1)])
    return np.resize(period, length)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--ckpt", type=Path, default=None, help="model checkpoint (default shipped)")
    p.add_argument("--clips", type=int, default=4, help="clips (spread over identities)")
    p.add_argument("--length", type=int, default=48, help="frames per track")
    p.add_argument("--batch-size", type=int, default=4, help="frames per generation clip")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--modes", nargs="+", default=list(generate.PREV_MODES),
                   choices=generate.PREV_MODES)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    a = p.parse_args(argv)
    config, model = checkpoint.load(a.ckpt)
    _, K = generate.mpi_geometry(config)
    ds = synth.ClipDataset(a.data, a.split, hide_ground_truth=False)
    picks = list(range(0, len(ds), max(1, len(ds) // a.clips)))[: a.clips]
    curves = {m: [] for m in a.modes}
    t0 = time.time()
    for i in picks:
        clip = ds[i]
        idx = ping_pong(clip["target_rgb"].shape[0], a.length)
        track = controls.Track(clip["controls"][idx], clip["pose"][idx], 25.0)
        identity = metrics.to_float(clip["identity_rgb"])
        info = generate.identity_conditions(identity, K)
        for m in a.modes:
            frames = generate.generate_mpis(model, config, identity, track, steps=a.steps,
                                            batch_size=a.batch_size, identity_info=info,
                                            prev_mode=m)
            curves[m].append([metrics.psnr(np.asarray(mpi.composite(rgba)[0]),
                                           metrics.to_float(clip["target_rgb"][t]))
                              for rgba, t in zip(frames, idx, strict=True)])
        print(f"clip {i}: " + "  ".join(f"{m} {np.mean(curves[m][-1]):.2f} dB" for m in a.modes),
              flush=True)
    B, q = a.batch_size, max(a.batch_size, a.length // 4)
    res = {"clips": len(picks), "length": a.length, "batch_size": B, "steps": a.steps,
           "checkpoint": str(a.ckpt or checkpoint.default_path()),
           "seconds": round(time.time() - t0, 1), "modes": {}}
    for m, c in curves.items():
        c = np.asarray(c)
        res["modes"][m] = {"mean_db": float(c.mean()), "first_clip_db": float(c[:, :B].mean()),
                           "last_quarter_db": float(c[:, -q:].mean()),
                           "per_frame_db": np.round(c.mean(0), 2).tolist()}
        r = res["modes"][m]
        print(f"{m:7s} mean {r['mean_db']:.2f} dB  first clip {r['first_clip_db']:.2f}  "
              f"last quarter {r['last_quarter_db']:.2f}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
