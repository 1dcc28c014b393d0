"""The rig's prior flow carried past its valid region without folds (issue 20, warp and paint).

The rig's backward flow (``prior_align.prior_flow``) is defined on the face it covers and is
zero elsewhere. Where the face moves, that is a jump at the face's outline: when the jaw opens
the chin's pixels read the photo 20 px (of 512) higher while the neck under them reads it
where they are, so over the one 128-px texel between them the sampling point sweeps back over
the photo's chin and draws a squeezed, mirrored copy of it -- the stacked lines under the chin
of the default job's frame 50. A map ``x -> x + f(x)`` folds where its Jacobian
``det(I + df/dx)`` is not positive; the jump makes it hugely negative.

Warping reenactment models avoid it by predicting a smooth flow over the whole image; here the
prior is made smooth instead, at generation, without changing it where it is valid:

- **outside** the face the flow of the nearest face pixel is carried outwards with its length
  shrinking by ``slope`` crop sides per crop side of distance, then lightly smoothed: along the
  way out ``d|f|/dx >= -slope``, so with ``slope < 1`` the map's derivative there stays at
  least ``1 - slope``: it stretches the hair, neck and background next to the face (by at most
  ``1 / (1 - slope)``, 2x) and never folds them;
- **holes** (invalid pixels the valid face encloses, ``paint.holes``: the mouth's inside) keep
  their zero flow (``fill=False``, what generation uses: the mouth's inside as trained), or get
  the harmonic interpolation of the flow around them (``fill=True``: Laplace's equation with
  the valid pixels held, Jacobi iterations from the nearest valid value), which stretches the
  photo's lips and teeth apart into the open mouth -- tried, and a grimace on a real photo.

Unit: the factored MPI's, crop sides (as ``prior_align.prior_flow`` returns it).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mpitalk import paint

SLOPE = 0.5  # crop sides of flow length lost per crop side of distance from the face (< 1)
SMOOTH_TEXELS = 1.0  # sigma of the smoothing of the carried flow (texels of the S-px field)
HOLE_ITERATIONS = 400  # Jacobi sweeps of the holes' harmonic fill (a hole ~20 texels across)


def _nearest(field: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``field`` (S,S,C) at each pixel's nearest ``known`` pixel, and that distance (texels)."""
    dist, (iy, ix) = ndimage.distance_transform_edt(~known, return_indices=True)
    return field[iy, ix], dist


def fill_holes(flow: np.ndarray, valid: np.ndarray,
               iterations: int = HOLE_ITERATIONS) -> np.ndarray:
    """``flow`` (S,S,2) with its holes (``paint.holes``, not grown) filled by the harmonic
    interpolation of the valid flow around them; every other pixel unchanged."""
    flow = np.asarray(flow, np.float64)
    h = paint.holes(valid, grow=0)
    if not h.any():
        return flow.copy()
    out, _ = _nearest(flow, np.asarray(valid, bool))
    out = np.where(h[..., None], out, flow)
    ys, xs = np.nonzero(h)  # a hole pixel's 4 neighbours are inside the image (it is enclosed)
    for _ in range(iterations):
        out[ys, xs] = 0.25 * (out[ys - 1, xs] + out[ys + 1, xs] + out[ys, xs - 1]
                              + out[ys, xs + 1])
    return out


def extend(flow: np.ndarray, valid: np.ndarray, slope: float = SLOPE,
           smooth: float = SMOOTH_TEXELS, fill: bool = True) -> np.ndarray:
    """The prior ``flow`` (S,S,2) crop sides, valid on ``valid`` (S,S), defined everywhere
    without folds (module docstring): unchanged where valid, harmonic in the holes, carried
    outwards and shrinking by ``slope`` per unit distance outside. Batched: (B,S,S,2), (B,S,S).
    Float32."""
    if not 0.0 <= slope < 1.0:
        raise ValueError(f"slope must be in [0, 1), got {slope}")
    flow, valid = np.asarray(flow), np.asarray(valid) > 0.5
    if flow.ndim == 4:
        return np.stack([extend(f, v, slope, smooth, fill)
                         for f, v in zip(flow, valid, strict=True)])
    if not valid.any():
        return np.zeros(flow.shape, np.float32)
    S = flow.shape[0]
    filled = fill_holes(flow, valid) if fill else np.where(valid[..., None], flow, 0.0)
    known = valid | paint.holes(valid, grow=0)
    near, dist = _nearest(filled, known)
    length = np.linalg.norm(near, axis=-1)
    # |f| falls by slope * (distance in crop sides) and stops at zero
    scale = np.clip(1.0 - slope * (dist / S) / np.maximum(length, 1e-12), 0.0, 1.0)
    carried = near * scale[..., None]
    if smooth > 0:  # the nearest-pixel map is piecewise: smooth the seams between its pieces
        carried = ndimage.gaussian_filter(carried, (smooth, smooth, 0), mode="nearest")
    return np.where(known[..., None], filled, carried).astype(np.float32)


def fold_mask(flow: np.ndarray) -> np.ndarray:
    """(S,S) bool: where the backward map ``x -> x + flow(x)`` (crop sides, (S,S,2), x right,
    y down) folds: the determinant of its Jacobian, by central differences, is not positive."""
    f = np.asarray(flow, np.float64) * flow.shape[0]  # texels
    dfx_dy, dfx_dx = np.gradient(f[..., 0])
    dfy_dy, dfy_dx = np.gradient(f[..., 1])
    return (1.0 + dfx_dx) * (1.0 + dfy_dy) - dfx_dy * dfy_dx <= 0.0
