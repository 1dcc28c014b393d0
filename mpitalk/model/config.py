"""Model and training configuration: frozen dataclasses, presets as functions (``tiny``, ``base``).

Every field has a unit or meaning in its comment; a typo in a field name fails (no dict lookups).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    # --- images and MPI geometry (docs/dataset.md: K = intrinsics(1.5 S, S, S)) ---
    image_size: int = 128  # S, pixels per side of the identity, the conditions and the MPI
    num_planes: int = 16  # D, MPI planes, uniform in disparity, back to front
    near_m: float = 0.48  # nearest plane depth, metres (the nose of a head at 0.6 m)
    far_m: float = 1.1  # farthest (opaque) plane depth, metres: the synthetic backdrop's; on
    # validation, 0.48-1.1 m instead of 0.42-1.2 m raised the 16-plane oracle's +-10 deg views
    # by 0.3 dB (docs/eval/oracle_planes_val.json), a fine-tuned model's by 0.1-0.3 dB
    # (data/README.md; the demo model has 32 planes over this range)
    focal_scale: float = 1.5  # focal length in units of S (focal_px = focal_scale * S)
    # --- network ---
    stem_factor: int = 2  # f: the trunk works on f x f pixel blocks (S/f px); heads restore S
    channels: tuple[int, ...] = (24, 48, 96)  # U-Net channels per level (level i: S/f/2^i px)
    blocks_per_level: int = 1  # residual blocks per level, encoder and decoder each
    attention_levels: tuple[int, ...] = ()  # levels (indices into channels) with self-attention;
    # the bottleneck (S/f/2^(n-1) px, 16x16 for tiny) always has one
    attention_heads: int = 4  # heads of each self-attention layer
    emb_dim: int = 128  # width of the noise-level + expression embedding (FiLM source)
    sweep_depths_m: tuple[float, ...] = (0.6, 1.1)  # identity pre-warped at these depths (metres)
    # into the MPI camera and fed as input (head centre, backdrop): the coarse "where did it go"
    blend_init: float = 2.0  # initial logit of the per-plane identity-copy blend (sigmoid -> 0.88)
    flow_bound: float = 0.0  # warp and paint (issue 20): bound of the colour branch's predicted
    # flow (the factored MPI's sampling offset into the photo), units of the photo crop's side,
    # through a tanh; 0: no flow branch and no rig prior input (every model before issue 20)
    flow_groups: int = 1  # G, flows predicted per pixel; plane i uses flow[i * G // D]
    # (contiguous groups back to front, the factored format's plane_groups)
    # --- diffusion (EDM) ---
    sigma_data: float = 0.5  # EDM sigma_data, for images mapped to [-1, 1]
    p_mean: float = -1.2  # training ln(sigma) mean (EDM log-normal)
    p_std: float = 1.2  # training ln(sigma) standard deviation
    sigma_min: float = 0.002  # sampling schedule minimum noise level
    sigma_max: float = 80.0  # sampling schedule maximum noise level
    rho: float = 7.0  # Karras schedule exponent
    # --- training ---
    batch_size: int = 8  # samples per step (global, over all devices)
    learning_rate: float = 5e-4  # AdamW peak learning rate
    warmup_steps: int = 200  # linear learning-rate warm-up, steps
    decay_steps: int = 0  # cosine learning-rate decay ends at this step (0: constant after warm-up)
    final_lr_fraction: float = 0.1  # the decayed rate, as a fraction of the peak
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # global gradient-norm clip
    ema_decay: float = 0.999  # EMA of the weights (ramped: min(decay, (1+t)/(10+t)))
    p_reference_space: float = 0.5  # fraction of samples whose MPI is in the reference camera
    ref_render_scale: int = 2  # reference-space samples are rendered and compared at S/this px
    p_drop_prev: float = 0.5  # probability the previous-frame condition is dropped (zeros + flag)
    prev_noise: float = 0.0  # previous-frame condition + N(0, (u * this)^2), u ~ U(0,1) per
    # sample ([0,1] pixel units): robustness to the imperfect frames generation feeds back
    flow_smooth: float = 0.0  # weight of the flow's smoothness loss: the mean absolute
    # difference of the predicted flow between neighbouring pixels, in pixels per pixel
    prior_gate_lr_scale: float = 1.0  # the rig prior's gate learns at this times the rate
    # (its own clip, no weight decay): the one scalar that hands the warp to the rig, which
    # synthetic data (made by the rig) rewards at once, need not wait on the other layers
    freeze_flow_residual: bool = False  # the colour branch's learned flow layer
    # (heads.flow) is not stepped: from a model whose layer is zero the flow stays the gated
    # rig prior alone, while the gate, the paint and everything else train
    video_full_frame_loss: bool = False  # compare clips from video over the whole frame in
    # the reference camera, not only on the head mask: their background stays still while the
    # MPI moves with the head, which pulls it towards the head's depth (where it moves least)
    depth_spread: float = 0.0  # weight of the depth-spread loss: the variance of the plane
    # index under each pixel's compositing weights (planes^2, mean over pixels), which pulls a
    # pixel's opacity onto one depth, as the stored surface MPI re-lays it (mpitalk.surface)
    hole_weight: float = 0.0  # reference samples of a flow model: the loss on the rig prior's
    # holes (the mouth's inside, which the photo never shows and the model must paint;
    # mpitalk.paint), grown by HOLE_GROW texels, weighs 1 + this
    prior_fill: bool = False  # train a flow model with generation's flow base, the rig prior
    # carried past the face without folds (mpitalk.flow_fill), instead of zero off the face
    p_drop_identity_info: float = 0.2  # probability identity_cond/identity_expression are dropped
    seed: int = 0  # seed of parameters, noise and data order
    checkpoint_every: int = 500  # steps between training checkpoints
    keep_checkpoints: int = 3  # training checkpoints kept
    log_every: int = 25  # steps between metrics.jsonl lines
    sample_every: int = 1000  # steps between sample grids / loss-curve PNGs
    sample_steps: int = 8  # sampler steps for the sample grids

    def replace(self, **kw) -> Config:
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"unknown config fields {unknown}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


def tiny() -> Config:
    """CPU preset: 128x128, 16 planes, ~1-2 M parameters, < 1 s per step of 8 on 2 cores."""
    return Config()


def base() -> Config:
    """GPU preset: 256x256, 32 planes, wider U-Net with attention at 32x32 and 16x16."""
    return Config(image_size=256, num_planes=32, stem_factor=1, channels=(64, 128, 192, 256, 384),
                  blocks_per_level=2, attention_levels=(3, 4), attention_heads=8, emb_dim=512,
                  batch_size=32, learning_rate=2e-4, ref_render_scale=1, warmup_steps=2000,
                  ema_decay=0.9999,
                  checkpoint_every=2000, sample_every=5000)


def micro() -> Config:
    """Test preset: 32x32, 4 planes, a few thousand parameters' worth of compute."""
    return Config(image_size=32, num_planes=4, channels=(8, 16), attention_levels=(),
                  attention_heads=2, emb_dim=32, batch_size=4, warmup_steps=2,
                  checkpoint_every=2, log_every=1, sample_every=1000, sample_steps=2)


PRESETS = {"tiny": tiny, "base": base, "micro": micro}
