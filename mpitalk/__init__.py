"""mpitalk: one portrait + an expression track -> a 3D talking head as multiplane images (MPIs).

The method follows IM-Portrait (Li et al., CVPR 2025, arXiv 2504.19165). Conventions (metres,
OpenCV camera axes, pixel centres at +0.5, straight alpha, planes back to front, ``tgt_from_src``)
are documented in README.md and hold in every module.
"""

import sys
from collections.abc import Callable
from pathlib import Path

__version__ = "0.1.0"


def data_dir() -> Path:
    """The shipped assets (default identity, track, demo checkpoint): ``mpitalk/data`` inside an
    installed wheel, ``data/`` at the root of a checkout (editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "data", here.parent / "data"):
        if (candidate / "checkpoint").is_dir():
            return candidate
    return here.parent / "data"


class UserError(Exception):
    """An error the user caused (bad file, bad option). CLIs print it as one line and exit 1."""


def run_cli(run: Callable[[], int | None], *, interrupted: str = "interrupted") -> int:
    """Run a command's body the way every mpitalk command does: a :class:`UserError` becomes one
    line ``error: ...`` on stderr and exit code 1, Ctrl-C the line ``interrupted`` and 130;
    otherwise the body's exit code (None = 0)."""
    try:
        code = run()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    return 0 if code is None else code
