"""The on-disk MPI sequence format (versions 1, 2: dense planes; version 3: factored).

A sequence is a folder. Versions 1 and 2 (dense)::

    NAME/mpi.json            format, version, fps, num_frames, num_planes, height, width,
                             depths (D,) metres back to front, K (3x3), color_space, dtype
    NAME/frames/000000.npz   one file per frame, key "rgba": (D,H,W,4) straight alpha,
    NAME/frames/000001.npz   planes back to front, uint8 (value/255) or float16; key
                             "frame_from_mpi": (4,4) float32, the pose taking the MPI's own
                             camera to the frame's (version 2; version 1 frames have none: the
                             identity, the MPI made in the frame's camera)

Version 3 (factored; ``kind: "factored"``) stores the model's low-resolution fields per frame
and the photo once, and :func:`mpitalk.mpi.materialize` defines the dense MPI at any size::

    NAME/mpi.json            as above, with height = width = S and K (3x3) for the fields at S,
                             plus photo ("photo.png"), photo_size P, plane_groups (D ints),
                             num_groups G, upsample ("bilinear")
    NAME/photo.png           (P,P,3) uint8 sRGB, lossless: the identity crop at full resolution
    NAME/frames/000000.npz   keys "alpha", "blend" (D,S,S) uint8; "color" (S,S,3) uint8; "flow"
                             (G,S,S,2) float16 (photo sides); "frame_from_mpi" (4,4) float32
    NAME/backdrop.png        optional (mpi.json "backdrop": file, size, back_planes): the world
                             backdrop (:mod:`mpitalk.backdrop`), (B,B,3) uint8, an opaque plane
                             at depths[0] fixed in the frame's camera; a renderer that shows it
                             leaves out each frame's first back_planes planes and draws the rest
                             at the frame's pose over it. A reader that ignores it shows the
                             frames whole (the room moving with the head), as before.

Why a pose per frame: the model makes each MPI in the identity photo's camera; rendering every
view of a frame (``view_from_frame @ frame_from_mpi``) straight from that MPI avoids resampling
it into each frame's camera first, which flattens tilted planes and measured about 1 dB worse
at +-10 degrees (README).

Why factored: almost every colour of the model's MPI is copied from the photo
(``rgb = blend * photo + (1 - blend) * colour``); storing the fields and the photo keeps the
copied pixels at the photo's full resolution, and stores one colour image instead of D.

Why one compressed NPZ per frame rather than a PNG per plane: a frame is read and written as a
whole (the renderer needs every plane), one file per frame keeps the file count at T instead of
T*D, and deflate on the raw plane bytes is as lossless as PNG while skipping PNG's per-row filter
search; face MPIs are mostly transparent, so frames compress several-fold (see README for
measured sizes and speeds). uint8 is the default (what video and the GL renderer consume);
``dtype="float16"`` keeps more precision for training targets.

Writing is streamed (frames may be any iterable; at most three frames are in memory: the one
being made and two being compressed and written on a background thread, :class:`_FrameFiles`)
into a temporary sibling folder that is renamed into place when complete, so a crash never
leaves a half-written sequence under the final name. Reading checks what it reads (the
description, every frame's shapes, dtypes and finiteness, the photo) and turns anything wrong
into one-line :class:`mpitalk.UserError` naming the file.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import os
import zipfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mpitalk import UserError
from mpitalk.atomic import swap_in, temp_dir_beside

FORMAT = "mpitalk-mpi"
VERSION = 3  # the newest version this module reads and writes
DENSE_VERSION = 2  # what :func:`save` writes
_DTYPES = ("uint8", "float16")
PHOTO_NAME = "photo.png"
BACKDROP_NAME = "backdrop.png"
MAX_FRAMES = 10_000_000  # far beyond any real sequence (100 h at 25 fps); guards num_frames
UPSAMPLE = ("bilinear",)  # upsampling methods of the fields (mpi.UPSAMPLE_METHODS)
_FIX = "re-export the sequence"


def _encode(frame: np.ndarray, dtype: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype == np.uint8:
        return frame if dtype == "uint8" else (frame.astype(np.float32) / 255).astype(np.float16)
    if dtype == "uint8":
        return np.round(np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.clip(frame, 0.0, 1.0).astype(np.float16)


def _check_pose(pose, count: int) -> np.ndarray:
    pose = np.asarray(pose, dtype=np.float32)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        raise ValueError(f"frame {count}: frame_from_mpi must be a finite (4,4) pose, got "
                         f"shape {pose.shape}")
    return pose


def _open_tmp(path: Path) -> Path:
    try:
        return temp_dir_beside(path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write here ({exc.strerror}); choose another output "
                        "folder") from exc


class _FrameFiles:
    """Writes frames' compressed NPZ files on one background thread, at most ``depth`` frames
    behind the caller: deflate releases the GIL, so compressing frame t (about 30 ms for a
    default-job frame here) overlaps making frame t+1 (the sampler). The files' bytes are those
    ``np.savez_compressed`` writes in the caller's thread. A write's error is raised in the
    caller's thread at a later :meth:`write` or at :meth:`finish`; leaving the ``with`` block
    waits for the writes in flight (on an error too: nothing is written into a folder after the
    caller has removed it)."""

    def __init__(self, folder: Path, depth: int = 2):
        self.folder = folder
        self.depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpi-io-write")
        self._pending: collections.deque[Future] = collections.deque()

    def write(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        """Queue ``frames/NNNNNN.npz`` with ``arrays`` (copied now: the caller may reuse its
        buffers)."""
        while len(self._pending) >= self.depth:
            self._pending.popleft().result()
        arrays = {k: np.array(v, copy=True) for k, v in arrays.items()}
        self._pending.append(self._pool.submit(
            np.savez_compressed, self.folder / f"{index:06d}.npz", **arrays))

    def finish(self) -> None:
        """Wait for every queued file; raise the first write's error."""
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> _FrameFiles:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)
        if exc_type is None:
            self.finish()


def _base_meta(version: int, fps: float, count: int, D: int, H: int, W: int, depths, K,
               color_space: str) -> dict:
    return {"format": FORMAT, "version": version, "fps": float(fps), "num_frames": count,
            "num_planes": D, "height": H, "width": W, "depths": depths.tolist(),
            "K": K.tolist(), "color_space": color_space, "alpha": "straight",
            "plane_order": "back_to_front"}


def save(path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], depths, K,
         fps: float, *, dtype: str = "uint8", color_space: str = "srgb") -> Path:
    """Write a dense MPI sequence (version 2) to the folder ``path`` (replaced if it exists)
    and return it.

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
    tmp = _open_tmp(path)
    with swap_in(tmp, path):
        (tmp / "frames").mkdir()
        shape = None
        count = 0
        with _FrameFiles(tmp / "frames") as files:
            for frame in frames:
                pose = np.eye(4, dtype=np.float32)
                if isinstance(frame, tuple):
                    frame, pose = frame
                    pose = _check_pose(pose, count)
                enc = _encode(frame, dtype)
                if enc.ndim != 4 or enc.shape[-1] != 4 or enc.shape[0] != depths.shape[0]:
                    raise ValueError(f"frame {count} has shape {enc.shape}; expected "
                                     f"(D={depths.shape[0]},H,W,4)")
                if shape is not None and enc.shape != shape:
                    raise ValueError(f"frame {count} has shape {enc.shape}, earlier frames "
                                     f"{shape}")
                shape = enc.shape
                files.write(count, {"rgba": enc, "frame_from_mpi": pose})
                count += 1
        if shape is None:
            raise ValueError("no frames to save")
        meta = _base_meta(DENSE_VERSION, fps, count, int(shape[0]), int(shape[1]),
                          int(shape[2]), depths, K, color_space)
        meta["dtype"] = dtype
        (tmp / "mpi.json").write_text(json.dumps(meta, indent=1) + "\n")
    return path


def _u8(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    return np.round(np.clip(np.asarray(x, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def encode_fields(fields: dict) -> dict[str, np.ndarray]:
    """A frame's fields (float in [0,1], or uint8) as stored: alpha/blend/color uint8, flow
    float16."""
    flow = np.asarray(fields["flow"], np.float32)
    if not np.all(np.isfinite(flow)):
        raise ValueError("the flow field holds NaN or infinity")
    return {"alpha": _u8(fields["alpha"]), "blend": _u8(fields["blend"]),
            "color": _u8(fields["color"]), "flow": flow.astype(np.float16)}


def save_factored(path: str | os.PathLike, frames: Iterable[tuple[dict, np.ndarray]], photo,
                  depths, K, fps: float, plane_groups=None, *, color_space: str = "srgb",
                  upsample: str = "bilinear", backdrop=None, back_planes: int = 0) -> Path:
    """Write a factored MPI sequence (version 3) to the folder ``path`` (replaced if it
    exists) and return it.

    frames: an iterable of ``(fields, frame_from_mpi)``: fields a dict ``alpha`` (D,S,S),
    ``blend`` (D,S,S), ``color`` (S,S,3) (float in [0,1] or uint8) and ``flow`` (G,S,S,2)
    float (see :func:`mpitalk.mpi.materialize`), frame_from_mpi (4,4). photo: (P,P,3) float in
    [0,1] or uint8, the identity crop at full resolution. depths (D,) metres, K (3,3) at S,
    plane_groups (D,) ints in [0,G) (default all 0). backdrop: optional (B,B,3) float or uint8,
    the world backdrop, replacing each frame's first ``back_planes`` planes when shown.
    """
    from PIL import Image

    if upsample not in UPSAMPLE:
        raise ValueError(f"upsample must be one of {UPSAMPLE}, got {upsample!r}")
    path = Path(path)
    depths = np.asarray(depths, dtype=np.float64).reshape(-1)
    D = depths.shape[0]
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    photo8 = _u8(photo)
    if photo8.ndim != 3 or photo8.shape[2] != 3 or photo8.shape[0] != photo8.shape[1]:
        raise ValueError(f"photo must be (P,P,3), got {photo8.shape}")
    groups = (np.zeros(D, np.int64) if plane_groups is None
              else np.asarray(plane_groups, np.int64).reshape(-1))
    if groups.shape != (D,) or groups.min() < 0:
        raise ValueError(f"plane_groups must be (D={D},) non-negative ints, got {groups}")
    backdrop8 = None if backdrop is None else _u8(backdrop)
    if backdrop8 is not None and (backdrop8.ndim != 3 or backdrop8.shape[2] != 3
                                  or backdrop8.shape[0] != backdrop8.shape[1]
                                  or not 1 <= back_planes < D):
        raise ValueError(f"backdrop must be (B,B,3) with 1 <= back_planes < D={D}, got "
                         f"{backdrop8.shape} and {back_planes}")
    tmp = _open_tmp(path)
    with swap_in(tmp, path):
        (tmp / "frames").mkdir()
        shapes = None
        count = 0
        with _FrameFiles(tmp / "frames") as files:
            for fields, pose in frames:
                pose = _check_pose(pose, count)
                enc = encode_fields(fields)
                got = {k: v.shape for k, v in enc.items()}
                S = got["alpha"][1] if len(got["alpha"]) == 3 else -1
                G = got["flow"][0] if len(got["flow"]) == 4 else -1
                want = {"alpha": (D, S, S), "blend": (D, S, S), "color": (S, S, 3),
                        "flow": (G, S, S, 2)}
                if got != want or S < 1 or G < 1 or groups.max() >= G:
                    raise ValueError(f"frame {count}: field shapes {got}; expected alpha/blend "
                                     f"(D={D},S,S), color (S,S,3), flow (G,S,S,2) with G > "
                                     f"max(plane_groups) = {groups.max()}")
                if shapes is not None and got != shapes:
                    raise ValueError(f"frame {count}: field shapes {got}, earlier frames "
                                     f"{shapes}")
                shapes = got
                files.write(count, {**enc, "frame_from_mpi": pose})
                count += 1
        if shapes is None:
            raise ValueError("no frames to save")
        Image.fromarray(photo8).save(tmp / PHOTO_NAME)
        S, G = shapes["color"][0], shapes["flow"][0]
        meta = _base_meta(VERSION, fps, count, D, S, S, depths, K, color_space)
        meta.update({"kind": "factored", "photo": PHOTO_NAME, "photo_size": int(photo8.shape[0]),
                     "plane_groups": groups.tolist(), "num_groups": int(G),
                     "upsample": upsample})
        if backdrop8 is not None:
            Image.fromarray(backdrop8).save(tmp / BACKDROP_NAME)
            meta["backdrop"] = {"file": BACKDROP_NAME, "size": int(backdrop8.shape[0]),
                                "back_planes": int(back_planes)}
        (tmp / "mpi.json").write_text(json.dumps(meta, indent=1) + "\n")
    return path


def _file_name(name, what: str) -> str:
    """A file name inside the sequence folder from mpi.json, else ValueError."""
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"{what} must be a file name inside the folder, got {name!r}")
    return name


def _as_count(value, name: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi] from JSON (an int, or a float holding an integer), else
    ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value != int(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


@functools.cache
def materialize_jit():
    import jax

    from mpitalk import mpi

    return jax.jit(mpi.materialize, static_argnums=(2,), static_argnames=("upsample",))


class MPISequence:
    """A saved MPI sequence.

    Every version: ``len()``, ``seq[i]`` and iteration give dense (D,H,W,4) float32 frames in
    [0,1] at the stored size (version 3: materialized at S); ``seq.pose(i)`` frame i's
    ``frame_from_mpi`` (4,4); ``seq.raw_and_pose(i)`` the dense frame as stored (uint8 or
    float16) and its pose from one read; ``seq.dense(i, size)`` the dense frame at any size;
    ``.depths`` (D,), ``.K`` (3,3) at ``height`` x ``width``, ``.K_at(size)``, ``.fps``,
    ``.height``, ``.width``, ``.num_planes``, ``.version``, ``.factored``.

    Version 3 (``factored`` True) also: ``seq.fields(i)`` the frame's fields as float32 (see
    :func:`mpitalk.mpi.materialize`), ``seq.fields_raw(i)`` as stored, ``seq.fields_and_pose(i)``,
    ``seq.photo`` (P,P,3) float32 and ``seq.photo_u8``, ``.photo_size``, ``.plane_groups`` (D,),
    ``.num_groups``, ``.upsample``. Bad content raises :class:`mpitalk.UserError`.
    """

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
            if not isinstance(meta, dict):
                raise ValueError(f"a JSON {type(meta).__name__}, not an object")
            if meta.get("format") != FORMAT:
                raise ValueError(f"format is {meta.get('format')!r}, not {FORMAT!r}")
            self.version = _as_count(meta["version"], "version", 1, 1 << 30)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise UserError(f"{meta_path}: not a valid mpitalk MPI description ({exc}); "
                            f"{_FIX}") from exc
        if self.version > VERSION:
            raise UserError(f"{meta_path}: MPI format version {self.version} is newer than this "
                            f"mpitalk understands ({VERSION}); upgrade mpitalk")
        try:
            self._read_meta(meta)
        except (ValueError, KeyError, TypeError, np.linalg.LinAlgError) as exc:
            raise UserError(f"{meta_path}: not a valid mpitalk MPI description ({exc}); "
                            f"{_FIX}") from exc
        for i in sorted({0, self.num_frames - 1}):
            if not self.frame_path(i).is_file():
                raise UserError(f"{self.frame_path(i)}: missing, though {meta_path} lists "
                                f"{self.num_frames} frames; {_FIX}")
        for name, what in ((getattr(self, "photo_name", None), "photo"),
                           (getattr(self, "backdrop_name", None), "backdrop")):
            if name is not None and not (self.path / name).is_file():
                raise UserError(f"{self.path / name}: the sequence's {what} is missing; {_FIX}")

    def _read_meta(self, meta: dict) -> None:
        """Fields of mpi.json, checked; ValueError/KeyError/TypeError for anything wrong."""
        fps = float(meta["fps"])
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {meta['fps']!r}")
        self.fps = fps
        self.num_frames = _as_count(meta["num_frames"], "num_frames", 1, MAX_FRAMES)
        self.num_planes = _as_count(meta["num_planes"], "num_planes", 1, 4096)
        self.height = _as_count(meta["height"], "height", 1, 1 << 16)
        self.width = _as_count(meta["width"], "width", 1, 1 << 16)
        self.depths = np.asarray(meta["depths"], dtype=np.float64).astype(np.float32)
        if self.depths.shape != (self.num_planes,):
            raise ValueError(f"depths has shape {self.depths.shape}, num_planes is "
                             f"{self.num_planes}")
        if not (np.all(np.isfinite(self.depths)) and np.all(self.depths > 0)):
            raise ValueError("depths must be positive finite metres")
        K = np.asarray(meta["K"], dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)):
            raise ValueError("K must be a finite 3x3 matrix")
        if abs(np.linalg.det(K)) < 1e-9 or not (K[0, 0] > 0 and K[1, 1] > 0):
            raise ValueError("K is singular (it needs positive focal lengths)")
        self.K = K.astype(np.float32)
        self.color_space = str(meta.get("color_space", "srgb"))
        self.factored = self.version >= 3
        if not self.factored:
            self.dtype = str(meta["dtype"])
            if self.dtype not in _DTYPES:
                raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")
            return
        self.dtype = "uint8"  # dense frames at S made from the stored uint8 fields
        if meta.get("kind") != "factored":
            raise ValueError(f"kind is {meta.get('kind')!r}, not 'factored'")
        if self.height != self.width:
            raise ValueError(f"fields must be square, got {self.height}x{self.width}")
        self.photo_name = _file_name(meta["photo"], "photo")
        self.photo_size = _as_count(meta["photo_size"], "photo_size", 1, 1 << 15)
        self.num_groups = _as_count(meta["num_groups"], "num_groups", 1, self.num_planes)
        groups = meta["plane_groups"]
        if not isinstance(groups, list) or len(groups) != self.num_planes:
            raise ValueError(f"plane_groups must list {self.num_planes} group indices")
        self.plane_groups = np.array(
            [_as_count(g, "plane_groups[i]", 0, self.num_groups - 1) for g in groups], np.int32)
        self.upsample = str(meta["upsample"])
        if self.upsample not in UPSAMPLE:
            raise ValueError(f"upsample must be one of {UPSAMPLE}, got {self.upsample!r}")
        self.backdrop_name, self.backdrop_size, self.back_planes = None, 0, 0
        b = meta.get("backdrop")
        if b is not None:
            if not isinstance(b, dict):
                raise ValueError("backdrop must be an object (file, size, back_planes)")
            self.backdrop_name = _file_name(b["file"], "backdrop.file")
            self.backdrop_size = _as_count(b["size"], "backdrop.size", 1, 1 << 15)
            self.back_planes = _as_count(b["back_planes"], "backdrop.back_planes", 1,
                                         self.num_planes - 1)

    # ---- files ---------------------------------------------------------------------------

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
            with np.load(p, allow_pickle=False) as z:
                return [z[k] if k in z.files else None for k in keys]
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
            raise UserError(f"{p}: damaged or missing MPI frame ({exc}); {_FIX}") from exc

    def _bad(self, index: int, what: str) -> UserError:
        return UserError(f"{self.frame_path(index % self.num_frames)}: {what}; {_FIX}")

    def _checked_rgba(self, index: int, arr: np.ndarray | None) -> np.ndarray:
        if arr is None:
            raise self._bad(index, "damaged MPI frame (no rgba)")
        if arr.shape != (self.num_planes, self.height, self.width, 4):
            raise self._bad(index, f"frame shape {arr.shape} does not match mpi.json")
        if arr.dtype != np.dtype(self.dtype):
            raise self._bad(index, f"a {arr.dtype} frame in a {self.dtype} sequence")
        if arr.dtype != np.uint8 and not np.all(np.isfinite(arr)):
            raise self._bad(index, "the frame holds NaN or infinity")
        return arr

    def _checked_pose(self, index: int, pose: np.ndarray | None) -> np.ndarray:
        if pose is None:
            if self.version >= 2:
                raise self._bad(index, "damaged MPI frame (no frame_from_mpi)")
            return np.eye(4, dtype=np.float32)  # version 1: made in the frame's camera
        if pose.shape != (4, 4) or pose.dtype.kind != "f":
            raise self._bad(index, f"frame_from_mpi is a {pose.dtype} {pose.shape}, not a "
                                   "(4,4) float pose")
        if not np.all(np.isfinite(pose)):
            raise self._bad(index, "frame_from_mpi holds NaN or infinity")
        return pose.astype(np.float32)

    def _checked_fields(self, index: int, arrs: list) -> dict[str, np.ndarray]:
        D, S, G = self.num_planes, self.height, self.num_groups
        want = {"alpha": ((D, S, S), np.uint8), "blend": ((D, S, S), np.uint8),
                "color": ((S, S, 3), np.uint8), "flow": ((G, S, S, 2), np.float16)}
        out = {}
        for (key, (shape, dtype)), arr in zip(want.items(), arrs, strict=True):
            if arr is None:
                raise self._bad(index, f"damaged MPI frame (no {key})")
            if arr.shape != shape or arr.dtype != dtype:
                raise self._bad(index, f"{key} is a {arr.dtype} {arr.shape}, mpi.json says "
                                       f"{np.dtype(dtype)} {shape}")
            out[key] = arr
        if not np.all(np.isfinite(out["flow"])):
            raise self._bad(index, "the flow field holds NaN or infinity")
        return out

    # ---- dense frames (every version) ------------------------------------------------------

    def raw(self, index: int) -> np.ndarray:
        """Frame ``index`` as stored (uint8 or float16), (D,H,W,4); version 3: materialized at
        S as uint8."""
        return self.raw_and_pose(index)[0]

    def pose(self, index: int) -> np.ndarray:
        """Frame ``index``'s ``frame_from_mpi`` (4,4) float32: the pose taking the MPI's camera
        to the frame's; the identity for version-1 frames (made in the frame's camera)."""
        (pose,) = self._read(index, "frame_from_mpi")
        return self._checked_pose(index, pose)

    def raw_and_pose(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(raw(index), pose(index))`` from one read of the frame's file (renderers' loop)."""
        if self.factored:
            fields, pose = self.fields_and_pose(index)
            dense = self._materialize(fields, self.height)
            return np.round(np.clip(dense, 0, 1) * 255).astype(np.uint8), pose
        arr, pose = self._read(index, "rgba", "frame_from_mpi")
        return self._checked_rgba(index, arr), self._checked_pose(index, pose)

    def __getitem__(self, index: int) -> np.ndarray:
        if self.factored:
            return self.dense(index, self.height)
        arr = self.raw(index)
        if arr.dtype == np.uint8:
            return arr.astype(np.float32) / np.float32(255.0)
        return arr.astype(np.float32)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.num_frames):
            yield self[i]

    def dense(self, index: int, size: int | None = None) -> np.ndarray:
        """Frame ``index`` as a dense (D,size,size,4) float32 MPI (default: the stored size).
        Version 3: :func:`mpitalk.mpi.materialize` of the fields and the photo; versions 1 and
        2 hold only their stored size, so another size is their planes resampled bilinearly
        (no sharper). Render it with ``K_at(size)``."""
        size = self.height if size is None else int(size)
        if self.factored:
            return self._materialize(self.fields(index), size)
        frame = self[index]
        if (size, size) == (self.height, self.width):
            return frame
        from mpitalk import mpi

        return np.asarray(mpi.upsample_bilinear(frame, size))

    def K_at(self, size: int) -> np.ndarray:
        """(3,3) intrinsics of a dense frame of (size, size) pixels."""
        K = np.array(self.K, np.float64)
        K[0] *= size / self.width
        K[1] *= size / self.height
        K[2] = (0.0, 0.0, 1.0)
        return K.astype(np.float32)

    # ---- the factored format (version 3) ---------------------------------------------------

    def _need_factored(self) -> None:
        if not self.factored:
            raise ValueError(f"{self.path}: a version-{self.version} (dense) MPI has no fields")

    def fields_raw(self, index: int) -> dict[str, np.ndarray]:
        """Frame ``index``'s fields as stored: alpha, blend (D,S,S) uint8, color (S,S,3) uint8,
        flow (G,S,S,2) float16."""
        return self.fields_raw_and_pose(index)[0]

    def fields_raw_and_pose(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """``(fields_raw(index), pose(index))`` from one read of the frame's file."""
        self._need_factored()
        *arrs, pose = self._read(index, "alpha", "blend", "color", "flow", "frame_from_mpi")
        return self._checked_fields(index, arrs), self._checked_pose(index, pose)

    def fields_and_pose(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Frame ``index``'s fields as float32 (alpha, blend, color in [0,1]; flow in photo
        sides) and its pose, from one read."""
        raw, pose = self.fields_raw_and_pose(index)
        return decode_fields(raw), pose

    def fields(self, index: int) -> dict[str, np.ndarray]:
        """Frame ``index``'s fields as float32 (see :meth:`fields_and_pose`)."""
        return self.fields_and_pose(index)[0]

    def _image(self, name: str, size: int, what: str) -> np.ndarray:
        """The (size,size,3) uint8 image ``name`` of the folder, checked."""
        from PIL import Image, UnidentifiedImageError

        p = self.path / name
        try:
            with Image.open(p) as im:
                image = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise UserError(f"{p}: damaged {what} ({exc}); {_FIX}") from exc
        if image.shape != (size, size, 3):
            raise UserError(f"{p}: {what} is {image.shape[1]}x{image.shape[0]}, mpi.json says "
                            f"{what}_size {size}; {_FIX}")
        return image

    @functools.cached_property
    def photo_u8(self) -> np.ndarray:
        """The sequence's photo (P,P,3) uint8 (read once)."""
        self._need_factored()
        return self._image(self.photo_name, self.photo_size, "photo")

    @functools.cached_property
    def backdrop_u8(self) -> np.ndarray | None:
        """The world backdrop (B,B,3) uint8 (read once), or None when the sequence has none."""
        if not self.factored or self.backdrop_name is None:
            return None
        return self._image(self.backdrop_name, self.backdrop_size, "backdrop")

    def backdrop_plane(self) -> tuple[np.ndarray, float, np.ndarray, int] | None:
        """``(image, depth_m, K, back_planes)`` of the world backdrop, the arguments of
        ``GLRenderer.set_backdrop`` (K at the image's size), or None without one."""
        image = self.backdrop_u8
        if image is None:
            return None
        return image, float(self.depths[0]), self.K_at(image.shape[0]), self.back_planes

    @functools.cached_property
    def photo(self) -> np.ndarray:
        """The sequence's photo (P,P,3) float32 in [0,1] (converted once; read-only)."""
        photo = self.photo_u8.astype(np.float32) / np.float32(255.0)
        photo.flags.writeable = False
        return photo

    def _materialize(self, fields: dict, size: int) -> np.ndarray:
        return np.asarray(materialize_jit()(fields, self.photo, int(size), self.plane_groups,
                                             upsample=self.upsample))


def decode_fields(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stored fields (uint8, float16) -> float32: alpha/blend/color / 255, flow as it is."""
    out = {k: raw[k].astype(np.float32) / np.float32(255.0) for k in ("alpha", "blend", "color")}
    out["flow"] = raw["flow"].astype(np.float32)
    return out


def load(path: str | os.PathLike) -> MPISequence:
    """Open an MPI sequence folder written by :func:`save` or :func:`save_factored` (frames
    are read lazily; the description is checked at once)."""
    return MPISequence(path)
