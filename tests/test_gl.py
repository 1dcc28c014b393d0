"""The GL renderer (mpitalk.gl.GLRenderer) against the JAX reference mpitalk.mpi.render."""

import jax
import numpy as np
import pytest

from mpitalk import camera, gl, mpi

# the reference, compiled once per input shape (eager calls would recompile every time)
reference = jax.jit(mpi.render, static_argnames="hw")

MEAN_TOL = 1.0 / 255  # the parity bounds, on the interior
MAX_TOL = 4.0 / 255
BORDER = 2  # pixels left out at each image edge


@pytest.fixture(scope="session")
def ctx():
    """One headless EGL context for the whole session."""
    return gl.context()


@pytest.fixture(autouse=True)
def no_gl_error(ctx):
    yield
    assert ctx.error == "GL_NO_ERROR"


@pytest.fixture(scope="module")
def renderer(ctx):
    r = gl.GLRenderer(64, 48, ctx=ctx)
    yield r
    r.release()


def smooth_mpi(rng, D=6, H=48, W=64, sparse=False):
    """Random MPI smoothed along x and y, opaque back plane; ``sparse`` empties most of each
    front plane (blobs of content), as in a face MPI."""
    rgba = rng.random((D, H, W, 4)).astype(np.float32)
    for ax in (1, 2):
        for _ in range(3):
            rgba = (rgba + np.roll(rgba, 1, ax) + np.roll(rgba, -1, ax)) / 3
    rgba[..., 3] = np.clip(2.0 * rgba[..., 3] - 0.5, 0.0, 1.0)
    if sparse:
        yy, xx = np.mgrid[0:H, 0:W]
        for i in range(1, D):
            cy, cx = rng.uniform(0.2, 0.8) * H, rng.uniform(0.2, 0.8) * W
            rgba[i, ..., 3] *= ((yy - cy) ** 2 + (xx - cx) ** 2) < (0.2 * W) ** 2
    rgba[0, ..., 3] = 1.0
    return rgba


def K_for(W=64, H=48):
    return camera.intrinsics(60.0, W, H)


DEPTHS = np.asarray(mpi.plane_depths(0.45, 2.0, 6))
PIVOT = np.array([0.0, 0.0, 0.6], dtype=np.float32)
LEFT, RIGHT = camera.stereo_eyes(0.063)
POSES = {
    "identity": np.eye(4, dtype=np.float32),
    "left_eye": LEFT,
    "right_eye": RIGHT,
    "orbit_yaw_pitch": camera.orbit_pose(np.radians(12.0), np.radians(-6.0), PIVOT),
    "roll_and_move": camera.make_pose(camera.rot_z(np.float32(0.2)) @ camera.rot_y(
        np.float32(-0.1)), np.array([0.03, -0.02, 0.08], np.float32)),
}


def assert_parity(rgb, alpha, ref):
    b = BORDER
    for got, want in ((rgb, ref.rgb), (alpha, ref.alpha)):
        diff = np.abs(np.asarray(got) - np.asarray(want))[b:-b, b:-b]
        assert diff.mean() <= MEAN_TOL, diff.mean() * 255
        assert diff.max() <= MAX_TOL, diff.max() * 255


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("pose", list(POSES), ids=list(POSES))
def test_render_pose_matches_mpi_render(renderer, pose, sparse):
    rgba = smooth_mpi(np.random.default_rng(len(pose) + sparse), sparse=sparse)
    renderer.set_mpi(rgba, DEPTHS, K_for())
    rgb, alpha = renderer.render_pose(POSES[pose])
    assert rgb.shape == (48, 64, 3) and alpha.shape == (48, 64) and rgb.dtype == np.float32
    assert_parity(rgb, alpha, reference(rgba, DEPTHS, K_for(), POSES[pose]))


def test_views_are_posed_from_the_frame_camera_given_by_set_mpi(renderer):
    """With ``frame_from_mpi``, a view at ``view_from_frame`` renders the MPI at the composed
    pose (the JAX reference given the product), as the exporter and viewer use stored poses."""
    rgba = smooth_mpi(np.random.default_rng(11), sparse=True)
    frame_from_mpi = camera.head_motion(np.array([0.15, -0.05, 0.0, 0.01, 0.0, 0.6]),
                                        np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.6]))
    renderer.set_mpi(rgba, DEPTHS, K_for(), frame_from_mpi)
    for pose in ("identity", "left_eye", "orbit_yaw_pitch"):
        rgb, alpha = renderer.render_pose(POSES[pose])
        assert_parity(rgb, alpha, reference(rgba, DEPTHS, K_for(),
                                            POSES[pose] @ np.asarray(frame_from_mpi)))
    renderer.set_mpi(rgba, DEPTHS, K_for())  # no pose again: the MPI's own camera
    rgb, alpha = renderer.render_pose(POSES["identity"])
    assert_parity(rgb, alpha, reference(rgba, DEPTHS, K_for(), POSES["identity"]))


def test_stereo_pair_with_convergence_matches_mpi_render(renderer):
    """Both eyes with shifted principal points (convergence), drawn in one framebuffer."""
    rgba = smooth_mpi(np.random.default_rng(7), sparse=True)
    renderer.set_mpi(rgba, DEPTHS, K_for())
    views = gl.stereo_views(K_for(), 0.063, 0.6)
    packed = renderer.render_views(views, "sbs")
    assert packed.shape == (48, 128, 4)
    for k, (pose, K_eye) in enumerate(views):
        ref = reference(rgba, DEPTHS, K_for(), pose, K_eye)
        eye = packed[:, 64 * k:64 * (k + 1)]
        assert_parity(eye[..., :3], eye[..., 3], ref)
    tb = renderer.render_stereo(0.063, 0.6, layout="tb")
    np.testing.assert_allclose(tb, np.concatenate([packed[:, :64], packed[:, 64:]], 0), atol=1e-6)


def test_other_target_size_and_intrinsics(renderer):
    rgba = smooth_mpi(np.random.default_rng(3))
    K_tgt = camera.intrinsics(45.0, 40, 36)
    pose = POSES["orbit_yaw_pitch"]
    renderer.set_mpi(rgba, DEPTHS, K_for())
    out = renderer.render_views([(pose, K_tgt)], size=(40, 36))
    ref = reference(rgba, DEPTHS, K_for(), pose, K_tgt, hw=(36, 40))
    assert_parity(out[..., :3], out[..., 3], ref)


def test_planes_behind_the_camera_contribute_nothing(renderer):
    """Moving the camera 0.8 m forward puts the nearer planes behind it."""
    rgba = smooth_mpi(np.random.default_rng(4))
    pose = camera.translation(np.array([0.0, 0.0, -0.8], np.float32))
    assert (DEPTHS - 0.8 <= 0).sum() >= 2
    rgb, alpha = renderer.render(rgba, DEPTHS, K_for(), pose)
    assert_parity(rgb, alpha, reference(rgba, DEPTHS, K_for(), pose))


def test_uint8_input_and_outside_the_planes(renderer):
    """Past the planes' edges: the back plane continues its edge texels, the others are
    transparent."""
    rgba = smooth_mpi(np.random.default_rng(5))
    u8 = np.rint(rgba * 255).astype(np.uint8)
    renderer.set_mpi(u8, DEPTHS, K_for())
    shifted = camera.translation(np.array([0.5, 0.0, 0.0], np.float32))  # content moves right
    rgb, alpha = renderer.render_pose(shifted)
    assert_parity(rgb, alpha, reference(u8 / 255.0, DEPTHS, K_for(), shifted))
    # the left columns look past every plane's left edge: only the back plane's edge column
    np.testing.assert_allclose(alpha[:, :5], 1.0, atol=1e-6)
    edge = u8[0, :, 0, :3] / 255.0  # (H,3): the back plane's first column (no vertical move)
    np.testing.assert_allclose(rgb[:, :5], np.repeat(edge[:, None], 5, 1), atol=2e-3)
    u8[0, ..., 3] = 0  # no backdrop: nothing outside the planes, transparent black
    renderer.set_mpi(u8, DEPTHS, K_for())
    rgb, alpha = renderer.render_pose(shifted)
    assert alpha[:, :5].max() == 0.0


def test_tile_mask_is_a_superset_of_visible_planes(renderer):
    """Every plane that puts alpha into a target tile (reference, one plane at a time) has
    its bit set in that tile's mask."""
    rgba = smooth_mpi(np.random.default_rng(6), sparse=True)
    pose = POSES["orbit_yaw_pitch"]
    renderer.set_mpi(rgba, DEPTHS, K_for())
    mask = renderer.tile_mask(pose, K_for(), (64, 48))
    for i in range(len(DEPTHS)):
        one = np.zeros_like(rgba)
        one[i] = rgba[i]
        a = np.asarray(reference(one, DEPTHS, K_for(), pose).alpha) > 0
        tiles = np.zeros(mask.shape[:2], bool)
        ti, tj = np.nonzero(a)
        tiles[ti // gl.TILE, tj // gl.TILE] = True
        bit = (mask[..., i // 32] >> np.uint32(i % 32)) & 1
        assert np.all(bit[tiles] == 1), i


def test_stereo_views_disparity():
    K = K_for()
    (pl, kl), (pr, kr) = gl.stereo_views(K, 0.063, 0.6)
    for d in (0.4, 0.6, 2.0):
        p = np.array([0.0, 0.0, d])
        ul = camera.project(kl, camera.transform_points(pl, p))[0]
        ur = camera.project(kr, camera.transform_points(pr, p))[0]
        assert ul - ur == pytest.approx(60.0 * 0.063 * (1 / d - 1 / 0.6), abs=1e-4)


def test_more_than_32_planes_odd_size_and_a_second_renderer(ctx):
    """40 planes (two words of tile mask), a size that is no multiple of the tile, and a
    renderer created after another was released (the context must stay clean)."""
    D, H, W = 40, 37, 53
    rgba = smooth_mpi(np.random.default_rng(8), D=D, H=H, W=W, sparse=True)
    rgba[1:, ..., 3] *= 0.5
    depths = np.asarray(mpi.plane_depths(0.45, 2.0, D))
    K = camera.intrinsics(50.0, W, H)
    for _ in range(2):
        r = gl.GLRenderer(W, H, ctx=ctx)
        r.set_mpi(rgba, depths, K)
        rgb, alpha = r.render_pose(POSES["orbit_yaw_pitch"])
        r.release()
        assert ctx.error == "GL_NO_ERROR"
    assert_parity(rgb, alpha, reference(rgba, depths, K, POSES["orbit_yaw_pitch"]))
