"""The two MPI heads (IM-Portrait's colour and geometry branches) and the identity plane sweep.

Geometry: per-plane alpha logits; the back plane is forced opaque, and the biases start so that
every plane gets the same compositing weight 1/D: plane i (0 = back) starts at alpha 1/(i+1), so
w_i = a_i prod_{j>i} (1 - a_j) = 1/(i+1) * (i+1)/D = 1/D.

Colour: per plane, a blend between pixels copied from the identity image *as seen on that plane*
(the identity's plane sweep into the MPI camera: the identity itself when the MPI is in the
reference camera) and one predicted colour per pixel, as stereo-magnification-style models do
(Zhou et al. 2018; Tucker & Snavely 2020). Copying real pixels is what keeps a real person's look.

Warp and paint (issue 20; ``flow_bound`` > 0): the copy reads the identity at the pixel's place
*plus a predicted flow*, ``rgb_i = blend_i * photo(x_i + flow_g(x)) + (1 - blend_i) * colour(x)``
(``x_i``: where plane i maps the MPI pixel into the identity image; g = the plane's group), as
one-shot reenactment models warp the source's own pixels (X2Face, FOMM, LivePortrait) so that a
lip can move without being repainted; the predicted colour paints what the photo never showed.
``flow = bound * tanh(raw / bound)`` in units of the crop's side, ``raw`` = a zero-initialised
dense layer (per f x f block, as the other outputs) plus, in the photo's camera, the rig's prior
flow times a learned gate that starts at 0: at initialisation the flow is exactly zero and the
model is the one it was made from.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mpitalk import mpi
from mpitalk.model.unet import depth_to_space

# the prior gate is PRIOR_GATE_SCALE times its parameter: Adam moves a parameter by about the
# learning rate per step (1e-4 here), and the gate should be able to reach 1 in a few hundred
PRIOR_GATE_SCALE = 20.0


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
                 rngs: nnx.Rngs, flow_bound: float = 0.0, flow_groups: int = 1):
        D, f2 = num_planes, factor**2
        self.num_planes, self.factor = D, factor
        self.flow_bound, self.flow_groups = float(flow_bound), int(flow_groups)
        zeros = nnx.initializers.zeros
        # zero kernels: the first MPI is exactly the uniform-weight, identity-copying one
        self.geometry = nnx.Linear(c, (D - 1) * f2, kernel_init=zeros, rngs=rngs)
        self.geometry.bias[...] = jnp.tile(jnp.asarray(uniform_alpha_logits(D)), f2)
        self.blend = nnx.Linear(c, D * f2, kernel_init=zeros, rngs=rngs)
        self.blend.bias[...] = jnp.full((D * f2,), blend_init, jnp.float32)
        self.color = nnx.Linear(c, 3 * f2, kernel_init=zeros, rngs=rngs)
        if self.flow_bound > 0:
            self.flow = nnx.Linear(c, self.flow_groups * 2 * f2, kernel_init=zeros, rngs=rngs)
            # how much of the rig's prior flow is the flow's base (photo's camera only)
            self.prior_gate = nnx.Param(jnp.zeros((), jnp.float32))

    def gate(self) -> jax.Array:
        """() the prior's gate (0 at initialisation)."""
        return PRIOR_GATE_SCALE * self.prior_gate[...]

    @property
    def plane_groups(self) -> np.ndarray:
        """(D,) int: plane i uses flow[i * G // D] (G = 1: all zeros)."""
        return plane_groups(self.num_planes, self.flow_groups if self.flow_bound > 0 else 1)

    def fields(self, h: jax.Array, validity: jax.Array,
               prior_base: jax.Array | None = None) -> dict[str, jax.Array]:
        """The factored MPI of features ``h``: ``alpha`` (B,D,S,S) (back plane 1), ``blend``
        (B,D,S,S) times the copy source's ``validity`` (B,D,S,S) (nothing to copy outside the
        identity image), ``color`` (B,S,S,3), ``flow`` (B,G,S,S,2) in crop-side units (zeros,
        G = 1, without a flow branch). ``prior_base`` (B,S,S,2): the rig's prior flow (crop
        units, 0 where invalid or where the MPI is not in the photo's camera), added to the
        flow's pre-tanh value times the gate; None: no prior."""
        f = self.factor
        logits = jnp.moveaxis(depth_to_space(self.geometry(h), f), -1, 1)  # (B,D-1,S,S)
        B, _, H, W = logits.shape
        alpha = jnp.concatenate([jnp.ones((B, 1, H, W), h.dtype), jax.nn.sigmoid(logits)], 1)
        blend = jax.nn.sigmoid(jnp.moveaxis(depth_to_space(self.blend(h), f), -1, 1))
        color = jax.nn.sigmoid(depth_to_space(self.color(h), f))  # (B,S,S,3)
        if self.flow_bound > 0:
            G = self.flow_groups
            raw = depth_to_space(self.flow(h), f).reshape(B, H, W, G, 2)
            raw = jnp.moveaxis(raw, 3, 1)  # (B,G,S,S,2)
            if prior_base is not None:
                raw = raw + self.gate() * prior_base[:, None]
            # tanh bound: no sample lands far outside the face, and small flows pass unchanged
            flow = self.flow_bound * jnp.tanh(raw / self.flow_bound)
        else:
            flow = jnp.zeros((B, 1, H, W, 2), h.dtype)
        return {"alpha": alpha, "blend": blend * validity, "color": color, "flow": flow}

    def compose(self, fields: dict[str, jax.Array], conditioning: dict[str, jax.Array]
                ) -> jax.Array:
        """Fields + the copy source -> rgba (B,D,S,S,4): per plane
        ``rgb = blend v * p + (1 - blend v) * color`` with the copy ``p`` (and its validity v).

        Without a flow branch ``p, v`` are the identity's plane sweep ``conditioning["sweep"]``
        (B,D,S,S,4: rgb, validity), v already in ``blend``. With one, ``p`` is the identity
        ``conditioning["photo"]`` (B,S,S,4: rgb, 1) sampled at the plane's own sampling point
        plus the flow (``flow * S`` px): in the photo's camera (``conditioning["copy_xy"]``
        None) at the pixel centre, with ``mpi.sample_photo`` (edge-clamped, v = 1 inside the
        photo): exactly ``mpi.materialize`` of the fields at S; otherwise at ``copy_xy``
        (B,D,S,S,2), the plane sweep's sampling points, with the sweep's own bilinear sampling
        (zero outside; the validity channel at the moved point replaces the unmoved point's in
        ``blend``). At zero flow both are the plane sweep's composite itself.
        Differentiable in the flow (the bilinear weights)."""
        color = fields["color"][:, None]
        if self.flow_bound <= 0:
            blend = fields["blend"][..., None]
            rgb = blend * conditioning["sweep"][..., :3] + (1.0 - blend) * color
            return jnp.concatenate([rgb, fields["alpha"][..., None]], axis=-1)
        photo = conditioning["photo"]
        S = photo.shape[1]
        groups = jnp.asarray(self.plane_groups)
        copy_xy = conditioning.get("copy_xy")
        if copy_xy is None:  # the photo's camera: one sample per group, then per plane
            xy = mpi.pixel_grid(S, S)[..., :2] + fields["flow"] * S  # (B,G,S,S,2)
            p, v = jax.vmap(jax.vmap(mpi.sample_photo, (None, 0)))(photo[..., :3], xy)
            p, v = p[:, groups], v[:, groups][..., None]  # (B,D,S,S,3), (B,D,S,S,1)
        else:
            xy = copy_xy + fields["flow"][:, groups] * S  # (B,D,S,S,2)
            pv = jax.vmap(jax.vmap(mpi.bilinear_zero, (None, 0)))(photo, xy)
            p = pv[..., :3]
            # ``blend`` holds the unmoved point's validity v0 (the sweep's): swap in the moved
            # point's, so that at zero flow this is the plane sweep's composite exactly
            v0 = conditioning["sweep"][..., 3:]
            v = jnp.where(v0 > 0, pv[..., 3:] / jnp.where(v0 > 0, v0, 1.0), 0.0)
        blend = fields["blend"][..., None] * v
        rgb = blend * p + (1.0 - blend) * color
        return jnp.concatenate([rgb, fields["alpha"][..., None]], axis=-1)


def plane_groups(num_planes: int, num_groups: int) -> np.ndarray:
    """(D,) int: plane i (0 = back) in group i * G // D: G contiguous groups back to front."""
    return (np.arange(num_planes) * num_groups) // num_planes


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
    if heads.flow_bound > 0 and new.flow_bound > 0 and heads.flow_groups == new.flow_groups:
        # the flow is per group, not per plane: it carries over (groups stay contiguous)
        new.flow.kernel[...], new.flow.bias[...] = heads.flow.kernel[...], heads.flow.bias[...]
        new.prior_gate[...] = heads.prior_gate[...]
