"""The GL renderer on a factored MPI (GLRenderer.set_fields: the fields materialized on the GPU)
against the JAX reference mpi.render(mpi.materialize(...)), with a non-zero flow field."""

import jax
import numpy as np
import pytest
from PIL import Image

from mpitalk import camera, gl, mpi

reference = jax.jit(mpi.render, static_argnames="hw")
dense = jax.jit(mpi.materialize, static_argnums=2)

MEAN_TOL = 1.0 / 255  # the parity bounds, on the interior
MAX_TOL = 4.0 / 255
BORDER = 2
S, D, G = 16, 6, 2
DEPTHS = np.asarray(mpi.plane_depths(0.45, 2.0, D))
K_S = camera.intrinsics(1.5 * S, S, S)
PIVOT = np.array([0.0, 0.0, 0.6], np.float32)
GROUPS = np.array([0, 0, 1, 1, 0, 1])


@pytest.fixture(scope="session")
def ctx():
    return gl.context()


@pytest.fixture(autouse=True)
def no_gl_error(ctx):
    yield
    assert ctx.error == "GL_NO_ERROR"


def photo_at(P):
    """A real photo (scikit-image's astronaut), P x P, uint8: sharp edges everywhere."""
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((P, P), Image.BILINEAR))


def random_fields(rng, shift=(0.0, 0.0)):
    """uint8 fields with sparse blobs of alpha on the front planes (a face MPI's layout),
    and a smooth flow of a few photo pixels (float32, as mpi_io decodes it)."""
    yy, xx = (np.mgrid[0:S, 0:S] + 0.5) / S
    alpha = rng.random((D, S, S))
    for i in range(1, D):
        cy, cx = rng.uniform(0.3, 0.7, 2) + np.asarray(shift)
        alpha[i] *= ((yy - cy) ** 2 + (xx - cx) ** 2) < 0.2**2
    alpha[0] = 1.0
    flow = np.stack([0.03 * np.sin(6 * yy + g) + 0.02 * g for g in range(G)])[..., None] \
        * np.array([1.0, -0.7])
    flow[1, :2] = -0.2  # rows whose copy source leaves the photo: validity 0 there
    to8 = lambda x: np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    return {"alpha": to8(alpha), "blend": to8(rng.random((D, S, S))),
            "color": to8(rng.random((S, S, 3))), "flow": flow.astype(np.float32)}


def as_float(f):
    return {k: (v.astype(np.float32) / 255 if v.dtype == np.uint8 else v) for k, v in f.items()}


def compare(got_rgb, got_a, ref):
    sl = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    err = np.concatenate([np.abs(got_rgb - np.asarray(ref.rgb))[sl].ravel(),
                          np.abs(got_a - np.asarray(ref.alpha))[sl].ravel()])
    return float(err.mean()), float(err.max())


POSES = {
    "identity": np.eye(4, dtype=np.float32),
    "left_eye": np.asarray(camera.stereo_eyes(0.063)[0], np.float32),
    "orbit_8": np.asarray(camera.orbit_pose(np.float32(np.radians(8)), np.float32(0.05), PIVOT)),
    "orbit_-10": np.asarray(camera.orbit_pose(np.float32(np.radians(-10)), np.float32(0.0),
                                              PIVOT)),
}


@pytest.mark.parametrize("size,P", [(64, 64), (40, 40), (48, 96)])
def test_gl_fields_match_jax_materialize_then_render(ctx, size, P):
    rng = np.random.default_rng(size + P)
    fields = random_fields(rng)
    photo = photo_at(P)
    r = gl.GLRenderer(size, size, ctx=ctx)
    try:
        frame_from_mpi = np.asarray(camera.orbit_pose(np.float32(0.05), np.float32(0.0), PIVOT))
        r.set_fields(fields, photo, DEPTHS, K_S, size, frame_from_mpi, GROUPS)
        planes = dense(as_float(fields), photo.astype(np.float32) / 255, size, GROUPS)
        K = np.asarray(camera.scale_intrinsics(K_S, size / S, size / S), np.float32)
        np.testing.assert_allclose(r.K_src, K, rtol=1e-6)
        for name, view in POSES.items():
            rgb, a = r.render_pose(view)
            ref = reference(planes, DEPTHS, K, view @ frame_from_mpi)
            mean, mx = compare(rgb, a, ref)
            assert mean <= MEAN_TOL and mx <= MAX_TOL, (name, mean * 255, mx * 255)
        # the flow matters: without it the render differs clearly
        ref0 = reference(dense({**as_float(fields), "flow": 0 * fields["flow"]},
                               photo.astype(np.float32) / 255, size, GROUPS), DEPTHS, K,
                         frame_from_mpi)
        assert compare(*r.render_pose(np.eye(4)), ref0)[0] > 4 * MEAN_TOL
    finally:
        r.release()


def test_next_frame_leaves_nothing_of_the_last_and_stereo_matches(ctx):
    """Alpha moves between frames: the atlas must not keep the previous frame's planes where
    the new frame has nothing (the fields pass redraws what it drew last time)."""
    size = 48
    photo = photo_at(size)
    r = gl.GLRenderer(size, size, ctx=ctx)
    try:
        rng = np.random.default_rng(5)
        first, second = random_fields(rng, (-0.2, -0.2)), random_fields(rng, (0.2, 0.2))
        r.set_fields(first, photo, DEPTHS, K_S, size, None, GROUPS)
        r.render_pose(np.eye(4))
        r.set_fields(second, photo, DEPTHS, K_S, size, None, GROUPS)
        K = np.asarray(camera.scale_intrinsics(K_S, size / S, size / S), np.float32)
        planes = dense(as_float(second), photo.astype(np.float32) / 255, size, GROUPS)
        views = gl.stereo_views(K, 0.063, 0.6)
        sbs = r.render_views(views)
        for k, (pose, K_eye) in enumerate(views):
            ref = reference(planes, DEPTHS, K, pose, K_eye)
            eye = sbs[:, k * size:(k + 1) * size]
            mean, mx = compare(eye[..., :3], eye[..., 3], ref)
            assert mean <= MEAN_TOL and mx <= MAX_TOL, (k, mean * 255, mx * 255)
        # a dense MPI after fields, on the same renderer, still renders as itself
        rgba = np.asarray(planes)
        r.set_mpi(rgba, DEPTHS, K)
        mean, mx = compare(*r.render_pose(np.eye(4)), reference(rgba, DEPTHS, K, np.eye(4)))
        assert mean <= MEAN_TOL and mx <= MAX_TOL
    finally:
        r.release()


def test_field_rects_cover_every_texel_the_upsampled_alpha_reaches():
    alpha = np.zeros((3, 32, 32), np.uint8)
    alpha[0] = 255
    alpha[1, 5:7, 20:29] = 200  # two small blobs and a lone texel
    alpha[2, 30, 3] = 1
    alpha[2, 12:20, 8:11] = 90
    for size in (32, 80, 128):
        rects = gl._field_rects(alpha, size, max(1, gl.TILE * 32 // size))
        up = np.asarray(mpi.upsample_bilinear(alpha[..., None] / 255.0, size))[..., 0]
        covered = np.zeros_like(up, dtype=bool)
        for p, x0, y0, x1, y1 in rects:
            covered[p, y0:y1, x0:x1] = True
        assert not np.any((up > 0) & ~covered), size
        assert covered[0].all() and covered[1:].mean() < 0.5  # and it is not everything
