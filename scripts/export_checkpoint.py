"""Copy the latest EMA weights of a training run into a model checkpoint folder.

    python scripts/export_checkpoint.py [--workdir runs/tiny] [--out data/checkpoint]

Safe while the run keeps training: it only reads the run's latest finished orbax step. The
same as ``python -m mpitalk.train --workdir RUN --export OUT``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mpitalk import run_cli
from mpitalk.train import export

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--workdir", type=Path, default=ROOT / "runs" / "tiny", help="training run")
    p.add_argument("--out", type=Path, default=ROOT / "data" / "checkpoint", help="destination")
    p.add_argument("--note", default="", help="note stored in the checkpoint's JSON")
    a = p.parse_args(argv)
    return run_cli(lambda: print(f"wrote {export(a.workdir, a.out, note=a.note)}"))


if __name__ == "__main__":
    sys.exit(main())
