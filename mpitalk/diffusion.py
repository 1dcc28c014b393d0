"""EDM diffusion pieces: preconditioning, loss weight, noise levels, Karras schedule, samplers.

Follows Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"
(EDM), Table 1, as IM-Portrait (arXiv 2504.19165) uses it: the denoiser is an x0-prediction
*through the renderer*, ``D(x; sigma) = render(F(c_in * x, c_noise, cond))``, so EDM's
``c_skip`` / ``c_out`` are not used (the network outputs an MPI, not a residual image).

Samplers share one signature, ``sample_*(denoise, x, sigmas, key, cond)``, where
``denoise(x, sigma, cond) -> (x0, aux)`` returns the clean image estimate and anything else the
caller wants back from the call (the MPI); a sampler returns ``(x, aux)`` of the **final denoiser
call** (the last step goes to sigma = 0, so the output image *is* that call's render).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

SIGMA_DATA = 0.5  # EDM's assumed standard deviation of the clean data (images in [-1, 1]-ish)
P_MEAN = -1.2  # EDM's log-normal training noise: ln(sigma) ~ N(P_MEAN, P_STD^2)
P_STD = 1.2

Denoiser = Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, Any]]


def c_in(sigma: jax.Array, sigma_data: float = SIGMA_DATA) -> jax.Array:
    """Input scaling: ``1 / sqrt(sigma^2 + sigma_data^2)`` (unit variance network input)."""
    return 1.0 / jnp.sqrt(sigma**2 + sigma_data**2)


def c_noise(sigma: jax.Array) -> jax.Array:
    """Noise-level conditioning: ``log(sigma) / 4``."""
    return jnp.log(sigma) / 4.0


def loss_weight(sigma: jax.Array, sigma_data: float = SIGMA_DATA) -> jax.Array:
    """EDM's lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2 (= 1 / c_out^2)."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_sigmas(key: jax.Array, shape: tuple[int, ...], p_mean: float = P_MEAN,
                  p_std: float = P_STD) -> jax.Array:
    """Training noise levels, log-normal: ``exp(p_mean + p_std * N(0,1))``."""
    return jnp.exp(p_mean + p_std * jax.random.normal(key, shape))


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
                  rho: float = 7.0) -> jax.Array:
    """(n+1,) EDM schedule, sigma_max down to sigma_min uniform in sigma^(1/rho), then 0."""
    ramp = jnp.linspace(0.0, 1.0, n)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return jnp.concatenate([sigmas, jnp.zeros((1,))])


def _churn(x, sigma, key, s_churn, n):
    """EDM Algorithm 2's optional noise injection; returns (x_hat, sigma_hat)."""
    if s_churn <= 0.0:
        return x, sigma
    gamma = min(s_churn / n, 2**0.5 - 1)
    sigma_hat = sigma * (1.0 + gamma)
    eps = jax.random.normal(key, x.shape, x.dtype)
    return x + jnp.sqrt(sigma_hat**2 - sigma**2) * eps, sigma_hat


def _integrate(update, denoise: Denoiser, x: jax.Array, sigmas: jax.Array, key: jax.Array,
               cond: Any, s_churn: float) -> tuple[jax.Array, Any]:
    """The loop both samplers share: (churn, ``update``) from each sigma to the next, then the
    last step to sigma = 0, whose result is the final denoiser call's (clean estimate, aux)."""
    n = sigmas.shape[0] - 1
    keys = jax.random.split(key, n)

    def step(x, inp):
        sigma, sigma_next, k = inp
        x, sigma = _churn(x, sigma, k, s_churn, n)
        return update(x, sigma, sigma_next), None

    x, _ = jax.lax.scan(step, x, (sigmas[: n - 1], sigmas[1:n], keys[: n - 1]))
    x, sigma = _churn(x, sigmas[n - 1], keys[n - 1], s_churn, n)
    return denoise(x, sigma, cond)


def sample_euler(denoise: Denoiser, x: jax.Array, sigmas: jax.Array, key: jax.Array, cond: Any,
                 s_churn: float = 0.0) -> tuple[jax.Array, Any]:
    """Euler ODE sampler. ``x``: initial noise already scaled by ``sigmas[0]``; ``sigmas`` from
    :func:`karras_sigmas` (last entry 0). Deterministic given ``key`` (used only for churn)."""

    def update(x, sigma, sigma_next):
        x0, _ = denoise(x, sigma, cond)
        return x + (sigma_next - sigma) * (x - x0) / sigma

    return _integrate(update, denoise, x, sigmas, key, cond, s_churn)


def sample_heun(denoise: Denoiser, x: jax.Array, sigmas: jax.Array, key: jax.Array, cond: Any,
                s_churn: float = 0.0) -> tuple[jax.Array, Any]:
    """Heun (2nd order) sampler, EDM Algorithm 1/2: ``2n - 1`` denoiser calls for n steps; the
    final step to sigma = 0 is an Euler step, whose result is that call's clean estimate."""

    def update(x, sigma, sigma_next):
        x0, _ = denoise(x, sigma, cond)
        d = (x - x0) / sigma
        x_next = x + (sigma_next - sigma) * d
        x0_next, _ = denoise(x_next, sigma_next, cond)
        d_next = (x_next - x0_next) / sigma_next
        return x + (sigma_next - sigma) * 0.5 * (d + d_next)

    return _integrate(update, denoise, x, sigmas, key, cond, s_churn)


SAMPLERS = {"heun": sample_heun, "euler": sample_euler}
