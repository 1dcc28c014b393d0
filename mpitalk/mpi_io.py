"""The on-disk MPI sequence format.

A sequence is a folder::

    NAME/mpi.json            format, version, fps, num_frames, num_planes, height, width,
                             depths (D,) metres back to front, K (3x3), color_space, dtype
    NAME/frames/000000.npz   one file per frame, key "rgba": (D,H,W,4) straight alpha,
    NAME/frames/000001.npz   planes back to front, uint8 (value/255) or float16; key
                             "frame_from_mpi": (4,4) float32, the pose taking the MPI's own
                             camera to the frame's (version 2; version 1 frames have none: the
                             identity, the MPI made in the frame's camera)

Why a pose per frame: the model makes each MPI in the identity photo's camera; rendering every
view of a frame (``view_from_frame @ frame_from_mpi``) straight from that MPI avoids resampling
it into each frame's camera first, which flattens tilted planes and measured about 1 dB worse
at +-10 degrees (README).

Why one compressed NPZ per frame rather than a PNG per plane: a frame is read and written as a
whole (the renderer needs every plane), one file per frame keeps the file count at T instead of
T*D, and deflate on the raw plane bytes is as lossless as PNG while skipping PNG's per-row filter
search; face MPIs are mostly transparent, so frames compress several-fold (see README for
measured sizes and speeds). uint8 is the default (what video and the GL renderer consume);
``dtype="float16"`` keeps more precision for training targets.

Writing is streamed (frames may be any iterable; only one frame is in memory) into a temporary
sibling folder that is renamed into place when complete, so a crash never leaves a half-written
sequence under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from mpitalk import UserError
from mpitalk.atomic import replace_dir, temp_dir_beside

FORMAT = "mpitalk-mpi"
VERSION = 2
_DTYPES = ("uint8", "float16")


def _encode(frame: np.ndarray, dtype: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype == np.uint8:
        return frame if dtype == "uint8" else (frame.astype(np.float32) / 255).astype(np.float16)
    if dtype == "uint8":
        return np.round(np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.clip(frame, 0.0, 1.0).astype(np.float16)


def save(path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], depths, K,
         fps: float, *, dtype: str = "uint8", color_space: str = "srgb") -> Path:
    """Write an MPI sequence to the folder ``path`` (replaced if it exists) and return it.

    frames: (T,D,H,W,4) array or an iterable of (D,H,W,4) frames, float in [0,1] or uint8,
    straight alpha, back to front; or an iterable of ``(rgba, frame_from_mpi)`` pairs, the
    second (4,4) taking the MPI's camera to the frame's (default: the identity).
    depths: (D,) metres. K: (3,3) pixels. fps: frames per second.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    path = Path(path)
    depths = np.asarray(depths, dtype=np.float64).reshape(-1)
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    try:
        tmp = temp_dir_beside(path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write here ({exc.strerror}); choose another output "
                        "folder") from exc
    try:
        (tmp / "frames").mkdir()
        shape = None
        count = 0
        for frame in frames:
            pose = np.eye(4, dtype=np.float32)
            if isinstance(frame, tuple):
                frame, pose = frame
                pose = np.asarray(pose, dtype=np.float32)
                if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
                    raise ValueError(f"frame {count}: frame_from_mpi must be a finite (4,4) "
                                     f"pose, got shape {pose.shape}")
            enc = _encode(frame, dtype)
            if enc.ndim != 4 or enc.shape[-1] != 4 or enc.shape[0] != depths.shape[0]:
                raise ValueError(f"frame {count} has shape {enc.shape}; expected "
                                 f"(D={depths.shape[0]},H,W,4)")
            if shape is not None and enc.shape != shape:
                raise ValueError(f"frame {count} has shape {enc.shape}, earlier frames {shape}")
            shape = enc.shape
            np.savez_compressed(tmp / "frames" / f"{count:06d}.npz", rgba=enc,
                                frame_from_mpi=pose)
            count += 1
        if shape is None:
            raise ValueError("no frames to save")
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "fps": float(fps),
            "num_frames": count,
            "num_planes": int(shape[0]),
            "height": int(shape[1]),
            "width": int(shape[2]),
            "depths": depths.tolist(),
            "K": K.tolist(),
            "color_space": color_space,
            "alpha": "straight",
            "plane_order": "back_to_front",
            "dtype": dtype,
        }
        (tmp / "mpi.json").write_text(json.dumps(meta, indent=1) + "\n")
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


class MPISequence:
    """A saved MPI sequence: ``len()``, ``seq[i]`` and iteration give (D,H,W,4) float32 frames
    in [0,1]; ``seq.pose(i)`` frame i's ``frame_from_mpi`` (4,4), ``seq.raw_and_pose(i)`` both
    from one read; ``.depths`` (D,), ``.K`` (3,3), ``.fps``, ``.height``, ``.width``,
    ``.num_planes``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_path = self.path / "mpi.json"
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such MPI folder; give a folder written by "
                            "mpitalk (it holds mpi.json and frames/)")
        if not meta_path.is_file():
            raise UserError(f"{self.path}: not an MPI folder (no mpi.json); give a folder "
                            "written by mpitalk.mpi_io.save or `python -m mpitalk.render`")
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != FORMAT:
                raise ValueError("format")
            self.version = int(meta["version"])
            self.fps = float(meta["fps"])
            self.num_frames = int(meta["num_frames"])
            self.num_planes = int(meta["num_planes"])
            self.height = int(meta["height"])
            self.width = int(meta["width"])
            self.depths = np.asarray(meta["depths"], dtype=np.float32)
            self.K = np.asarray(meta["K"], dtype=np.float32).reshape(3, 3)
            self.dtype = str(meta["dtype"])
            self.color_space = str(meta.get("color_space", "srgb"))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{meta_path}: not a valid mpitalk MPI description ({exc}); "
                            "re-export the sequence") from exc
        if self.version > VERSION:
            raise UserError(f"{meta_path}: MPI format version {self.version} is newer than this "
                            f"mpitalk understands ({VERSION}); upgrade mpitalk")
        if self.depths.shape != (self.num_planes,) or self.dtype not in _DTYPES:
            raise UserError(f"{meta_path}: inconsistent depths/dtype; re-export the sequence")

    def frame_path(self, index: int) -> Path:
        return self.path / "frames" / f"{index:06d}.npz"

    def __len__(self) -> int:
        return self.num_frames

    def _read(self, index: int, *keys: str) -> list[np.ndarray | None]:
        """Arrays ``keys`` of frame ``index`` from one open of its file (None for a key the
        frame does not have)."""
        if not -self.num_frames <= index < self.num_frames:
            raise IndexError(f"frame {index} out of range for {self.num_frames} frames")
        p = self.frame_path(index % self.num_frames)
        try:
            with np.load(p) as z:
                return [z[k] if k in z.files else None for k in keys]
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise UserError(f"{p}: damaged or missing MPI frame ({exc}); re-export the "
                            "sequence") from exc

    def _checked_rgba(self, index: int, arr: np.ndarray | None) -> np.ndarray:
        p = self.frame_path(index % self.num_frames)
        if arr is None:
            raise UserError(f"{p}: damaged MPI frame (no rgba); re-export the sequence")
        if arr.shape != (self.num_planes, self.height, self.width, 4):
            raise UserError(f"{p}: frame shape {arr.shape} does not match mpi.json; re-export")
        return arr

    def _checked_pose(self, index: int, pose: np.ndarray | None) -> np.ndarray:
        if pose is None:  # version 1: made in the frame's camera
            return np.eye(4, dtype=np.float32)
        if pose.shape != (4, 4):
            raise UserError(f"{self.frame_path(index % self.num_frames)}: frame_from_mpi has "
                            f"shape {pose.shape}, not (4,4); re-export the sequence")
        return pose.astype(np.float32)

    def raw(self, index: int) -> np.ndarray:
        """Frame ``index`` as stored (uint8 or float16), (D,H,W,4)."""
        (arr,) = self._read(index, "rgba")
        return self._checked_rgba(index, arr)

    def pose(self, index: int) -> np.ndarray:
        """Frame ``index``'s ``frame_from_mpi`` (4,4) float32: the pose taking the MPI's camera
        to the frame's; the identity for version-1 frames (made in the frame's camera)."""
        (pose,) = self._read(index, "frame_from_mpi")
        return self._checked_pose(index, pose)

    def raw_and_pose(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(raw(index), pose(index))`` from one read of the frame's file (renderers' loop)."""
        arr, pose = self._read(index, "rgba", "frame_from_mpi")
        return self._checked_rgba(index, arr), self._checked_pose(index, pose)

    def __getitem__(self, index: int) -> np.ndarray:
        arr = self.raw(index)
        if arr.dtype == np.uint8:
            return arr.astype(np.float32) / np.float32(255.0)
        return arr.astype(np.float32)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.num_frames):
            yield self[i]


def load(path: str | os.PathLike) -> MPISequence:
    """Open an MPI sequence folder written by :func:`save` (frames are read lazily)."""
    return MPISequence(path)
