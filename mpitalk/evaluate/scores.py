"""What is measured, and the building blocks both evaluation modes score frames with.

The names of the views, image metrics and methods; rendering an MPI sequence into several
views; and the per-sequence scores that read faces from frames: expression (MediaPipe
blendshapes and head pose against a reference), identity (dlib distance to the identity image)
and flicker. Every score is a flat ``{"group.metric": value}`` dict whose keys are those of
metrics.json; NaN means nothing to measure (no face found, no held frame pair).
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Sequence

import numpy as np

from mpitalk import UserError, metrics

VIEWS = ("target", "yaw_plus10", "yaw_minus10", "left_eye", "right_eye")
SIDE_VIEWS = VIEWS[1:]
IMAGE_METRICS = ("psnr", "ssim", "lpips")
METHODS = ("model", "flat", "ground_truth")
BLINK = ("eyeBlinkLeft", "eyeBlinkRight")
_NO_FACE = re.compile(r"no face in (\d+) of (\d+) frame")


# --- rendering ------------------------------------------------------------------------------


@functools.cache
def _render_fn():
    """jit(mpi.render_many) (rgba, depths, K, poses (V,4,4)) -> RenderOut, built once."""
    import jax

    from mpitalk import mpi

    return jax.jit(mpi.render_many)


def render_views(rgba: np.ndarray, depths: np.ndarray, K: np.ndarray, poses: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """An MPI (D,H,W,4) rendered to poses (V,4,4): (rgb (V,H,W,3) over black, depth (V,H,W))."""
    out = _render_fn()(np.asarray(rgba, np.float32), np.asarray(depths, np.float32),
                       np.asarray(K, np.float32), np.asarray(poses, np.float32))
    return np.clip(np.asarray(out.rgb), 0.0, 1.0), np.asarray(out.depth)


def render_frames(mpis: Sequence[np.ndarray], depths: np.ndarray, K: np.ndarray,
                  poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame t's MPI ``mpis[t]`` (D,H,W,4) rendered to its poses ``poses[t]`` (V,4,4), for all
    T frames: (rgb (T,V,H,W,3), depth (T,V,H,W))."""
    out = [render_views(mpis[t], depths, K, poses[t]) for t in range(len(poses))]
    return np.stack([rgb for rgb, _ in out]), np.stack([depth for _, depth in out])


# --- scores read from frames ----------------------------------------------------------------


def extract(frames: np.ndarray, fps: float):
    """(Track or None, MediaPipe face-found fraction) for frames (T,H,W,3) uint8."""
    from mpitalk import face

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            track = face.extract_track(np.asarray(frames, np.uint8), fps=fps)
        except UserError:
            return None, 0.0
    found = 1.0
    for w in caught:
        m = _NO_FACE.search(str(w.message))
        if m:
            found = 1.0 - int(m.group(1)) / int(m.group(2))
    return track, found


def expression_scores(track, reference_values: np.ndarray | None,
                      reference_pose: np.ndarray | None, suffix: str) -> dict[str, float]:
    """MAE of the 52 blendshapes, head-rotation error (deg) and jawOpen/eyeBlink correlation of
    an extracted ``track`` against reference values (T,52) and poses (T,6)."""
    from mpitalk.controls import ARKIT_NAMES

    keys = ("mae", "pose_error_deg", "jaw_open_corr", "eye_blink_corr")
    if track is None or reference_values is None:
        return {f"expression.{k}{suffix}": math.nan for k in keys}
    v, ref = track.values.astype(np.float64), np.asarray(reference_values, np.float64)
    jaw = ARKIT_NAMES.index("jawOpen")
    blink = [ARKIT_NAMES.index(n) for n in BLINK]
    out = {"mae": float(np.abs(v - ref).mean()),
           "pose_error_deg": math.nan,
           "jaw_open_corr": metrics.pearson(v[:, jaw], ref[:, jaw]),
           "eye_blink_corr": metrics.pearson(v[:, blink].mean(1), ref[:, blink].mean(1))}
    if reference_pose is not None:
        d = np.abs(track.pose[:, :3].astype(np.float64) - np.asarray(reference_pose)[:, :3])
        out["pose_error_deg"] = float(np.degrees(np.minimum(d, 2 * np.pi - d)).mean())
    return {f"expression.{k}{suffix}": val for k, val in out.items()}


def identity_scores(reference: np.ndarray | None, frames: np.ndarray) -> dict[str, float]:
    """Mean dlib distance of ``frames`` (T,H,W,3) to the ``reference`` descriptor (128,) (frames
    without a face left out) and the dlib face-found fraction."""
    d, found = metrics.identity_distances(reference, frames)
    return {"identity.distance": metrics.nanmean(d), "identity.face_found": found}


def flicker_scores(frames: np.ndarray, mask: np.ndarray | None, held: np.ndarray
                   ) -> dict[str, float]:
    """Flicker of frames (T,H,W,3) inside ``mask`` (T,H,W) (None: everywhere) over all
    consecutive pairs, and over the ``held`` pairs (T-1,) bool only (NaN when none is held)."""
    return {"temporal.flicker": metrics.flicker(frames, mask),
            "temporal.flicker_held": (metrics.flicker(frames, mask, held) if held.any()
                                      else math.nan)}


# --- real footage: expression agreement, face boxes, sharpness -------------------------------

MIN_DRIVER_STD = 0.08  # a blendshape counts in expression agreement when its driver moves this much
_STILL_STD = 0.01  # metrics.pearson's floor: a response under it does not move at all


def expression_agreement(driver: np.ndarray, response: np.ndarray,
                         min_driver_std: float = MIN_DRIVER_STD) -> tuple[float, float, int]:
    """How well a response track follows its driver, both (T,52) blendshapes over the same
    frames: ``(correlation, amplitude, channels)``, the means over the blendshapes whose driver
    standard deviation is at least ``min_driver_std`` (``channels`` of them) of each one's
    Pearson correlation and of its standard-deviation ratio response / driver.

    A response channel that does not move (std under 0.01, where ``metrics.pearson`` gives NaN)
    follows nothing: its correlation counts as 0, not as missing, so a still face (the identity
    image repeated) scores 0 rather than dropping out of the mean. Frames with NaN in either
    (no face read there) are left out. NaN when no channel moves."""
    d = np.asarray(driver, np.float64)
    r = np.asarray(response, np.float64)
    if d.shape != r.shape or d.ndim != 2:
        raise ValueError(f"driver and response must be the same (T,C), got {d.shape}, {r.shape}")
    keep = np.isfinite(d).all(1) & np.isfinite(r).all(1)  # frames where both read a face
    d, r = d[keep], r[keep]
    channels = np.flatnonzero(d.std(0) >= min_driver_std) if len(d) >= 2 else np.array([], int)
    if channels.size == 0:
        return math.nan, math.nan, 0
    corr = [0.0 if r[:, c].std() < _STILL_STD else metrics.pearson(d[:, c], r[:, c], 0.0)
            for c in channels]
    amplitude = [r[:, c].std() / d[:, c].std() for c in channels]
    return float(np.mean(corr)), float(np.mean(amplitude)), int(channels.size)


def read_faces(frames: np.ndarray) -> list:
    """MediaPipe's largest face (``face.Face``) or None in each frame (T,H,W,3), every frame
    read on its own (IMAGE mode, ``face.detect_faces``), each distinct frame once.

    Not VIDEO mode (``extract``): its tracker starts from a detection and settles over the
    next frames, so even one image repeated reads as moving (on data/identity.png at 128 px a
    mouth channel drifts by 0.05 over 12 frames), which on a one-second clip is noise the size
    of the expressions measured. Read frame by frame, a still image reads as still."""
    from mpitalk import face

    seen: dict[bytes, object] = {}
    out = []
    for f in metrics.to_uint8(frames):
        key = f.tobytes()
        if key not in seen:
            found = face.detect_faces(f, max_faces=1)
            seen[key] = found[0] if found else None
        out.append(seen[key])
    return out


def blendshapes(faces: Sequence) -> tuple[np.ndarray, float]:
    """((T,52) blendshapes of ``read_faces``'s faces, NaN rows where none; face-found rate)."""
    rows = [np.full(52, np.nan) if f is None else np.asarray(f.blendshapes, np.float64)
            for f in faces]
    found = float(np.mean([f is not None for f in faces])) if faces else math.nan
    return (np.stack(rows) if rows else np.zeros((0, 52))), found


def face_box(face_or_image, size: tuple[int, int] | None = None
             ) -> tuple[int, int, int, int] | None:
    """The square (x0, y0, x1, y1) integer pixel box around MediaPipe's landmarks of a face
    (``face.Face``, in an image of ``size`` (H, W)) or of the largest face in an image
    (H,W,3) (side = the landmark box's longer side, clipped to the image); None: no face."""
    if isinstance(face_or_image, np.ndarray):
        size = face_or_image.shape[:2]
        face_or_image = read_faces(face_or_image[None])[0]
    if face_or_image is None:
        return None
    x0, y0, x1, y1 = face_or_image.box
    h, w = size
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    box = (int(math.floor(cx - side / 2)), int(math.floor(cy - side / 2)),
           int(math.ceil(cx + side / 2)), int(math.ceil(cy + side / 2)))
    box = (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))
    return box if box[2] - box[0] >= 2 and box[3] - box[1] >= 2 else None


def crop_resized(image: np.ndarray, box: tuple[int, int, int, int], size: int = 128
                 ) -> np.ndarray:
    """The ``box`` (x0, y0, x1, y1) of ``image`` (H,W,3) resized to (size,size,3) float [0,1]
    (bicubic)."""
    from PIL import Image

    x0, y0, x1, y1 = box
    crop = Image.fromarray(metrics.to_uint8(image)[y0:y1, x0:x1])
    return np.asarray(crop.resize((size, size), Image.BICUBIC), np.float32) / 255.0


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image (H,W,3) float [0,1], over the
    pixels whose neighbours are all inside the image (a standard focus / blur measure)."""
    g = metrics.to_float(image).astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def sharpness(frames: np.ndarray, photo: np.ndarray, box: tuple[int, int, int, int],
              size: int = 128) -> float:
    """Mean over frames (T,H,W,3) of the Laplacian variance of the face ``box`` resized to
    size x size, as a fraction of the same measure on ``photo`` (H,W,3) (1 = as sharp as the
    photo, lower = blurrier). NaN when the photo's box is flat."""
    ref = laplacian_variance(crop_resized(photo, box, size))
    if ref <= 0:
        return math.nan
    return float(np.mean([laplacian_variance(crop_resized(f, box, size)) for f in frames]) / ref)
