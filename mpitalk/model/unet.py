"""The denoiser trunk: a small U-Net (Ronneberger et al. 2015, as in DDPM/EDM) in Flax NNX.

Residual blocks are modulated by FiLM (scale/shift from one embedding of the noise level, the
expression/pose vectors and the condition flags, as in EDM's "adaptive" U-Net blocks);
self-attention runs at the low resolutions named in the config. Images are NHWC.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def _groups(c: int) -> int:
    """GroupNorm groups for ``c`` channels: 8 where possible, about 4 channels per group below."""
    g = max(1, min(8, c // 4))
    while c % g:
        g -= 1
    return g


class ResBlock(nnx.Module):
    """GN -> SiLU -> conv -> GN -> FiLM(emb) -> SiLU -> conv, plus a (linear) skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.GroupNorm(c_in, num_groups=_groups(c_in), rngs=rngs)
        self.conv1 = nnx.Conv(c_in, c_out, (3, 3), padding="SAME", rngs=rngs)
        self.norm2 = nnx.GroupNorm(c_out, num_groups=_groups(c_out), rngs=rngs)
        # FiLM starts as the identity (scale 0 -> 1 + 0, shift 0)
        self.film = nnx.Linear(emb_dim, 2 * c_out, kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (3, 3), padding="SAME", rngs=rngs,
                              kernel_init=nnx.initializers.variance_scaling(
                                  0.1, "fan_avg", "uniform"))
        # a dense layer, not a 1x1 conv: XLA:CPU's 1x1-conv weight gradient is very slow
        self.skip = nnx.Linear(c_in, c_out, rngs=rngs) if c_in != c_out else None

    def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        scale, shift = jnp.split(self.film(emb)[:, None, None, :], 2, axis=-1)
        h = self.norm2(h) * (1.0 + scale) + shift
        h = self.conv2(jax.nn.silu(h))
        return (x if self.skip is None else self.skip(x)) + h


class Attention(nnx.Module):
    """Pre-norm multi-head self-attention over all pixels of a (low-resolution) feature map."""

    def __init__(self, c: int, heads: int, *, rngs: nnx.Rngs):
        self.norm = nnx.GroupNorm(c, num_groups=_groups(c), rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=c, qkv_features=c,
                                           decode=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        B, H, W, C = x.shape
        h = self.norm(x).reshape(B, H * W, C)
        return x + self.attn(h).reshape(B, H, W, C)


def space_to_depth(x: jax.Array, f: int) -> jax.Array:
    """(B,H,W,C) -> (B,H/f,W/f,f*f*C): each f x f pixel block becomes one pixel's channels."""
    B, H, W, C = x.shape
    x = x.reshape(B, H // f, f, W // f, f, C).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H // f, W // f, f * f * C)


def depth_to_space(x: jax.Array, f: int) -> jax.Array:
    """Inverse of :func:`space_to_depth`."""
    B, H, W, C = x.shape
    x = x.reshape(B, H, W, f, f, C // (f * f)).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H * f, W * f, C // (f * f))


def fourier_features(t: jax.Array, dim: int) -> jax.Array:
    """(B,) scalars -> (B, dim) sin/cos features at log-spaced frequencies (1 .. 1000)."""
    half = dim // 2
    freqs = jnp.exp(jnp.linspace(0.0, math.log(1000.0), half))
    a = t[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(a), jnp.cos(a)], axis=-1)


class UNet(nnx.Module):
    """(B,S,S,c_in) image + (B,) noise level + (B,V) vector -> (B,S/f,S/f,channels[0]) features.

    The image enters as f x f pixel blocks (space-to-depth, ``stem_factor`` f): on a CPU the
    full-resolution convolutions would cost most of a step, and the heads restore full resolution
    per block (depth-to-space), where the identity's own pixels carry the detail.
    """

    def __init__(self, c_in: int, vec_dim: int, channels: tuple[int, ...], blocks: int,
                 attention_levels: tuple[int, ...], heads: int, emb_dim: int, stem_factor: int,
                 *, rngs: nnx.Rngs, c_extra: int = 0):
        self.emb_dim, self.f = emb_dim, stem_factor
        self.emb1 = nnx.Linear(vec_dim + emb_dim // 2, emb_dim, rngs=rngs)
        self.emb2 = nnx.Linear(emb_dim, emb_dim, rngs=rngs)
        self.stem = nnx.Linear(c_in * stem_factor**2, channels[0], rngs=rngs)
        # ``c_extra`` more input channels (the rig's prior flow) through their own stem, added
        # to the first one's output; its kernel starts at zero, so a model given them starts as
        # the model without them (the shipped checkpoint loads unchanged)
        self.extra_stem = (nnx.Linear(c_extra * stem_factor**2, channels[0], use_bias=False,
                                      kernel_init=nnx.initializers.zeros, rngs=rngs)
                           if c_extra else None)
        n = len(channels)
        enc, enc_attn, down, dec, dec_attn, up = [], [], [], [], [], []
        c = channels[0]
        for i, ch in enumerate(channels):
            enc.append(nnx.List([ResBlock(c if b == 0 else ch, ch, emb_dim, rngs=rngs)
                                 for b in range(blocks)]))
            enc_attn.append(Attention(ch, heads, rngs=rngs) if i in attention_levels else None)
            c = ch
            if i < n - 1:
                down.append(nnx.Conv(c, channels[i + 1], (3, 3), strides=(2, 2), padding="SAME",
                                     rngs=rngs))
                c = channels[i + 1]
        self.mid = ResBlock(c, c, emb_dim, rngs=rngs)
        self.mid_attn = Attention(c, heads, rngs=rngs)
        for i in reversed(range(n)):
            ch = channels[i]
            if i < n - 1:
                up.append(nnx.Conv(c, ch, (3, 3), padding="SAME", rngs=rngs))
                c = ch
            dec.append(nnx.List([ResBlock(c + ch if b == 0 else ch, ch, emb_dim, rngs=rngs)
                                 for b in range(blocks)]))
            dec_attn.append(Attention(ch, heads, rngs=rngs) if i in attention_levels else None)
        self.enc, self.enc_attn, self.down = nnx.List(enc), nnx.List(enc_attn), nnx.List(down)
        self.dec, self.dec_attn, self.up = nnx.List(dec), nnx.List(dec_attn), nnx.List(up)
        self.out_norm = nnx.GroupNorm(c, num_groups=_groups(c), rngs=rngs)
        self.out_channels = c

    def __call__(self, x: jax.Array, noise: jax.Array, vec: jax.Array,
                 extra: jax.Array | None = None) -> jax.Array:
        """``extra`` (B,S,S,c_extra): the extra input channels (required iff c_extra > 0)."""
        emb = jnp.concatenate([fourier_features(noise, self.emb_dim // 2), vec], axis=-1)
        emb = self.emb2(jax.nn.silu(self.emb1(emb)))
        h = self.stem(space_to_depth(x, self.f))
        if self.extra_stem is not None:
            h = h + self.extra_stem(space_to_depth(extra, self.f))
        skips = []
        for i, blocks in enumerate(self.enc):
            for block in blocks:
                h = block(h, emb)
            if self.enc_attn[i] is not None:
                h = self.enc_attn[i](h)
            skips.append(h)
            if i < len(self.down):
                h = self.down[i](h)
        h = self.mid_attn(self.mid(h, emb))
        for i, blocks in enumerate(self.dec):
            if i > 0:
                B, H, W, C = h.shape
                h = self.up[i - 1](jax.image.resize(h, (B, 2 * H, 2 * W, C), "nearest"))
            h = jnp.concatenate([h, skips.pop()], axis=-1)
            for block in blocks:
                h = block(h, emb)
            if self.dec_attn[i] is not None:
                h = self.dec_attn[i](h)
        return jax.nn.silu(self.out_norm(h))
