"""The world backdrop (mpitalk.backdrop): the split into head and back planes, the hole filling,
``mpi.over`` against a plain per-pixel over, and the GL renderer with a backdrop against its
JAX twin (the head planes' ``render_fields`` at the frame's pose over the backdrop's ``render``
at the view's pose alone)."""

import jax
import numpy as np
import pytest

from mpitalk import backdrop, camera, gl, mpi
from tests.test_gl_fields import (
    BORDER,
    DEPTHS,
    GROUPS,
    K_S,
    MAX_TOL,
    MEAN_TOL,
    PIVOT,
    S,
    as_float,
    photo_at,
    random_fields,
)

twin = jax.jit(mpi.render_fields, static_argnums=2, static_argnames="hw")
render = jax.jit(mpi.render, static_argnames="hw")


@pytest.fixture(scope="module")
def ctx():
    return gl.context()


def test_back_planes_splits_at_the_depth_and_keeps_both_sides():
    depths = np.array([1.1, 1.0, 0.9, 0.85, 0.7, 0.5])
    assert backdrop.back_planes(depths, 0.85) == 4  # 1.1, 1.0, 0.9, 0.85
    assert backdrop.back_planes(depths, 2.0) == 1  # always at least the far plane
    assert backdrop.back_planes(depths, 0.1) == 5  # never every plane


def test_head_cover_is_the_over_operators_alpha():
    rng = np.random.default_rng(0)
    alpha = rng.random((5, 4, 3)).astype(np.float32)
    k = 2
    # a plain loop over the head planes, back to front: acc = a + (1 - a) acc
    acc = np.zeros((4, 3))
    for i in range(k, 5):
        acc = alpha[i] + (1 - alpha[i]) * acc
    np.testing.assert_allclose(backdrop.head_cover(alpha, k), acc, atol=1e-6)
    cut = backdrop.without_back(alpha, k)
    assert np.all(cut[:k] == 0) and np.array_equal(cut[k:], alpha[k:])


def test_fill_hole_keeps_known_pixels_and_carries_an_edge_across():
    H, W = 64, 64
    _, xx = np.mgrid[0:H, 0:W]
    side = (xx >= 32).astype(np.float32)  # a vertical edge: two colours, left and right
    image = np.stack([0.2 + 0.6 * side, np.full_like(side, 0.5), 0.8 - 0.6 * side], -1)
    known = np.ones((H, W), bool)
    known[8:56, 20:44] = False  # a tall hole across the edge
    out = backdrop.fill_hole(np.where(known[..., None], image, 0.9), known)
    assert np.array_equal(out[known], image[known])  # known pixels untouched
    # the edge goes on through the hole: 8 px or more from it each side keeps its own colour
    far = np.zeros((H, W), bool)
    far[8:56, 20:25] = far[8:56, 40:44] = True
    assert np.abs(out[far] - image[far]).max() < 0.1
    # and it stays an edge in the hole's middle rows, furthest from the known edge above and
    # below, where a smooth fill (pull-push, a blur) mixes the two sides (error about 0.09)
    mid = np.zeros((H, W), bool)
    mid[24:40, 20:44] = True
    assert np.abs(out[mid] - image[mid]).mean() < 0.04
    # nothing to fill, or nothing known: no error, sensible output
    assert np.array_equal(backdrop.fill_hole(image, np.ones((H, W), bool)), image)
    np.testing.assert_allclose(backdrop.fill_hole(image, np.zeros((H, W), bool)), 0.5)


def test_pull_push_keeps_known_pixels_and_fills_smoothly():
    H, W = 37, 50
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    image = np.stack([np.full((H, W), 0.25), xx / W, yy / H], -1).astype(np.float32)
    known = np.ones((H, W), bool)
    known[10:25, 12:40] = False
    out = backdrop.pull_push(np.where(known[..., None], image, 7.0), known)
    assert np.array_equal(out[known], image[known])  # known pixels untouched
    np.testing.assert_allclose(out[..., 0], 0.25, atol=1e-6)  # a constant stays constant
    # a ramp is filled within its range, close to the ramp (pull-push is smooth, not exact)
    assert out[~known].min() >= 0 and out[~known].max() <= 1
    assert np.abs(out[~known] - image[~known]).mean() < 0.12
    # nothing to fill, or nothing known: no error, sensible output
    assert np.array_equal(backdrop.pull_push(image, np.ones((H, W), bool)), image)


@pytest.mark.parametrize("fill", backdrop.FILLS)
def test_estimate_fills_the_head_and_keeps_the_room(fill):
    P, s = 64, 16
    rng = np.random.default_rng(1)
    room = np.tile(np.linspace(0.2, 0.8, P, dtype=np.float32)[None, :, None], (P, 1, 3))
    photo = room.copy()
    photo[16:48, 20:44] = rng.random((32, 24, 3))  # the "person": noise
    cover = np.zeros((s, s), np.float32)
    cover[4:12, 5:11] = 0.9  # the head planes cover the person (in the S-px fields)
    out = backdrop.estimate(photo, cover, fill=fill)
    assert out.shape == (P, P, 3)
    far = np.ones((P, P), bool)
    far[8:56, 12:52] = False  # well away from the grown hole: the photo itself
    np.testing.assert_allclose(out[far], photo[far], atol=1e-6)
    # inside, the person is gone: the fill follows the room's ramp, not the noise
    assert np.abs(out[20:44, 24:40] - room[20:44, 24:40]).mean() < 0.06
    assert np.abs(photo[20:44, 24:40] - room[20:44, 24:40]).mean() > 0.15
    with pytest.raises(ValueError, match="fill must be one of"):
        backdrop.estimate(photo, cover, fill="telea")


def test_hole_mask_is_the_thresholded_cover_dilated_by_a_square():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    cover = (rng.random((128, 128)) > 0.995).astype(np.float32) * 0.9
    # 2 px at 128 (GROW): a 5 x 5 square dilation of where the cover exceeds 0.3
    expected = ndimage.binary_dilation(cover > 0.3, np.ones((5, 5), bool))
    assert np.array_equal(backdrop.hole_mask(cover), expected)


def test_estimate_takes_a_fill_function():
    P = s = 16
    photo = np.full((P, P, 3), 0.8, np.float32)
    cover = np.zeros((s, s), np.float32)
    cover[6:10, 6:10] = 1.0
    seen = {}

    def flat(image, known):
        seen["known"] = known.copy()
        return np.where(known[..., None], image, 0.25).astype(np.float32)

    out = backdrop.estimate(photo, cover, fill=flat)
    np.testing.assert_array_equal(seen["known"], ~backdrop.hole_mask(cover))
    np.testing.assert_allclose(out[8, 8], 0.25)  # the hole: what the function filled
    np.testing.assert_allclose(out[0, 0], 0.8)  # the room: the photo


def test_over_is_the_per_pixel_over_operator():
    rng = np.random.default_rng(2)
    a_f, a_b = rng.random((2, 5, 6)).astype(np.float32)
    c_f, c_b = rng.random((2, 5, 6, 3)).astype(np.float32)
    z_f, z_b = rng.uniform(0.5, 1.2, (2, 5, 6)).astype(np.float32)
    front = mpi.RenderOut(c_f * a_f[..., None], a_f, z_f)
    back = mpi.RenderOut(c_b * a_b[..., None], a_b, z_b)
    out = mpi.over(front, back)
    # the same two layers as a two-plane MPI seen from where it was made
    rgba = np.stack([np.concatenate([c_b, a_b[..., None]], -1),
                     np.concatenate([c_f, a_f[..., None]], -1)])
    rgb, alpha = mpi.composite(rgba)
    np.testing.assert_allclose(out.rgb, rgb, atol=1e-6)
    np.testing.assert_allclose(out.alpha, alpha, atol=1e-6)


@pytest.mark.parametrize("size,P", [(48, 48), (40, 80)])
def test_gl_backdrop_matches_jax(ctx, size, P):
    rng = np.random.default_rng(size + P)
    fields = random_fields(rng)
    photo = photo_at(P)
    photo_f = photo.astype(np.float32) / 255
    k = backdrop.back_planes(DEPTHS, float(DEPTHS[2]))  # the three farthest planes
    assert k == 3
    # the backdrop: a different image (so a wrong layer shows), at the far plane's depth
    room = np.ascontiguousarray(photo[::-1, ::-1])
    room_rgba, room_depth = backdrop.backdrop_mpi(room, float(DEPTHS[0]))
    K_room = camera.scale_intrinsics(K_S, P / S)
    frame_from_mpi = np.asarray(camera.orbit_pose(np.float32(0.12), np.float32(0.03), PIVOT))
    head = {**as_float(fields), "alpha": backdrop.without_back(as_float(fields)["alpha"], k)}
    r = gl.GLRenderer(size, size, ctx=ctx)
    try:
        r.set_backdrop(room, float(DEPTHS[0]), K_room, k)
        r.set_fields(fields, photo, DEPTHS, K_S, size, frame_from_mpi, GROUPS)
        K = np.asarray(camera.scale_intrinsics(K_S, size / S, size / S), np.float32)
        views = [(np.eye(4), K), *gl.stereo_views(K, 0.063, 0.6)]
        sbs = r.render_views(views)
        sl = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
        for v, (pose, K_v) in enumerate(views):
            pose = np.asarray(pose, np.float32)
            ref = mpi.over(
                twin(head, photo_f, size, DEPTHS, K_S, pose @ frame_from_mpi, K_v,
                     plane_groups=GROUPS),
                render(room_rgba, room_depth, K_room, pose, K_v, hw=(size, size)))
            got = sbs[:, v * size:(v + 1) * size]
            err = np.abs(np.concatenate([got[..., :3] - np.asarray(ref.rgb),
                                         got[..., 3:] - np.asarray(ref.alpha)[..., None]], -1))
            assert err[sl].mean() <= MEAN_TOL and err[sl].max() <= MAX_TOL, (
                v, err[sl].mean() * 255, err[sl].max() * 255)
            np.testing.assert_allclose(got[..., 3], 1.0, atol=1e-6)  # the room is opaque
        # without the backdrop the same renderer draws the MPI whole again
        r.set_backdrop(None)
        r.set_fields(fields, photo, DEPTHS, K_S, size, frame_from_mpi, GROUPS)
        rgb, a = r.render_pose(np.eye(4))
        whole = twin(as_float(fields), photo_f, size, DEPTHS, K_S, frame_from_mpi,
                     plane_groups=GROUPS)
        assert np.abs(rgb - np.asarray(whole.rgb))[sl].mean() <= MEAN_TOL
    finally:
        r.release()
    assert ctx.error == "GL_NO_ERROR"
