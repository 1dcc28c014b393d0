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
