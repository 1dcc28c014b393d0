"""EDM pieces against their formulas; samplers on a toy denoiser whose answer is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpitalk import diffusion


def test_scalings_match_the_edm_table():
    sigma = jnp.array([0.002, 0.1, 0.5, 1.0, 80.0])
    sd = 0.5
    np.testing.assert_allclose(diffusion.c_in(sigma, sd), 1 / np.sqrt(sd**2 + sigma**2), rtol=1e-6)
    np.testing.assert_allclose(diffusion.c_noise(sigma), np.log(sigma) / 4, rtol=1e-6)
    lam = (sigma**2 + sd**2) / (sigma * sd) ** 2
    np.testing.assert_allclose(diffusion.loss_weight(sigma, sd), lam, rtol=1e-6)
    # lambda = 1 / c_out^2 with EDM's c_out = sigma sd / sqrt(sigma^2 + sd^2)
    c_out = sigma * sd / np.sqrt(sigma**2 + sd**2)
    np.testing.assert_allclose(diffusion.loss_weight(sigma, sd), 1 / c_out**2, rtol=1e-5)


def test_lognormal_sigmas():
    s = diffusion.sample_sigmas(jax.random.key(0), (20000,), -1.2, 1.2)
    assert abs(float(jnp.mean(jnp.log(s))) + 1.2) < 0.05
    assert abs(float(jnp.std(jnp.log(s))) - 1.2) < 0.05


def test_karras_schedule():
    s = np.asarray(diffusion.karras_sigmas(8, 0.002, 80.0, 7.0))
    assert s.shape == (9,) and s[-1] == 0.0
    np.testing.assert_allclose([s[0], s[7]], [80.0, 0.002], rtol=1e-5)
    assert np.all(np.diff(s) < 0)
    r = s[:8] ** (1 / 7)
    np.testing.assert_allclose(np.diff(r), np.diff(r)[0], rtol=1e-4)  # uniform in sigma^(1/rho)


def _gaussian_denoiser(mu, s0):
    """Exact x0-denoiser for N(mu, s0^2) data: E[y|x] = (s0^2 x + sigma^2 mu) / (s0^2 + sigma^2)."""

    def denoise(x, sigma, cond):
        x0 = (s0**2 * x + sigma**2 * mu) / (s0**2 + sigma**2)
        return x0, {"x0": x0, "cond": cond}

    return denoise


@pytest.mark.parametrize("name,steps,tol", [("heun", 32, 0.05), ("euler", 128, 0.1)])
def test_sampler_transports_noise_to_the_data_distribution(name, steps, tol):
    # The probability-flow ODE of N(mu, s0^2) data maps x_T ~ N(mu, s0^2 + T^2) to
    # mu + s0 (x_T - mu) / sqrt(s0^2 + T^2): a closed form to compare with.
    mu, s0, T = 0.3, 0.5, 80.0
    sigmas = diffusion.karras_sigmas(steps, 0.002, T)
    z = jax.random.normal(jax.random.key(1), (256,))
    x_T = mu + jnp.sqrt(s0**2 + T**2) * z
    out, aux = diffusion.SAMPLERS[name](_gaussian_denoiser(mu, s0), x_T, sigmas,
                                        jax.random.key(0), "c")
    exact = mu + s0 * z
    assert float(jnp.max(jnp.abs(out - exact))) < tol
    # the output is the final denoiser call's clean estimate, and aux comes from that call
    np.testing.assert_array_equal(out, aux["x0"])
    assert aux["cond"] == "c"


def test_heun_is_second_order():
    mu, s0, T = 0.3, 0.5, 80.0
    x_T = jnp.array([80.0, -40.0, 10.0])
    exact = mu + s0 * (x_T - mu) / np.sqrt(s0**2 + T**2)
    err = {n: float(jnp.max(jnp.abs(diffusion.sample_heun(
        _gaussian_denoiser(mu, s0), x_T, diffusion.karras_sigmas(n, 0.002, T),
        jax.random.key(0), None)[0] - exact))) for n in (16, 64)}
    assert err[64] < err[16] / 8  # 4x the steps: ~16x smaller error for a 2nd-order method


def test_sampler_deterministic_given_key_and_churn_uses_it():
    sigmas = diffusion.karras_sigmas(4)
    x = jnp.ones((8,)) * 80.0
    den = _gaussian_denoiser(0.0, 0.5)
    a, _ = diffusion.sample_heun(den, x, sigmas, jax.random.key(0), None, s_churn=2.0)
    b, _ = diffusion.sample_heun(den, x, sigmas, jax.random.key(0), None, s_churn=2.0)
    c, _ = diffusion.sample_heun(den, x, sigmas, jax.random.key(1), None, s_churn=2.0)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_heun_calls_the_denoiser_2n_minus_1_times():
    calls = []

    def den(x, sigma, cond):
        calls.append(1)
        return x * 0, None

    # traced once: count the calls in the Python trace (scan traces its body once)
    jax.make_jaxpr(lambda x: diffusion.sample_heun(den, x, diffusion.karras_sigmas(3),
                                                   jax.random.key(0), None)[0])(jnp.ones(2))
    assert len(calls) == 3  # scan body (2 calls) traced once + the final call
