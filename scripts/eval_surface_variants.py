"""Self-reenactment LPIPS of the ways a frame's planes can be stored and painted, on a real-footage
split: the model's soft layers, the surface MPI at several smoothings of its depth map
(``mpitalk.surface``), and the painted colour kept only in the rig prior's holes or nowhere
(``mpitalk.paint``). Each clip's fields are sampled once, as the main job samples them
(``generate.generate_fields``, the clip's own head motion as in ``python -m mpitalk.evaluate
--footage``), with the model's own blend and planes; every variant is then made from them and
shown as the job shows it (over the world backdrop) at 128 px; the flat baseline beside them
(``flat``, as the evaluation renders it). The variants that paint only in the holes differ from
the job's own frames after each clip's first batch (``evaluate.footage.sample_fields``: a later
batch is conditioned on a frame of the first as the model painted it, the job's as it painted
it in the holes); ``scripts/eval_head_gap.py`` samples as the job does.

    python scripts/eval_surface_variants.py --footage /work/cache/footage --split val \\
        --out docs/eval/footage/surface_variants_val.json

The validation split chose the defaults (README "The surface MPI"); the test split is reported.
"""

from __future__ import annotations

import json

import jax
import numpy as np
from tqdm import tqdm

from mpitalk import checkpoint, generate, metrics, mpi, paint, surface
from mpitalk.evaluate import footage as F
from mpitalk.evaluate.scores import render_frames

VARIANTS = {  # name: (geometry, sigma_px, paint) -- paint: model / holes / none (copy everywhere)
    "layers": ("layers", 0.0, "model"),
    "layers, holes": ("layers", 0.0, "holes"),
    "surface": ("surface", 0.0, "model"),
    "surface sigma 1": ("surface", 1.0, "model"),
    "surface sigma 2": ("surface", 2.0, "model"),
    "surface, holes": ("surface", 0.0, "holes"),
    "surface, copy everywhere": ("surface", 0.0, "none"),
}


def variant(fields: dict, valid: np.ndarray, groups, geometry: str, sigma: float,
            how: str) -> dict:
    """One frame's fields as a variant stores them (what ``cond["copy_mask"]`` does in the
    model, then ``surface.surface_fields``)."""
    f = dict(fields)
    if how != "model":
        copy = paint.copy_mask(valid) if how == "holes" else np.ones_like(valid)
        f["blend"] = np.where(copy[None] > 0.5, 1.0, f["blend"]).astype(np.float32)
    return surface.surface_fields(f, groups, sigma) if geometry == "surface" else f


def main(argv: list[str] | None = None) -> int:
    p = F.split_parser(__doc__)
    a = p.parse_args(argv)
    config, model = checkpoint.load(a.checkpoint)
    groups = model.heads.plane_groups
    S = config.image_size
    depths, K = generate.mpi_geometry(config)
    materialize = jax.jit(mpi.materialize, static_argnums=2)
    rows = []
    for clip in tqdm(F.load_clips(a.footage, a.split, S, None, a.max_frames), unit="clip"):
        sampled = F.sample_fields(model, config, clip, paint="model")
        ident, real, valid = sampled.identity, sampled.real, sampled.prior_valid
        row = {"clip": clip.name, "source": clip.source}
        rgba, flat_depths = F.flat_mpi(clip.data["identity_rgb"], clip.data["identity_pose"])
        moved = np.stack([F.tgt_from_ref(pose, clip.data["identity_pose"])[None]
                          for pose in clip.data["pose"]])
        flat = render_frames([rgba] * len(real), flat_depths,
                             np.asarray(clip.data["K"], np.float32), moved)[0][:, 0]
        row["flat"] = float(np.mean(metrics.lpips(flat, real)))
        for name, (geometry, sigma, how) in VARIANTS.items():
            mpis = np.stack([np.asarray(materialize(variant(f, valid[t], groups, geometry, sigma,
                                                            how), ident, S, groups))
                             for t, f in enumerate(sampled.fields)])
            shown = F.over_backdrop(mpis, ident, depths, K, sampled.frame_from_mpi)
            row[name] = float(np.mean(metrics.lpips(shown, real)))
        rows.append(row)
    sources = sorted({r["source"] for r in rows})
    summary = {name: {"all": float(np.mean([r[name] for r in rows])),
                      **{s: float(np.mean([r[name] for r in rows if r["source"] == s]))
                         for s in sources}} for name in [*VARIANTS, "flat"]}
    out = {"split": a.split, "footage": str(a.footage), "checkpoint": a.checkpoint or "shipped",
           "frames_per_clip": a.max_frames, "metric": "self-reenactment LPIPS, whole frame",
           "summary": summary, "clips": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    for name, s in summary.items():
        print(f"{name:28s} " + " ".join(f"{k} {v:.4f}" for k, v in s.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
