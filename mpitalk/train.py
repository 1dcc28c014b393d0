"""Training of the MPI diffusion model (IM-Portrait, arXiv 2504.19165) on monocular clips.

Each step draws random (clip, frame) pairs; a fixed share of every batch puts the MPI in the
**reference** (identity) camera and renders it into the target camera with
``tgt_from_ref = cam_from_head(pose_t) @ inv(cam_from_head(pose_ref))``, the rest put it in the
**target** camera (rendered as is): the paper's random camera space, which forces geometry into
the planes from monocular frames only. The loss is EDM's weighted L2 between that render and the
clean frame (``mpitalk.diffusion``). Reference-space renders are taken at 1/``ref_render_scale``
resolution against a box-filtered target: their job is geometry, and the warp's backward pass
(a scatter) dominates a CPU step at full resolution.

Everything is a pure function of (seed, step): the batch of step k holds samples k*B .. k*B+B-1,
each drawn by its own ``np.random.default_rng((seed, n))``, and the noise of step k comes from
``fold_in(key, k)``; a resumed run therefore repeats an uninterrupted one exactly.

    python -m mpitalk.train --config tiny --data DIR --workdir runs/NAME [--steps N] [--resume]
    python -m mpitalk.train --init-from data/checkpoint --data DIR --workdir runs/NAME  # fine-tune

``--init-from`` starts a new run from a saved model's weights (model and EMA both; a fresh
optimizer, step 0) and takes that model's config, with the command line's overrides on top.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mpitalk import UserError, camera, checkpoint, diffusion, flow_fill, mpi, paint, run_cli
from mpitalk.model import (
    PRESETS,
    Config,
    MPIModel,
    build_conditioning,
    mpi_geometry,
    with_flow,
)

HOLE_GROW = 3  # texels the prior's holes are grown by for config.hole_weight: the reference
# camera's holes are compared in the frame's camera, a few pixels off where the head moved

# ------------------------------------------------------------------------------------------
# data


def dataset_dirs(data_dirs: str | Path | Sequence[str | Path]) -> list[Path]:
    """One dataset folder or several, as a list."""
    if isinstance(data_dirs, str | Path):
        return [Path(data_dirs)]
    return [Path(d) for d in data_dirs]


def load_clips(data_dirs: str | Path | Sequence[str | Path],
               split: str) -> list[dict[str, np.ndarray]]:
    """All clips of a split in memory (training keys only: no depth, no extra views); several
    dataset folders are concatenated in the order given (every one must have the split)."""
    return [c for group in load_groups(data_dirs, split) for c in group]


def load_groups(data_dirs: str | Path | Sequence[str | Path],
                split: str) -> list[list[dict[str, np.ndarray]]]:
    """The clips of a split, one list per dataset folder (see :func:`load_clips`)."""
    from mpitalk import synth

    groups = []
    for data_dir in dataset_dirs(data_dirs):
        ds = synth.ClipDataset(data_dir, split, hide_ground_truth=True)
        if len(ds) == 0:
            raise UserError(f"{data_dir}: split {split!r} has no clips")
        groups.append([ds[i] for i in range(len(ds))])
    return groups


@dataclass(frozen=True)
class Mix:
    """Clips pooled from several datasets, drawn in given proportions.

    ``clips``: every clip, dataset after dataset; ``starts`` (G+1,) where each dataset's clips
    begin (and the end); ``weights`` (G,) the share of samples from each dataset, summing to 1.
    """

    clips: list[dict[str, np.ndarray]]
    starts: tuple[int, ...]
    weights: tuple[float, ...]

    @staticmethod
    def of(groups: Sequence[list[dict[str, np.ndarray]]], weights: Sequence[float]) -> Mix:
        if len(weights) != len(groups):
            raise UserError(f"--data-weights has {len(weights)} value(s) for {len(groups)} "
                            "--data folder(s); give one weight per folder")
        if any(not (w >= 0) for w in weights) or sum(weights) <= 0:
            raise UserError(f"--data-weights {list(weights)}: weights must be >= 0, "
                            "not all zero")
        starts = tuple(int(x) for x in np.cumsum([0] + [len(g) for g in groups]))
        total = float(sum(weights))
        return Mix([c for g in groups for c in g], starts, tuple(w / total for w in weights))

    def __len__(self) -> int:
        return len(self.clips)

    def draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A dataset by weight, then one of its clips uniformly."""
        g = int(rng.choice(len(self.weights), p=self.weights))
        return self.clips[self.starts[g] + int(rng.integers(self.starts[g + 1] - self.starts[g]))]


def fake_clips(num: int, size: int, frames: int, seed: int = 0,
               head_mask: bool = False) -> list[dict[str, np.ndarray]]:
    """Random clips in the training-key layout of docs/dataset.md (tests and benchmarks);
    ``head_mask``: with a random ``head_mask`` (T,S,S) as clips from video have."""
    rng = np.random.default_rng(seed)
    K = camera.intrinsics(1.5 * size, size, size)

    def pose(n):
        p = np.zeros((n, 6), np.float32)
        p[:, :3] = rng.uniform(-0.2, 0.2, (n, 3))
        p[:, 3:5] = rng.uniform(-0.02, 0.02, (n, 2))
        p[:, 5] = rng.uniform(0.55, 0.65, n)
        return p

    def img(*shape):
        return rng.integers(0, 256, shape, dtype=np.uint8)

    clips = [{"identity_rgb": img(size, size, 3),
              "identity_controls": rng.random(52, dtype=np.float32), "identity_pose": pose(1)[0],
              "identity_cond": img(size, size, 4), "K": K,
              "controls": rng.random((frames, 52), dtype=np.float32), "pose": pose(frames),
              "cond": img(frames, size, size, 4), "target_rgb": img(frames, size, size, 3)}
             for _ in range(num)]
    if head_mask:
        for c in clips:
            c["head_mask"] = (img(frames, size, size) > 127).astype(np.uint8) * np.uint8(255)
    return clips


def make_sample(clips: list[dict[str, np.ndarray]] | Mix, config: Config, n: int
                ) -> dict[str, Any]:
    """Global sample ``n``: a random clip (uniform over ``clips``, or drawn by a :class:`Mix`'s
    weights), frame and previous frame, with random drops. ``loss_mask`` (S,S) uint8: where the
    reference-camera render is compared (255 everywhere for synthetic clips, whose backdrop
    moves with the head; the head mask for clips from video, whose background stays still,
    unless ``config.video_full_frame_loss``)."""
    rng = np.random.default_rng((config.seed, n))
    clip = clips.draw(rng) if isinstance(clips, Mix) else clips[rng.integers(len(clips))]
    T = clip["target_rgb"].shape[0]
    t = int(rng.integers(T))
    t_prev = int((t + rng.integers(1, T)) % T) if T > 1 else t
    has_prev = float(rng.random() >= config.p_drop_prev)
    has_id = float(rng.random() >= config.p_drop_identity_info)
    pose_t, pose_ref = clip["pose"][t], clip["identity_pose"]
    tgt_from_ref = camera.head_motion(pose_t, pose_ref)
    prior = {}
    if config.flow_bound > 0:
        # the rig's prior flow in the camera this sample's MPI is made in (the batch's last
        # num_reference samples are in the identity's); from what the model is told about the
        # identity, as generation has it (dropped identity info: neutral, default pose)
        j = n % config.batch_size
        reference = j >= config.batch_size - num_reference(config, config.batch_size)
        prior = prior_flow_of(clip["identity_controls"] * has_id,
                              pose_ref if has_id else camera.default_head_pose(),
                              clip["controls"][t], pose_t, clip["K"],
                              clip["target_rgb"].shape[1], reference,
                              clip_alignment(clip) if reference and has_id else None)
        if config.prior_fill:  # the flow's base as generation gives it (read in reference only)
            prior["prior_base_flow"] = flow_fill.extend(prior["prior_flow"],
                                                        prior["prior_valid"], fill=False)
        if config.hole_weight > 0:
            prior["hole_mask"] = paint.holes(prior["prior_valid"], HOLE_GROW).astype(np.uint8)
    return {**prior,
        "identity": clip["identity_rgb"],
        "identity_cond": clip["identity_cond"] * np.uint8(has_id),
        "identity_expression": np.concatenate([clip["identity_controls"], pose_ref]) * has_id,
        "has_identity_info": np.float32(has_id),
        "cond_render": clip["cond"][t],
        "expression": np.concatenate([clip["controls"][t], pose_t]).astype(np.float32),
        "prev_frame": clip["target_rgb"][t_prev] * np.uint8(has_prev),
        "has_prev": np.float32(has_prev),
        "target": clip["target_rgb"][t],
        "tgt_from_ref": tgt_from_ref.astype(np.float32),
        "loss_mask": (clip["head_mask"][t]
                      if "head_mask" in clip and not config.video_full_frame_loss
                      else np.full(clip["target_rgb"].shape[1:3], 255, np.uint8)),
    }


def prior_flow_of(identity_values: np.ndarray, identity_pose: np.ndarray,
                  values: np.ndarray, pose: np.ndarray, K: np.ndarray, size: int,
                  reference: bool, alignment: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
    """The model's ``prior_flow`` (S,S,2) float32 (crop units) and ``prior_valid`` (S,S) uint8
    for a frame of blendshapes ``values`` (52,) and head pose ``pose`` (6,): the rig's backward
    flow into the identity (``rig.render_prior_flow``) in the MPI's camera: the identity's
    (``reference``: the frame's expression at the identity's pose) or the frame's; moved onto
    the identity image's face by ``alignment`` (``prior_align.fit``) when given, as generation
    moves a photo's (``generate.prior_conditions``)."""
    from mpitalk import prior_align

    identity_pose = np.asarray(identity_pose, np.float32)
    flow, valid = prior_align.prior_flow(identity_values, identity_pose, values,
                                         identity_pose if reference else pose, K, size,
                                         alignment)
    return {"prior_flow": flow, "prior_valid": valid.astype(np.uint8)}


def clip_alignment(clip: dict[str, np.ndarray]) -> np.ndarray | None:
    """The clip's ``prior_align`` (2,S,S,2), fitted as generation fits a photo's
    (``generate.identity_conditions``): MediaPipe's landmarks on the identity image against
    the rig's at the identity's expression and pose. Fitted once per clip and kept in it
    (``clip["prior_align"]``); None where MediaPipe finds either face not."""
    if "prior_align" not in clip:
        from mpitalk import face, prior_align

        S = clip["identity_rgb"].shape[0]
        faces = face.detect_faces(np.asarray(clip["identity_rgb"], np.uint8), max_faces=1)
        clip["prior_align"] = prior_align.photo_alignment(
            faces[0].landmarks_px, clip["identity_controls"], clip["identity_pose"], clip["K"],
            S) if faces else None
    return clip["prior_align"]


def collate(items: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    return {k: np.stack([np.asarray(it[k]) for it in items]) for k in items[0]}


class _Samples:
    """A torch map-style dataset over global sample numbers (see :func:`make_sample`)."""

    def __init__(self, clips, config):
        self.clips, self.config = clips, config

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, n: int) -> dict[str, Any]:
        return make_sample(self.clips, self.config, int(n))


class _From:
    """Sampler yielding first, first+1, ... (the data position of a resumed run)."""

    def __init__(self, first: int):
        self.first = first

    def __iter__(self):
        n = self.first
        while True:
            yield n
            n += 1


def batches(clips, config: Config, first_step: int, batch_size: int, num_workers: int = 0,
            process_index: int = 0, process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """Numpy batches for steps first_step, first_step+1, ...: this process's share of each."""
    import torch.utils.data as tud

    local = batch_size // process_count

    class _Local(_Samples):
        def __getitem__(self, i):  # i counts local samples; map to the global sample number
            step, j = divmod(int(i), local)
            return make_sample(self.clips, self.config,
                               step * batch_size + process_index * local + j)

    kw = {"multiprocessing_context": "spawn", "persistent_workers": True} if num_workers else {}
    loader = tud.DataLoader(_Local(clips, config), batch_size=local,
                            sampler=_From(first_step * local), num_workers=num_workers,
                            collate_fn=collate, **kw)
    yield from loader


# ------------------------------------------------------------------------------------------
# loss and step


def num_reference(config: Config, batch_size: int) -> int:
    """Samples per batch whose MPI is in the reference camera (the last ones of the batch)."""
    return int(round(batch_size * config.p_reference_space))


def _to_cond(b: dict[str, jax.Array]) -> dict[str, jax.Array]:
    f = jnp.float32
    return {"cond_render": b["cond_render"].astype(f) / 255.0, "expression": b["expression"],
            "prev_frame": b["prev_frame"].astype(f) / 255.0, "has_prev": b["has_prev"],
            "identity_cond": b["identity_cond"].astype(f) / 255.0,
            "identity_expression": b["identity_expression"],
            "has_identity_info": b["has_identity_info"],
            **({"prior_flow": b["prior_flow"], "prior_valid": b["prior_valid"].astype(f)}
               if "prior_flow" in b else {}),
            **({"prior_base_flow": b["prior_base_flow"]} if "prior_base_flow" in b else {})}


def _half_loss(model: MPIModel, b: dict[str, jax.Array], key: jax.Array, reference: bool):
    """Per-sample weighted losses and plain MSEs of one camera space's share of the batch."""
    config = model.config
    identity = b["identity"].astype(jnp.float32) / 255.0
    y01 = b["target"].astype(jnp.float32) / 255.0
    B = identity.shape[0]
    k_sigma, k_noise, k_prev = jax.random.split(key, 3)
    cond = _to_cond(b)
    if config.prev_noise > 0:  # generation feeds back its own imperfect frames: be robust to it
        k_amount, k_pixels = jax.random.split(k_prev)
        amount = config.prev_noise * jax.random.uniform(k_amount, (B, 1, 1, 1))
        noisy = cond["prev_frame"] + amount * jax.random.normal(k_pixels, y01.shape)
        cond["prev_frame"] = jnp.clip(noisy, 0.0, 1.0)
    cond = build_conditioning(config, identity, cond, reference_space=reference)
    if reference:  # the true relative pose renders it, whatever the model was told
        cond["tgt_from_mpi"] = b["tgt_from_ref"]
    sigma = diffusion.sample_sigmas(k_sigma, (B,), config.p_mean, config.p_std)
    y = y01 * 2.0 - 1.0
    x = y + sigma[:, None, None, None] * jax.random.normal(k_noise, y.shape)
    scale = diffusion.c_in(sigma, config.sigma_data)[:, None, None, None]
    fields = model.fields(scale * x, diffusion.c_noise(sigma), cond)
    rgba = model.heads.compose(fields, cond)
    if reference:
        r = config.ref_render_scale
        S = config.image_size
        depths, K = mpi_geometry(config)
        K_lo = camera.scale_intrinsics(jnp.asarray(K), 1.0 / r)
        out = jax.vmap(lambda m, T: mpi.render(m, depths, K, T, K_tgt=K_lo, hw=(S // r, S // r)))(
            rgba, cond["tgt_from_mpi"])
        y01 = y01.reshape(B, S // r, r, S // r, r, 3).mean((2, 4))
        # only where one rigid head motion explains the frame (the head, in video)
        head = b["loss_mask"].astype(jnp.float32) / 255.0
        if "hole_mask" in b:  # the mouth's inside weighs more (config.hole_weight)
            head = head * (1.0 + config.hole_weight * b["hole_mask"].astype(jnp.float32))
        head = head.reshape(B, S // r, r, S // r, r).mean((2, 4))
        mse = reference_mse(out.rgb, jax.lax.stop_gradient(out.alpha), y01, head)
    else:
        rgb, _ = jax.vmap(mpi.composite)(rgba)
        mse = jnp.mean(((rgb - y01) * 2.0) ** 2, (1, 2, 3))
    loss = diffusion.loss_weight(sigma, config.sigma_data) * mse
    extra = {}
    if config.flow_bound > 0:
        flow_px = fields["flow"] * config.image_size  # (B,G,S,S,2)
        smooth = flow_smoothness(flow_px)
        loss = loss + config.flow_smooth * smooth
        extra = {"flow_tv": smooth, "flow_px": jnp.mean(jnp.abs(flow_px), (1, 2, 3, 4))}
    if config.depth_spread > 0:
        spread = depth_spread(fields["alpha"])
        loss = loss + config.depth_spread * spread
        extra["depth_spread"] = spread
    return loss, mse, extra


def depth_spread(alpha: jax.Array) -> jax.Array:
    """(B,) the mean over pixels of the variance of the plane index under each pixel's
    compositing weights (alphas (B,D,S,S) back to front, the back plane opaque so that the
    weights sum to 1), in planes^2: 0 where one plane holds a pixel's whole opacity, 1/4 where
    two neighbouring planes share it equally, large where a soft MPI spreads it over many
    (the smear a turned view shows, and what the surface MPI's median throws away)."""
    w = jax.vmap(mpi.over_weights)(alpha)  # (B,D,S,S)
    w = w / jnp.maximum(jnp.sum(w, 1, keepdims=True), 1e-6)
    index = jnp.arange(alpha.shape[1], dtype=alpha.dtype)[None, :, None, None]
    mean = jnp.sum(w * index, 1, keepdims=True)
    return jnp.mean(jnp.sum(w * (index - mean) ** 2, 1), (1, 2))


def flow_smoothness(flow_px: jax.Array) -> jax.Array:
    """(B,) mean absolute difference of a flow (B,G,S,S,2), pixels, between horizontal and
    vertical neighbours (pixels per pixel): a total-variation prior that keeps the warp from
    tearing the photo apart while allowing the sharp flow edges of a lip's outline."""
    dx = jnp.abs(flow_px[:, :, :, 1:] - flow_px[:, :, :, :-1])
    dy = jnp.abs(flow_px[:, :, 1:] - flow_px[:, :, :-1])
    return 0.5 * (jnp.mean(dx, (1, 2, 3, 4)) + jnp.mean(dy, (1, 2, 3, 4)))


def reference_mse(rgb: jax.Array, cover: jax.Array, target: jax.Array,
                  weight: jax.Array) -> jax.Array:
    """(B,) MSE in [-1,1] units of a reference-camera render against the target, per sample.

    ``rgb`` (B,h,w,3) the render, premultiplied by its coverage ``cover`` (B,h,w) (where the
    warped planes reach): it is compared with ``cover * target`` (B,h,w,3), weighted by
    ``cover * weight`` (``weight`` (B,h,w) >= 0: the head mask of clips from video, 1 for
    synthetic ones), and normalised by the total weight."""
    w = (cover * weight)[..., None]
    err = (rgb - cover[..., None] * target) * 2.0
    return jnp.sum(w * err**2, (1, 2, 3)) / (3.0 * jnp.maximum(jnp.sum(w, (1, 2, 3)), 1.0))


def loss_fn(model: MPIModel, batch: dict[str, jax.Array], key: jax.Array):
    """Mean EDM-weighted loss over the batch; the last ``num_reference`` samples are rendered
    from the reference camera."""
    B = batch["target"].shape[0]
    n_ref = num_reference(model.config, B)
    k_t, k_r = jax.random.split(key)
    losses, metrics = [], {}
    for name, sl, ref, k in (("target", slice(0, B - n_ref), False, k_t),
                             ("reference", slice(B - n_ref, B), True, k_r)):
        if sl.stop > sl.start:
            w, mse, extra = _half_loss(model, {k_: v[sl] for k_, v in batch.items()}, k, ref)
            losses.append(w)
            metrics[f"mse_{name}"] = jnp.mean(mse)
            for key_, v in extra.items():
                metrics[f"{key_}_{name}"] = jnp.mean(v)
    loss = jnp.mean(jnp.concatenate(losses))
    if model.config.flow_bound > 0:
        metrics["prior_gate"] = model.heads.gate()
    return loss, metrics


def lr_schedule(config: Config) -> optax.Schedule:
    """Linear warm-up to the peak rate, then constant (``decay_steps`` 0) or a cosine down to
    ``final_lr_fraction`` of the peak at ``decay_steps``."""
    warmup = max(config.warmup_steps, 1)
    if 0 < config.decay_steps <= warmup:
        raise UserError(f"decay_steps ({config.decay_steps}) must exceed warmup_steps "
                        f"({warmup}), or be 0 for a constant rate")
    lr = optax.linear_schedule(config.learning_rate / warmup, config.learning_rate, warmup)
    if config.decay_steps > warmup:
        cosine = optax.cosine_decay_schedule(config.learning_rate, config.decay_steps - warmup,
                                             alpha=config.final_lr_fraction)
        lr = optax.join_schedules([lr, cosine], [warmup])
    return lr


# parameters of the flow branch (model.heads.flow, .prior_gate, model.unet.extra_stem)
_FLOW_PARAMS = ("flow", "prior_gate", "extra_stem")


def _path_names(path) -> set:
    """The attribute names along a parameter's tree path."""
    return {getattr(k, "key", getattr(k, "name", None)) for k in path}


def _is_flow_param(path) -> bool:
    return not _path_names(path).isdisjoint(_FLOW_PARAMS)


def _is_gate_param(path) -> bool:
    return "prior_gate" in _path_names(path)


def _is_residual_flow_param(path) -> bool:
    """The colour branch's learned flow layer (model.heads.flow), not the gate or the stem."""
    return {"heads", "flow"} <= _path_names(path)


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """AdamW on :func:`lr_schedule`, after global-norm clipping. With a flow branch its
    parameters are clipped on their own: the flow is in units of the crop's side, so its
    layer's gradient is ~100x the rest's (331 vs 3 on a real batch at the shipped model), and
    one global clip would scale every other gradient by its changing norm; the rest is then
    clipped and stepped exactly as without the branch. ``freeze_flow_residual``: the learned
    flow layer gets no step at all (its own group, so the rest's clip does not see it)."""
    lr = lr_schedule(config)

    def adamw() -> optax.GradientTransformation:
        return optax.chain(optax.clip_by_global_norm(config.grad_clip),
                           optax.adamw(lr, b1=0.9, b2=0.99, weight_decay=config.weight_decay))

    if config.flow_bound <= 0:
        return adamw()
    groups = {"flow": adamw(), "rest": adamw()}
    gate_apart = config.prior_gate_lr_scale != 1.0
    if gate_apart:
        # the prior's gate on its own: its rate scaled, no decay pulling it back to 0 (with
        # scale 1 the groups stay as they were, so that earlier flow runs still resume)
        groups["gate"] = optax.chain(
            optax.clip_by_global_norm(config.grad_clip),
            optax.adam(lambda t: config.prior_gate_lr_scale * lr(t), b1=0.9, b2=0.99))

    if config.freeze_flow_residual:
        groups["frozen"] = optax.set_to_zero()

    def group(path) -> str:
        if config.freeze_flow_residual and _is_residual_flow_param(path):
            return "frozen"
        if gate_apart and _is_gate_param(path):
            return "gate"
        return "flow" if _is_flow_param(path) else "rest"

    return optax.multi_transform(
        groups, lambda params: jax.tree_util.tree_map_with_path(
            lambda path, _: group(path), params))


@nnx.jit
def train_step(model: MPIModel, optimizer: nnx.Optimizer, ema: nnx.State,
               batch: dict[str, jax.Array], key: jax.Array, step: jax.Array):
    """One optimisation step; returns the new EMA parameters and the step's metrics."""
    (loss, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch, key)
    optimizer.update(model, grads)
    decay = jnp.minimum(model.config.ema_decay, (1.0 + step) / (10.0 + step))
    params = nnx.state(model, nnx.Param)
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    return ema, metrics


# ------------------------------------------------------------------------------------------
# devices


def maybe_initialize_distributed() -> None:
    """``jax.distributed.initialize()`` only when a cluster environment says there are hosts."""
    if any(v in os.environ for v in ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")) or int(
            os.environ.get("SLURM_NTASKS", "1")) > 1 or int(
            os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        jax.distributed.initialize()


def make_mesh() -> Mesh:
    """A 1-D mesh over every device of every host, axis ``data``."""
    return Mesh(np.array(jax.devices()), ("data",))


def shard_batch(mesh: Mesh, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """This process's share of a batch -> global arrays split over ``data``."""
    sharding = NamedSharding(mesh, P("data"))
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def replicate(mesh: Mesh, tree: Any) -> Any:
    return jax.device_put(tree, NamedSharding(mesh, P()))


# ------------------------------------------------------------------------------------------
# the loop


# fields that fix the parameters' shapes and meaning (sigma_data: the EDM input scaling): a saved
# model fits a run only if they match. The plane depths (near_m, far_m) may change: a fine-tune
# then re-learns which plane carries which depth
ARCHITECTURE_FIELDS = ("image_size", "num_planes", "focal_scale", "stem_factor", "channels",
                       "blocks_per_level", "attention_levels", "attention_heads", "emb_dim",
                       "sweep_depths_m", "sigma_data")


class Trainer:
    """Model, optimizer, EMA and their checkpoints; ``run`` trains from the current step."""

    def __init__(self, config: Config, workdir: str | Path, mesh: Mesh | None = None):
        self.config = config
        self.workdir = Path(workdir)
        self.mesh = mesh if mesh is not None else make_mesh()
        self.model = MPIModel(config, rngs=nnx.Rngs(config.seed))
        self.optimizer = nnx.Optimizer(self.model, make_optimizer(config), wrt=nnx.Param)
        nnx.update(self.model, replicate(self.mesh, nnx.state(self.model)))
        nnx.update(self.optimizer, replicate(self.mesh, nnx.state(self.optimizer)))
        self.ema = jax.tree.map(jnp.copy, nnx.state(self.model, nnx.Param))
        self.key = jax.random.key(config.seed)
        self.step = 0
        self.ckpt = TrainCheckpointsLazy(self.workdir / "checkpoints", config.keep_checkpoints)

    def state(self) -> dict[str, Any]:
        return {"params": nnx.state(self.model, nnx.Param), "opt": nnx.state(self.optimizer),
                "ema": self.ema, "key": jax.random.key_data(self.key)}

    def save(self) -> None:
        meta = {"step": self.step, "samples_seen": self.step * self.config.batch_size,
                "config": self.config.to_dict()}
        self.ckpt.get().save(self.step, self.state(), meta)

    def restore(self) -> bool:
        mgr = self.ckpt.get()
        if mgr.latest_step() is None:
            return False
        step, state, meta = mgr.restore(self.state())
        nnx.update(self.model, state["params"])
        nnx.update(self.optimizer, state["opt"])
        self.ema = state["ema"]
        self.key = jax.random.wrap_key_data(state["key"])
        self.step = int(meta["step"])
        return True

    def init_from(self, path: str | Path) -> int | None:
        """Start from the weights of a saved model (``checkpoint.save``): the model and its EMA
        both take them; the optimizer starts fresh. Returns the saved model's training step."""
        saved_config, saved = checkpoint.load(path)
        if saved_config.flow_bound <= 0 < self.config.flow_bound:
            # a model from before the flow branch: given one that starts at zero (same outputs)
            saved = with_flow(saved, self.config.flow_bound, self.config.flow_groups)
            saved_config = saved.config
        if (saved_config.flow_bound > 0) != (self.config.flow_bound > 0) or (
                self.config.flow_bound > 0
                and saved_config.flow_groups != self.config.flow_groups):
            raise UserError(f"{path}: its flow branch (flow_bound {saved_config.flow_bound}, "
                            f"flow_groups {saved_config.flow_groups}) does not fit this run's "
                            f"(flow_bound {self.config.flow_bound}, flow_groups "
                            f"{self.config.flow_groups}); a flow branch can be added, not "
                            "removed, and its groups cannot change")
        for name in ARCHITECTURE_FIELDS:
            if getattr(saved_config, name) != getattr(self.config, name):
                raise UserError(f"{path}: its {name} is {getattr(saved_config, name)!r}, this "
                                f"run's is {getattr(self.config, name)!r}; drop the --set that "
                                "changes it")
        params = replicate(self.mesh, nnx.state(saved, nnx.Param))
        nnx.update(self.model, params)
        self.ema = jax.tree.map(jnp.copy, params)
        return checkpoint.read_meta(Path(path)).get("step")

    def ema_model(self) -> MPIModel:
        graphdef, _ = nnx.split(self.model)
        return nnx.merge(graphdef, self.ema)


class TrainCheckpointsLazy:
    """Opens the orbax manager on first use (tests that never save do not create folders)."""

    def __init__(self, directory: Path, keep: int):
        self.directory, self.keep, self._mgr = directory, keep, None

    def get(self) -> checkpoint.TrainCheckpoints:
        if self._mgr is None:
            self._mgr = checkpoint.TrainCheckpoints(self.directory, self.keep)
        return self._mgr

    def close(self) -> None:
        if self._mgr is not None:
            self._mgr.close()


def train_and_evaluate(config: Config, workdir: str | Path,
                       data_dir: str | Path | Sequence[str | Path], steps: int, *,
                       resume: bool = False, num_workers: int = 0, progress: bool = True,
                       stop_after: int | None = None,
                       init_from: str | Path | None = None,
                       data_weights: Sequence[float] | None = None) -> list[dict]:
    """Train to ``steps`` total steps (checkpointing, logging, sample grids); returns the
    metrics lines logged in this call. ``data_dir``: one dataset folder or several, whose train
    splits are pooled (the preview's validation clips come from the first). ``stop_after`` ends
    this call after that many steps (tests use it to simulate a kill). ``init_from``: a saved
    model whose weights a new run starts from (ignored when the run resumes from its own
    checkpoints). ``data_weights``: one per dataset folder, the share of each batch drawn from
    it (:class:`Mix`); None pools the folders' clips, each folder weighted by its clip count."""
    from tqdm import tqdm

    workdir = Path(workdir)
    maybe_initialize_distributed()
    trainer = Trainer(config, workdir)
    if (workdir / "checkpoints").is_dir() and any((workdir / "checkpoints").iterdir()):
        if not resume:
            raise UserError(f"{workdir} already holds checkpoints; pass --resume to continue "
                            "or choose a new --workdir")
        trainer.restore()
        if jax.process_index() == 0:
            drop_metrics_after(workdir / "metrics.jsonl", trainer.step)
    elif init_from is not None:
        saved_step = trainer.init_from(init_from)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "init_from.json").write_text(json.dumps(
            {"path": str(Path(init_from).resolve()), "step": saved_step}) + "\n")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")
    if data_weights is None:
        clips = load_clips(data_dir, "train")
    else:
        clips = Mix.of(load_groups(data_dir, "train"), data_weights)
    (workdir / "data.json").write_text(json.dumps(
        {"data": [str(Path(d).resolve()) for d in dataset_dirs(data_dir)],
         "weights": None if data_weights is None else list(clips.weights),
         "train_clips": len(clips)}) + "\n")
    try:
        val = load_clips(dataset_dirs(data_dir)[0], "val")
        val = val[:: max(1, len(val) // 4)][:4]  # spread over identities
    except UserError:
        val = (clips.clips if isinstance(clips, Mix) else clips)[:4]
    preview = preview_batch(val, config)
    B = config.batch_size
    if B % jax.device_count():
        raise UserError(f"--batch {B} must be a multiple of the {jax.device_count()} devices")
    data = batches(clips, config, trainer.step, B, num_workers, jax.process_index(),
                   jax.process_count())
    logged, acc, t_last, n_last = [], {}, time.perf_counter(), trainer.step
    end = steps if stop_after is None else min(steps, trainer.step + stop_after)
    bar = tqdm(total=steps, initial=trainer.step, desc="train", unit="step", disable=not progress,
               dynamic_ncols=True)
    metrics_path = workdir / "metrics.jsonl"
    if True:  # arrays carry their shardings; no mesh context is needed
        while trainer.step < end:
            batch = shard_batch(trainer.mesh, next(data))
            key = jax.random.fold_in(trainer.key, trainer.step)
            trainer.ema, m = train_step(trainer.model, trainer.optimizer, trainer.ema, batch,
                                        key, jnp.asarray(trainer.step, jnp.float32))
            trainer.step += 1
            for k, v in m.items():
                acc.setdefault(k, []).append(v)
            bar.update(1)
            if trainer.step % config.log_every == 0 or trainer.step == end:
                now = time.perf_counter()
                line = {k: float(np.mean([float(x) for x in v])) for k, v in acc.items()}
                line.update(step=trainer.step, steps_per_s=(trainer.step - n_last) / (now - t_last),
                            time=time.time())
                t_last, n_last, acc = now, trainer.step, {}
                logged.append(line)
                if jax.process_index() == 0:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(line) + "\n")
                bar.set_postfix(loss=f"{line['loss']:.3f}")
            if trainer.step % config.checkpoint_every == 0 or trainer.step == end:
                trainer.save()
            if trainer.step % config.sample_every == 0 and jax.process_index() == 0:
                write_report(workdir, trainer.ema_model(), preview, trainer.step)
    bar.close()
    trainer.ckpt.close()
    return logged


def drop_metrics_after(path: Path, step: int) -> None:
    """Remove ``metrics.jsonl`` lines past ``step``: a killed run logged steps that its last
    checkpoint does not hold, and the resumed run logs them again."""
    if not path.is_file():
        return
    lines = [x for x in path.read_text().splitlines() if x]
    kept = [x for x in lines if json.loads(x)["step"] <= step]
    if len(kept) < len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(x + "\n" for x in kept))
        os.replace(tmp, path)


# ------------------------------------------------------------------------------------------
# reports: sample grids and the loss curve


def preview_batch(clips: list[dict[str, np.ndarray]], config: Config) -> dict[str, np.ndarray]:
    """A fixed batch for the sample grids: the middle frame of each clip, all conditions on."""
    from mpitalk import synth

    items = []
    for clip in clips:
        t = clip["target_rgb"].shape[0] // 2
        pose_t = clip["pose"][t]
        items.append({
            "identity": clip["identity_rgb"] / 255.0, "target": clip["target_rgb"][t] / 255.0,
            **synth.true_identity_info(clip),
            "cond_render": clip["cond"][t] / 255.0,
            "expression": np.concatenate([clip["controls"][t], pose_t]),
            "prev_frame": np.zeros_like(clip["target_rgb"][t], np.float32), "has_prev": 0.0,
            # the +10 degree side view: orbit about the head centre, as docs/dataset.md does
            "side_from_target": camera.orbit_pose(np.radians(10.0), 0.0, pose_t[3:6]),
            **(prior_flow_of(clip["identity_controls"], clip["identity_pose"],
                             clip["controls"][t], pose_t, clip["K"],
                             clip["target_rgb"].shape[1], True, clip_alignment(clip))
               if config.flow_bound > 0 else {})})
    return {k: np.asarray(v, np.float32) for k, v in collate(items).items()}


def preview_images(model: MPIModel, preview: dict[str, np.ndarray], steps: int,
                   key: jax.Array | None = None) -> dict[str, np.ndarray]:
    """Sample the preview batch as generation does by default (the MPI made in the identity's
    camera, every view rendered from it at the frame's pose ``frame_from_mpi``, as ``mpi_io``
    stores it): target-view render, its depth, +10 degree view."""
    config = model.config
    cond = {k: preview[k] for k in ("identity_cond", "identity_expression", "cond_render",
                                    "expression", "prev_frame", "has_prev", "prior_flow",
                                    "prior_valid") if k in preview}
    cond["camera_space"] = np.ones(len(preview["identity"]), np.float32)
    key = jax.random.key(config.seed + 1) if key is None else key
    from mpitalk.model import sample_fields

    # as the main job stores it: the factored MPI (fields + the identity photo), materialized
    # (at S here: the training identities are S px)
    fields = sample_fields(model, config, preview["identity"], cond, key, steps=steps)
    S = config.image_size
    rgba = jax.vmap(lambda f, p: mpi.materialize(f, p, S))(fields, jnp.asarray(preview["identity"]))
    depths, K = mpi_geometry(config)
    frame_from_mpi = jnp.asarray(camera.head_motion(preview["expression"][:, 52:],
                                                    preview["identity_expression"][:, 52:]))
    view = jax.vmap(lambda m, T: mpi.render(m, depths, K, T))
    own = view(rgba, frame_from_mpi)
    side = view(rgba, jnp.asarray(preview["side_from_target"]) @ frame_from_mpi)
    return {"rgba": np.asarray(rgba), "render": np.asarray(own.rgb),
            "depth": np.asarray(own.depth), "side": np.asarray(side.rgb)}


def write_report(workdir: Path, model: MPIModel, preview: dict[str, np.ndarray], step: int
                 ) -> None:
    """``samples_STEP.png`` (rows: identity, target, render, depth, +10 deg view) and
    ``loss_curve.png`` from ``metrics.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    out = preview_images(model, preview, model.config.sample_steps)
    c = model.config
    d = (out["depth"] - c.near_m) / (c.far_m - c.near_m)
    depth_rgb = np.repeat(np.clip(1.0 - d, 0, 1)[..., None], 3, -1)
    rows = [preview["identity"], preview["target"], out["render"], depth_rgb, out["side"]]
    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8)).save(
        workdir / f"samples_{step:07d}.png")
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines() if x]
    if lines:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
        st = [x["step"] for x in lines]
        ax[0].semilogy(st, [x["loss"] for x in lines])
        ax[0].set(xlabel="step", ylabel="EDM-weighted loss", title="loss")
        for k in ("mse_target", "mse_reference"):
            if k in lines[0]:
                ax[1].semilogy(st, [x[k] for x in lines], label=k)
        ax[1].set(xlabel="step", ylabel="MSE ([-1,1] units)", title="unweighted render MSE")
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(workdir / "loss_curve.png", dpi=80)
        plt.close(fig)


def export(workdir: str | Path, out: str | Path, note: str = "") -> Path:
    """Copy the latest training checkpoint's EMA weights into a model checkpoint at ``out``."""
    workdir = Path(workdir)
    if not (workdir / "config.json").is_file():
        raise UserError(f"{workdir}: not a training run (no config.json); give the --workdir "
                        "of a python -m mpitalk.train run")
    config = Config.from_dict(json.loads((workdir / "config.json").read_text()))
    trainer = Trainer(config, workdir)
    if not trainer.restore():
        raise UserError(f"no training checkpoint in {workdir / 'checkpoints'}")
    trainer.ckpt.close()
    ema = jax.device_get(trainer.ema_model())
    return checkpoint.save(out, config, ema, step=trainer.step,
                           note=note or f"EMA weights of {workdir} at step {trainer.step}")


def parse_overrides(items: list[str], config: Config) -> dict[str, Any]:
    """``["field=value", ...]`` -> {field: value}; values parse as JSON (lists become tuples),
    and must have the field's current type (ints pass for floats)."""
    out = {}
    fields = {f.name for f in dataclasses.fields(config)}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in fields:
            raise UserError(f"--set {item!r}: expected FIELD=VALUE with a Config field name "
                            "(see mpitalk/model/config.py)")
        try:
            value = json.loads(text)
        except ValueError:
            raise UserError(f"--set {item!r}: {text!r} is not a number, list or JSON "
                            "value") from None
        value = tuple(value) if isinstance(value, list) else value
        current = getattr(config, name)
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(current) or (isinstance(value, tuple) and current and any(
                type(v) is not type(current[0]) for v in value)):
            kind = type(current).__name__
            if isinstance(current, tuple) and current:
                kind += f" of {type(current[0]).__name__}"
            raise UserError(f"--set {item!r}: {name} takes a {kind}")
        out[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mpitalk.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", choices=sorted(PRESETS), default=None,
                   help="config preset (default: tiny; with --init-from: the saved model's)")
    p.add_argument("--data", type=Path, nargs="+",
                   help="dataset folder(s) (python -m mpitalk.synth --out); several folders' "
                        "train splits are pooled")
    p.add_argument("--data-weights", type=float, nargs="+", default=None, metavar="W",
                   help="one weight per --data folder: the share of every batch drawn from it "
                        "(default: in proportion to the folders' clip counts)")
    p.add_argument("--workdir", type=Path, required=True, help="run folder")
    p.add_argument("--steps", type=int, default=100_000, help="total training steps")
    p.add_argument("--batch", type=int, default=None, help="global batch (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: preset's)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    p.add_argument("--sample-every", type=int, default=None, help="steps between sample grids")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--init-from", type=Path, default=None, metavar="CKPT",
                   help="start a new run from a saved model's weights and config (fine-tuning)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any config field (repeatable), e.g. --set p_drop_prev=0.7")
    p.add_argument("--export", type=Path, default=None, metavar="DIR",
                   help="instead of training: write the run's latest EMA weights to DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    return run_cli(lambda: _run(a), interrupted="interrupted; resume with --resume")


def _config_from(d: dict, where) -> Config:
    try:
        return Config.from_dict(d)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: {exc}; it was written by another mpitalk version") from None


def _run(a: argparse.Namespace) -> None:
    if a.export is not None:
        out = export(a.workdir, a.export)
        print(f"wrote {out}")
        return
    if a.data is None:
        raise UserError("--data is required for training")
    if a.init_from is not None and a.config is not None:
        raise UserError("--init-from takes the saved model's config; drop --config (change "
                        "training fields with --set FIELD=VALUE)")
    config = PRESETS[a.config or "tiny"]()
    if a.init_from is not None:
        config = _config_from(checkpoint.read_meta(a.init_from)["config"], a.init_from)
    if a.resume and (a.workdir / "config.json").is_file():
        path = a.workdir / "config.json"
        config = _config_from(json.loads(path.read_text()), path)
    over = {"batch_size": a.batch, "learning_rate": a.lr,
            "checkpoint_every": a.checkpoint_every, "sample_every": a.sample_every}
    config = config.replace(**{k: v for k, v in over.items() if v is not None})
    config = config.replace(**parse_overrides(a.set, config))
    train_and_evaluate(config, a.workdir, a.data, a.steps, resume=a.resume,
                       num_workers=a.workers, progress=not a.quiet, init_from=a.init_from,
                       data_weights=a.data_weights)


if __name__ == "__main__":
    sys.exit(main())
