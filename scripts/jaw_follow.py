"""How well the default job's mouth follows the track: run ``python -m mpitalk.render`` (the shipped
portrait and ``data/default_track.csv``, ``--novel-view none``, plus any job options given after
``--``), read jawOpen with MediaPipe on the left eye every ``--every`` frames, and print the
correlation with the track's jawOpen and the amplitude ratio (std of the reading / std of the
track), with the readings, as JSON.

    python scripts/jaw_follow.py --work /tmp/jaw_outside -- --prior-fill outside

The head moves as the track says (the job's defaults), so this is the job as a user runs it,
not the head-still protocol of ``python -m mpitalk.evaluate --footage``; one portrait, one
track: a quick look, not an evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import av
import numpy as np

from mpitalk import controls, face, render

ROOT = Path(__file__).resolve().parents[1]
JAW = controls.ARKIT_NAMES.index("jawOpen")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="the job's --out (a new folder)")
    p.add_argument("--every", type=int, default=5, help="read every this many frames")
    a = p.parse_args(own)
    rc = render.main(["--out", str(a.work), "--quiet", "--novel-view", "none", *job_args])
    if rc != 0:
        return rc
    track = controls.load(ROOT / "data" / "default_track.csv")
    reads: dict[int, float | None] = {}
    with av.open(str(a.work / "mpitalk_LR.mp4")) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i % a.every:
                continue
            image = frame.to_ndarray(format="rgb24")
            faces = face.detect_faces(np.ascontiguousarray(image[:, : image.shape[1] // 2]),
                                      max_faces=1)
            reads[i] = float(faces[0].blendshapes[JAW]) if faces else None
    frames = [i for i, r in reads.items() if r is not None and i < len(track)]
    r = np.array([reads[i] for i in frames])
    t = track.values[frames, JAW]
    out = {"job_args": job_args, "every": a.every, "frames_read": len(frames),
           "frames_no_face": sum(v is None for v in reads.values()),
           "corr": float(np.corrcoef(r, t)[0, 1]), "amplitude": float(r.std() / t.std()),
           "jawOpen_read": {str(i): reads[i] for i in reads}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
