"""The body stays with the room: the head planes end at the neck.

With the world backdrop (:mod:`mpitalk.backdrop`) each frame's head planes -- everything nearer
than the room -- are shown at the head's pose. That moves the shoulders and the chest with the
head: a nod swings the whole torso, and a turn shears the collar against the still room. In a
real video filmed by a still camera the body hardly moves while the head turns and nods on
the neck. So, with ``--body world``, the head planes end at a **neck cut**: a plane of the
head frame a little below the chin, across which their opacity fades to zero; the body below
it is left to the backdrop, which is the photo wherever the head planes no longer cover it
(and where they fade: :func:`neck_fade`), fixed in the world.

Where. Each plane's texel centre is a point at the plane's depth in the photo's camera; taken
into the head frame (``inverse(camera.head_pose_matrix(pose))``, the pose the model is told for
the photo, y down) its height is ``y``. The photo's chin is MediaPipe's chin landmark, at the
depth the first frame puts it: ``y_chin``. A texel of a frame whose expression has moved the
rig's chin down by ``drop`` (its jaw opened further than the photo's) is kept with weight
``clip((y_chin + drop + CUT_M + FEATHER_M / 2 - y) / FEATHER_M, 0, 1)``: 1 above the cut, 0
below, a linear fade over ``FEATHER_M``. The chin follows the jaw, so an opening mouth does not
fade into the neck behind it.

The cut's place and fade were chosen on the real validation clips (``docs/eval/footage/
README.md``, "The body stays with the room"): the whole frame's self-reenactment LPIPS against
the cut's height. It is not the default: it helps where the body stays still (validation
LPIPS 0.0390 -> 0.0303) and costs where it moves -- a hand-held camera, a person who leans or
shifts between the photo and the frame (test 0.176 -> 0.189).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from mpitalk.choices import BODIES  # noqa: F401  (re-exported: the job's --body)

CUT_M = 0.01  # the neck cut's centre below the chin, head frame (metres)
FEATHER_M = 0.02  # the width of the fade across it (metres)


@functools.lru_cache(maxsize=1)
def _chin_rig() -> tuple[int, np.ndarray]:
    """The rig's chin vertex (the lowest point of the face's midline, in front) and its
    downward motion per unit of each blendshape (52,) (head frame, metres)."""
    from mpitalk import rig

    r = rig.load()
    v = r.neutral
    front_mid = (np.abs(v[:, 0]) < 0.01) & (v[:, 2] < 0)
    i = int(np.argmax(np.where(front_mid, v[:, 1], -np.inf)))
    return i, np.asarray(r.target_stack[:, i, 1], np.float64)


def chin_drop(values: np.ndarray, photo_values: np.ndarray) -> np.ndarray:
    """(...,) metres the rig's chin moves down (head frame) between blendshapes
    ``photo_values`` (52,) and ``values`` (...,52)."""
    _, per = _chin_rig()
    return (np.asarray(values, np.float64) - np.asarray(photo_values, np.float64)) @ per


def head_heights(depths: np.ndarray, K: np.ndarray, cam_from_head: np.ndarray,
                 size: int) -> np.ndarray:
    """(D,S,S) the head-frame height (y, down) of each plane's texel centre: plane ``i`` at
    depth ``depths[i]`` (camera z) in the camera of intrinsics ``K`` (S px), the head at
    ``cam_from_head`` (4,4)."""
    j, i = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    rays = np.stack([j, i, np.ones_like(j)], -1) @ np.linalg.inv(np.asarray(K, np.float64)).T
    head_from_cam = np.linalg.inv(np.asarray(cam_from_head, np.float64))
    points = rays[None] * np.asarray(depths, np.float64)[:, None, None, None]
    return points @ head_from_cam[1, :3] + head_from_cam[1, 3]


@dataclass(frozen=True)
class NeckCut:
    """Where a sequence's head planes end (see the module docstring): ``heights`` (D,S,S) of
    :func:`head_heights`, the photo's chin height ``chin_y`` and blendshapes ``photo_values``
    (52,)."""

    heights: np.ndarray
    chin_y: float
    photo_values: np.ndarray
    cut_m: float = CUT_M
    feather_m: float = FEATHER_M

    def keep(self, values: np.ndarray) -> np.ndarray:
        """(D,S,S) float32 in [0,1]: how much of each texel belongs to the head at a frame of
        blendshapes ``values`` (52,) (1 above the cut, 0 on the body)."""
        centre = self.chin_y + float(chin_drop(values, self.photo_values)) + self.cut_m
        return np.clip((centre + self.feather_m / 2 - self.heights) / self.feather_m,
                       0.0, 1.0).astype(np.float32)


def neck_cut(alpha: np.ndarray, depths: np.ndarray, K: np.ndarray,
             identity_info: dict[str, np.ndarray] | None, cut_m: float = CUT_M,
             feather_m: float = FEATHER_M) -> NeckCut | None:
    """The :class:`NeckCut` of a sequence whose first frame's alphas are ``alpha`` (D,S,S, back
    to front; the chin's depth is their median, ``surface.median_plane``), from what
    ``generate.identity_conditions`` read on the photo (its pose, blendshapes and
    ``chin_px``). None without that (no face found): the whole person then moves with the
    head."""
    from mpitalk import camera, surface

    if identity_info is None or "chin_px" not in identity_info:
        return None
    alpha = np.asarray(alpha)
    S = alpha.shape[-1]
    depths = np.asarray(depths, np.float64)
    expression = np.asarray(identity_info["identity_expression"], np.float64)
    cam_from_head = np.asarray(camera.head_pose_matrix(expression[52:58]), np.float64)
    c, r = np.clip(np.floor(np.asarray(identity_info["chin_px"], np.float64)), 0,
                   S - 1).astype(int)
    z = float(np.interp(surface.median_plane(alpha)[r, c], np.arange(len(depths)), depths))
    chin_y = float(head_heights(np.array([z]), K, cam_from_head, S)[0, r, c])
    return NeckCut(head_heights(depths, K, cam_from_head, S), chin_y,
                   expression[:52].copy(), cut_m, feather_m)


def neck_fade(alpha: np.ndarray, cut_alpha: np.ndarray, k: int) -> np.ndarray:
    """(S,S) bool: where the neck cut took coverage away from the head planes (the alphas
    (D,S,S) before and after it; ``k`` back planes): the body and the fade above it, where the
    backdrop keeps the photo (the neck the head fades into), not the room filled in."""
    from mpitalk import backdrop

    return backdrop.head_cover(cut_alpha, k) < backdrop.head_cover(alpha, k) - 0.01


def cut_at_neck(frames: Iterable[tuple[dict, np.ndarray]], depths: np.ndarray, K: np.ndarray,
                identity_info: dict[str, np.ndarray] | None, values: np.ndarray
                ) -> tuple[Iterator[tuple[dict, np.ndarray]], np.ndarray | None]:
    """A stream of factored frames ``(fields, frame_from_mpi)`` with each frame's head planes
    (those :func:`backdrop.back_planes` leaves) multiplied by the :class:`NeckCut`'s ``keep``
    at its blendshapes (``values`` (T,52), a row a frame), and the first frame's
    :func:`neck_fade` for ``backdrop.from_first_frame(keep_photo=)``. The cut is made from the
    first frame (:func:`neck_cut`); without a face read on the photo the stream is unchanged
    and the fade None. Only the first frame is taken early."""
    from mpitalk import backdrop

    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError("no frames to cut at the neck") from None
    k = backdrop.back_planes(depths)
    cut = neck_cut(first[0]["alpha"], depths, K, identity_info)
    if cut is None:
        return itertools.chain([first], it), None
    values = np.asarray(values)

    def stream() -> Iterator[tuple[dict, np.ndarray]]:
        for t, (fields, pose) in enumerate(itertools.chain([first], it)):
            if t >= len(values):
                raise ValueError(f"{len(values)} rows of blendshapes for more frames")
            alpha = np.array(fields["alpha"], np.float32, copy=True)
            alpha[k:] *= cut.keep(values[t])[k:]
            yield {**fields, "alpha": alpha}, pose

    out = stream()
    head = next(out)
    return itertools.chain([head], out), neck_fade(first[0]["alpha"], head[0]["alpha"], k)
