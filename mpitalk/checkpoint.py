"""Checkpoints: the model (EMA weights, for generation) and the training state (exact resume).

The only module that imports orbax. A model checkpoint is a folder::

    PATH/mpitalk_checkpoint.json   {"format_version": 1, "config": {...}, "step", "note"}
    PATH/state/                    orbax StandardCheckpointer: nnx.state(model) (Params only)

``load`` reads the JSON first, refuses an unknown format version with a one-line
:class:`~mpitalk.UserError`, rebuilds the model's structure with ``nnx.eval_shape`` (no
initialisation cost) and restores the arrays into it. Nothing is pickled.

Training state (``TrainCheckpoints``) is an orbax ``CheckpointManager`` in ``WORKDIR/checkpoints``
with two items per step: ``state`` (any pytree of arrays: parameters, optimizer state, EMA, PRNG
key) and ``meta`` (JSON: step, data position, config), keeping the last K.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

import mpitalk
from mpitalk import UserError
from mpitalk.atomic import swap_in, temp_dir_beside

FORMAT_VERSION = 1
META_FILE = "mpitalk_checkpoint.json"
META_KEYS = ("format_version", "config", "step", "note")  # all of them, and only them


def default_path() -> Path:
    """The shipped checkpoint: ``checkpoint/`` in :func:`mpitalk.data_dir` (``data/`` in a
    checkout, ``mpitalk/data`` in an installed wheel)."""
    return mpitalk.data_dir() / "checkpoint"


def save(path: str | Path, config, model: nnx.Module, *, step: int | None = None,
         note: str = "") -> Path:
    """Write ``model``'s parameters (pass the EMA model) and ``config`` to the folder ``path``.

    Written into a temporary sibling folder and swapped in when complete, so an interrupted
    save (or export over the shipped checkpoint) never leaves a broken checkpoint behind."""
    path = Path(path).resolve()
    tmp = temp_dir_beside(path)
    with swap_in(tmp, path):
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(tmp / "state", nnx.state(model, nnx.Param), force=True)
        ckptr.wait_until_finished()
        meta = {"format_version": FORMAT_VERSION, "config": config.to_dict(), "step": step,
                "note": note}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return path


def save_derived(path: str | Path, config, model: nnx.Module, source: str | Path, what: str,
                 prefix: str = "") -> str:
    """:func:`save` a model a script made from the checkpoint ``source``: its step kept, and the
    note ``"[prefix ]SOURCE (step N) WHAT"``. Returns the note."""
    step = read_meta(Path(source)).get("step")
    note = f"{prefix}{' ' if prefix else ''}{source} (step {'?' if step is None else step}) {what}"
    save(path, config, model, step=step, note=note)
    return note


def read_meta(path: Path) -> dict:
    """The checkpoint's JSON, checked: a one-line UserError if missing, unreadable or unknown."""
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise UserError(f"{path} is not an mpitalk checkpoint (no {META_FILE}); pass a folder "
                        "written by mpitalk.checkpoint.save")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{meta_path} is unreadable ({exc}); re-export the checkpoint") from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path}: expected a JSON object with {', '.join(META_KEYS)}, got "
                        f"a {type(meta).__name__}; re-export the checkpoint")
    if "format_version" not in meta:
        raise UserError(f"{meta_path}: no 'format_version'; re-export the checkpoint")
    version = meta["format_version"]
    if version != FORMAT_VERSION:
        raise UserError(f"{path}: checkpoint format version {version!r} is not supported "
                        f"(this mpitalk reads version {FORMAT_VERSION}); re-export it")
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise UserError(f"{meta_path}: unknown key(s) {', '.join(unknown)} (known: "
                        f"{', '.join(META_KEYS)}); re-export the checkpoint")
    if not isinstance(meta.get("config"), dict):
        raise UserError(f"{meta_path}: 'config' must be a JSON object of the model's settings; "
                        "re-export the checkpoint")
    return meta


def read_config(path: str | Path | None = None):
    """The model :class:`~mpitalk.model.Config` of the checkpoint folder ``path`` (None: the
    shipped one) from its JSON alone (no weights), checked: a one-line UserError if it is not one
    this mpitalk can build. Cheap: a job calls it before any other work."""
    from mpitalk.model import Config

    path = (default_path() if path is None else Path(path)).resolve()
    meta = read_meta(path)
    try:
        return Config.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path / META_FILE}: bad 'config' ({exc}); re-export the checkpoint "
                        "with this mpitalk") from None


def load(path: str | Path | None = None):
    """``(config, model)`` from a folder written by :func:`save`; None = the shipped default."""
    from mpitalk.model import MPIModel

    path = default_path() if path is None else Path(path)
    path = path.resolve()
    config = read_config(path)
    abstract = nnx.eval_shape(lambda: MPIModel(config, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    ckptr = ocp.StandardCheckpointer()
    try:
        state = ckptr.restore(path / "state", abstract_state)
    except (FileNotFoundError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{path}: cannot restore the weights ({first})") from None
    return config, nnx.merge(graphdef, state)


class TrainCheckpoints:
    """Training-state checkpoints in ``directory``: every save is kept until K newer exist."""

    def __init__(self, directory: str | Path, keep: int):
        self.directory = Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Save a pytree of arrays and a JSON dict at ``step`` (asynchronously; see ``wait``)."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[int, Any, dict]:
        """``(step, state, meta)`` of ``step`` (default: the latest), shaped like
        ``abstract_state`` (arrays or ``jax.ShapeDtypeStruct``s, shardings included)."""
        step = self.manager.latest_step() if step is None else step
        if step is None:
            raise UserError(f"no training checkpoint in {self.directory}")
        abstract_state = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return step, out["state"], out["meta"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
