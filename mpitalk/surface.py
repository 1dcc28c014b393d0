"""The MPI re-laid as a surface: one opaque layer per pixel at the depth the model puts it.

The model spreads a pixel's opacity over several planes (a soft MPI: the plane depths it is not
sure of each hold a share). Seen from the camera it was made in, that is the photo; seen from
anywhere else each share shifts by its own plane's parallax, and the pixel is smeared over all
of them: a head turned 10-15 degrees from the photo is a blur of ghosted copies (README, "The
surface MPI"). So each frame's planes are re-laid before they are stored:

1. **Where.** Each pixel's depth is the **median** of its compositing weights: the continuous
   plane index where the weight accumulated from the front reaches one half (plane ``j``'s
   weight spread evenly over ``[j - 1/2, j + 1/2]``). The median, not the mean, so a pixel
   that is half hair and half room sits on one of them rather than floating in between. The
   index is continuous (interpolated within the plane that crosses one half), so neighbouring
   pixels do not step from plane to plane. It can be smoothed by a Gaussian of ``sigma_px``
   texels; that blurs the head's outline into the room, and the default is none.
2. **What.** Every plane gets the colour the whole MPI shows at that pixel from its own camera
   (dense: the composite; factored: one blend for all planes, the weighted mean of the planes'
   blends, with the colour and the flow unchanged).
3. **Alpha.** A pixel at continuous index ``p`` is opaque on every plane from ``p`` back to the
   far plane and ``p - floor(p)`` on the plane in front: a surface between two planes (their
   mix moves as a plane at depth ``p`` would, to first order), extruded backwards so that a
   turned view sees the pixel's own colour stretched where its neighbour moved away, not a
   crack through to the room.

Seen from the camera the MPI was made in, the result shows exactly what the model made (every
plane of a pixel has one colour and the back plane is opaque), for any ``p``; for a factored MPI
whose flow is shared by all planes (``flow_groups`` 1, the shipped model) at the fields' own
resolution with the photo at any. At display resolution both are composited from fields
interpolated between texels (alpha and blend per plane, or the surface's), so they agree where
the fields are smooth. Away from that camera, a pixel moves as one point instead of as several.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mpitalk.choices import GEOMETRIES  # noqa: F401  (re-exported: how generation stores planes)

SIGMA_PX = 0.0  # Gaussian smoothing of the median-depth map, texels of 128-px fields (none:
# 1 and 2 measured worse on both validation splits, README "The surface MPI")


def over_weights(alpha: np.ndarray) -> np.ndarray:
    """Compositing weights (D,...) of alphas (D,...) ordered back to front, numpy in float64:
    ``w_i = a_i prod_{j>i} (1 - a_j)`` (``mpi.over_weights`` is JAX's, in float32; the median
    needs the host's precision to be the same on every machine)."""
    a = np.asarray(alpha, np.float64)
    in_front = np.cumprod((1.0 - a)[::-1], axis=0)[::-1]  # prod_{j>=i}(1 - a_j)
    return a * np.concatenate([in_front[1:], np.ones_like(a[:1])], axis=0)


def median_plane(alpha: np.ndarray) -> np.ndarray:
    """(H,W) continuous plane index (0 = the far plane, D - 1 the nearest) where the compositing
    weight of ``alpha`` (D,H,W, back to front) accumulated from the front reaches 1/2, plane
    ``j``'s weight spread over ``[j - 1/2, j + 1/2]``; clamped to [0, D - 1]."""
    return _median_of_weights(over_weights(alpha))


def _median_of_weights(weights: np.ndarray) -> np.ndarray:
    """:func:`median_plane` of the compositing weights (D,H,W) back to front."""
    w = weights[::-1]  # front to back
    D = w.shape[0]
    cum = np.cumsum(w, axis=0)
    k = np.minimum(np.sum(cum < 0.5, axis=0), D - 1)  # the front-to-back plane reaching 1/2
    before = np.where(k > 0, np.take_along_axis(cum, np.maximum(k - 1, 0)[None], 0)[0], 0.0)
    wk = np.take_along_axis(w, k[None], 0)[0]
    into = np.clip((0.5 - before) / np.maximum(wk, 1e-12), 0.0, 1.0)  # fraction into plane k
    return np.clip((D - 1 - k) + 0.5 - into, 0.0, D - 1.0)


def surface_alpha(alpha: np.ndarray, sigma_px: float = SIGMA_PX) -> np.ndarray:
    """The re-laid alphas (D,H,W) float32 of ``alpha`` (D,H,W, back to front): opaque from the
    smoothed median plane ``p`` back to the far plane, ``p - floor(p)`` on the plane in front
    of it, transparent in front of that. ``sigma_px`` is in texels of an image 128 px wide and
    scales with the fields' width."""
    return _alpha_at(median_plane(alpha), alpha.shape[0], sigma_px)


def _alpha_at(p: np.ndarray, num_planes: int, sigma_px: float) -> np.ndarray:
    """The alphas (D,H,W) float32 of a surface at plane index ``p`` (H,W), smoothed first by
    ``sigma_px`` (:func:`surface_alpha`)."""
    sigma = float(sigma_px) * p.shape[-1] / 128.0
    if sigma > 0:
        p = ndimage.gaussian_filter(p, sigma, mode="nearest")
    index = np.arange(num_planes, dtype=np.float64)[:, None, None]
    return np.clip(p[None] - index + 1.0, 0.0, 1.0).astype(np.float32)


def surface_rgba(rgba: np.ndarray, sigma_px: float = SIGMA_PX) -> np.ndarray:
    """A dense MPI (D,H,W,4) re-laid as a surface: every plane the composite colour, alphas
    from :func:`surface_alpha`."""
    rgba = np.asarray(rgba, np.float32)
    w = over_weights(rgba[..., 3])
    colour = np.sum(w[..., None] * rgba[..., :3], axis=0) / np.maximum(np.sum(w, 0), 1e-12)[
        ..., None]
    out = np.empty_like(rgba)
    out[..., :3] = colour.astype(np.float32)
    out[..., 3] = _alpha_at(_median_of_weights(w), rgba.shape[0], sigma_px)
    return out


def surface_fields(fields: dict[str, np.ndarray], plane_groups: np.ndarray | None = None,
                   sigma_px: float = SIGMA_PX) -> dict[str, np.ndarray]:
    """A factored MPI's fields (``mpi.materialize``) re-laid as a surface: ``alpha`` from
    :func:`surface_alpha`, one ``blend`` for all planes (the compositing-weighted mean of the
    planes'), ``color`` unchanged. With one flow for all planes (G = 1) the flow is unchanged
    and the MPI seen from its own camera is exactly the input's; with G > 1 every group gets
    the blend-weighted mean of the groups' flows at each pixel (``plane_groups`` (D,): plane
    i's group, default all 0), which the planes' single blend needs."""
    alpha = np.asarray(fields["alpha"], np.float32)
    blend = np.asarray(fields["blend"], np.float32)
    flow = np.asarray(fields["flow"], np.float32)
    w = over_weights(alpha)
    total = np.maximum(np.sum(w, 0), 1e-12)
    wb = w * blend
    mean_blend = np.sum(wb, 0) / total
    if flow.shape[0] > 1:
        groups = (np.zeros(alpha.shape[0], np.int64) if plane_groups is None
                  else np.asarray(plane_groups, np.int64))
        flow_of_plane = flow[groups]  # (D,H,W,2)
        mean_flow = (np.sum(wb[..., None] * flow_of_plane, 0) /
                     np.maximum(np.sum(wb, 0), 1e-12)[..., None])
        flow = np.broadcast_to(mean_flow, flow.shape)
    return {**fields,
            "alpha": _alpha_at(_median_of_weights(w), alpha.shape[0], sigma_px),
            "blend": np.broadcast_to(mean_blend, blend.shape).astype(np.float32),
            "flow": np.ascontiguousarray(flow, np.float32)}


# --- the person and the room keep their sides from frame to frame -------------------------
#
# In the photo's camera the person's outline is the photo's in every frame; only the face
# changes with the expression. Yet the model sometimes puts a patch of the person on the room's
# planes for one expression (the default job's frame 50: hair right of the face at median plane
# 0-3 where the other frames have 14-20), and over the world backdrop the room shows through
# it, a white notch in the hair. Generation therefore holds, off the face, which side of the
# room split (``backdrop.SPLIT_M``) each pixel lies on to an anchor frame's
# (``generate``: the first frame made with an earlier frame to condition on; the very first
# frames are made without one and are the least consistent: holding to frame 0 instead cost
# 0.0027 of validation LPIPS on cap13).


def split_plane(depths: np.ndarray, split_m: float) -> float:
    """The continuous plane index (``median_plane``'s scale: 0 the farthest) of depth
    ``split_m`` between ``depths`` (D,) back to front (far to near)."""
    depths = np.asarray(depths, np.float64)
    return float(np.interp(split_m, depths[::-1], np.arange(len(depths), dtype=np.float64)[::-1]))


def nearer_than(alpha: np.ndarray, split: float) -> np.ndarray:
    """(H,W) bool: where the median plane of ``alpha`` (D,H,W) lies nearer than ``split``
    (:func:`split_plane`): the person's side of the room split."""
    return median_plane(alpha) > split


def hold_sides(alpha: np.ndarray, anchor: np.ndarray, anchor_near: np.ndarray,
               free: np.ndarray, split: float) -> np.ndarray:
    """A frame's plane alphas ``alpha`` (D,H,W) with every pixel outside ``free`` (H,W bool)
    whose median plane lies on the other side of ``split`` (:func:`split_plane`) than in the
    ``anchor`` frame's alphas (D,H,W) given the anchor's planes there; the rest unchanged.
    ``anchor_near``: :func:`nearer_than` of the anchor (computed once for a clip's frames)."""
    alpha, anchor = np.asarray(alpha), np.asarray(anchor)
    flipped = nearer_than(alpha, split) != np.asarray(anchor_near, bool)
    return np.where((flipped & ~np.asarray(free, bool))[None], anchor, alpha).astype(alpha.dtype)
