"""Expression controls: the 52 ARKit blendshapes plus a head pose per frame, at a stated fps.

A :class:`Track` holds ``values`` (T,52) in [0,1] in :data:`ARKIT_NAMES` order and ``pose`` (T,6)
= (yaw, pitch, roll, tx, ty, tz) in radians and metres, meaning ``cam_from_head`` through
:func:`mpitalk.camera.head_pose_matrix` (README "Conventions"). Tracks come from a driving video
(:func:`mpitalk.face.extract_track`), from an iPhone (Live Link Face CSV) or from files written by
:meth:`Track.save`; :func:`load` reads them all.

Formats (chosen by extension):

- ``.csv``: our layout — header ``time``, the 52 names, ``yaw,pitch,roll,tx,ty,tz``; one row per
  frame, time in seconds (fps = from the time column). Other CSVs with ARKit names in any case
  (``EyeBlinkLeft``, ``eyeblinkleft``) are read too; missing blendshapes are 0, a missing pose is
  the default pose. Live Link Face exports (``Timecode,BlendShapeCount,EyeBlinkLeft,...,HeadYaw,
  HeadPitch,HeadRoll,LeftEyeYaw,...``) are recognised by their ``Timecode`` column.
- ``.json``: ``{"fps", "names", "values", "pose_names", "pose"}``.
- ``.npz``: arrays ``values``, ``pose``, ``fps``, ``names`` (no pickles).

Bad cells (NaN, text) raise a :class:`~mpitalk.UserError` naming the file, row and column; values
outside [0,1] are clipped with one warning; unknown columns are ignored with one warning.

The CLI (``python -m mpitalk.controls extract|info|plot``) is at the bottom.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mpitalk import UserError, camera, run_cli

# ARKit's 52 blendshape names in ARKit's spelling, in the order Live Link Face writes them.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft",
    "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft",
    "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft", "browDownRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip
assert len(ARKIT_NAMES) == 52
POSE_NAMES: tuple[str, ...] = ("yaw", "pitch", "roll", "tx", "ty", "tz")
NUM_CHANNELS = len(ARKIT_NAMES) + len(POSE_NAMES)  # 58: the layout of Track.vector()

LIVE_LINK_FPS = 60.0  # Live Link Face records at 60 fps; its Timecode column does not say
DEFAULT_FPS = 30.0  # for a one-row CSV, which cannot state a rate

# Live Link Face columns we understand but do not use (eye rotations duplicate eyeLook*).
_LIVE_LINK_UNUSED = {
    "timecode", "blendshapecount", "lefteyeyaw", "lefteyepitch", "lefteyeroll", "righteyeyaw",
    "righteyepitch", "righteyeroll",
}  # fmt: skip
_TIMECODE = re.compile(r"^(\d+):(\d\d):(\d\d)[:;](\d+)(?:\.(\d+))?$")  # HH:MM:SS:FF(.mmm)


class TrackWarning(UserWarning):
    """Something in a track file was fixed up (clipped, ignored, interpolated). CLIs print it."""


def _warn(message: str) -> None:
    warnings.warn(message, TrackWarning, stacklevel=3)


@dataclass
class Track:
    """An expression track: ``values`` (T,52) in [0,1] in ``names`` order, ``pose`` (T,6) as
    (yaw, pitch, roll, tx, ty, tz) radians/metres (``camera.head_pose_matrix``), at ``fps``.

    Frame ``i`` is at time ``i / fps`` seconds. Methods return new tracks; none mutates.
    """

    values: np.ndarray
    pose: np.ndarray
    fps: float
    names: tuple[str, ...] = field(default=ARKIT_NAMES)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        self.pose = np.asarray(self.pose, dtype=np.float32)
        if self.values.ndim != 2 or self.values.shape[1] != len(self.names):
            raise ValueError(f"values must be (T,{len(self.names)}), got {self.values.shape}")
        if self.pose.shape != (self.values.shape[0], 6):
            raise ValueError(f"pose must be ({self.values.shape[0]},6), got {self.pose.shape}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be positive, got {self.fps}")
        self.fps = float(self.fps)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def neutral(cls, num_frames: int, fps: float = DEFAULT_FPS) -> Track:
        """``num_frames`` frames of the neutral face (all blendshapes 0) in the default pose."""
        values = np.zeros((num_frames, len(ARKIT_NAMES)), np.float32)
        pose = np.tile(camera.default_head_pose(), (num_frames, 1))
        return cls(values, pose, fps)

    # --- time -------------------------------------------------------------------------------

    @property
    def times(self) -> np.ndarray:
        """(T,) frame times in seconds, ``i / fps``."""
        return np.arange(len(self), dtype=np.float64) / self.fps

    @property
    def duration(self) -> float:
        """Seconds covered, ``T / fps`` (each frame lasts one period)."""
        return len(self) / self.fps

    def channel(self, name: str) -> np.ndarray:
        """(T,) one blendshape (ARKit name, any case) or pose channel (``yaw`` ... ``tz``)."""
        key = name.lower()
        lower = [n.lower() for n in self.names]
        if key in lower:
            return self.values[:, lower.index(key)]
        if key in POSE_NAMES:
            return self.pose[:, POSE_NAMES.index(key)]
        raise UserError(f"unknown channel '{name}': use an ARKit blendshape name or one of "
                        f"{', '.join(POSE_NAMES)}")

    def slice_time(self, t0: float, t1: float | None = None) -> Track:
        """The frames with ``t0 <= i/fps < t1`` (seconds), re-timed to start at 0."""
        t1 = self.duration if t1 is None else t1
        keep = (self.times >= t0 - 1e-9) & (self.times < t1 - 1e-9)
        if not keep.any():
            raise UserError(f"no frames between {t0:g} s and {t1:g} s: the track lasts "
                            f"{self.duration:.3f} s")
        return Track(self.values[keep], self.pose[keep], self.fps, self.names)

    def resample(self, fps: float) -> Track:
        """The track at ``fps`` by linear interpolation over the same time span.

        The new frames are at ``j / fps`` for every such time up to the last original frame;
        angles are unwrapped before interpolating so a turn through +-pi stays a turn.
        """
        if fps <= 0:
            raise UserError(f"fps must be positive, got {fps:g}")
        if abs(fps - self.fps) < 1e-9:
            return Track(self.values.copy(), self.pose.copy(), self.fps, self.names)
        t_old = self.times
        n_new = int(math.floor(t_old[-1] * fps + 1e-6)) + 1 if len(self) else 0
        t_new = np.arange(n_new, dtype=np.float64) / fps
        pose = self.pose.astype(np.float64)
        pose[:, :3] = np.unwrap(pose[:, :3], axis=0)
        values = _interp_columns(t_new, t_old, self.values)
        pose = _interp_columns(t_new, t_old, pose)
        return Track(values, pose, fps, self.names)

    # --- filtering and scaling --------------------------------------------------------------

    def smooth(self, strength: float) -> Track:
        """Savitzky-Golay smoothing (quadratic) over a window of ``strength`` seconds.

        ``strength`` 0 returns a copy; 0.1 s (3 frames at 30 fps) removes jitter and keeps
        blinks; 0.3 s and more also rounds off fast mouth movements. The window is the odd
        number of frames nearest ``strength * fps``, at least 3 and at most the track length.
        Blendshapes are clipped back into [0,1] afterwards.
        """
        from scipy.signal import savgol_filter

        if strength < 0:
            raise UserError(f"smoothing strength must be >= 0 seconds, got {strength:g}")
        window = int(round(strength * self.fps))
        window = max(3, window + (window % 2 == 0))
        if len(self) < 3 or strength == 0:
            return Track(self.values.copy(), self.pose.copy(), self.fps, self.names)
        window = min(window, len(self) - (len(self) % 2 == 0))
        pose = self.pose.astype(np.float64)
        pose[:, :3] = np.unwrap(pose[:, :3], axis=0)
        values = savgol_filter(self.values.astype(np.float64), window, 2, axis=0, mode="interp")
        pose = savgol_filter(pose, window, 2, axis=0, mode="interp")
        return Track(np.clip(values, 0.0, 1.0), pose, self.fps, self.names)

    def scaled(self, expression_scale: float = 1.0, pose_scale: float = 1.0) -> Track:
        """Exaggerate or damp the track.

        Blendshapes are multiplied by ``expression_scale`` (then clipped to [0,1]). The pose's
        three angles and its offset from the default head position (0, 0, 0.6) are multiplied
        by ``pose_scale``: 0 gives a still head at the default position, 1 the track unchanged.
        """
        values = np.clip(self.values * expression_scale, 0.0, 1.0)
        default = camera.default_head_pose()
        pose = default + (self.pose - default) * pose_scale
        return Track(values, pose, self.fps, self.names)

    def vector(self) -> np.ndarray:
        """(T,58) float32: the 52 blendshapes then (yaw, pitch, roll, tx, ty, tz)."""
        return np.concatenate([self.values, self.pose], axis=1).astype(np.float32)

    # --- files ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write ``.csv``, ``.json`` or ``.npz`` (by extension); :func:`load` reads it back."""
        path = Path(path)
        ext = path.suffix.lower()
        if ext not in (".csv", ".json", ".npz"):
            raise UserError(f"{path}: unknown track format '{ext}': use .csv, .json or .npz")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if ext == ".csv":
                with open(path, "w", newline="") as f:
                    w = csv.writer(f, lineterminator="\n")
                    w.writerow(("time",) + tuple(self.names) + POSE_NAMES)
                    for t, v, p in zip(self.times, self.values, self.pose, strict=True):
                        w.writerow([f"{t:.9f}"] + [f"{x:.6g}" for x in v] +
                                   [f"{x:.7g}" for x in p])
            elif ext == ".json":
                doc = {"fps": self.fps, "names": list(self.names), "values": self.values.tolist(),
                       "pose_names": list(POSE_NAMES), "pose": self.pose.tolist()}
                path.write_text(json.dumps(doc))
            else:
                np.savez_compressed(path, values=self.values, pose=self.pose,
                                    fps=np.float64(self.fps), names=np.array(self.names))
        except OSError as e:
            raise UserError(f"{path}: cannot write ({e.strerror or e})") from None

    def summary(self) -> list[tuple[str, float, float, float, float]]:
        """Rows ``(channel, min, mean, max, std)`` for every blendshape and pose channel."""
        rows = []
        for name, col in zip(self.names + POSE_NAMES, self.vector().T, strict=True):
            if len(col) == 0:
                rows.append((name, 0.0, 0.0, 0.0, 0.0))
                continue
            rows.append((name, float(col.min()), float(col.mean()), float(col.max()),
                         float(col.std())))
        return rows


def _interp_columns(t_new: np.ndarray, t_old: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(T_new,C) linear interpolation of each column of ``a`` (T_old,C) at ``t_new``."""
    if len(t_old) == 1:
        return np.repeat(a, len(t_new), axis=0)
    return np.stack([np.interp(t_new, t_old, a[:, c]) for c in range(a.shape[1])], axis=1)


# --- loading --------------------------------------------------------------------------------


def load(path: str | Path, fps: float | None = None) -> Track:
    """Read a track from ``.csv`` (ours, ARKit-named, or Live Link Face), ``.json`` or ``.npz``.

    ``fps``: the rate of the rows for files that do not state one (Live Link Face: 60 unless
    given; a CSV without a time column needs it). For files that state their rate, a different
    ``fps`` resamples the track to it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such track file")
    ext = path.suffix.lower()
    if ext == ".csv":
        track = _load_csv(path, fps)
    elif ext == ".json":
        track = _load_json(path)
    elif ext == ".npz":
        track = _load_npz(path)
    else:
        raise UserError(f"{path}: unknown track format '{ext}': use .csv, .json or .npz")
    if fps is not None and abs(track.fps - fps) > 1e-6:
        track = track.resample(fps)
    return track


def _assemble(path: Path, columns: dict[str, np.ndarray], num_rows: int, fps: float,
              unknown: Sequence[str], live_link_angles: bool = False) -> Track:
    """Build a validated Track from named (N,) columns (names already matched, lower case).

    Blendshapes missing from ``columns`` are 0; missing pose numbers are the default pose.
    """
    if unknown:
        more = f" and {len(unknown) - 6} more" if len(unknown) > 6 else ""
        shown = ", ".join(unknown[:6]) + more
        _warn(f"{path}: ignored {len(unknown)} unknown column(s): {shown}")
    lower = [n.lower() for n in ARKIT_NAMES]
    has_bs = any(k in lower for k in columns)
    has_pose = any(k in POSE_NAMES or k.startswith("head") for k in columns)
    if not (has_bs or has_pose):
        raise UserError(f"{path}: no usable column: expected ARKit blendshape names (e.g. jawOpen)"
                        " or yaw/pitch/roll/tx/ty/tz")
    if num_rows == 0:
        raise UserError(f"{path}: the track has no rows")
    values = np.zeros((num_rows, len(ARKIT_NAMES)), np.float64)
    for i, name in enumerate(lower):
        if name in columns:
            values[:, i] = columns[name]
    outside = int(((values < 0) | (values > 1)).sum())
    if outside:
        _warn(f"{path}: clipped {outside} blendshape value(s) outside [0,1]")
        values = np.clip(values, 0.0, 1.0)
    pose = np.tile(camera.default_head_pose().astype(np.float64), (num_rows, 1))
    if live_link_angles:
        pose[:, :3] = live_link_to_pose_angles(
            columns.get("headyaw", 0.0), columns.get("headpitch", 0.0),
            columns.get("headroll", 0.0))
    for i, name in enumerate(POSE_NAMES):
        if name in columns:
            pose[:, i] = columns[name]
    return Track(values, pose, fps)


def live_link_to_pose_angles(head_yaw: np.ndarray | float, head_pitch: np.ndarray | float,
                             head_roll: np.ndarray | float) -> np.ndarray:
    """(N,3) our (yaw, pitch, roll) from Live Link Face's HeadYaw/HeadPitch/HeadRoll (radians).

    Assumption (Live Link does not document its signs): the angles are right-handed rotations
    about the axes of ARKit's face anchor — x to the viewer's right (the subject's left), y up,
    z out of the face toward the camera — composed yaw(y) @ pitch(x) @ roll(z). So positive
    HeadYaw = the subject turns to their own left (the nose moves to the right of an unmirrored
    camera image), positive HeadPitch = looks down, positive HeadRoll = the head tilts toward the
    subject's right shoulder (the top of the head moves to the image left).

    ARKit's frame is ours with y and z flipped, F = diag(1,-1,-1); conjugating by F negates
    rotations about y and z and keeps those about x: F Ry(a) Rx(b) Rz(c) F = Ry(-a) Rx(b) Rz(-c).
    """
    yaw, pitch, roll = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in
                                             (head_yaw, head_pitch, head_roll)))
    return np.stack([-yaw, pitch, -roll], axis=-1).reshape(-1, 3)


def _is_timecode(text: str) -> bool:
    """Whether ``text`` is a Live Link ``HH:MM:SS:FF`` or ``HH:MM:SS:FF.mmm`` timecode."""
    return _TIMECODE.match(text.strip()) is not None


def _load_csv(path: Path, fps: float | None) -> Track:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read as CSV text ({e})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise UserError(f"{path}: empty file; expected a header row")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    keys = [h.lower() for h in header]
    live_link = "timecode" in keys
    lower_names = {n.lower() for n in ARKIT_NAMES}
    known_pose = set(POSE_NAMES) | ({"headyaw", "headpitch", "headroll"} if live_link else set())

    use: dict[int, str] = {}  # column index -> matched lower-case key
    unknown: list[str] = []
    time_col = None
    for j, k in enumerate(keys):
        if k in ("time", "time_s", "t") and not live_link:
            time_col = j
        elif k in lower_names or k in known_pose:
            use[j] = k
        elif live_link and k in _LIVE_LINK_UNUSED:
            continue
        elif k:
            unknown.append(header[j])

    def cell_error(i: int, j: int, cell: str) -> UserError:
        col = header[j] if j < len(header) else f"#{j + 1}"
        return UserError(f"{path}: row {i + 1} (line {i + 2}), column '{col}': "
                         f"'{cell}' is not a number")

    columns = {k: np.empty(len(body)) for k in use.values()}
    times = np.empty(len(body))
    for i, row in enumerate(body):
        if len(row) < len(header):
            raise UserError(f"{path}: row {i + 1} (line {i + 2}) has {len(row)} cells, the header "
                            f"has {len(header)}")
        for j, k in use.items():
            try:
                x = float(row[j])
            except ValueError:
                raise cell_error(i, j, row[j]) from None
            if not math.isfinite(x):
                raise cell_error(i, j, row[j])
            columns[k][i] = x
        if time_col is not None:
            try:
                times[i] = float(row[time_col])
            except ValueError:
                raise cell_error(i, time_col, row[time_col]) from None
            if not math.isfinite(times[i]):
                raise cell_error(i, time_col, row[time_col])
        elif live_link:
            j = keys.index("timecode")
            if not _is_timecode(row[j]):
                raise UserError(f"{path}: row {i + 1} (line {i + 2}), column 'Timecode': "
                                f"'{row[j]}' is not HH:MM:SS:FF.mmm")

    if live_link:
        rate = LIVE_LINK_FPS if fps is None else fps
        return _assemble(path, columns, len(body), rate, unknown, live_link_angles=True)
    if time_col is None or len(body) < 2:
        if fps is None and len(body) >= 2:
            raise UserError(f"{path}: no 'time' column, so the frame rate is unknown; pass --fps")
        return _assemble(path, columns, len(body), fps or DEFAULT_FPS, unknown)
    dt = np.diff(times)
    if not (dt > 0).all():
        i = int(np.argmin(dt > 0)) + 1
        raise UserError(f"{path}: row {i + 1} (line {i + 2}): times must increase")
    rate = 1.0 / float(np.median(dt))
    grid = times[0] + np.arange(len(body)) / rate
    if np.abs(times - grid).max() <= 0.25 / rate:  # regular: the end points give the best rate
        rate = (len(body) - 1) / float(times[-1] - times[0])
    track = _assemble(path, columns, len(body), rate, unknown)
    if np.abs(times - grid).max() > 0.25 / rate:  # irregular timing: put frames on a grid
        _warn(f"{path}: irregular time column; resampled to {rate:.3f} fps")
        n = int(math.floor((times[-1] - times[0]) * rate + 1e-6)) + 1
        t_new = times[0] + np.arange(n) / rate
        pose = track.pose.astype(np.float64)
        pose[:, :3] = np.unwrap(pose[:, :3], axis=0)
        track = Track(_interp_columns(t_new, times, track.values),
                      _interp_columns(t_new, times, pose), rate)
    return track


def _matched_columns(path: Path, names: Sequence[str], array: np.ndarray,
                     what: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Map a (N,C) array with C names onto our lower-case keys; NaN cells are an error."""
    if array.ndim != 2 or array.shape[1] != len(names):
        raise UserError(f"{path}: '{what}' must be a table of {len(names)} columns per frame, "
                        f"got shape {array.shape}")
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        i, j = bad[0]
        raise UserError(f"{path}: row {i + 1}, column '{names[j]}': not a number")
    known = {n.lower() for n in ARKIT_NAMES} | set(POSE_NAMES)
    cols, unknown = {}, []
    for j, n in enumerate(names):
        if str(n).lower() in known:
            cols[str(n).lower()] = array[:, j]
        else:
            unknown.append(str(n))
    return cols, unknown


def _load_json(path: Path) -> Track:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a JSON track ({e})") from None
    if not isinstance(doc, dict) or "values" not in doc or "fps" not in doc:
        raise UserError(f"{path}: a JSON track needs 'fps', 'names' and 'values' (and 'pose')")
    return _from_arrays(path, doc.get("names", ARKIT_NAMES), doc["values"],
                        doc.get("pose_names", POSE_NAMES), doc.get("pose"), doc["fps"])


def _load_npz(path: Path) -> Track:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not an NPZ track ({e})") from None
    if "values" not in data or "fps" not in data:
        raise UserError(f"{path}: an NPZ track needs arrays 'values', 'fps', 'names' and 'pose'")
    names = [str(n) for n in data.get("names", ARKIT_NAMES)]
    return _from_arrays(path, names, data["values"], POSE_NAMES, data.get("pose"),
                        data["fps"])


def _from_arrays(path: Path, names, values, pose_names, pose, fps) -> Track:
    """Shared tail of the JSON and NPZ readers."""
    try:
        values = np.asarray(values, dtype=np.float64)
        pose = None if pose is None else np.asarray(pose, dtype=np.float64)
        fps = float(fps)
    except (TypeError, ValueError):
        raise UserError(f"{path}: 'values', 'pose' and 'fps' must be numbers") from None
    if not (fps > 0 and math.isfinite(fps)):
        raise UserError(f"{path}: fps must be a positive number, got {fps}")
    if values.ndim == 1 and values.size == 0:
        values = values.reshape(0, len(names))
    cols, unknown = _matched_columns(path, list(names), values, "values")
    if pose is not None:
        pose_cols, pose_unknown = _matched_columns(path, list(pose_names), pose, "pose")
        if len(pose) != len(values):
            raise UserError(f"{path}: {len(pose)} pose rows but {len(values)} value rows")
        cols.update(pose_cols)
        unknown += pose_unknown
    return _assemble(path, cols, len(values), fps, unknown)


# --- CLI ------------------------------------------------------------------------------------

MAIN_CHANNELS = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight",
                 "mouthFunnel", "mouthPucker", "browInnerUp")


def driving_track(track: Track) -> Track:
    """A track read from a driving video, made to drive an avatar: head rotations relative to the
    clip's median pose and the head centre at the default position (0, 0, 0.6) m. The video's
    own framing (its camera angle, MediaPipe's depth estimate) is not the avatar's; its motion is.
    """
    pose = np.array(track.pose, dtype=np.float32, copy=True)
    pose[:, :3] -= np.median(pose[:, :3], axis=0)
    pose[:, 3:] = camera.default_head_pose()[3:]
    return Track(values=track.values, pose=pose, fps=track.fps, names=track.names)


def format_info(track: Track, title: str = "") -> str:
    """A plain-text summary table of a track: length, rate, pose ranges, the busiest channels."""
    lines = [f"{title}: {len(track)} frames at {track.fps:.3f} fps ({track.duration:.2f} s)"]
    rows = track.summary()
    lines.append(f"{'channel':<20}{'min':>9}{'mean':>9}{'max':>9}{'std':>9}")
    pose_rows = rows[len(ARKIT_NAMES):]
    for name, lo, mean, hi, std in pose_rows:
        if name in ("yaw", "pitch", "roll"):  # show angles in degrees
            lo, mean, hi, std = (math.degrees(x) for x in (lo, mean, hi, std))
            name = f"{name} (deg)"
        else:
            name = f"{name} (m)"
        lines.append(f"{name:<20}{lo:>9.3f}{mean:>9.3f}{hi:>9.3f}{std:>9.3f}")
    busiest = sorted(rows[: len(ARKIT_NAMES)], key=lambda r: -r[4])
    main = [r for r in rows if r[0] in MAIN_CHANNELS]
    shown = main + [r for r in busiest if r[0] not in MAIN_CHANNELS][:8]
    for name, lo, mean, hi, std in shown:
        lines.append(f"{name:<20}{lo:>9.3f}{mean:>9.3f}{hi:>9.3f}{std:>9.3f}")
    still = sum(1 for r in rows[: len(ARKIT_NAMES)] if r[3] == 0.0)
    lines.append(f"({still} of {len(ARKIT_NAMES)} blendshapes are 0 throughout)")
    return "\n".join(lines)


def plot_track(track: Track, path: str | Path, title: str = "") -> None:
    """Write a PNG of the main channels, the busiest other blendshapes and the head pose."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = track.times
    rows = track.summary()[: len(ARKIT_NAMES)]
    others = [r[0] for r in sorted(rows, key=lambda r: -r[4]) if r[0] not in MAIN_CHANNELS][:6]
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    for ax, names in ((axes[0], MAIN_CHANNELS[:5]), (axes[1], MAIN_CHANNELS[5:] + tuple(others))):
        for n in names:
            ax.plot(t, track.channel(n), label=n, lw=1.2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("weight")
        ax.legend(loc="upper right", fontsize=7, ncol=3)
        ax.grid(alpha=0.3)
    for n in ("yaw", "pitch", "roll"):
        axes[2].plot(t, np.degrees(track.channel(n)), label=n, lw=1.2)
    axes[2].set_ylabel("degrees")
    for n in ("tx", "ty", "tz"):
        axes[3].plot(t, track.channel(n) - (camera.DEFAULT_HEAD_DEPTH_M if n == "tz" else 0.0),
                     label=n if n != "tz" else f"tz - {camera.DEFAULT_HEAD_DEPTH_M}", lw=1.2)
    axes[3].set_ylabel("metres")
    axes[3].set_xlabel("time (s)")
    for ax in axes[2:]:
        ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{title}  ({len(track)} frames, {track.fps:.2f} fps)")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        plt.close(fig)


def _cmd_extract(args: argparse.Namespace) -> int:
    from mpitalk import face

    source = args.inputs[0] if len(args.inputs) == 1 else args.inputs
    track = face.extract_track(source, fps=args.fps, progress=not args.quiet)
    if args.smooth > 0:
        track = track.smooth(args.smooth)
    track.save(args.output)
    print(f"wrote {args.output}: {len(track)} frames at {track.fps:.3f} fps")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    print(format_info(load(args.track, fps=args.fps), str(args.track)))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    track = load(args.track, fps=args.fps)
    out = args.output or str(Path(args.track).with_suffix(".png"))
    plot_track(track, out, Path(args.track).name)
    print(f"wrote {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog="python -m mpitalk.controls", formatter_class=fmt,
                                description="Expression tracks: extract from video, inspect, plot.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("extract", formatter_class=fmt,
                       help="blendshapes + head pose from a driving video or images")
    e.add_argument("inputs", nargs="+", help="a video, a folder of images, or image files")
    e.add_argument("-o", "--output", required=True, help="track file (.csv, .json or .npz)")
    e.add_argument("--fps", type=float, default=None,
                   help="frame rate (default: the video's; 30 for images)")
    e.add_argument("--smooth", type=float, default=0.0,
                   help="Savitzky-Golay window in seconds (0 = none)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_extract)
    i = sub.add_parser("info", formatter_class=fmt, help="print a summary table of a track")
    i.add_argument("track", help="track file (.csv, Live Link Face .csv, .json, .npz)")
    i.add_argument("--fps", type=float, default=None, help="rate of the rows if the file has none")
    i.set_defaults(func=_cmd_info)
    g = sub.add_parser("plot", formatter_class=fmt, help="plot a track's main channels to a PNG")
    g.add_argument("track", help="track file")
    g.add_argument("-o", "--output", default=None, help="PNG path (default: next to the track)")
    g.add_argument("--fps", type=float, default=None, help="rate of the rows if the file has none")
    g.set_defaults(func=_cmd_plot)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: ``extract``, ``info``, ``plot``. User errors print one line and return 1."""
    args = _parser().parse_args(argv)

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        return run_cli(lambda: args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
