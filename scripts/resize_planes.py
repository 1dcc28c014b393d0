"""Give a saved model other MPI planes (count and/or depth range) or more U-Net blocks, ready
to fine-tune.

    python scripts/resize_planes.py --checkpoint data/checkpoint --planes 24 [--near 0.46]
        [--far 1.1] [--blocks 2] --out runs/resized

The trunk is copied; the per-plane head weights are interpolated along the planes' disparity
(``mpitalk.model.with_planes``); added residual blocks start as the identity
(``mpitalk.model.with_blocks``). The result renders roughly as the original does but is not
trained for its planes or blocks: fine-tune it (``python -m mpitalk.train --init-from OUT``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mpitalk import checkpoint, run_cli
from mpitalk.model import with_blocks, with_planes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="model (default: the shipped)")
    p.add_argument("--planes", type=int, default=None, help="number of MPI planes (default: "
                   "the model's)")
    p.add_argument("--near", type=float, default=None, help="nearest plane, metres")
    p.add_argument("--far", type=float, default=None, help="back plane, metres")
    p.add_argument("--blocks", type=int, default=None,
                   help="residual blocks per U-Net level (default: the model's; only more)")
    p.add_argument("--out", type=Path, required=True, help="new checkpoint folder")
    a = p.parse_args(argv)
    return run_cli(lambda: _resize(a))


def _resize(a: argparse.Namespace) -> None:
    _, model = checkpoint.load(a.checkpoint)
    step = checkpoint.read_meta(Path(a.checkpoint or checkpoint.default_path())).get("step")
    if a.blocks is not None:
        model = with_blocks(model, a.blocks)
    planes = model.config.num_planes if a.planes is None else a.planes
    new = with_planes(model, planes, a.near, a.far)
    c = new.config
    out = checkpoint.save(a.out, c, new, step=step, note=f"resized to {c.num_planes} planes, "
                          f"{c.near_m}-{c.far_m} m, {c.blocks_per_level} blocks per level; "
                          "not yet fine-tuned")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
