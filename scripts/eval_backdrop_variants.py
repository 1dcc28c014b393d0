"""Ablation of the world backdrop (``mpitalk.backdrop``) on the real-footage test split:
self-reenactment of each clip with the shipped model, its frames rendered four ways:

- ``whole``: each MPI drawn whole at the frame's pose (``--backdrop head``: the room moves);
- ``drop`` (shipped, ``--backdrop world``): the planes nearer than ``backdrop.SPLIT_M`` over
  the still backdrop, the hole where they cover the photo;
- ``drop_hull``: the same, the hole also covering MediaPipe's head hull on the photo
  (``footage.head_mask``);
- ``keep_on_person``: the far planes kept (moving with the head) on the person (cover or hull),
  dropped elsewhere, over the same backdrop;
- ``torso_still``, ``torso_still_g1.3``: as ``drop``, but only the head moves: the near planes
  inside MediaPipe's head hull (grown 1.0x or 1.3x more about the face centre, its edge blurred
  over 5 px) at the frame's pose, the rest of them (neck, shoulders) at the camera's own, still
  like the backdrop.

Prints and writes per clip and mean: whole-frame LPIPS, PSNR on the tracked head mask and
LPIPS with the real background pasted around the head (``evaluate --footage``'s ``lpips``,
``psnr_head``, ``lpips_head``).

    python scripts/eval_backdrop_variants.py --footage /work/cache/footage \\
        --out docs/eval/footage/backdrop_variants.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from mpitalk import backdrop, face, footage, generate, metrics, mpi
from mpitalk.evaluate.footage import DEFAULT_MAX_FRAMES, load_clips
from mpitalk.evaluate.generation import generate_clip, load_model
from mpitalk.evaluate.scores import render_frames

VARIANTS = ("whole", "drop", "drop_hull", "keep_on_person", "torso_still", "torso_still_g1.3")


def hull(identity: np.ndarray, grow: float = 1.0) -> np.ndarray:
    """MediaPipe's head hull on the S-px photo (S,S) bool (all False without a face), its
    landmarks first spread ``grow`` times about the face centre."""
    img8 = np.round(np.clip(identity, 0, 1) * 255).astype(np.uint8)
    faces = face.detect_faces(img8, max_faces=1)
    S = identity.shape[0]
    if not faces:
        return np.zeros((S, S), bool)
    lm = faces[0].landmarks_px.astype(np.float64)
    centre = (lm[face.FOREHEAD] + lm[face.CHIN]) / 2
    return footage.head_mask(centre + grow * (lm - centre), S) > 127


def soft(mask: np.ndarray, r: int = 2) -> np.ndarray:
    """A box blur of a bool mask over (2r+1) px each way."""
    out = mask.astype(np.float32)
    for ax in (0, 1):
        out = sum(np.roll(out, d, ax) for d in range(-r, r + 1)) / (2 * r + 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--footage", type=Path, required=True, help="real-footage dataset folder")
    p.add_argument("--checkpoint", default=None, help="default: the shipped one")
    p.add_argument("--out", type=Path, required=True, help="JSON to write")
    a = p.parse_args(argv)
    config, model = load_model(a.checkpoint)
    depths, K = generate.mpi_geometry(config)
    render = jax.jit(mpi.render)
    eye = np.eye(4, dtype=np.float32)
    k = backdrop.back_planes(depths)

    def over_room(mpis, poses, identity, person, keep, head=None):
        """Each frame over the backdrop whose hole is ``person``, its back planes kept on
        ``keep`` (None: nowhere); with ``head`` (S,S) in [0,1], only that part of the near
        planes moves, the rest is drawn at the camera's own pose with the room."""
        rgba, d = backdrop.backdrop_mpi(backdrop.estimate(identity, person), float(depths[0]))
        room = render(rgba, d, K, eye)
        out = []
        for m, pose in zip(mpis, poses, strict=True):
            m = m.copy()
            m[:k, ..., 3] = 0 if keep is None else np.where(keep, m[:k, ..., 3], 0)
            world = room
            if head is not None:
                still = m.copy()
                still[..., 3] *= 1 - head
                m[..., 3] *= head
                world = mpi.over(render(still, depths, K, eye), room)
            out.append(np.clip(np.asarray(mpi.over(render(m, depths, K, pose), world).rgb), 0, 1))
        return np.stack(out)

    rows = []
    for clip in load_clips(a.footage, "test", config.image_size, None, DEFAULT_MAX_FRAMES):
        c = clip.data
        identity, real = metrics.to_float(c["identity_rgb"]), metrics.to_float(c["target_rgb"])
        head = c["target_alpha"] > 127
        mpis, poses = generate_clip(model, config, identity, clip.track, 4, 0, 4, "reference",
                                    photo_pose=c["identity_pose"])
        cover = backdrop.head_cover(mpis[0][..., 3], k) > backdrop.HEAD_COVER
        person = cover | hull(identity)
        frames = {"whole": render_frames(mpis, depths, K, poses[:, None])[0][:, 0],
                  "drop": over_room(mpis, poses, identity, cover, None),
                  "drop_hull": over_room(mpis, poses, identity, person, None),
                  "keep_on_person": over_room(mpis, poses, identity, person, person),
                  "torso_still": over_room(mpis, poses, identity, cover, None,
                                           soft(hull(identity))),
                  "torso_still_g1.3": over_room(mpis, poses, identity, cover, None,
                                                soft(hull(identity, 1.3)))}
        row = {"clip": clip.name}
        for name, x in frames.items():
            row[name] = {
                "lpips": float(np.mean(metrics.lpips(x, real))),
                "psnr_head": float(metrics.nanmean(np.atleast_1d(metrics.psnr(x, real,
                                                                              mask=head)))),
                "lpips_head": float(np.mean(metrics.lpips(np.where(head[..., None], x, real),
                                                          real)))}
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = {v: {m: float(np.mean([r[v][m] for r in rows])) for m in rows[0][v]}
            for v in VARIANTS}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"mean": mean, "clips": rows}, indent=1) + "\n")
    print(json.dumps(mean, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
