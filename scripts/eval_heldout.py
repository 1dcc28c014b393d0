"""Held-out PSNR of a model checkpoint on synthetic clips (target view and the +-10 degree
ground-truth views), against a flat baseline: the identity image on one plane at the head's depth.

    python scripts/eval_heldout.py --data synthdata --split test [--ckpt DIR | --workdir RUN]

Uses ground truth (hide_ground_truth=False): evaluation only, never training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from mpitalk import camera, checkpoint, mpi, synth
from mpitalk.model import mpi_geometry, sample_mpi

VIEWS = ("target", "yaw_plus10", "yaw_minus10")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-10)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--ckpt", type=Path, default=None, help="model checkpoint (default shipped)")
    p.add_argument("--workdir", type=Path, default=None, help="or: a training run (latest EMA)")
    p.add_argument("--frames", type=int, default=3, help="frames per clip")
    p.add_argument("--clips", type=int, default=8, help="clips (spread over identities)")
    p.add_argument("--steps", type=int, default=8, help="sampler steps")
    p.add_argument("--sampler", default="heun", choices=("heun", "euler"))
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    a = p.parse_args(argv)
    if a.workdir is not None:
        from mpitalk.train import Config, Trainer

        config = Config.from_dict(json.loads((a.workdir / "config.json").read_text()))
        tr = Trainer(config, a.workdir)
        tr.restore()
        tr.ckpt.close()
        model, step = tr.ema_model(), tr.step
    else:
        config, model = checkpoint.load(a.ckpt)
        step = None
    ds = synth.ClipDataset(a.data, a.split, hide_ground_truth=False)
    idx = list(range(0, len(ds), max(1, len(ds) // a.clips)))[: a.clips]
    depths, K = mpi_geometry(config)
    scores = {f"{m}_{v}": [] for m in ("model", "flat") for v in VIEWS}
    t0 = time.time()
    for i in idx:
        clip = ds[i]
        T = clip["target_rgb"].shape[0]
        ts = np.linspace(0, T - 1, a.frames).round().astype(int)
        n = len(ts)
        cond = {"cond_render": clip["cond"][ts] / 255.0,
                "expression": np.concatenate([clip["controls"][ts], clip["pose"][ts]], 1),
                "prev_frame": np.zeros((n,) + clip["target_rgb"].shape[1:], np.float32),
                "has_prev": np.zeros(n, np.float32),
                "identity_cond": np.broadcast_to(clip["identity_cond"] / 255.0,
                                                 (n,) + clip["identity_cond"].shape),
                "identity_expression": np.broadcast_to(np.concatenate(
                    [clip["identity_controls"], clip["identity_pose"]]), (n, 58))}
        ident = np.broadcast_to(clip["identity_rgb"] / 255.0, (n,) + clip["identity_rgb"].shape)
        rgba = np.asarray(sample_mpi(model, config, ident.astype(np.float32), cond,
                                     jax.random.key(0), steps=a.steps, sampler=a.sampler))
        flat = np.concatenate([clip["identity_rgb"] / 255.0,
                               np.ones(clip["identity_rgb"].shape[:2] + (1,))], -1)[None]
        for k, t in enumerate(ts):
            tgt_from_ref = camera.head_motion(clip["pose"][t], clip["identity_pose"])
            for v in VIEWS:
                view_from_tgt = (np.eye(4, dtype=np.float32) if v == "target"
                                 else clip[f"{v}_from_target"][t])
                gt = clip[f"{v}_rgb"][t] / 255.0
                out = mpi.render(rgba[k], depths, K, view_from_tgt).rgb
                scores[f"model_{v}"].append(psnr(np.asarray(out), gt))
                base = mpi.render(flat, np.array([clip["identity_pose"][5]], np.float32), K,
                                  view_from_tgt @ tgt_from_ref).rgb
                scores[f"flat_{v}"].append(psnr(np.asarray(base), gt))
    res = {k: float(np.mean(v)) for k, v in scores.items()}
    res.update(n_frames=len(scores["model_target"]), split=a.split, steps=a.steps, train_step=step,
               seconds=time.time() - t0)
    for m in ("model", "flat"):
        print(f"{m:6s} " + "  ".join(f"{v} {res[f'{m}_{v}']:.2f} dB" for v in VIEWS))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
