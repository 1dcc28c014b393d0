"""The MPI model: head initialisation, the identity plane sweep, sample_mpi, checkpoints."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mpitalk import UserError, camera, checkpoint, mpi
from mpitalk import model as M
from mpitalk.model.heads import interpolate_planes, plane_sweep

CFG = M.micro()
S, D = CFG.image_size, CFG.num_planes


def _inputs(B=2, seed=0, with_identity_info=True):
    rng = np.random.default_rng(seed)
    pose = np.tile(camera.default_head_pose(), (B, 1))
    pose[:, 0] = 0.1
    cond = {"cond_render": rng.random((B, S, S, 4), np.float32),
            "expression": np.concatenate([rng.random((B, 52)), pose], 1).astype(np.float32),
            "prev_frame": np.zeros((B, S, S, 3), np.float32), "has_prev": np.zeros(B, np.float32)}
    if with_identity_info:
        cond["identity_cond"] = rng.random((B, S, S, 4), np.float32)
        cond["identity_expression"] = np.concatenate(
            [rng.random((B, 52)), np.tile(camera.default_head_pose(), (B, 1))], 1
        ).astype(np.float32)
    return rng.random((B, S, S, 3), np.float32), cond


@pytest.fixture(scope="module")
def model():
    return M.MPIModel(CFG, rngs=nnx.Rngs(0))


def test_initial_mpi_has_uniform_weights_and_an_opaque_back(model):
    identity, cond = _inputs()
    c = M.build_conditioning(CFG, identity, cond, reference_space=True)
    rgba = model(jnp.zeros((2, S, S, 3)), jnp.zeros(2), c)
    assert rgba.shape == (2, D, S, S, 4)
    np.testing.assert_array_equal(rgba[:, 0, ..., 3], 1.0)
    w = jax.vmap(mpi.over_weights)(rgba[..., 3])
    np.testing.assert_allclose(w, 1.0 / D, atol=1e-5)
    # reference space: every plane's colour starts as mostly the identity's own pixel
    assert float(jnp.mean(jnp.abs(rgba[..., :3] - identity[:, None]))) < 0.1


def test_plane_sweep_matches_explicit_projection():
    rng = np.random.default_rng(1)
    img = rng.random((S, S, 3)).astype(np.float32)
    K = camera.intrinsics(1.5 * S, S, S)
    ref_from_mpi = camera.head_pose_matrix(np.array([0.1, -0.05, 0.02, 0.01, 0, 0.0], np.float32))
    depths = np.array([0.5, 0.9], np.float32)
    sweep = np.asarray(plane_sweep(jnp.asarray(img), depths, K, ref_from_mpi))
    # one pixel by hand: back-project, move, project, bilinear by hand
    i, j = 13, 17
    for k, d in enumerate(depths):
        X = d * np.linalg.inv(K) @ np.array([j + 0.5, i + 0.5, 1.0])
        Xr = ref_from_mpi[:3, :3] @ X + ref_from_mpi[:3, 3]
        u, v = (K @ Xr)[:2] / Xr[2] - 0.5
        x0, y0 = int(np.floor(u)), int(np.floor(v))
        fx, fy = u - x0, v - y0
        want = ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x0 + 1])
                + fy * ((1 - fx) * img[y0 + 1, x0] + fx * img[y0 + 1, x0 + 1]))
        np.testing.assert_allclose(sweep[k, i, j], want, atol=1e-4)
    # the identity pose copies the image onto every plane
    same = plane_sweep(jnp.asarray(img), depths, K, np.eye(4, dtype=np.float32))
    np.testing.assert_allclose(same, np.broadcast_to(img, same.shape), atol=1e-5)


def test_camera_spaces_and_missing_identity_info():
    identity, cond = _inputs(with_identity_info=False)
    c = M.build_conditioning(CFG, identity, cond)  # target space, default identity pose
    T = camera.head_pose_matrix(cond["expression"][:, 52:]) @ camera.invert_pose(
        camera.head_pose_matrix(np.tile(camera.default_head_pose(), (2, 1))))
    np.testing.assert_allclose(c["tgt_from_mpi"], np.broadcast_to(np.eye(4), (2, 4, 4)))
    ref = M.build_conditioning(CFG, identity, dict(cond, camera_space=np.ones(2, np.float32)))
    np.testing.assert_allclose(ref["tgt_from_mpi"], T, atol=1e-6)
    static = M.build_conditioning(CFG, identity, cond, reference_space=True)
    np.testing.assert_allclose(static["sweep"], ref["sweep"], atol=1e-5)
    np.testing.assert_allclose(static["image"], ref["image"], atol=1e-5)


def test_sample_mpi_shape_range_and_determinism(model):
    identity, cond = _inputs()
    a = M.sample_mpi(model, CFG, identity, cond, jax.random.key(0), steps=2)
    b = M.sample_mpi(model, CFG, identity, cond, jax.random.key(0), steps=2)
    assert a.shape == (2, D, S, S, 4)
    np.testing.assert_array_equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    np.testing.assert_array_equal(a[:, 0, ..., 3], 1.0)
    with pytest.raises(ValueError):
        M.sample_mpi(model, CFG, identity, cond, jax.random.key(0), sampler="ddim")


def test_checkpoint_round_trip_and_unknown_version(model, tmp_path):
    path = checkpoint.save(tmp_path / "ckpt", CFG, model, step=3, note="test")
    config, loaded = checkpoint.load(path)
    assert config == CFG
    for x, y in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(loaded)),
                    strict=True):
        np.testing.assert_array_equal(x, y)
    meta = json.loads((path / checkpoint.META_FILE).read_text())
    meta["format_version"] = 999
    (path / checkpoint.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(UserError, match="version 999"):
        checkpoint.load(path)
    with pytest.raises(UserError, match="not an mpitalk checkpoint"):
        checkpoint.load(tmp_path / "nowhere")


def test_shipped_checkpoint_loads():
    config, model = checkpoint.load()
    assert config.image_size == 128 and isinstance(model, M.MPIModel)


def test_interpolate_planes_is_linear_in_disparity_and_holds_at_the_ends():
    disparity = np.array([2.0, 1.0, 1.5, 3.0])  # any order
    values = np.stack([1.0 + 2.0 * disparity, -disparity])  # (2, D), affine in disparity
    new = np.array([0.5, 1.0, 1.25, 2.4, 3.0, 4.0])
    got = interpolate_planes(values, disparity, new)
    inside = np.clip(new, 1.0, 3.0)  # beyond the end planes: the end plane's value
    np.testing.assert_allclose(got, np.stack([1.0 + 2.0 * inside, -inside]), atol=1e-12)


def _moved(model):
    """``model`` with every parameter moved well off its initial value (heads included)."""
    other = M.MPIModel(CFG, rngs=nnx.Rngs(3))
    nnx.update(other, jax.tree.map(lambda p: p + jnp.sin(jnp.arange(p.size).reshape(
        p.shape) + 1.0), nnx.state(model, nnx.Param)))
    return other


def test_with_planes_same_planes_is_the_same_model_and_more_planes_keeps_the_view(model):
    trained = _moved(model)
    identity, cond = _inputs()
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, S, S, 3)), jnp.float32)
    c = M.build_conditioning(CFG, identity, cond, reference_space=True)
    same = M.with_planes(trained, D)
    np.testing.assert_allclose(same(x, jnp.ones(2), c), trained(x, jnp.ones(2), c), atol=1e-6)
    # twice the planes over the same range: another MPI, but its image in its own camera stays
    # close to the original's (the planes interpolate, the alphas thin out with the spacing);
    # fresh heads on the same trunk miss it by about 0.08
    more = M.with_planes(trained, 2 * D)
    assert more.config.num_planes == 2 * D
    c2 = M.build_conditioning(more.config, identity, cond, reference_space=True)
    eye = jnp.broadcast_to(jnp.eye(4), (2, 4, 4))
    a = M.render_to_target(CFG, trained(x, jnp.ones(2), c), eye).rgb
    b = M.render_to_target(more.config, more(x, jnp.ones(2), c2), eye).rgb
    assert float(jnp.mean(jnp.abs(a - b))) < 0.01
    with pytest.raises(UserError, match="planes"):
        M.with_planes(trained, 1)
    with pytest.raises(UserError, match="near"):
        M.with_planes(trained, D, near_m=0.0)


def test_with_blocks_keeps_the_outputs_and_adds_trainable_blocks(model):
    trained = _moved(model)
    identity, cond = _inputs()
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, S, S, 3)), jnp.float32)
    c = M.build_conditioning(CFG, identity, cond, reference_space=True)
    deeper = M.with_blocks(trained, 2)
    assert deeper.config.blocks_per_level == 2
    assert all(len(blocks) == 2 for blocks in list(deeper.unet.enc) + list(deeper.unet.dec))
    np.testing.assert_allclose(deeper(x, jnp.ones(2), c), trained(x, jnp.ones(2), c), atol=1e-6)
    # the added blocks are live: moving one's last convolution changes the output
    block = deeper.unet.enc[0][1]
    block.conv2.kernel.set_value(block.conv2.kernel.get_value() + 0.1)
    assert float(jnp.max(jnp.abs(deeper(x, jnp.ones(2), c) - trained(x, jnp.ones(2), c)))) > 1e-3
    with pytest.raises(UserError, match="blocks"):
        M.with_blocks(trained, 0)
