"""mpi.py against independent constructions: plain loops and explicit ray-plane intersection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpitalk import camera, mpi


def random_mpi(rng, D=5, H=12, W=14, smooth=True):
    rgba = rng.random((D, H, W, 4)).astype(np.float32)
    if smooth:  # smooth along x and y so bilinear sampling differences stay meaningful
        for ax in (1, 2):
            rgba = (rgba + np.roll(rgba, 1, ax) + np.roll(rgba, -1, ax)) / 3
    rgba[0, ..., 3] = 1.0  # the farthest plane is opaque
    return rgba


def loop_composite(rgba):
    rgb = np.zeros(rgba.shape[1:3] + (3,))
    alpha = np.zeros(rgba.shape[1:3])
    for plane in rgba:  # back to front: new over accumulated
        a = plane[..., 3:]
        rgb = plane[..., :3] * a + rgb * (1 - a)
        alpha = a[..., 0] + alpha * (1 - a[..., 0])
    return rgb, alpha


def test_plane_depths_uniform_in_disparity_back_to_front():
    d = np.asarray(mpi.plane_depths(0.5, 2.0, 6))
    assert d[0] == pytest.approx(2.0) and d[-1] == pytest.approx(0.5)
    assert np.all(np.diff(d) < 0)
    np.testing.assert_allclose(np.diff(1 / d), np.full(5, (2.0 - 0.5) / 5), rtol=1e-5)


def test_composite_matches_plain_loop():
    rgba = random_mpi(np.random.default_rng(0))
    rgb, alpha = mpi.composite(rgba)
    ref_rgb, ref_alpha = loop_composite(rgba.astype(np.float64))
    np.testing.assert_allclose(rgb, ref_rgb, atol=1e-5)
    np.testing.assert_allclose(alpha, ref_alpha, atol=1e-5)


def bilinear_by_hand(img, x, y, clamp=False):
    """Premultiplied plane img (H,W,C) at continuous (x,y); texel centres +0.5; outside = 0,
    or with ``clamp`` the value at the nearest point of the texel-centre rectangle."""
    H, W = img.shape[:2]
    if clamp:
        x, y = min(max(x, 0.5), W - 0.5), min(max(y, 0.5), H - 0.5)
    u, v = x - 0.5, y - 0.5
    i0, j0 = int(np.floor(v)), int(np.floor(u))
    fy, fx = v - i0, u - j0
    out = np.zeros(img.shape[2])
    for di, wy in ((0, 1 - fy), (1, fy)):
        for dj, wx in ((0, 1 - fx), (1, fx)):
            i, j = i0 + di, j0 + dj
            if 0 <= i < H and 0 <= j < W:
                out += wy * wx * img[i, j]
    return out


def render_by_ray_casting(rgba, depths, K_src, tgt_from_src, K_tgt, h, w, clamp_back=True):
    """For every target pixel: cast its ray, intersect each source plane explicitly, project
    the hit into the source camera, sample, and composite back to front. The back plane (the
    backdrop) extends past its edges (``clamp_back``); the others are transparent outside."""
    src_from_tgt = np.linalg.inv(tgt_from_src.astype(np.float64))
    premult = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1).astype(np.float64)
    rgb = np.zeros((h, w, 3))
    alpha = np.zeros((h, w))
    depth = np.zeros((h, w))
    Kt_inv = np.linalg.inv(K_tgt.astype(np.float64))
    for i in range(h):
        for j in range(w):
            ray_t = Kt_inv @ np.array([j + 0.5, i + 0.5, 1.0])  # z component 1
            origin_s = src_from_tgt[:3, 3]
            dir_s = src_from_tgt[:3, :3] @ ray_t
            c = np.zeros(3)
            a_acc = 0.0
            d_acc = 0.0
            for k in range(len(depths)):
                lam = (depths[k] - origin_s[2]) / dir_s[2]
                if lam <= 0:  # the plane point is behind the target camera
                    continue
                hit = origin_s + lam * dir_s
                px = K_src.astype(np.float64) @ (hit / hit[2])
                s = bilinear_by_hand(premult[k], px[0], px[1], clamp=clamp_back and k == 0)
                c = s[:3] + c * (1 - s[3])
                d_acc = s[3] * lam + d_acc * (1 - s[3])  # target z of the hit is lam
                a_acc = s[3] + a_acc * (1 - s[3])
            rgb[i, j], alpha[i, j] = c, a_acc
            depth[i, j] = d_acc / max(a_acc, 1e-6)
    return rgb, alpha, depth


POSES = {
    "identity": np.eye(4, dtype=np.float32),
    "left_eye": camera.stereo_eyes(0.063)[0],
    "right_eye": camera.stereo_eyes(0.063)[1],
    "orbit": camera.orbit_pose(np.float32(0.12), np.float32(-0.05),
                               np.array([0.0, 0.0, 0.8], np.float32)),
    "dolly": camera.translation(np.array([0.01, -0.02, -0.1], np.float32)),
}


@pytest.mark.parametrize("name", sorted(POSES))
def test_render_matches_explicit_ray_plane_intersection(name):
    rng = np.random.default_rng(1)
    rgba = random_mpi(rng, D=4, H=10, W=12)
    depths = np.asarray(mpi.plane_depths(0.5, 1.5, 4))
    K = camera.intrinsics(14.0, 12, 10)
    T = POSES[name]
    out = jax.jit(mpi.render)(rgba, depths, K, T)
    ref = render_by_ray_casting(rgba, depths, K, T, K, 10, 12)
    np.testing.assert_allclose(out.rgb, ref[0], atol=2e-5)
    np.testing.assert_allclose(out.alpha, ref[1], atol=2e-5)
    np.testing.assert_allclose(out.depth, ref[2], atol=2e-4)


def test_render_other_size_and_intrinsics_and_planes_behind_camera():
    rng = np.random.default_rng(2)
    rgba = random_mpi(rng, D=3, H=8, W=9)
    depths = np.array([1.2, 0.45, 0.3], np.float32)
    K_src = camera.intrinsics(10.0, 9, 8)
    K_tgt = camera.intrinsics(6.0, 7, 6)
    # a camera moved forward past the nearest plane, and turned: that plane is behind it
    T = camera.compose(camera.translation(np.array([0.0, 0.0, -0.35], np.float32)),
                       camera.orbit_pose(np.float32(0.1), np.float32(0.0),
                                         np.array([0.0, 0.0, 0.6], np.float32)))
    out = mpi.render(rgba, depths, K_src, T, K_tgt=K_tgt, hw=(6, 7))
    ref = render_by_ray_casting(rgba, depths, K_src, T, K_tgt, 6, 7)
    np.testing.assert_allclose(out.rgb, ref[0], atol=2e-5)
    np.testing.assert_allclose(out.alpha, ref[1], atol=2e-5)


@pytest.mark.parametrize("name", ["right_eye", "orbit"])
def test_views_past_the_mpi_see_the_back_plane_edge_not_black(name):
    """A view that looks past the MPI's field of view sees the back plane continue its edge
    texels (both render paths: the stereo shift and the general warp); front planes do not."""
    D, H, W = 3, 8, 10
    rgba = np.zeros((D, H, W, 4), np.float32)
    rgba[0] = (0.2, 0.4, 0.6, 1.0)
    rgba[0, :, -1, :3] = (0.9, 0.1, 0.3)  # a distinct right edge column
    rgba[2, 2:6, 3:7] = (1.0, 1.0, 1.0, 0.5)  # a patch on the front plane
    depths = np.asarray(mpi.plane_depths(0.5, 1.5, D))
    K = camera.intrinsics(10.0, W, H)
    T = {"right_eye": camera.translation(np.array([-0.6, 0.0, 0.0], np.float32)),  # looks right
         "orbit": camera.orbit_pose(np.float32(0.5), np.float32(0.0),
                                    np.array([0.0, 0.0, 1.0], np.float32))}[name]
    out = mpi.render(rgba, depths, K, T)
    ref = render_by_ray_casting(rgba, depths, K, T, K, H, W)
    np.testing.assert_allclose(out.rgb, ref[0], atol=2e-5)
    np.testing.assert_allclose(out.alpha, 1.0, atol=1e-6)
    past = render_by_ray_casting(rgba, depths, K, T, K, H, W, clamp_back=False)[1] < 1e-6
    assert past[:, -1].any()  # right-edge pixels see nothing of any plane's own image ...
    np.testing.assert_allclose(np.asarray(out.rgb)[past], np.broadcast_to(
        [0.9, 0.1, 0.3], (past.sum(), 3)), atol=1e-5)  # ... but the back plane's edge colour


def test_identity_pose_equals_composite():
    rgba = random_mpi(np.random.default_rng(3), D=6, H=16, W=16)
    depths = mpi.plane_depths(0.4, 1.0, 6)
    K = camera.intrinsics(20.0, 16, 16)
    out = mpi.render(rgba, depths, K, np.eye(4))
    rgb, alpha = mpi.composite(rgba)
    np.testing.assert_allclose(out.rgb, rgb, atol=1e-6)
    np.testing.assert_allclose(out.alpha, alpha, atol=1e-6)
    np.testing.assert_allclose(out.depth, mpi.alpha_weighted_depth(rgba, depths), atol=1e-5)


def test_stereo_eyes_see_disparity_focal_ipd_over_depth():
    H, W, f, d, ipd = 32, 96, 80.0, 0.7, 0.063
    x = np.arange(W) + 0.5
    rgba = np.zeros((1, H, W, 4), np.float32)
    bump = np.exp(-0.5 * ((x - W / 2) / 3.0) ** 2)  # a soft vertical stripe at the centre
    rgba[0, :, :, 0] = bump[None]
    rgba[0, ..., 3] = 1.0
    K = camera.intrinsics(f, W, H)
    left, right = camera.stereo_eyes(ipd)
    cols = []
    for T in (left, right):
        img = np.asarray(mpi.render(rgba, np.array([d]), K, T).rgb[H // 2, :, 0])
        cols.append((img * x).sum() / img.sum())  # the stripe's centroid
    assert cols[0] - cols[1] == pytest.approx(f * ipd / d, abs=0.02)


def test_render_many_matches_single_renders_and_vmap():
    rgba = random_mpi(np.random.default_rng(4), D=4, H=10, W=10)
    depths = mpi.plane_depths(0.5, 1.5, 4)
    K = camera.intrinsics(12.0, 10, 10)
    poses = np.stack([POSES["left_eye"], POSES["orbit"]])
    many = mpi.render_many(rgba, depths, K, poses)
    vm = jax.vmap(lambda T: mpi.render(rgba, depths, K, T))(jnp.asarray(poses))
    for n in range(2):
        single = mpi.render(rgba, depths, K, poses[n])
        np.testing.assert_allclose(many.rgb[n], single.rgb, atol=1e-6)
        np.testing.assert_allclose(vm.rgb[n], single.rgb, atol=1e-6)


def test_render_gradients_are_finite_and_match_finite_differences():
    rng = np.random.default_rng(5)
    rgba = jnp.asarray(random_mpi(rng, D=3, H=6, W=7))
    depths = mpi.plane_depths(0.5, 1.5, 3)
    K = camera.intrinsics(8.0, 7, 6)
    T = POSES["orbit"]
    target = jnp.asarray(rng.random((6, 7, 3)).astype(np.float32))

    def loss(x):
        return jnp.sum((mpi.render(x, depths, K, T).rgb - target) ** 2)

    g = jax.grad(loss)(rgba)
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
    direction = jnp.asarray(rng.standard_normal(rgba.shape).astype(np.float32))
    eps = 1e-2
    fd = (loss(rgba + eps * direction) - loss(rgba - eps * direction)) / (2 * eps)
    assert float(jnp.sum(g * direction)) == pytest.approx(float(fd), rel=1e-2)


MOVES = {"orbit": POSES["orbit"], "dolly": POSES["dolly"], "left_eye": POSES["left_eye"],
         # moved back 0.6 m: the nearer planes land on the back plane's slot, over it
         "far_back": camera.translation(np.array([0.0, 0.0, 0.6], np.float32))}


@pytest.mark.parametrize("name", sorted(MOVES))
def test_reprojected_mpi_composites_to_the_ray_cast_render(name):
    rng = np.random.default_rng(5)
    rgba = random_mpi(rng, D=4, H=10, W=12)
    depths = np.asarray(mpi.plane_depths(0.5, 1.5, 4))
    K = camera.intrinsics(14.0, 12, 10)
    T = MOVES[name]
    moved = jax.jit(mpi.reproject)(rgba, depths, K, T)
    rgb, alpha = mpi.composite(moved)
    ref_rgb, ref_alpha, _ = render_by_ray_casting(rgba, depths, K, T, K, 10, 12)
    # exact everywhere, also where the source camera saw nothing and the back plane's edge
    # colour fills in (opaque)
    np.testing.assert_allclose(np.asarray(rgb), ref_rgb, atol=3e-5)
    np.testing.assert_allclose(np.asarray(alpha), 1.0, atol=1e-5)
    unseen = render_by_ray_casting(rgba, depths, K, T, K, 10, 12, clamp_back=False)[1] < 1 - 1e-6
    if name in ("orbit", "far_back"):  # these look past the source image: compared there too
        assert unseen.any()
    assert np.asarray(moved).min() >= 0 and np.asarray(moved).max() <= 1


def test_reproject_to_the_same_camera_keeps_the_mpi():
    rgba = random_mpi(np.random.default_rng(6), D=3, H=8, W=9)
    depths = np.asarray(mpi.plane_depths(0.5, 1.5, 3))
    K = camera.intrinsics(12.0, 9, 8)
    moved = np.asarray(mpi.reproject(rgba, depths, K, np.eye(4, dtype=np.float32)))
    np.testing.assert_allclose(moved[..., 3], rgba[..., 3], atol=1e-6)
    visible = rgba[..., 3] > 1e-3
    np.testing.assert_allclose(moved[..., :3][visible], rgba[..., :3][visible], atol=1e-4)


def test_reprojected_planes_move_with_the_camera_and_never_tear():
    # an opaque square on plane 4 of 16; the camera moves 0.12 m back and turns 10 degrees.
    # Its content must land, whole, on the target plane nearest its new depth along the central
    # ray (the ray caster's depth), and the right eye must see it without holes
    D, H, W = 16, 32, 32
    depths = np.asarray(mpi.plane_depths(0.4, 1.6, D))
    K = camera.intrinsics(40.0, W, H)
    rgba = np.zeros((D, H, W, 4), np.float32)
    rgba[0, ..., 3] = 1.0
    rgba[4, 4:28, 4:28] = (1.0, 0.5, 0.2, 1.0)
    T = camera.compose(camera.translation(np.array([0.0, 0.0, 0.12], np.float32)),
                       camera.orbit_pose(np.float32(np.radians(10)), np.float32(0.0),
                                         np.array([0.0, 0.0, float(depths[4])], np.float32)))
    moved = np.asarray(mpi.reproject(rgba, depths, K, T))
    alone = rgba.copy()
    alone[0, ..., 3] = 0.0
    _, a_ref, z_ref = render_by_ray_casting(alone, depths, K, T, K, H, W)
    want = np.argmin(np.abs(1 / z_ref[H // 2, W // 2] - 1 / depths))
    assert a_ref[H // 2, W // 2] > 0.999 and want != 4  # it really moved off its plane
    holding = {int(i) for i in np.nonzero(moved[1:, ..., 3].max((1, 2)) > 0.5)[0] + 1}
    assert holding == {int(want)}
    eye = camera.stereo_eyes(0.063)[1]
    seen = np.asarray(mpi.render(alone, depths, K, eye @ T).alpha) > 0.999
    got = np.asarray(mpi.render(np.concatenate([moved[:1] * [1, 1, 1, 0], moved[1:]]), depths,
                                K, eye).alpha)
    inner = seen & np.roll(seen, 2, 1) & np.roll(seen, -2, 1)  # away from the square's edges
    assert inner.sum() > 100 and got[inner].min() > 0.999
