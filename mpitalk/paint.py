"""Where the avatar shows painted colour: only in the holes of the rig's prior.

A warp-and-paint model (issue 20) gives every MPI pixel a blend between the photo, copied along
the flow, and a colour it paints: ``rgb = blend * photo(x + flow) + (1 - blend) * colour``.
Painting is for what the photo never showed -- the inside of an opening mouth, teeth, an eye
opened wider than in the photo -- and the rig's prior marks exactly those pixels: its backward
flow into the photo is invalid there (``prior_valid`` 0), surrounded by face it can copy. The
shipped model (stage 6) also mixes 5-30 % of its colour into hair, face outline and background,
where the photo has the answer; that colour is a 128-px field, blurred and textured with the
up-sampler's grid (README "Paint only in the holes"), and it costs: on the real validation
clips, self-reenactment LPIPS 0.048 with the model's blend and 0.040 with the photo copied
everywhere but the holes (surface MPI both).

So, by default (``--paint holes``), the sampled fields' blend is set to the copy's validity --
the photo, wherever the flow reads inside it -- everywhere except the **holes** of the prior's
valid region (the invalid pixels that the valid face encloses), grown by ``GROW`` texels to
cover their rim; there the model's blend is kept. Outside the face the prior is invalid too but
not enclosed: the photo is copied there. A model without a flow branch has no prior and is left
as it is; so is a model run in the target camera (its copy source is the plane sweep).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mpitalk.choices import PAINTS  # noqa: F401  (re-exported)

GROW = 1  # texels of the model's 128-px fields the holes are grown by (their rim)


def holes(prior_valid: np.ndarray, grow: int = GROW) -> np.ndarray:
    """(..., S, S) bool: where the model may paint -- the pixels of each ``prior_valid``
    (..., S, S) map that are invalid (< 0.5) but enclosed by valid ones (4-connected), grown by
    ``grow`` texels (8-connected), scaled with S / 128."""
    valid = np.asarray(prior_valid) > 0.5
    flat = valid.reshape((-1,) + valid.shape[-2:])
    steps = int(round(grow * valid.shape[-1] / 128))
    out = np.empty_like(flat)
    square = np.ones((3, 3), bool)
    for i, v in enumerate(flat):
        h = ndimage.binary_fill_holes(v) & ~v
        out[i] = ndimage.binary_dilation(h, square, iterations=steps) if steps > 0 and h.any() \
            else h
    return out.reshape(valid.shape)


def copy_mask(prior_valid: np.ndarray, grow: int = GROW) -> np.ndarray:
    """(..., S, S) float32: 1 where the photo is copied whole, 0 in :func:`holes` (the model's
    ``cond["copy_mask"]``)."""
    return (~holes(prior_valid, grow)).astype(np.float32)
