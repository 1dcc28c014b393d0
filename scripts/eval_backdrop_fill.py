"""How the world backdrop's hole is filled, scored on a real-footage split: the shipped frames
(``scripts/eval_head_gap.py``'s ``shipped``: surface MPI, paint in the holes, over the world
backdrop, ``--body head``) with the hole behind the person filled each way, whole-frame LPIPS
against the real frames, per clip and per source.

- ``navier-stokes`` (the job's) and ``pull-push`` (before): ``backdrop.FILLS``;
- ``telea``: OpenCV's other inpainting (``cv2.INPAINT_TELEA``, radius 5);
- ``fsr``: OpenCV contrib's frequency-selective reconstruction (``cv2.xphoto``, fast);
- ``oracle``: the job's frames with the real frame's pixels wherever the hole shows through the
  head planes (``(1 - head alpha) * hole``): what no fill can beat.

    python scripts/eval_backdrop_fill.py --footage /work/cache/footage --split val \\
        --out docs/eval/footage/backdrop_fill_val.json

Each clip's fields are sampled once (``evaluate.footage.sample_fields``, as the job samples them)
and shared by every fill.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from mpitalk import backdrop, checkpoint, generate, metrics, mpi
from mpitalk.evaluate import footage as F

FILLS = ("navier-stokes", "pull-push", "telea", "fsr", "oracle")


def _cv_fill(name: str):
    """``(image, known) -> filled`` by one of OpenCV's inpaintings (8-bit, known pixels kept)."""
    import cv2

    def fill(image: np.ndarray, known: np.ndarray) -> np.ndarray:
        u8 = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
        if name == "telea":
            out = cv2.inpaint(u8, (~known).astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)
        else:
            out = np.zeros_like(u8)
            cv2.xphoto.inpaint(u8, known.astype(np.uint8) * 255, out,
                               cv2.xphoto.INPAINT_FSR_FAST)
        return np.where(known[..., None], image, out.astype(np.float32) / 255)

    return fill


def shown(fill: str, mpis, identity, depths, K, poses, photo_values, real) -> np.ndarray:
    """The frames over the backdrop with its hole filled by ``fill`` (see the module)."""
    if fill != "oracle":
        how = fill if fill in backdrop.FILLS else _cv_fill(fill)
        return F.over_backdrop(mpis, identity, depths, K, poses, None, photo_values, fill=how)
    out = F.over_backdrop(mpis, identity, depths, K, poses, None, photo_values)
    k = backdrop.back_planes(depths)
    hole = backdrop.hole_mask(backdrop.head_cover(mpis[0][..., 3], k))
    frames = []
    for t, (m, pose) in enumerate(zip(mpis, poses, strict=True)):
        head = np.concatenate([m[..., :3], backdrop.without_back(m[..., 3], k)[..., None]], -1)
        w = ((1 - np.asarray(F._render_one(head, depths, K, pose).alpha)) * hole)[..., None]
        frames.append(out[t] * (1 - w) + real[t] * w)
    return np.stack(frames)


def main(argv: list[str] | None = None) -> int:
    p = F.split_parser(__doc__, max_frames=12)
    p.add_argument("--fills", nargs="+", default=list(FILLS), choices=FILLS)
    a = p.parse_args(argv)
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eval_head_gap import stored

    config, model = checkpoint.load(a.checkpoint)
    groups = model.heads.plane_groups
    depths, K = generate.mpi_geometry(config)
    materialize = jax.jit(mpi.materialize, static_argnums=2)
    rows = []
    clips = F.load_clips(a.footage, a.split, config.image_size, None, a.max_frames)
    for clip in tqdm(clips, unit="clip"):
        sm = F.sample_fields(model, config, clip)
        mpis = np.stack([stored(materialize, f, sm.identity, groups, True) for f in sm.fields])
        row = {"clip": clip.name, "source": clip.source}
        for fill in a.fills:
            frames = shown(fill, mpis, sm.identity, depths, K, sm.frame_from_mpi,
                           clip.data["identity_controls"], sm.real)
            row[fill] = float(np.mean(metrics.lpips(np.clip(frames, 0, 1), sm.real)))
        rows.append(row)
    sources = sorted({r["source"] for r in rows})
    summary = {f: {"all": float(np.mean([r[f] for r in rows])),
                   **{s: float(np.mean([r[f] for r in rows if r["source"] == s]))
                      for s in sources}} for f in a.fills}
    out = {"split": a.split, "footage": str(a.footage), "checkpoint": a.checkpoint or "shipped",
           "frames_per_clip": a.max_frames, "metric": "whole-frame LPIPS",
           "summary": summary, "clips": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".partial")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(a.out)
    for f in a.fills:
        print(f"{f:14s} {summary[f]['all']:.4f} (" +
              ", ".join(f"{s} {summary[f][s]:.4f}" for s in sources) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
