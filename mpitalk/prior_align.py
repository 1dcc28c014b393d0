"""The rig's prior flow moved onto the photo's own face (issue 20, warp and paint).

``rig.render_prior_flow`` says where each point of the *rig's* face goes between the photo's
expression and the frame's, in the photo's camera. The rig is one generic head posed at the
photo's head pose, so its features are not where the photo's are: on ``data/identity.png`` its
eyes sit 2.6 px (of 128) below hers, and a blink's flow, which pulls the rig's lid skin down
over the rig's eye, copies her iris and lower lid instead of her lid: the warped eye opened
wider as the track closed it (MediaPipe's blink reading fell from 0.03 to 0.00).

The fix is a 2-D correspondence between the two faces in the photo's camera, from MediaPipe's
478 landmarks read on the photo and on the rig drawn at the photo's expression and pose with a
synthetic skin texture (``synth.identity``): a smoothing thin-plate spline each way,
``to_rig`` (photo pixel -> the same face point in the rig's image) and ``to_photo`` (the
inverse). The aligned backward flow at a photo pixel q is then, with ``r = q + to_rig(q)`` and
the rig's flow ``f`` (bilinear at r, over its valid pixels only)::

    flow(q) = f(r) + to_photo(r + f(r)) - to_photo(r)

so it is exactly zero wherever the rig does not move, and a point of the photo's face is sent
to where the rig sends the matching point of its own face, scaled by the local size ratio of
the two faces. This holds for the MPI in the photo's camera (reference space), where both
faces are at the photo's pose; a frame's camera (target space) keeps the rig's prior as it is.
"""

from __future__ import annotations

import functools

import numpy as np

ALIGN_SIZE = 256  # px: the textured rig render MediaPipe reads (128 px finds the rig less often)
ALIGN_TEXTURE = (0, 1)  # the synthetic identity (seed, index) whose albedo skins the rig
ALIGN_SMOOTHING = 2.0  # thin-plate smoothing: landmarks jitter ~0.8 px between skins
BACKDROP = 0.5  # grey behind the rig render


@functools.lru_cache(maxsize=1)
def _rig_texture() -> np.ndarray:
    from mpitalk.synth import identity

    return identity.make_identity(*ALIGN_TEXTURE).albedo


def rig_landmarks(values: np.ndarray, pose: np.ndarray, K: np.ndarray, size: int
                  ) -> np.ndarray | None:
    """(478,2) MediaPipe's landmarks on the rig drawn at blendshapes ``values`` (52,) and head
    pose ``pose`` (6,) in the camera ``K`` of a ``size`` px image, in that image's pixels
    (centres at +0.5); None when MediaPipe finds no face there."""
    from mpitalk import face, rig

    scale = ALIGN_SIZE / size
    K_big = np.asarray(K, np.float64).copy()
    K_big[:2] *= scale
    im = rig.render_textured(values, pose, K_big, ALIGN_SIZE, _rig_texture())
    rgb = im[..., :3] * im[..., 3:] + BACKDROP * (1.0 - im[..., 3:])
    faces = face.detect_faces(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), max_faces=1)
    return faces[0].landmarks_px / scale if faces else None


def fit(photo_px: np.ndarray, rig_px: np.ndarray, size: int,
        smoothing: float = ALIGN_SMOOTHING) -> np.ndarray:
    """(2,S,S,2) float32 px, S = ``size``: ``[0]`` = ``to_rig`` at each pixel centre of the photo
    (add it to reach the same face point in the rig's image), ``[1]`` = ``to_photo`` at each
    pixel centre of the rig's image, from matching points ``photo_px`` and ``rig_px`` (N,2)
    (px of the same S-px camera). Smoothing thin-plate splines with an affine part, so far from
    the face the maps continue the face's shift and scale."""
    from scipy.interpolate import RBFInterpolator

    from mpitalk.rig import pixel_centres

    photo_px, rig_px = np.asarray(photo_px, np.float64), np.asarray(rig_px, np.float64)
    grid = pixel_centres(int(size)).reshape(-1, 2).astype(np.float64)
    out = []
    for src, dst in ((photo_px, rig_px), (rig_px, photo_px)):
        tps = RBFInterpolator(src, dst - src, kernel="thin_plate_spline", smoothing=smoothing)
        out.append(tps(grid).reshape(size, size, 2))
    return np.stack(out).astype(np.float32)


def photo_alignment(photo_px: np.ndarray, values: np.ndarray, pose: np.ndarray, K: np.ndarray,
                    size: int) -> np.ndarray | None:
    """:func:`fit` of a photo's MediaPipe landmarks ``photo_px`` (478,2) (px of its ``size`` px
    image) against the rig's (:func:`rig_landmarks`) at the photo's blendshapes ``values`` and
    head pose ``pose`` in the camera ``K``; None when MediaPipe cannot read the rig's render.
    What generation fits for a photo and training for a clip's identity image."""
    rig_px = rig_landmarks(values, pose, K, size)
    return None if rig_px is None else fit(photo_px, rig_px, size)


def _bilinear(field: np.ndarray, xy: np.ndarray, valid: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """``field`` (S,S,C) at continuous pixel positions ``xy`` (...,2) (centres at +0.5), and
    where it is defined. ``valid`` (S,S): from those pixels only (the bilinear weights
    renormalised over them; defined where they hold more than half the weight); None: every
    pixel, clamped at the edges (defined everywhere)."""
    S = field.shape[0]
    x, y = xy[..., 0] - 0.5, xy[..., 1] - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    acc = np.zeros(xy.shape[:-1] + field.shape[-1:], np.float64)
    weight = np.zeros(xy.shape[:-1], np.float64)
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            w = (1 - np.abs(x - xi)) * (1 - np.abs(y - yi))
            xc, yc = np.clip(xi, 0, S - 1), np.clip(yi, 0, S - 1)
            if valid is not None:
                inside = (xi >= 0) & (xi < S) & (yi >= 0) & (yi < S)
                w = np.where(inside & valid[yc, xc], w, 0.0)
            acc += w[..., None] * field[yc, xc]
            weight += w
    ok = weight > 0.5
    return np.where(ok[..., None], acc / np.maximum(weight, 1e-9)[..., None], 0.0), ok


def align_flow(flow_px: np.ndarray, valid: np.ndarray, alignment: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The rig's backward flow ``flow_px`` (S,S,2) px with its ``valid`` (S,S) moved onto the
    photo's face by ``alignment`` (:func:`fit`): ``(flow (S,S,2) float32 px, valid (S,S)
    bool)`` at the photo's pixels (module docstring). Batched: (B,S,S,2), (B,S,S)."""
    from mpitalk.rig import pixel_centres

    flow_px, valid = np.asarray(flow_px, np.float32), np.asarray(valid, bool)
    one = flow_px.ndim == 3
    if one:
        flow_px, valid = flow_px[None], valid[None]
    S = flow_px.shape[1]
    to_rig, to_photo = np.asarray(alignment, np.float64)
    r = pixel_centres(S).astype(np.float64) + to_rig  # the same for every frame
    base, _ = _bilinear(to_photo, r)
    flows, oks = [], []
    for f_rig, v in zip(flow_px, valid, strict=True):
        f, ok = _bilinear(f_rig.astype(np.float64), r, v)
        moved, _ = _bilinear(to_photo, r + f)
        flows.append(np.where(ok[..., None], f + moved - base, 0.0).astype(np.float32))
        oks.append(ok)
    flows, oks = np.stack(flows), np.stack(oks)
    return (flows[0], oks[0]) if one else (flows, oks)


def prior_flow(identity_values: np.ndarray, identity_pose: np.ndarray, values: np.ndarray,
               target_pose: np.ndarray, K: np.ndarray, size: int,
               alignment: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``rig.render_prior_flow`` in the factored MPI's unit (crop sides), moved onto the
    photo's face by ``alignment`` (:func:`fit`) when given: ``(flow float32, valid bool)``,
    one frame or batched as ``rig.render_prior_flow`` takes them. What generation
    (``generate.prior_conditions``) and training (``train.prior_flow_of``) give the model."""
    from mpitalk import rig

    flow, valid = rig.render_prior_flow(identity_values, identity_pose, values, target_pose, K,
                                        size)
    if alignment is not None:
        flow, valid = align_flow(flow, valid, alignment)
    return (flow / size).astype(np.float32), valid
