"""The two MPI heads (IM-Portrait's colour and geometry branches) and the identity plane sweep.

Geometry: per-plane alpha logits; the back plane is forced opaque, and the biases start so that
every plane gets the same compositing weight 1/D: plane i (0 = back) starts at alpha 1/(i+1), so
w_i = a_i prod_{j>i} (1 - a_j) = 1/(i+1) * (i+1)/D = 1/D.

Colour: per plane, a blend between pixels copied from the identity image *as seen on that plane*
(the identity's plane sweep into the MPI camera: the identity itself when the MPI is in the
reference camera) and one predicted colour per pixel, as stereo-magnification-style models do
(Zhou et al. 2018; Tucker & Snavely 2020). Copying real pixels is what keeps a real person's look.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mpitalk import mpi
from mpitalk.model.unet import depth_to_space


def plane_sweep(image: jax.Array, depths: jax.Array, K: jax.Array,
                ref_from_mpi: jax.Array) -> jax.Array:
    """The reference ``image`` (H,W,C) as seen on each MPI plane: (D,H,W,C).

    Each MPI plane z = d maps MPI pixels to reference pixels by its plane-induced homography
    (``mpi.plane_homographies`` with the MPI as the source camera). Samples outside the
    reference image read zero.
    """
    H, W = image.shape[:2]
    Hs = mpi.plane_homographies(depths, K, ref_from_mpi, K)  # MPI pixels -> reference pixels
    return jax.vmap(lambda Hm: mpi.bilinear_zero(image, mpi.source_xy(Hm, H, W)))(Hs)


def uniform_alpha_logits(num_planes: int) -> np.ndarray:
    """(D-1,) logits of alpha 1/(i+1) for planes i = 1..D-1 (uniform compositing weights)."""
    a = 1.0 / (np.arange(1, num_planes) + 1.0)
    return np.log(a / (1.0 - a)).astype(np.float32)


class MPIHeads(nnx.Module):
    """Features (B,S/f,S/f,C) + plane sweep (B,D,S,S,4: rgb, validity) -> rgba (B,D,S,S,4).

    One dense layer per branch gives every pixel of an f x f block its own outputs
    (depth-to-space), so the MPI is at full resolution although the trunk is not.
    :meth:`fields` gives the same output factored (``mpitalk.mpi.materialize``): per-plane
    alpha and blend, the one predicted colour, and a zero sampling offset into the photo (this
    head predicts none); :meth:`compose` turns fields and a plane sweep into the dense rgba.
    """

    def __init__(self, c: int, num_planes: int, blend_init: float, factor: int, *,
                 rngs: nnx.Rngs):
        D, f2 = num_planes, factor**2
        self.num_planes, self.factor = D, factor
        zeros = nnx.initializers.zeros
        # zero kernels: the first MPI is exactly the uniform-weight, identity-copying one
        self.geometry = nnx.Linear(c, (D - 1) * f2, kernel_init=zeros, rngs=rngs)
        self.geometry.bias[...] = jnp.tile(jnp.asarray(uniform_alpha_logits(D)), f2)
        self.blend = nnx.Linear(c, D * f2, kernel_init=zeros, rngs=rngs)
        self.blend.bias[...] = jnp.full((D * f2,), blend_init, jnp.float32)
        self.color = nnx.Linear(c, 3 * f2, kernel_init=zeros, rngs=rngs)

    def fields(self, h: jax.Array, validity: jax.Array) -> dict[str, jax.Array]:
        """The factored MPI of features ``h``: ``alpha`` (B,D,S,S) (back plane 1), ``blend``
        (B,D,S,S) times the copy source's ``validity`` (B,D,S,S) (nothing to copy outside the
        identity image), ``color`` (B,S,S,3), ``flow`` (B,1,S,S,2) zeros (one plane group)."""
        f = self.factor
        logits = jnp.moveaxis(depth_to_space(self.geometry(h), f), -1, 1)  # (B,D-1,S,S)
        B, _, H, W = logits.shape
        alpha = jnp.concatenate([jnp.ones((B, 1, H, W), h.dtype), jax.nn.sigmoid(logits)], 1)
        blend = jax.nn.sigmoid(jnp.moveaxis(depth_to_space(self.blend(h), f), -1, 1))
        color = jax.nn.sigmoid(depth_to_space(self.color(h), f))  # (B,S,S,3)
        return {"alpha": alpha, "blend": blend * validity, "color": color,
                "flow": jnp.zeros((B, 1, H, W, 2), h.dtype)}

    @staticmethod
    def compose(fields: dict[str, jax.Array], sweep: jax.Array) -> jax.Array:
        """Fields + the plane sweep (B,D,S,S,4) -> rgba (B,D,S,S,4): per plane
        ``rgb = blend * sweep + (1 - blend) * color`` (the copy source at S; the flow is not
        used: it is zero for this head)."""
        blend = fields["blend"][..., None]
        rgb = blend * sweep[..., :3] + (1.0 - blend) * fields["color"][:, None]
        return jnp.concatenate([rgb, fields["alpha"][..., None]], axis=-1)

    def __call__(self, h: jax.Array, sweep: jax.Array) -> jax.Array:
        return self.compose(self.fields(h, sweep[..., 3]), sweep)


def interpolate_planes(values: np.ndarray, disparity: np.ndarray,
                       new_disparity: np.ndarray) -> np.ndarray:
    """Per-plane ``values`` (..., D) given at plane ``disparity`` (D,) -> (..., D') at
    ``new_disparity`` (D',), linear in disparity, held constant beyond the end planes."""
    order = np.argsort(disparity)
    d, v = np.asarray(disparity)[order], np.asarray(values)[..., order]
    i = np.clip(np.searchsorted(d, new_disparity) - 1, 0, len(d) - 2)
    t = np.clip((new_disparity - d[i]) / (d[i + 1] - d[i]), 0.0, 1.0)
    return v[..., i] * (1.0 - t) + v[..., i + 1] * t


def resample_heads(heads: MPIHeads, new: MPIHeads, depths: np.ndarray,
                   new_depths: np.ndarray) -> None:
    """Set ``new``'s geometry and blend layers (another plane count or plane depths) from
    ``heads``', interpolating every weight along the planes' disparity, and copy the colour
    layer: the start of a fine-tune to new planes. Alpha logits are lowered by the log of the
    plane-spacing ratio, so a span of depth keeps about its opacity (small alphas add)."""
    f2 = heads.factor**2
    disp, new_disp = 1.0 / np.asarray(depths), 1.0 / np.asarray(new_depths)
    spacing = (disp[-1] - disp[0]) / (len(disp) - 1)
    new_spacing = (new_disp[-1] - new_disp[0]) / (len(new_disp) - 1)

    def per_plane(layer, d, nd, shift=0.0):
        kernel, bias = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
        k = interpolate_planes(kernel.reshape(kernel.shape[0], f2, len(d)), d, nd)
        b = interpolate_planes(bias.reshape(f2, len(d)), d, nd) + shift
        return jnp.asarray(k.reshape(kernel.shape[0], -1)), jnp.asarray(b.reshape(-1))

    # geometry: planes 1..D-1 (the back plane is always opaque); blend: every plane
    new.geometry.kernel[...], new.geometry.bias[...] = per_plane(
        heads.geometry, disp[1:], new_disp[1:], float(np.log(new_spacing / spacing)))
    new.blend.kernel[...], new.blend.bias[...] = per_plane(heads.blend, disp, new_disp)
    new.color.kernel[...], new.color.bias[...] = heads.color.kernel[...], heads.color.bias[...]
