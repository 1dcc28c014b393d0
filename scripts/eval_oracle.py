"""What the MPI representation itself allows on the side views: the ground-truth-depth oracle.

    python scripts/eval_oracle.py --data synthdata_v2 --split test [--frames 4] [--planes 16]
        [--near M] [--far M]

For every frame, the target image is put on the model's MPI planes at its true depth (each
pixel, fully opaque, on the plane nearest its depth in disparity; the opaque back plane
carries the background, and behind the head, where the target camera sees no background, the
nearest background pixel: a crude inpainting). That MPI is rendered into the ground-truth side
views and scored as ``mpitalk.evaluate`` scores the model (PSNR, and ``psnr_fg`` on each
view's foreground). Colour and visible geometry are perfect here, so the gap to the model is
what a better network could win and the gap to infinity is the representation's own: plane
quantisation, resampling blur and disocclusions.

Uses ground truth (hide_ground_truth=False): evaluation only, never training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from mpitalk import UserError, metrics, synth
from mpitalk.evaluate.dataset import clip_view_poses
from mpitalk.evaluate.scores import SIDE_VIEWS, VIEWS, render_frames
from mpitalk.model import mpi_geometry, tiny


def oracle_mpi(rgb: np.ndarray, depth: np.ndarray, foreground: np.ndarray,
               depths: np.ndarray) -> np.ndarray:
    """(D,S,S,4) straight-alpha MPI, back to front: rgb (S,S,3) [0,1] on the plane of
    ``depths`` (D,) nearest each pixel's ``depth`` (S,S) metres in disparity; the back plane is
    opaque and, behind the ``foreground`` (S,S) bool, carries the nearest background pixel."""
    disp = 1.0 / np.clip(depth, depths[-1], depths[0])
    plane = np.argmin(np.abs(disp[None] - 1.0 / depths[:, None, None]), axis=0)
    plane[~np.isfinite(depth)] = 0
    alpha = (plane[None] == np.arange(len(depths))[:, None, None]).astype(np.float32)
    colour = np.broadcast_to(rgb, alpha.shape + (3,)).copy()
    if (~foreground).any():
        _, (ii, jj) = ndimage.distance_transform_edt(foreground, return_indices=True)
        colour[0] = rgb[ii, jj]
    alpha[0] = 1.0
    return np.concatenate([colour, alpha[..., None]], -1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="dataset folder (mpitalk.synth)")
    p.add_argument("--split", default="test")
    p.add_argument("--frames", type=int, default=4, help="first frames of each clip")
    p.add_argument("--planes", type=int, default=None, help="planes (default: tiny's)")
    p.add_argument("--near", type=float, default=None, help="nearest plane, metres "
                   "(default: tiny's)")
    p.add_argument("--far", type=float, default=None, help="back plane, metres (default: tiny's)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args(argv)
    config = tiny()
    for field, value in (("num_planes", a.planes), ("near_m", a.near), ("far_m", a.far)):
        if value is not None:
            config = config.replace(**{field: value})
    try:
        ds = synth.ClipDataset(a.data, a.split, hide_ground_truth=False)
        if len(ds) == 0:
            raise UserError(f"{a.data}: split {a.split!r} has no clips")
    except (OSError, ValueError) as e:
        print(f"error: {a.data}: cannot read the dataset ({e}); make one with "
              "python -m mpitalk.synth --out DIR", file=sys.stderr)
        return 1
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    depths, K = mpi_geometry(config)
    depths = np.asarray(depths)
    scores: dict[str, list[float]] = {v: [] for v in SIDE_VIEWS}
    scores_fg: dict[str, list[float]] = {v: [] for v in SIDE_VIEWS}
    for i in range(len(ds)):
        clip = ds[i]
        T = min(a.frames, len(clip["controls"]))
        rgb = metrics.to_float(clip["target_rgb"][:T])
        mpis = [oracle_mpi(rgb[t], clip["target_depth"][t], clip["target_alpha"][t] > 127, depths)
                for t in range(T)]
        poses = np.stack([clip_view_poses(clip, t) for t in range(T)])
        out, _ = render_frames(mpis, depths, np.asarray(K), poses)
        for v in SIDE_VIEWS:  # the target view is the image itself
            k, gt = VIEWS.index(v), clip[f"{v}_rgb"][:T]
            scores[v] += list(np.atleast_1d(metrics.psnr(out[:, k], gt)))
            fg = clip[f"{v}_alpha"][:T] > 127
            scores_fg[v] += list(np.atleast_1d(metrics.psnr(out[:, k], gt, mask=fg)))
    result = {"clips": len(ds), "frames_per_clip": a.frames, "planes": config.num_planes,
              "near_m": config.near_m, "far_m": config.far_m,
              "psnr": {v: float(np.mean(s)) for v, s in scores.items()},
              "psnr_fg": {v: metrics.nanmean(s) for v, s in scores_fg.items()}}
    print(json.dumps(result, indent=1))
    if a.json is not None:
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
