"""Where the self-reenactment gap to the flat photo comes from, on a real-footage split: the
shipped frames against three constructions made from the same sampled fields, each scored on
the whole frame (LPIPS) and on the head alone (LPIPS with the real background pasted around the
generated head; PSNR on the head mask), as ``python -m mpitalk.evaluate --footage`` scores them.

- ``shipped``: the frames as the main job makes and shows them (surface MPI, paint in the
  holes, over the world backdrop; with ``--body world``, as the job's ``--body world``, the head
  planes end at the neck and the body stays with the room, ``mpitalk.body``);
- ``no warp``: the same with the flow set to zero (the photo copied on the surface MPI where it
  lies; the holes still painted): what the expression warp adds or costs;
- ``model image, flat``: the shipped MPI seen from the photo's own camera (the model's image,
  expression and all), put on one opaque plane at the head's depth and moved rigidly with the
  head, as the flat baseline moves the photo: what the MPI's geometry and the still backdrop
  add or cost;
- ``flat``: the flat baseline itself (the photo on that plane).

    python scripts/eval_head_gap.py --footage /work/cache/footage --split test \\
        --out docs/eval/footage/head_gap_test.json

Each clip's fields are sampled once, as the job samples them (``evaluate.footage.sample_fields``:
its first ``--max-frames`` frames, 4 Euler steps, the clip's own head motion, paint in the
holes), and re-laid as the job re-lays them (``surface.surface_fields``).
"""

from __future__ import annotations

import json

import jax
import numpy as np
from tqdm import tqdm

from mpitalk import checkpoint, generate, metrics, mpi, surface
from mpitalk.choices import PRIOR_FILLS
from mpitalk.evaluate import footage as F
from mpitalk.evaluate.scores import render_frames

METHODS = ("shipped", "no warp", "model image, flat", "flat")
METRICS = ("lpips", "lpips_head", "psnr_head")


def scores(rgb: np.ndarray, real: np.ndarray, head: np.ndarray) -> dict[str, float]:
    """Whole-frame LPIPS, head LPIPS (real background pasted) and head PSNR of frames (T,S,S,3)
    against the real ones, ``head`` (T,S,S) bool the real frames' head mask."""
    rgb = np.clip(np.asarray(rgb, np.float32), 0.0, 1.0)
    return {"lpips": float(np.mean(metrics.lpips(rgb, real))),
            "lpips_head": float(np.mean(metrics.lpips(np.where(head[..., None], rgb, real),
                                                      real))),
            "psnr_head": metrics.nanmean(np.atleast_1d(metrics.psnr(rgb, real, mask=head)))}


def stored(materialize, fields: dict, photo: np.ndarray, groups, warp: bool) -> np.ndarray:
    """One frame's dense MPI as the job stores it (the surface MPI of fields sampled with the
    job's paint), with the flow zeroed unless ``warp``."""
    f = dict(fields)
    if not warp:
        f["flow"] = np.zeros_like(f["flow"])
    return np.asarray(materialize(surface.surface_fields(f, groups), photo, photo.shape[0],
                                  groups))


def main(argv: list[str] | None = None) -> int:
    p = F.split_parser(__doc__, max_frames=12)
    p.add_argument("--body", choices=("head", "world"), default="head",
                   help="the job's --body: the whole person moves with the head, or the body "
                        "stays with the room (mpitalk.body)")
    p.add_argument("--prior-fill", choices=PRIOR_FILLS, default="outside",
                   help="the job's --prior-fill: the rig prior's flow past the face")
    p.add_argument("--no-hold-sides", action="store_true",
                   help="let each frame's person and room sides vary off the face "
                        "(generate.generate_frames' hold_sides=False)")
    p.add_argument("--read-on-crop", action="store_true",
                   help="tell the model the identity frame's expression as MediaPipe reads the "
                        "S-px crop, not the whole frame (footage.sample_fields' read_on_crop)")
    a = p.parse_args(argv)
    config, model = checkpoint.load(a.checkpoint)
    groups = model.heads.plane_groups
    S = config.image_size
    depths, K = generate.mpi_geometry(config)
    materialize = jax.jit(mpi.materialize, static_argnums=2)
    eye = np.eye(4, dtype=np.float32)
    rows = []
    for clip in tqdm(F.load_clips(a.footage, a.split, S, None, a.max_frames), unit="clip"):
        sampled = F.sample_fields(model, config, clip, prior_fill=a.prior_fill,
                                  hold_sides=not a.no_hold_sides,
                                  read_on_crop=a.read_on_crop)
        ident, real = sampled.identity, sampled.real
        poses = sampled.frame_from_mpi
        head = clip.data["target_alpha"] > 127

        shipped = np.stack([stored(materialize, f, ident, groups, True) for f in sampled.fields])
        no_warp = np.stack([stored(materialize, f, ident, groups, False) for f in sampled.fields])
        K_clip = np.asarray(clip.data["K"], np.float32)
        moved = np.stack([F.tgt_from_ref(pose, clip.data["identity_pose"])[None]
                          for pose in clip.data["pose"]])
        rgba, flat_depths = F.flat_mpi(clip.data["identity_rgb"], clip.data["identity_pose"])
        own = [np.asarray(F._render_one(m, depths, K, eye).rgb) for m in shipped]
        model_flat = [np.concatenate([o, np.ones(o.shape[:2] + (1,), np.float32)], -1)[None]
                      for o in own]
        values = clip.track.values if a.body == "world" else None
        photo_values = None if a.read_on_crop else clip.data["identity_controls"]
        shown = {
            "shipped": F.over_backdrop(shipped, ident, depths, K, poses, values, photo_values),
            "no warp": F.over_backdrop(no_warp, ident, depths, K, poses, values, photo_values),
            "model image, flat": render_frames(model_flat, flat_depths, K_clip, moved)[0][:, 0],
            "flat": render_frames([rgba] * len(real), flat_depths, K_clip, moved)[0][:, 0],
        }
        rows.append({"clip": clip.name, "source": clip.source,
                     **{m: scores(shown[m], real, head) for m in METHODS}})
    sources = sorted({r["source"] for r in rows})

    def mean(m: str, k: str, source: str | None = None) -> float:
        return float(np.mean([r[m][k] for r in rows if source in (None, r["source"])]))

    summary = {m: {k: {"all": mean(m, k), **{s: mean(m, k, s) for s in sources}}
                   for k in METRICS} for m in METHODS}
    out = {"split": a.split, "body": a.body, "prior_fill": a.prior_fill,
           "hold_sides": not a.no_hold_sides,
           "identity_expression_read_on": "crop" if a.read_on_crop else "whole frame",
           "footage": str(a.footage),
           "checkpoint": a.checkpoint or "shipped",
           "frames_per_clip": a.max_frames, "summary": summary, "clips": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".partial")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(a.out)
    for m in METHODS:
        print(f"{m:18s} " + "  ".join(
            f"{k} {summary[m][k]['all']:.4f} (" +
            ", ".join(f"{s} {summary[m][k][s]:.4f}" for s in sources) + ")" for k in METRICS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
