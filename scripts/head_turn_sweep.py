"""How far can the head turn from the photo's pose? A contact sheet of generated frames.

Rows: yaw, then pitch, swept over ``--angles`` degrees around the photo's own pose (MediaPipe),
one row pair per ``--spaces`` entry (the camera the model makes the MPI in: ``generate.SPACES``);
each frame is the MPI seen from its own camera. The expression is held at one frame of the track.

    python scripts/head_turn_sweep.py [--identity IMG] [--ckpt DIR] --out sweep.jpg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from mpitalk import checkpoint, controls, data_dir, generate, mpi


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--identity", default=str(data_dir() / "identity.png"))
    p.add_argument("--controls", default=str(data_dir() / "default_track.csv"))
    p.add_argument("--frame", type=int, default=40, help="track frame whose expression is held")
    p.add_argument("--ckpt", type=Path, default=None, help="model checkpoint (default shipped)")
    p.add_argument("--angles", type=float, nargs="+", default=[-15, -10, -5, 0, 5, 10, 15])
    p.add_argument("--spaces", nargs="+", default=list(generate.SPACES), choices=generate.SPACES)
    p.add_argument("--out", type=Path, required=True, help="image to write (.png / .jpg)")
    a = p.parse_args(argv)
    config, model = checkpoint.load(a.ckpt)
    S = config.image_size
    identity = generate.prepare_identity(a.identity, S)
    _, K = generate.mpi_geometry(config)
    info = generate.identity_conditions(identity, K)
    expression = controls.load(a.controls).values[a.frame]
    n = len(a.angles)
    rows = []
    for space in a.spaces:
        for axis in (0, 1):  # yaw, pitch
            pose = np.tile(generate.reference_pose(info), (n, 1))
            pose[:, axis] += np.radians(a.angles)
            track = controls.Track(np.tile(expression, (n, 1)), pose, 25.0)
            frames = generate.generate_mpis(model, config, identity, track, batch_size=n,
                                            identity_info=info, prev_mode="none", space=space)
            rows.append(np.concatenate([np.asarray(mpi.composite(m)[0]) for m in frames], 1))
    sheet = (np.clip(np.concatenate(rows, 0), 0, 1) * 255).astype(np.uint8)
    Image.fromarray(sheet).save(a.out, quality=90)
    print(f"wrote {a.out}: rows {' / '.join(f'{s} yaw, {s} pitch' for s in a.spaces)}; "
          f"columns {a.angles} degrees")
    return 0


if __name__ == "__main__":
    sys.exit(main())
