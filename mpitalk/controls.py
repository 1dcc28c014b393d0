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

The CLI (``python -m mpitalk.controls_cli extract|info|plot``; ``python -m mpitalk.controls`` too)
is :mod:`mpitalk.controls_cli`: it uses :mod:`mpitalk.face`, which uses this module.
"""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mpitalk import UserError, camera

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

MAX_RESAMPLED_FRAMES = 5_000_000  # Track.resample refuses more (~2 GB while interpolating)
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

    def resample(self, fps: float, num_frames: int | None = None) -> Track:
        """The track at ``fps`` by linear interpolation over the same time span.

        The new frames are at ``j / fps`` for every such time up to the last original frame;
        angles are unwrapped before interpolating so a turn through +-pi stays a turn.
        ``num_frames``: only the first that many new frames (no more than there are), so a
        high rate over a long track costs only the part that is used.
        """
        if not (fps > 0 and math.isfinite(fps)):
            raise UserError(f"fps must be a positive number, got {fps:g}")
        if abs(fps - self.fps) < 1e-9:
            keep = slice(None, num_frames)
            return Track(self.values[keep].copy(), self.pose[keep].copy(), self.fps, self.names)
        t_old = self.times
        n_new = int(math.floor(t_old[-1] * fps + 1e-6)) + 1 if len(self) else 0
        if num_frames is not None:
            n_new = min(n_new, max(0, num_frames))
        if n_new > MAX_RESAMPLED_FRAMES:
            raise UserError(f"resampling {self.duration:.6g} s to {fps:g} fps makes {n_new} "
                            f"frames, more than {MAX_RESAMPLED_FRAMES}; use a lower fps")
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


def load(path: str | Path, fps: float | None = None, *,
         rate_if_unknown: float | None = None) -> Track:
    """Read a track from ``.csv`` (ours, ARKit-named, or Live Link Face), ``.json`` or ``.npz``.

    ``fps``: the rate of the rows for files that do not state one (Live Link Face: 60 unless
    given; a CSV without a time column needs it). For files that state their rate, a different
    ``fps`` resamples the track to it. ``rate_if_unknown``: the rate of the rows of a CSV with
    neither a time column nor a Timecode, and nothing else (the render's ``--fps``, which is the
    output rate: it must not re-time a file that states its own).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such track file")
    ext = path.suffix.lower()
    if ext == ".csv":
        track = _load_csv(path, fps, rate_if_unknown)
    elif ext == ".json":
        track = _load_json(path)
    elif ext == ".npz":
        track = _load_npz(path)
    else:
        raise UserError(f"{path}: unknown track format '{ext}': use .csv, .json or .npz")
    if fps is not None and abs(track.fps - fps) > 1e-6:
        try:
            track = track.resample(fps)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
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


def _load_csv(path: Path, fps: float | None, rate_if_unknown: float | None = None) -> Track:
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
        fps = fps or rate_if_unknown
        if fps is None and len(body) >= 2:
            raise UserError(f"{path}: no 'time' column, so the frame rate is unknown; pass --fps "
                            "(the rate of its rows)")
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
    names = _name_list(path, "names", doc.get("names", list(ARKIT_NAMES)))
    pose_names = _name_list(path, "pose_names", doc.get("pose_names", list(POSE_NAMES)))
    return _from_arrays(path, names, doc["values"], pose_names, doc.get("pose"), doc["fps"])


def _name_list(path: Path, key: str, names) -> list[str]:
    """``names`` checked to be a list of column names (strings), as a track file must give."""
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise UserError(f"{path}: '{key}' must be a list of column names (strings), got "
                        f"{json.dumps(names)[:60]}")
    return list(names)


def _load_npz(path: Path) -> Track:
    import zipfile

    if not zipfile.is_zipfile(path):  # e.g. a .npy renamed: np.load would return a bare array
        raise UserError(f"{path}: not an NPZ track (not a zip of arrays 'values', 'fps', "
                        "'names', 'pose'; a renamed .npy?); write it with Track.save")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: not an NPZ track ({e})") from None
    if "values" not in data or "fps" not in data:
        raise UserError(f"{path}: an NPZ track needs arrays 'values', 'fps', 'names' and 'pose'")
    names = data.get("names", np.array(ARKIT_NAMES))
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise UserError(f"{path}: 'names' must be a 1-D array of column names (strings), got "
                        f"{names.dtype} of shape {names.shape}")
    names = [str(n) for n in names]
    return _from_arrays(path, names, data["values"], POSE_NAMES, data.get("pose"),
                        data["fps"])


def _from_arrays(path: Path, names, values, pose_names, pose, fps) -> Track:
    """Shared tail of the JSON and NPZ readers."""
    try:
        values = np.asarray(values, dtype=np.float64)
        pose = None if pose is None else np.asarray(pose, dtype=np.float64)
        fps = float(np.asarray(fps, dtype=np.float64).reshape(()))
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


def driving_track(track: Track) -> Track:
    """A track read from a driving video, made to drive an avatar: head rotations relative to the
    clip's median pose and the head centre at the default position (0, 0, 0.6) m. The video's
    own framing (its camera angle, MediaPipe's depth estimate) is not the avatar's; its motion is.
    """
    pose = np.array(track.pose, dtype=np.float32, copy=True)
    pose[:, :3] -= np.median(pose[:, :3], axis=0)
    pose[:, 3:] = camera.default_head_pose()[3:]
    return Track(values=track.values, pose=pose, fps=track.fps, names=track.names)


if __name__ == "__main__":  # the CLI lives in mpitalk.controls_cli; this keeps the old command
    from mpitalk.controls_cli import main

    raise SystemExit(main())
