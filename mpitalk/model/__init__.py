"""The MPI diffusion model of IM-Portrait (Li et al., CVPR 2025, arXiv 2504.19165), in Flax NNX.

``F(c_in * x, c_noise, cond) -> MPI``; the denoiser is that MPI rendered into the target camera
(``mpitalk.diffusion``). The MPI lives either in the target camera (generation, and half of
training) or in the reference (identity) camera (the other half of training: "random camera
space", which forces real geometry into the planes).

Conditions (``cond``, a dict of batched arrays; S = ``config.image_size``, images in [0,1]):

===================== ============ ====================================================
key                   shape        meaning
===================== ============ ====================================================
``cond_render``       (B,S,S,4)    rig condition render of the target frame (required)
``expression``        (B,58)       target 52 ARKit blendshapes + head pose (yaw, pitch,
                                   roll, tx, ty, tz) (required)
``prev_frame``        (B,S,S,3)    previous frame, zeros when there is none (required)
``has_prev``          (B,)         1.0 where ``prev_frame`` is real, else 0.0 (required)
``identity_cond``     (B,S,S,4)    rig condition render at the identity's expression and
                                   pose (optional, with ``identity_expression``)
``identity_expression`` (B,58)     the identity's 52 blendshapes + head pose (optional;
                                   without it the identity pose is taken as the default
                                   frontal pose at 0.6 m)
``has_identity_info`` (B,)         optional with the two above: 0.0 marks them absent
                                   per sample (training drops them at random), default 1
``camera_space``      (B,)         0.0: MPI in the target camera (default); 1.0: in the
                                   identity's camera (training's "reference space")
``prior_flow``        (B,S,S,2)    the rig's backward flow from the MPI's camera to the
                                   identity (``rig.render_prior_flow``, unit "crop"; in
                                   the identity's camera with the target pose = the
                                   identity's). Read only by models with a flow branch
                                   (``flow_bound`` > 0); optional, zeros when absent
``prior_valid``       (B,S,S)      1 where ``prior_flow`` is valid, else 0 (with it)
``prior_base_flow``   (B,S,S,2)    optional, sampling only: the flow's gated base in place
                                   of ``prior_flow`` x ``prior_valid`` (generation's prior
                                   carried past the face, ``mpitalk.flow_fill``); the
                                   input channels keep the prior as trained
``copy_mask``         (B,S,S)      optional, sampling only: 1 where the sampled fields'
                                   blend is set to the copy's validity (the photo shown
                                   whole; ``mpitalk.paint``), 0 where the model's stays
===================== ============ ====================================================

The rig prior enters a flow model twice: as three input channels (flow x 10, validity) in
both camera spaces, and, where the MPI is in the identity's camera (where the prior is exactly
the offset the flow field means), as the base of the predicted flow behind a gate that starts
at 0. In the target camera the flow is an offset from the plane sweep's sampling point, which
differs per plane, so the prior is only an input there.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mpitalk import UserError, camera, diffusion, mpi
from mpitalk.model.config import PRESETS, Config, base, micro, tiny
from mpitalk.model.heads import MPIHeads, plane_groups, plane_sweep, resample_heads
from mpitalk.model.unet import UNet

__all__ = ["Config", "MPIModel", "PRESETS", "base", "build_conditioning", "denoise",
           "denoise_fields", "micro", "mpi_geometry", "plane_groups", "sample_fields",
           "sample_mpi", "tiny", "with_blocks", "with_flow", "with_planes"]

NUM_EXPRESSION = 58  # 52 ARKit blendshapes + 6 pose numbers
IMAGE_CHANNELS = 3 + 3 + 4 + 4 + 3  # noisy target, identity, identity_cond, cond_render, prev
VECTOR_DIM = 2 * NUM_EXPRESSION + 6 + 3  # target, identity, relative pose, 3 flags
PRIOR_CHANNELS = 3  # the rig's prior flow (x, y) x PRIOR_INPUT_SCALE and its validity (-1/1)
PRIOR_INPUT_SCALE = 10.0  # crop units -> order one (a 0.1 crop offset, 13 px at 128, -> 1)


def mpi_geometry(config: Config) -> tuple[jax.Array, np.ndarray]:
    """(depths (D,) metres back to front, K (3,3)) of the MPIs this model produces."""
    S = config.image_size
    depths = mpi.plane_depths(config.near_m, config.far_m, config.num_planes)
    return depths, camera.intrinsics(config.focal_scale * S, S, S)


def _pose_features(pose6: jax.Array) -> jax.Array:
    """Head poses (...,6) scaled to order one: angles x4, x/y offsets x10, depth about 0.6 m."""
    scale = jnp.array([4.0, 4.0, 4.0, 10.0, 10.0, 10.0])
    offset = jnp.array([0.0, 0.0, 0.0, 0.0, 0.0, camera.DEFAULT_HEAD_DEPTH_M])
    return (pose6 - offset) * scale


def build_conditioning(config: Config, identity: jax.Array, cond: dict[str, Any],
                       reference_space: bool | None = None) -> dict[str, jax.Array]:
    """Everything the network reads besides the noisy image, computed once per batch.

    Returns ``image`` (B,S,S,C) [-1,1]-scaled condition images incl. the identity pre-warped at
    ``config.sweep_depths_m``, ``vector`` (B,V), ``sweep`` (B,D,S,S,4) the identity's plane
    sweep (rgb, validity) and ``tgt_from_mpi`` (B,4,4), the pose that renders the MPI to the
    target camera. ``reference_space`` True/False fixes the camera space of the whole batch
    statically (training does, so reference-space samples skip the sweep's gather); None reads
    ``cond["camera_space"]``.
    """
    identity = jnp.asarray(identity, jnp.float32)
    B = identity.shape[0]
    expression = jnp.asarray(cond["expression"], jnp.float32)
    has_prev = jnp.asarray(cond["has_prev"], jnp.float32).reshape(B)
    if "identity_expression" in cond:
        id_expr = jnp.asarray(cond["identity_expression"], jnp.float32)
        id_cond = jnp.asarray(cond["identity_cond"], jnp.float32)
        has_id = jnp.asarray(cond.get("has_identity_info", jnp.ones((B,))), jnp.float32)
    else:
        id_expr = jnp.zeros((B, NUM_EXPRESSION)).at[:, 52:].set(camera.default_head_pose())
        id_cond = jnp.zeros(identity.shape[:3] + (4,))
        has_id = jnp.zeros((B,))
    if reference_space is None:
        space = jnp.asarray(cond.get("camera_space", jnp.zeros((B,))), jnp.float32).reshape(B)
    else:
        space = jnp.full((B,), float(reference_space))
    # where the identity info is absent, its pose is the default one (as at generation)
    default = jnp.asarray(camera.default_head_pose())
    ref_pose = jnp.where(has_id[:, None] > 0.5, id_expr[:, 52:], default)
    tgt_from_ref = camera.head_motion(expression[:, 52:], ref_pose)
    eye = jnp.broadcast_to(jnp.eye(4), (B, 4, 4))
    ref_space = (space > 0.5)[:, None, None]
    ref_from_mpi = jnp.where(ref_space, eye, camera.invert_pose(tgt_from_ref))
    tgt_from_mpi = jnp.where(ref_space, tgt_from_ref, eye)

    depths, K = mpi_geometry(config)
    K = jnp.asarray(K)
    ident4 = jnp.concatenate([identity, jnp.ones(identity.shape[:3] + (1,))], -1)
    pre_depths = jnp.asarray(config.sweep_depths_m)
    if reference_space:  # the MPI camera is the identity's: its sweep is the image itself
        sweep = jnp.broadcast_to(ident4[:, None], (B, config.num_planes) + ident4.shape[1:])
        pre = jnp.broadcast_to(identity[:, None], (B, len(pre_depths)) + identity.shape[1:])
    else:
        sweep = jax.vmap(plane_sweep, (0, None, None, 0))(ident4, depths, K, ref_from_mpi)
        pre = jax.vmap(plane_sweep, (0, None, None, 0))(identity, pre_depths, K, ref_from_mpi)
    pre = jnp.moveaxis(pre, 1, 3).reshape(identity.shape[:3] + (-1,))
    prev = jnp.asarray(cond["prev_frame"], jnp.float32) * has_prev[:, None, None, None]
    image = jnp.concatenate([identity, id_cond, jnp.asarray(cond["cond_render"], jnp.float32),
                             prev, pre], axis=-1) * 2.0 - 1.0
    rel = _pose_features(expression[:, 52:]) - _pose_features(ref_pose)
    vector = jnp.concatenate([expression[:, :52], _pose_features(expression[:, 52:]),
                              id_expr[:, :52] * has_id[:, None],
                              _pose_features(ref_pose) * has_id[:, None], rel,
                              jnp.stack([has_prev, has_id, space], -1)], axis=-1)
    out = {"image": image, "vector": vector, "sweep": sweep, "tgt_from_mpi": tgt_from_mpi}
    if config.flow_bound > 0:
        S = identity.shape[1]
        if "prior_flow" in cond:
            valid = jnp.asarray(cond["prior_valid"], jnp.float32).reshape(B, S, S, 1)
            prior = jnp.asarray(cond["prior_flow"], jnp.float32) * valid
        else:
            valid, prior = jnp.zeros((B, S, S, 1)), jnp.zeros((B, S, S, 2))
        out["prior"] = jnp.concatenate([prior * PRIOR_INPUT_SCALE, valid * 2.0 - 1.0], -1)
        # the gated base: only where the MPI is in the identity's camera (see module docstring)
        base = cond.get("prior_base_flow")
        base = prior if base is None else jnp.asarray(base, jnp.float32)
        out["prior_base"] = base * space[:, None, None, None]
        out["photo"] = ident4
        if not reference_space:  # the plane sweep's sampling points, per plane
            Hs = jax.vmap(lambda T: mpi.plane_homographies(depths, K, T, K))(ref_from_mpi)
            out["copy_xy"] = jax.vmap(jax.vmap(lambda Hm: mpi.source_xy(Hm, S, S)))(Hs)
    return out


class MPIModel(nnx.Module):
    """F: (c_in * x, c_noise, conditioning) -> rgba (B,D,S,S,4), straight alpha, back to front."""

    def __init__(self, config: Config, *, rngs: nnx.Rngs):
        self.config = config
        c_img = IMAGE_CHANNELS + 3 * len(config.sweep_depths_m)
        flow = config.flow_bound > 0
        self.unet = UNet(c_img, VECTOR_DIM, config.channels, config.blocks_per_level,
                         config.attention_levels, config.attention_heads, config.emb_dim,
                         config.stem_factor, rngs=rngs, c_extra=PRIOR_CHANNELS if flow else 0)
        self.heads = MPIHeads(self.unet.out_channels, config.num_planes, config.blend_init,
                              config.stem_factor, rngs=rngs, flow_bound=config.flow_bound,
                              flow_groups=config.flow_groups)

    def __call__(self, x_scaled: jax.Array, c_noise: jax.Array,
                 conditioning: dict[str, jax.Array]) -> jax.Array:
        return self.heads.compose(self.fields(x_scaled, c_noise, conditioning), conditioning)

    def fields(self, x_scaled: jax.Array, c_noise: jax.Array,
               conditioning: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The same output factored (``MPIHeads.fields``; ``mpitalk.mpi.materialize`` of it
        with the identity at S, in the reference camera, is ``__call__``'s rgba)."""
        h = jnp.concatenate([x_scaled, conditioning["image"]], axis=-1)
        h = self.unet(h, c_noise, conditioning["vector"], conditioning.get("prior"))
        return self.heads.fields(h, conditioning["sweep"][..., 3],
                                 conditioning.get("prior_base"))


def with_planes(model: MPIModel, num_planes: int, near_m: float | None = None,
                far_m: float | None = None) -> MPIModel:
    """``model`` with ``num_planes`` MPI planes between ``near_m`` and ``far_m`` (None: its own):
    the trunk copied, the per-plane head weights interpolated in disparity; fine-tune it."""
    config = model.config
    new_config = config.replace(num_planes=num_planes,
                                near_m=config.near_m if near_m is None else near_m,
                                far_m=config.far_m if far_m is None else far_m)
    if num_planes < 2 or not 0 < new_config.near_m < new_config.far_m:
        raise UserError(f"{num_planes} planes from {new_config.near_m} to {new_config.far_m} m: "
                        "an MPI needs at least 2 planes and 0 < near < far")
    new = MPIModel(new_config, rngs=nnx.Rngs(0))
    nnx.update(new.unet, nnx.state(model.unet, nnx.Param))
    resample_heads(model.heads, new.heads, np.asarray(mpi_geometry(config)[0]),
                   np.asarray(mpi_geometry(new_config)[0]))
    return new


def with_flow(model: MPIModel, flow_bound: float, flow_groups: int = 1) -> MPIModel:
    """``model`` (without a flow branch) given the warp-and-paint colour branch: flow bounded
    by ``flow_bound`` crop sides, ``flow_groups`` flows; every weight copied, the new ones (the
    flow layer, the prior's input stem, the prior gate) zero, so that the outputs are
    unchanged (the flow is exactly 0); fine-tune it."""
    config = model.config
    if config.flow_bound > 0:
        raise UserError(f"the model already has a flow branch (flow_bound {config.flow_bound})")
    if not flow_bound > 0 or not 1 <= flow_groups <= config.num_planes:
        raise UserError(f"flow_bound {flow_bound}, flow_groups {flow_groups}: the bound must be "
                        f"> 0 and the groups between 1 and the {config.num_planes} planes")
    new = MPIModel(config.replace(flow_bound=float(flow_bound), flow_groups=int(flow_groups)),
                   rngs=nnx.Rngs(0))
    old = dict(nnx.state(model, nnx.Param).flat_state())
    state = nnx.state(new, nnx.Param)
    for path, var in state.flat_state():
        if path in old:
            var.set_value(old[path].get_value())
        else:  # initialised at zero already; set again so that this does not rest on that
            var.set_value(jnp.zeros_like(var.get_value()))
    nnx.update(new, state)
    return new


def with_blocks(model: MPIModel, blocks_per_level: int) -> MPIModel:
    """``model`` with ``blocks_per_level`` residual blocks at each U-Net level (at least its
    own): its weights copied, each added block's last convolution zero so that the block
    starts as the identity (same outputs); fine-tune it."""
    config = model.config
    if blocks_per_level < config.blocks_per_level:
        raise UserError(f"blocks_per_level {blocks_per_level}: the model has "
                        f"{config.blocks_per_level}; blocks can be added, not removed")
    new = MPIModel(config.replace(blocks_per_level=blocks_per_level), rngs=nnx.Rngs(0))
    old = dict(nnx.state(model, nnx.Param).flat_state())
    state = nnx.state(new, nnx.Param)
    for path, var in state.flat_state():
        if path in old:
            var.set_value(old[path].get_value())
        elif path[-2] == "conv2":  # (..., block, "conv2", kernel|bias) of an added block
            var.set_value(jnp.zeros_like(var.get_value()))
    nnx.update(new, state)
    return new


def render_to_target(config: Config, rgba: jax.Array, tgt_from_mpi: jax.Array) -> mpi.RenderOut:
    """Render a batch of MPIs (B,D,S,S,4) into their target cameras (B,4,4)."""
    depths, K = mpi_geometry(config)
    # lax.map, not vmap: under vmap mpi.render's lax.cond turns into a select and both the
    # shift fast path and the general gather run for every sample; mapped, each sample takes
    # only its own path (the identity pose of generation and target-space training: the fast one)
    return jax.lax.map(lambda a: mpi.render(a[0], depths, K, a[1]), (rgba, tgt_from_mpi))


def denoise(model: MPIModel, x: jax.Array, sigma: jax.Array,
            conditioning: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """EDM denoiser through the renderer: x (B,S,S,3) in [-1,1] units + noise, sigma scalar or
    (B,) -> (x0 (B,S,S,3) in [-1,1], rgba (B,D,S,S,4))."""
    config = model.config
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1])
    scale = diffusion.c_in(sigma, config.sigma_data)[:, None, None, None]
    rgba = model(scale * x, diffusion.c_noise(sigma), conditioning)
    rgb = render_to_target(config, rgba, conditioning["tgt_from_mpi"]).rgb
    return rgb * 2.0 - 1.0, rgba


def denoise_fields(model: MPIModel, x: jax.Array, sigma: jax.Array,
                   conditioning: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """:func:`denoise` with the MPI as its fields (``MPIHeads.fields``): (x0, fields)."""
    config = model.config
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1])
    scale = diffusion.c_in(sigma, config.sigma_data)[:, None, None, None]
    fields = model.fields(scale * x, diffusion.c_noise(sigma), conditioning)
    rgba = model.heads.compose(fields, conditioning)
    rgb = render_to_target(config, rgba, conditioning["tgt_from_mpi"]).rgb
    return rgb * 2.0 - 1.0, fields


@nnx.jit(static_argnums=(4, 5))
def _sample(model: MPIModel, identity, cond, key, steps: int, sampler: str):
    """(fields, rgba) of the samples: the last denoiser call's fields, and them composed with
    the identity's plane sweep (what that call rendered)."""
    config = model.config
    conditioning = build_conditioning(config, identity, cond)
    sigmas = diffusion.karras_sigmas(steps, config.sigma_min, config.sigma_max, config.rho)
    k_noise, k_sampler = jax.random.split(key)
    S = config.image_size
    # one noise image shared by every frame of the batch (temporal stability in generation)
    x = jax.random.normal(k_noise, (1, S, S, 3)) * sigmas[0]
    x = jnp.broadcast_to(x, (identity.shape[0], S, S, 3))
    _, fields = diffusion.SAMPLERS[sampler](
        lambda x, s, c: denoise_fields(model, x, s, c), x, sigmas, k_sampler, conditioning)
    if "copy_mask" in cond:  # the photo copied whole there (mpitalk.paint), after sampling
        copy = jnp.asarray(cond["copy_mask"], jnp.float32)[:, None] > 0.5  # (B,1,S,S)
        fields = {**fields, "blend": jnp.where(copy, conditioning["sweep"][..., 3],
                                               fields["blend"])}
    return fields, model.heads.compose(fields, conditioning)


def sample_mpi(model: MPIModel, config: Config, identity: Any, cond: dict[str, Any],
               key: jax.Array, steps: int = 8, sampler: str = "heun") -> jax.Array:
    """Sample MPIs: identity (B,S,S,3) float [0,1], ``cond`` as in the module docstring, a PRNG
    key (same key -> same output; the initial noise is shared by the batch) -> rgba
    (B,D,S,S,4), straight alpha, planes back to front at ``mpi_geometry(config)``'s depths, in
    each frame's target camera (unless ``cond["camera_space"]`` says reference)."""
    if sampler not in diffusion.SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(diffusion.SAMPLERS)}, got {sampler!r}")
    del config  # the model carries its config; the argument keeps the documented signature
    cond = {k: jnp.asarray(v) for k, v in cond.items()}
    return _sample(model, jnp.asarray(identity, jnp.float32), cond, key, int(steps), sampler)[1]


def sample_fields(model: MPIModel, config: Config, identity: Any, cond: dict[str, Any],
                  key: jax.Array, steps: int = 8, sampler: str = "heun") -> dict[str, jax.Array]:
    """:func:`sample_mpi` with the MPIs as their fields (the same sampling, the same result):
    ``alpha``, ``blend`` (B,D,S,S), ``color`` (B,S,S,3), ``flow`` (B,G=1,S,S,2) zeros.
    In the reference camera (``cond["camera_space"]`` 1) ``mpi.materialize`` of a sample's
    fields with its identity at S is :func:`sample_mpi`'s rgba; with the identity at a higher
    resolution (the same crop window), the copied pixels are that sharp. In the target camera
    the copy source is the identity's plane sweep, so the fields alone do not define the MPI."""
    if sampler not in diffusion.SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(diffusion.SAMPLERS)}, got {sampler!r}")
    del config
    cond = {k: jnp.asarray(v) for k, v in cond.items()}
    return _sample(model, jnp.asarray(identity, jnp.float32), cond, key, int(steps), sampler)[0]
