"""How far the rig prior alone goes: each photo warped by ``rig.render_prior_flow`` (no network),
scored as the real-footage evaluation scores cross-reenactment (issue 20, an ablation).

    python scripts/eval_prior_ceiling.py --data /work/cache/footage --out prior_ceiling.json

The same (photo, driving track) pairs as ``python -m mpitalk.evaluate --footage DIR --split
test`` (``evaluate.footage.cross_pairs``: ``data/identity.png`` and the test clips' identity
frames, driven by the other test clips' tracks and ``data/default_track.csv``, 40 frames, head
held still), and for each frame the photo sampled at ``pixel + prior flow`` where the prior is
valid, unchanged where it is not (``mpi.materialize`` of one opaque plane whose flow is the
prior: the warp the model's copy would make with its prior gate at 1 and nothing learned on
top; ``--align``: the prior moved onto the photo's face first, ``prior_align``). Scored by
MediaPipe against the driver (``scores.expression_agreement``), with the
identity image shown unchanged as the floor (it scores 0). ``--frames 100`` scores the whole
default track (its first 40 frames move the eyes more than the mouth).

What it says: the figure a warp-and-paint model could reach by copying the rig's motion, before
painting what the photo does not show (the inside of the mouth, closed eyelids) and before
anything learned from real video. Prints a table per driver kind; writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from mpitalk import controls, data_dir, generate, metrics, mpi
from mpitalk.evaluate import footage as F
from mpitalk.evaluate.scores import blendshapes, expression_agreement, read_faces


def prior_warp(photo: np.ndarray, flow: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The photo (S,S,3) sampled at each pixel plus ``flow`` (S,S,2) crop units where ``valid``
    (S,S): one opaque plane of a factored MPI whose colour is the photo itself."""
    S = photo.shape[0]
    fields = {"alpha": np.ones((1, S, S), np.float32), "blend": np.ones((1, S, S), np.float32),
              "color": photo, "flow": (flow * valid[..., None])[None]}
    return np.asarray(mpi.materialize(fields, photo, S))[0, ..., :3]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a real-footage set (python -m mpitalk.footage)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--frames", type=int, default=F.DEFAULT_MAX_FRAMES)
    ap.add_argument("--max-pairs", type=int, default=F.DEFAULT_MAX_PAIRS)
    ap.add_argument("--align", action="store_true",
                    help="move the prior onto each photo's face first (prior_align), as "
                         "generation does for a model with a flow branch")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)

    S = 128  # the model's size: the prior is rendered there, as generation renders it
    clips = F.load_clips(a.data, a.split, S, None, a.frames)
    K = np.asarray(clips[0].data["K"], np.float32)
    order = F.interleave_sources([c.source for c in clips])
    photos = [("identity.png", "identity.png",
               generate.prepare_identity(str(data_dir() / "identity.png"), S))]
    photos += [(clips[k].name, clips[k].source, metrics.to_float(clips[k].data["identity_rgb"]))
               for k in order]
    track = controls.load(str(data_dir() / "default_track.csv"))
    track = controls.Track(track.values[:a.frames], track.pose[:a.frames], track.fps)
    drivers = [(c.name, c.track.values) for c in clips] + [("default_track.csv", track.values)]
    pairs = F.cross_pairs(len(photos), len(drivers), [None] + order, a.max_pairs)

    rows, infos = [], {}
    for i, j in pairs:
        name, source, photo = photos[i]
        if i not in infos:
            infos[i] = generate.identity_conditions(photo, K, align=a.align)
        values = np.clip(drivers[j][1], 0.0, 1.0).astype(np.float32)
        expression = np.concatenate([values, np.zeros((len(values), 6), np.float32)], 1)
        prior = generate.prior_conditions(expression, infos[i], K, S, reference=True)
        frames = np.stack([prior_warp(photo, f, v) for f, v in
                           zip(prior["prior_flow"], prior["prior_valid"], strict=True)])
        read, found = blendshapes(read_faces(metrics.to_uint8(frames)))
        corr, amp, n = expression_agreement(values, read)
        rows.append({"photo": name, "source": source, "driver": drivers[j][0],
                     "expr_corr": corr, "amplitude": amp, "channels": n, "face_found": found,
                     "flow_px_max": float(np.abs(prior["prior_flow"]).max() * S),
                     "valid_fraction": float(prior["prior_valid"].mean())})
        print(f"{name:32s} <- {drivers[j][0]:28s} corr {corr:6.3f} amp {amp:6.3f} "
              f"channels {n:2d}", flush=True)

    def mean(rs, key):
        v = [r[key] for r in rs if math.isfinite(r[key])]
        return float(np.mean(v)) if v else math.nan

    groups = {"all": rows,
              "driven by default_track.csv": [r for r in rows if r["driver"].endswith(".csv")],
              "driven by a test clip": [r for r in rows if not r["driver"].endswith(".csv")]}
    summary = {k: {"pairs": len(v), "scored": sum(math.isfinite(r["expr_corr"]) for r in v),
                   "expr_corr": mean(v, "expr_corr"), "amplitude": mean(v, "amplitude")}
               for k, v in groups.items()}
    for k, s in summary.items():
        print(f"{k:30s} pairs {s['pairs']:3d} (scored {s['scored']:3d})  corr "
              f"{s['expr_corr']:.3f}  amplitude {s['amplitude']:.3f}")
    result = {"frames": a.frames, "align": a.align, "data": str(a.data), "split": a.split,
              "summary": summary, "pairs": rows}
    a.out.write_text(json.dumps(result, indent=1, allow_nan=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
