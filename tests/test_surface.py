"""The surface MPI (mpitalk.surface): the median plane against a plain per-pixel loop, the view
the MPI was made from kept exactly (dense, and factored), and a turned
view of a surface whose opacity the layers spread over three planes against that surface on
one plane."""

import numpy as np
import pytest

from mpitalk import camera, mpi, surface
from tests.test_gl_fields import photo_at

S, D = 24, 8
DEPTHS = np.asarray(mpi.plane_depths(0.45, 1.2, D))
K = camera.intrinsics(1.5 * S, S, S)


def soft_alpha(rng, shape=(D, S, S)):
    """Random alphas with an opaque far plane, some planes empty and some opaque."""
    a = rng.random(shape) ** 2
    a[rng.random(shape) < 0.2] = 0.0
    a[rng.random(shape) < 0.05] = 1.0
    a[0] = 1.0
    return a.astype(np.float32)


def test_median_plane_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    alpha = soft_alpha(rng, (D, 5, 6))
    got = surface.median_plane(alpha)
    for y in range(5):
        for x in range(6):
            # front to back: what each plane adds to the pixel, with what is left to see
            left, acc = 1.0, 0.0
            for j in range(D - 1, -1, -1):
                w = alpha[j, y, x] * left
                left *= 1.0 - alpha[j, y, x]
                if acc + w >= 0.5 and w > 0:
                    # plane j's weight spans [j + 1/2, j - 1/2] going back
                    want = j + 0.5 - (0.5 - acc) / w
                    break
                acc += w
            assert abs(got[y, x] - want) < 1e-6, (y, x)


def test_surface_alpha_is_opaque_from_the_surface_back():
    alpha = np.zeros((D, 1, 2), np.float32)
    alpha[0] = 1.0
    alpha[5, 0, 0] = 1.0  # an opaque pixel on plane 5: p = 5
    alpha[3, 0, 1], alpha[4, 0, 1] = 1.0, 0.5  # half on 4, half on 3: p = 3.5, between
    got = surface.surface_alpha(alpha, sigma_px=0)
    np.testing.assert_allclose(got[:, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(got[:, 0, 1], [1, 1, 1, 1, 0.5, 0, 0, 0])
    alpha[3, 0, 1], alpha[4, 0, 1] = 1.0, 0.25  # 1/4 on 4: p = 3 + 1/2 - 1/3
    got = surface.surface_alpha(alpha, sigma_px=0)
    np.testing.assert_allclose(got[:, 0, 1], [1, 1, 1, 1, 1 / 6, 0, 0, 0], atol=1e-6)


def test_surface_rgba_shows_its_own_view_unchanged():
    rng = np.random.default_rng(1)
    rgba = np.concatenate([rng.random((D, S, S, 3)), soft_alpha(rng)[..., None]], -1)
    out = surface.surface_rgba(rgba)
    want = np.asarray(mpi.composite(rgba)[0])
    got = np.asarray(mpi.composite(out)[0])
    np.testing.assert_allclose(got, want, atol=2e-6)
    seen = mpi.render(out, DEPTHS, K, np.eye(4, dtype=np.float32)).rgb
    np.testing.assert_allclose(np.asarray(seen), want, atol=2e-6)


def test_surface_fields_show_their_own_view_unchanged():
    rng = np.random.default_rng(2)
    yy, xx = (np.mgrid[0:S, 0:S] + 0.5) / S
    photo = photo_at(4 * S).astype(np.float32) / 255
    for groups in (None, np.array([0, 0, 0, 0, 1, 1, 1, 1])):
        G = 1 if groups is None else 2
        flow = np.stack([0.02 * np.sin(5 * yy) * np.ones(G)[g] for g in range(G)])
        flow = np.stack([flow, -0.7 * flow], -1).astype(np.float32)  # the groups' flows agree
        fields = {"alpha": soft_alpha(rng), "blend": rng.random((D, S, S)).astype(np.float32),
                  "color": rng.random((S, S, 3)).astype(np.float32), "flow": flow}
        out = surface.surface_fields(fields, groups)
        assert set(out) == set(fields) and all(out[k].shape == fields[k].shape for k in fields)
        # at the fields' own size, the photo at 4x (the copy is sharp, the fields not resampled)
        want = mpi.composite(mpi.materialize(fields, photo, S, groups))[0]
        got = mpi.composite(mpi.materialize(out, photo, S, groups))[0]
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=3e-6)


def test_a_turned_view_of_a_spread_surface_is_that_surface():
    """A photo on plane j, its opacity spread by the layers over planes j+2, j, j-2 (a third
    each): turned 8 degrees about a head at 0.6 m, the layers show three shifted copies, the
    surface shows the photo as one opaque plane at depth j would."""
    j = 4
    tex = photo_at(S).astype(np.float32) / 255
    rgba = np.zeros((D, S, S, 4), np.float32)
    rgba[..., :3] = 0.5
    rgba[0, ..., 3] = 1.0
    for i, a in ((j + 2, 1 / 3), (j, 1 / 2), (j - 2, 1.0)):  # weights 1/3, 1/3, 1/3
        rgba[i, ..., :3], rgba[i, ..., 3] = tex, a
    one = np.zeros_like(rgba)
    one[j, ..., :3], one[j, ..., 3] = tex, 1.0
    moved = camera.head_motion(np.array([0.0, np.radians(8.0), 0.0, 0.0, 0.0, 0.6]),
                               np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.6]))
    want = np.asarray(mpi.render(one, DEPTHS, K, moved).rgb)
    got = np.asarray(mpi.render(surface.surface_rgba(rgba), DEPTHS, K, moved).rgb)
    layers = np.asarray(mpi.render(rgba, DEPTHS, K, moved).rgb)
    inner = (slice(4, -4), slice(4, -4))  # where plane j covers the turned view
    np.testing.assert_allclose(got[inner], want[inner], atol=1e-5)
    assert np.mean(np.abs(layers[inner] - want[inner])) > 0.02  # the layers are not it


def test_split_plane_is_the_depths_index_by_interpolation():
    depths = np.array([1.1, 1.0, 0.9, 0.8, 0.7])  # back to front
    assert surface.split_plane(depths, 0.85) == pytest.approx(2.5)
    assert surface.split_plane(depths, 1.0) == pytest.approx(1.0)


def test_hold_sides_puts_back_only_the_pixels_that_changed_side_off_the_face():
    """Plane alphas set by hand (D = 5, back to front; the room split at index 1.5): each pixel
    opaque on one plane, so its median plane is that plane's index."""
    D, H, W = 5, 2, 3

    def on(planes):  # (H,W) plane index per pixel -> alphas, the back plane always opaque
        a = np.zeros((D, H, W), np.float32)
        a[0] = 1.0
        for (i, j), k in np.ndenumerate(np.asarray(planes)):
            a[k, i, j] = 1.0
        return a

    anchor = on([[4, 4, 0], [3, 4, 0]])
    frame = on([[0, 3, 4], [0, 1, 0]])
    free = np.zeros((H, W), bool)
    free[1, 0] = True  # on the face: its change is the expression's
    held = surface.hold_sides(frame, anchor, surface.nearer_than(anchor, 1.5), free, 1.5)
    np.testing.assert_array_equal(surface.median_plane(held),
                                  [[4, 3, 0], [0, 4, 0]])
    # (0,0): person -> room, held; (0,1): person both, its own depth; (0,2): room -> person,
    # held; (1,0): free; (1,1): person (4) -> room (1), held; (1,2): room both
    np.testing.assert_array_equal(held[:, 1, 1], anchor[:, 1, 1])
    np.testing.assert_array_equal(held[:, 0, 1], frame[:, 0, 1])
    np.testing.assert_array_equal(held[:, 1, 0], frame[:, 1, 0])
