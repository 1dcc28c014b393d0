"""Folders that appear whole or not at all: write into a temporary sibling, then swap it in.

The temporary and the moved-aside folders are named ``.NAME.tmp-HOST-PID-XXXXXXXX`` and
``.NAME.old-HOST-PID``: the host and process id say whose they are, so a later run can remove
the ones a killed process (kill -9, a power cut) left behind, and never those of a process that
is still running (:func:`clean_stale`).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or inside it (symbolic links resolved): replacing
    ``folder`` would lose ``path``."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def _owner_tag() -> str:
    """``HOST-PID`` of this process (hosts matter: batch shards share folders over NFS)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def temp_dir_beside(final: Path) -> Path:
    """A new empty hidden folder next to ``final`` (same filesystem, so renaming is atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{_owner_tag()}-", dir=final.parent))


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder to ``final``, replacing an older one: the old folder is
    moved aside first, so there is never a moment with neither."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{_owner_tag()}")
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def swap_in(tmp: Path, final: Path) -> Iterator[None]:
    """Fill the temporary folder ``tmp`` in the ``with`` body; when the body completes, ``tmp``
    replaces ``final`` (:func:`replace_dir`), and when it raises (a ``KeyboardInterrupt`` too)
    ``tmp`` is removed and ``final`` is left as it was."""
    try:
        yield
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _process_gone(host: str, pid_text: str) -> bool:
    """Whether the process ``pid_text`` on ``host`` has certainly ended. Another host's, an
    unparsable one, a running one (or one of another user, which we may not signal): False."""
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, under another user
        return False
    return False


def clean_stale(final: Path) -> list[Path]:
    """Remove the temporary folders beside ``final`` that ended processes left behind; return
    what was removed or restored.

    A ``.NAME.tmp-…`` of a dead process is a half-written result: removed. A ``.NAME.old-…`` of
    a dead process is the previous ``final``, moved aside by :func:`replace_dir` just before the
    new one was renamed in: removed if ``final`` exists, else renamed back to ``final`` (the
    process died between the two renames). Folders without ``HOST-PID`` (older versions) and
    those of live processes are left alone.
    """
    parent = final.parent
    if not parent.is_dir():
        return []
    done = []
    for entry in sorted(parent.iterdir()):
        name = entry.name
        tmp_prefix, old_prefix = f".{final.name}.tmp-", f".{final.name}.old-"
        if name.startswith(tmp_prefix):
            parts = name[len(tmp_prefix):].rsplit("-", 2)  # HOST-PID-RANDOM (HOST may hold -)
            if len(parts) == 3 and _process_gone(parts[0], parts[1]) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                done.append(entry)
        elif name.startswith(old_prefix):
            parts = name[len(old_prefix):].rsplit("-", 1)  # HOST-PID
            if len(parts) == 2 and _process_gone(parts[0], parts[1]) and entry.is_dir():
                if final.exists():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.rename(final)
                done.append(entry)
    return done
