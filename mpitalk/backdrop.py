"""The world backdrop: what lies behind the head stays where it is while the head moves.

An MPI made in the photo's camera is shown at each frame's head pose (``frame_from_mpi``, the
head's motion from the photo). Moved whole, its far planes -- the room behind the person --
swing with the head, most of all the farthest (a 10 degree turn about a head at 0.6 m moves a
backdrop at 1.1 m by 9 cm). In a real video the room stays still. So the sequence gets one
**backdrop** for all its frames: the photo with the person taken out and the hole filled
(:func:`estimate`), an opaque plane at the MPI's far depth, fixed in the frame's camera (the
world). Each frame then shows only its **head planes** (nearer than ``split_m``; the person:
face, hair, neck and shoulders) at the head's pose, composited over that backdrop
(:func:`mpitalk.mpi.over`); its back planes are dropped (:func:`without_back`).

The hole is where the head planes cover the photo in the photo's own camera (the MPI seen from
where it was made: no warp), grown a little, and filled by Navier-Stokes inpainting
(Bertalmio, Bertozzi and Sapiro 2001, OpenCV's ``cv2.inpaint`` with ``INPAINT_NS``): the
room's edges and stripes are carried into the hole along their own direction, where a smooth
fill (pull-push, what this module did before) left a grey blot. A head that moves far from the
photo's place uncovers much of it; on the real validation clips whole-frame LPIPS fell from
0.0383 to 0.0379, on the test clips from 0.1753 to 0.1721 (``docs/eval/footage/README.md``,
"The room behind the person").

A synthetic dataset's backdrop moves with its head (docs/dataset.md: one rigid transform per
image), so its evaluation renders frames whole, as its ground truth was made.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator

import numpy as np

SPLIT_M = 0.85  # planes at or beyond this depth (metres, photo camera) are the room, not the head
HEAD_COVER = 0.3  # head-plane coverage above which the photo shows the person, not the room
GROW = 1.0 / 64  # the hole is grown by this fraction of the image side (2 px at 128)
FILLS = ("navier-stokes", "pull-push")  # how the hole is filled (estimate's fill): the first
# carries the room's edges in (the default); the second, smooth, is what was done before


def back_planes(depths: np.ndarray, split_m: float = SPLIT_M) -> int:
    """How many planes (from index 0, the farthest) lie at or beyond ``split_m``: at least the
    far plane, and never all of them."""
    depths = np.asarray(depths, np.float64)
    return int(np.clip(np.sum(depths >= split_m), 1, len(depths) - 1))


def without_back(alpha: np.ndarray, k: int) -> np.ndarray:
    """Plane alphas (D,...) with the first ``k`` (the back planes) transparent."""
    out = np.array(alpha, copy=True)
    out[:k] = 0
    return out


def head_cover(alpha: np.ndarray, k: int) -> np.ndarray:
    """(H,W) opacity of the head planes ``alpha[k:]`` (D,H,W) seen from the MPI's own camera:
    ``1 - prod_i (1 - a_i)`` (the over operator's accumulated alpha, no warp)."""
    a = np.clip(np.asarray(alpha, np.float64)[k:], 0.0, 1.0)
    return (1.0 - np.prod(1.0 - a, axis=0)).astype(np.float32)


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of ``mask`` (H,W) by a (2r+1)^2 square."""
    out = mask.copy()
    H, W = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            src = mask[max(0, -dy):H - max(0, dy), max(0, -dx):W - max(0, dx)]
            out[max(0, dy):H - max(0, -dy), max(0, dx):W - max(0, -dx)] |= src
    return out


def fill_hole(image: np.ndarray, known: np.ndarray, radius: int = 5) -> np.ndarray:
    """``image`` (H,W,3) float in [0,1] with its unknown pixels (``known`` False) filled by
    Navier-Stokes inpainting (``cv2.inpaint``, ``INPAINT_NS``, neighbourhood ``radius`` px),
    which continues the known pixels' isophotes into the hole. Known pixels are returned
    unchanged; with nothing known, mid-grey."""
    import cv2

    img = np.asarray(image, np.float32)
    known = np.asarray(known, bool)
    if known.all():
        return img.copy()
    if not known.any():
        return np.full_like(img, 0.5)
    u8 = np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)
    filled = cv2.inpaint(np.ascontiguousarray(u8), (~known).astype(np.uint8) * 255, radius,
                         cv2.INPAINT_NS).astype(np.float32) / 255.0
    return np.where(known[..., None], img, filled)


def pull_push(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``image`` (H,W,C) with its unknown pixels (``known`` False) filled by pull-push: each
    coarser level is the 2x2 mean of the known pixels below it, and a pixel unknown on one level
    takes the bilinear value of the next coarser. Known pixels are returned unchanged."""
    img = np.asarray(image, np.float64)
    w = np.asarray(known, np.float64)
    if w.all() or not w.any():
        return img.astype(np.float32)
    H, W = w.shape
    if min(H, W) <= 1:
        return np.broadcast_to(
            (img * w[..., None]).sum((0, 1)) / w.sum(), img.shape).astype(np.float32)
    h2, w2 = (H + 1) // 2, (W + 1) // 2
    pad = ((0, 2 * h2 - H), (0, 2 * w2 - W))
    wp = np.pad(w, pad)
    ip = np.pad(img * w[..., None], pad + ((0, 0),))
    ws = wp.reshape(h2, 2, w2, 2).sum((1, 3))
    s = ip.reshape(h2, 2, w2, 2, -1).sum((1, 3))
    coarse = pull_push(s / np.maximum(ws, 1e-12)[..., None], ws > 0)
    # bilinear upsampling: fine pixel centre (i + 0.5) lies at coarse (i + 0.5) / 2 - 0.5
    def axis(n_fine: int, n_coarse: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.clip((np.arange(n_fine) + 0.5) / 2 - 0.5, 0, n_coarse - 1)
        i0 = np.floor(x).astype(int)
        i1 = np.minimum(i0 + 1, n_coarse - 1)
        return i0, i1, x - i0
    y0, y1, fy = axis(H, h2)
    x0, x1, fx = axis(W, w2)
    top = coarse[y0][:, x0] * (1 - fx)[None, :, None] + coarse[y0][:, x1] * fx[None, :, None]
    bot = coarse[y1][:, x0] * (1 - fx)[None, :, None] + coarse[y1][:, x1] * fx[None, :, None]
    up = top * (1 - fy)[:, None, None] + bot * fy[:, None, None]
    return np.where(known[..., None], img, up).astype(np.float32)


def hole_mask(cover: np.ndarray, threshold: float = HEAD_COVER, grow: float = GROW
              ) -> np.ndarray:
    """(S,S) bool: the backdrop's hole, where the head planes' coverage ``cover`` (S,S) in the
    photo's camera (:func:`head_cover`) is above ``threshold``, grown by ``grow`` of the side."""
    S = cover.shape[0]
    return _grow(np.asarray(cover) > threshold, max(1, int(round(grow * S))))


def estimate(photo: np.ndarray, cover: np.ndarray, threshold: float = HEAD_COVER,
             grow: float = GROW, keep_photo: np.ndarray | None = None,
             fill: str | Callable[[np.ndarray, np.ndarray], np.ndarray] = FILLS[0]
             ) -> np.ndarray:
    """The backdrop (P,P,3) float32: ``photo`` (P,P,3) in [0,1] (or uint8) outside the
    :func:`hole_mask` of the head planes' coverage ``cover`` (S,S); inside it the room filled
    at the coverage's resolution S and upsampled (bilinear) to P. ``fill``: :func:`fill_hole`
    for ``"navier-stokes"``, :func:`pull_push` for ``"pull-push"``, or any function
    ``(image (S,S,3), known (S,S) bool) -> filled image`` (``scripts/eval_backdrop_fill.py``
    compares others). ``keep_photo`` (S,S) bool: pixels that keep the photo whatever covers
    them (the neck cut's fade, ``body.neck_fade``)."""
    if isinstance(fill, str):
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS} or a function, not {fill!r}")
        fill = fill_hole if fill == "navier-stokes" else pull_push
    photo = np.asarray(photo)
    photo = photo.astype(np.float32) / 255.0 if photo.dtype == np.uint8 \
        else photo.astype(np.float32)
    P = photo.shape[0]
    S = cover.shape[0]
    hole = hole_mask(cover, threshold, grow)
    if keep_photo is not None:
        hole &= ~np.asarray(keep_photo, bool)
    filled = fill(_resize(photo, S), ~hole)
    if P == S:
        return np.where(hole[..., None], filled, photo)
    hole_p = _resize(hole.astype(np.float32)[..., None], P)[..., 0]  # soft edge at P
    return (hole_p[..., None] * _resize(filled, P) + (1 - hole_p[..., None]) * photo).astype(
        np.float32)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """(n,n,C) -> (size,size,C) float32: area mean when shrinking by an integer factor, else
    bilinear (pixel centres aligned)."""
    n = image.shape[0]
    if n == size:
        return np.asarray(image, np.float32)
    if n > size and n % size == 0:
        f = n // size
        return np.asarray(image, np.float32).reshape(size, f, size, f, -1).mean((1, 3))
    x = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    i0 = np.floor(x).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    f = (x - i0).astype(np.float32)
    img = np.asarray(image, np.float32)
    rows = img[i0] * (1 - f)[:, None, None] + img[i1] * f[:, None, None]
    return rows[:, i0] * (1 - f)[None, :, None] + rows[:, i1] * f[None, :, None]


def backdrop_mpi(backdrop: np.ndarray, far_m: float) -> tuple[np.ndarray, np.ndarray]:
    """The backdrop as a one-plane opaque MPI: (rgba (1,P,P,4), depths (1,))."""
    b = np.asarray(backdrop)
    b = b.astype(np.float32) / 255.0 if b.dtype == np.uint8 else b.astype(np.float32)
    rgba = np.concatenate([b, np.ones(b.shape[:2] + (1,), np.float32)], -1)[None]
    return rgba, np.array([far_m], np.float32)


def from_first_frame(frames: Iterable[tuple[dict, np.ndarray]], photo: np.ndarray,
                     depths: np.ndarray, split_m: float = SPLIT_M,
                     keep_photo: np.ndarray | None = None
                     ) -> tuple[np.ndarray, int, Iterator[tuple[dict, np.ndarray]]]:
    """For a stream of factored frames ``(fields, frame_from_mpi)`` (``generate_fields``):
    ``(backdrop (P,P,3) float32, back_planes, the same stream)``, the backdrop estimated from
    the first frame's head planes over ``photo`` (P,P,3). Only the first frame is taken early.
    ``keep_photo`` (S,S) bool: where the backdrop keeps the photo whatever covers it (the neck
    cut's fade and the body, ``body.cut_at_neck``)."""
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError("no frames to make a backdrop from") from None
    k = back_planes(depths, split_m)
    image = estimate(photo, head_cover(first[0]["alpha"], k), keep_photo=keep_photo)
    return image, k, itertools.chain([first], it)
