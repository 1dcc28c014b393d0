"""Expression alone: real portraits driven by the default track with the head held still, one row
per photo, and MediaPipe's agreement with the track (issue 20: "look at what you made").

    python scripts/head_still_sheet.py --checkpoint data/checkpoint \\
        --out docs/generation/head_still_stage5.png

Photos: ``data/identity.png`` and the identity frames of the first ``carphone_pristine`` and
``cap13_edit2`` clips of the footage test split (``--footage``). Each is driven by the first
``--frames`` frames of ``data/default_track.csv`` through the evaluation's generation path
(``evaluate.generation.generate_clip`` with the track's head motion at scale 0 and applied
relative to the photo's pose, as the main job does; 4 sampler steps; the MPI rendered at its
frame pose at the model's 128 px). A row: the photo, then frames 0 / 25 / 50 / 75 (the driver's
mouth is widest at 50). Prints, per photo, the cross-reenactment scores of
``evaluate.footage.cross_pair`` (expression correlation and amplitude over the channels the
track moves, identity distance, sharpness at 128 px) and writes them to ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mpitalk import controls, data_dir, generate, metrics
from mpitalk.evaluate import footage as F
from mpitalk.evaluate.generation import generate_clip, load_model
from mpitalk.evaluate.scores import render_frames

PICKS = (0, 25, 50, 75)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="a saved model (default: the shipped one)")
    ap.add_argument("--footage", default="/work/cache/footage", help="a real-footage set")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--out", type=Path, required=True, help="the PNG to write")
    a = ap.parse_args(argv)

    config, model = load_model(a.checkpoint)
    S = config.image_size
    depths, K = generate.mpi_geometry(config)
    clips = F.load_clips(a.footage, "test", S, None, 40)
    photos = [F.Photo("identity.png", "identity",
                      generate.prepare_identity(str(data_dir() / "identity.png"), S), None)]
    for source in ("carphone_pristine", "cap13_edit2"):
        c = next(c for c in clips if c.source == source)
        photos.append(F.Photo(c.name, source, metrics.to_float(c.data["identity_rgb"]),
                              c.data["identity_pose"]))
    track = controls.load(str(data_dir() / "default_track.csv"))
    track = controls.Track(track.values[:a.frames], track.pose[:a.frames], track.fps)
    picks = [p for p in PICKS if p < a.frames]

    rows, scores = [], {}
    for ph in photos:
        mpis, pose = generate_clip(model, config, ph.image, track.scaled(1.0, 0.0), 4, 0, 4,
                                   "reference", relative=True)
        rgb = render_frames(mpis, depths, K, pose[:, None])[0][:, 0]
        r, _ = F.cross_pair(ph, {"model": rgb}, track.values)
        scores[ph.name] = {k: float(v) for k, v in r["model"].items()}
        print(ph.name, {k: round(v, 3) for k, v in scores[ph.name].items()}, flush=True)
        rows.append(np.concatenate([ph.image] + [rgb[i] for i in picks], 1))
    Image.fromarray(metrics.to_uint8(np.concatenate(rows, 0))).save(a.out)
    a.out.with_suffix(".json").write_text(json.dumps(
        {"checkpoint": a.checkpoint or "data/checkpoint", "frames": a.frames, "picks": picks,
         "scores": scores}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
