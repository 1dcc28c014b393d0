"""mpitalk: one portrait + an expression track -> a 3D talking head as multiplane images (MPIs).

The method follows IM-Portrait (Li et al., CVPR 2025, arXiv 2504.19165). Conventions (metres,
OpenCV camera axes, pixel centres at +0.5, straight alpha, planes back to front, ``tgt_from_src``)
are documented in README.md and hold in every module.
"""

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
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


def run_cli(run: Callable[[], int | None], *, interrupted: str = "interrupted",
            prog: str | None = None, debug: bool | None = None) -> int:
    """Run a command's body the way every mpitalk command does: a :class:`UserError` becomes one
    line ``error: ...`` on stderr and exit code 1, Ctrl-C the line ``interrupted`` and 130;
    otherwise the body's exit code (None = 0). ``prog``: the lines start ``prog: ``.
    ``debug`` given: any other exception is a bug, said in one line with exit code 2 (False)
    or raised with its traceback (True)."""
    lead = f"{prog}: " if prog else ""
    try:
        code = run()
        sys.stdout.flush()  # a closed pipe (| head) shows here, not at exit as a traceback
    except UserError as exc:
        print(f"{lead}error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{lead}{interrupted}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        stdout_closed_by_reader()
        return 0
    except Exception as exc:
        if debug is None or debug:
            raise
        print(f"{lead}internal error: {type(exc).__name__}: {one_line(str(exc))} (rerun with "
              "--debug for the traceback, and please report it)", file=sys.stderr)
        return 2
    return 0 if code is None else code


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space: a message that
    quotes another program's error still prints as one line."""
    return " ".join(text.split())


def stdout_closed_by_reader() -> None:
    """After a BrokenPipeError on stdout (``... | head`` stopped reading): point stdout at
    /dev/null so that Python's flush at exit does not print a second error. Not a failure of
    ours: the reader had what it wanted."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Print each warning raised inside as one line ``warning: MESSAGE`` on stderr, without
    Python's ``file:line: Category:`` prefix and echo of the source line (which say nothing to a
    user). The previous warning display is restored on exit."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"warning: {one_line(str(message))}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
