"""Fit ``face.HEAD_OFFSET_WEIGHTS``: the photo's head position (tx, ty) from its face landmarks.

    python scripts/fit_head_position.py --fit synthdata_s2:train --check synthdata_v2:val

For each identity image of the ``--fit`` split(s) (one per identity), MediaPipe's landmarks and
head rotation against the true head pose; least squares for (tx, ty) = W^T [1, u, v, yaw,
pitch, roll], with (u, v) the landmarks' centroid in normalised image coordinates
((pixel - principal point) / focal). Prints W (to paste into mpitalk/face.py) and the RMS error
on the ``--check`` split(s), next to the default position's (tx = ty = 0).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from mpitalk import UserError, face, synth
from mpitalk.face import head_offset_features


def collect(specs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(features (N,6), true (tx, ty) (N,2)) of one identity image per identity."""
    feats, truth = [], []
    for spec in specs:
        data, _, split = spec.partition(":")
        ds = synth.ClipDataset(data, split or "train", hide_ground_truth=True)
        if len(ds) == 0:
            raise UserError(f"{spec}: no clips")
        seen = set()
        for i, f in enumerate(ds.files):
            ident = synth.identity_of(f)
            if ident in seen:
                continue
            seen.add(ident)
            clip = ds[i]
            faces = face.detect_faces(clip["identity_rgb"], max_faces=1)
            if faces:
                feats.append(head_offset_features(faces[0], np.asarray(clip["K"])))
                truth.append(clip["identity_pose"][3:5])
    return np.array(feats), np.array(truth)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fit", nargs="+", required=True, metavar="DIR:SPLIT")
    p.add_argument("--check", nargs="+", required=True, metavar="DIR:SPLIT")
    a = p.parse_args(argv)
    try:
        X, Y = collect(a.fit)
        Xc, Yc = collect(a.check)
    except (UserError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    W, *_ = np.linalg.lstsq(X, Y, rcond=None)
    np.set_printoptions(precision=5, suppress=True)
    print(f"fitted on {len(X)} identity images; W (6,2):\n{W!r}")
    for name, (x, y) in (("fit", (X, Y)), ("check", (Xc, Yc))):
        fitted = np.sqrt(np.mean((x @ W - y) ** 2, 0)) * 100
        default = np.sqrt(np.mean(y**2, 0)) * 100
        print(f"{name} ({len(x)}): RMS error tx, ty {fitted[0]:.2f}, {fitted[1]:.2f} cm "
              f"(default position: {default[0]:.2f}, {default[1]:.2f} cm)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
