"""The model's output as fields (the factored MPI): materialized at S with the identity at S it
is the model's dense output, in training and in sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mpitalk import camera, mpi
from mpitalk import model as M

CFG = M.micro()
S, D = CFG.image_size, CFG.num_planes


def _moved(model, seed=0):
    """``model`` with every parameter moved off its initial value, so that alpha, blend and
    colour all vary per pixel (the initial heads are constant)."""
    rng = np.random.default_rng(seed)  # numpy: no per-parameter JAX compile
    nnx.update(model, jax.tree.map(lambda p: jnp.asarray(
        np.asarray(p) + 0.3 * rng.standard_normal(p.shape).astype(np.float32)),
        nnx.state(model, nnx.Param)))
    return model


@pytest.fixture(scope="module")
def model():
    return _moved(M.MPIModel(CFG, rngs=nnx.Rngs(0)))


def _inputs(B=2, seed=0):
    rng = np.random.default_rng(seed)
    pose = np.tile(camera.default_head_pose(), (B, 1))
    pose[:, 0] = 0.15
    cond = {"cond_render": rng.random((B, S, S, 4), np.float32),
            "expression": np.concatenate([rng.random((B, 52)), pose], 1).astype(np.float32),
            "prev_frame": np.zeros((B, S, S, 3), np.float32), "has_prev": np.zeros(B, np.float32),
            "camera_space": np.ones(B, np.float32)}
    return rng.random((B, S, S, 3), np.float32), cond


def test_fields_materialized_at_S_are_the_models_dense_output(model):
    identity, cond = _inputs()
    c = M.build_conditioning(CFG, identity, cond, reference_space=True)
    x = jax.random.normal(jax.random.key(1), (2, S, S, 3))
    # one compile for both (eager NNX dispatches op by op: slow)
    both = nnx.jit(lambda m, x, c: (m(x, jnp.full((2,), 0.3), c),
                                    m.fields(x, jnp.full((2,), 0.3), c)))
    rgba, fields = both(model, x, c)
    rgba = np.asarray(rgba)
    assert fields["flow"].shape == (2, 1, S, S, 2) and not np.any(np.asarray(fields["flow"]))
    assert float(np.std(np.asarray(fields["blend"]))) > 0.05  # the check is not vacuous
    for b in range(2):
        f = {k: v[b] for k, v in fields.items()}
        dense = np.asarray(mpi.materialize(f, identity[b], S))
        np.testing.assert_allclose(dense, rgba[b], rtol=0, atol=1e-6)


def test_sample_fields_is_sample_mpi_factored(model):
    identity, cond = _inputs(seed=2)
    rgba = np.asarray(M.sample_mpi(model, CFG, identity, cond, jax.random.key(0), steps=2,
                                   sampler="euler"))
    fields = M.sample_fields(model, CFG, identity, cond, jax.random.key(0), steps=2,
                             sampler="euler")
    for b in range(2):
        dense = np.asarray(mpi.materialize({k: v[b] for k, v in fields.items()}, identity[b], S))
        np.testing.assert_allclose(dense, rgba[b], rtol=0, atol=1e-5)
    # a sharper photo of the same crop window changes only the copied colours
    hi = np.asarray(jax.image.resize(identity[0], (4 * S, 4 * S, 3), "cubic"))
    sharp = np.asarray(mpi.materialize({k: v[0] for k, v in fields.items()}, hi, 4 * S))
    np.testing.assert_allclose(sharp[..., 3], np.asarray(
        mpi.upsample_bilinear(np.asarray(fields["alpha"][0])[..., None], 4 * S))[..., 0],
        atol=1e-6)


def test_a_copy_mask_shows_the_photo_whole_there_and_keeps_the_models_blend_elsewhere(model):
    """``cond["copy_mask"]`` (mpitalk.paint): where 1 the sampled blend is the copy's validity
    (1 everywhere in the photo's camera), where 0 the blend sampled without a mask; the dense
    sample is still the fields materialized."""
    identity, cond = _inputs(seed=3)
    key = jax.random.key(0)
    plain = M.sample_fields(model, CFG, identity, cond, key, steps=2, sampler="euler")
    mask = np.zeros((2, S, S), np.float32)
    mask[:, : S // 2] = 1.0  # the top half copied whole
    cond["copy_mask"] = mask
    fields = M.sample_fields(model, CFG, identity, cond, key, steps=2, sampler="euler")
    rgba = np.asarray(M.sample_mpi(model, CFG, identity, cond, key, steps=2, sampler="euler"))
    blend, before = np.asarray(fields["blend"]), np.asarray(plain["blend"])
    assert float(np.std(before[:, :, : S // 2])) > 0.05  # the mask changes something
    np.testing.assert_array_equal(blend[:, :, : S // 2], 1.0)
    np.testing.assert_array_equal(blend[:, :, S // 2:], before[:, :, S // 2:])
    for k in ("alpha", "color", "flow"):  # sampling itself is untouched
        np.testing.assert_array_equal(np.asarray(fields[k]), np.asarray(plain[k]))
    for b in range(2):
        dense = np.asarray(mpi.materialize({k: v[b] for k, v in fields.items()}, identity[b], S))
        np.testing.assert_allclose(dense, rgba[b], rtol=0, atol=1e-5)
