"""mpi.materialize (the factored MPI -> dense planes) against an independent numpy/scipy
construction: scipy's map_coordinates for every bilinear lookup, validity by hand."""

import jax
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from mpitalk import mpi


def random_fields(rng, D=4, S=6, G=2, flow_scale=0.08):
    return {"alpha": rng.random((D, S, S)).astype(np.float32),
            "blend": rng.random((D, S, S)).astype(np.float32),
            "color": rng.random((S, S, 3)).astype(np.float32),
            "flow": (rng.standard_normal((G, S, S, 2)) * flow_scale).astype(np.float32)}


def lookup(img2d, x, y):
    """Bilinear sample of a 2-D array at continuous pixel coordinates (x right, y down; texel
    centres at +0.5), clamped to the edge: scipy indexes texel centres at integers."""
    return map_coordinates(img2d.astype(np.float64), [y - 0.5, x - 0.5], order=1, mode="nearest")


def numpy_materialize(fields, photo, size, groups):
    D, S, _ = fields["alpha"].shape
    P = photo.shape[0]
    c = (np.arange(size) + 0.5) / size  # output pixel centres, fractions of the side
    ux, uy = np.meshgrid(c, c)
    x_s, y_s = ux * S, uy * S  # field pixel coordinates
    out = np.zeros((D, size, size, 4))
    for i in range(D):
        g = groups[i]
        a = lookup(fields["alpha"][i], x_s, y_s)
        b = lookup(fields["blend"][i], x_s, y_s)
        col = np.stack([lookup(fields["color"][..., k], x_s, y_s) for k in range(3)], -1)
        fx = lookup(fields["flow"][g, ..., 0], x_s, y_s)
        fy = lookup(fields["flow"][g, ..., 1], x_s, y_s)
        px, py = (ux + fx) * P, (uy + fy) * P
        v = ((px >= 0) & (px <= P) & (py >= 0) & (py <= P)).astype(np.float64)
        p = np.stack([lookup(photo[..., k], px, py) for k in range(3)], -1)
        bv = (b * v)[..., None]
        out[i, ..., :3] = bv * p + (1 - bv) * col
        out[i, ..., 3] = a
    return out


@pytest.mark.parametrize("S,size,P", [(6, 6, 6), (6, 17, 13), (5, 20, 20), (8, 40, 12)])
def test_materialize_matches_an_independent_construction(S, size, P):
    rng = np.random.default_rng(S * 100 + size)
    fields = random_fields(rng, S=S)
    photo = rng.random((P, P, 3)).astype(np.float32)
    groups = np.array([0, 1, 1, 0])
    # photo <= size here, so no reduction of the photo: every lookup is the plain definition
    got = np.asarray(mpi.materialize(fields, photo, size, groups))
    ref = numpy_materialize(fields, photo, size, groups)
    assert got.shape == (4, size, size, 4)
    np.testing.assert_allclose(got, ref, atol=2e-6)
    # the flow really moved samples (some outside the photo: validity 0 there)
    assert not np.allclose(got, np.asarray(mpi.materialize({**fields, "flow": 0 * fields["flow"]},
                                                           photo, size, groups)))


def test_at_the_fields_size_with_the_photo_at_that_size_it_is_the_blend_formula():
    """No resampling at all (the upsampling matrices are the identity): only float rounding
    (XLA may fuse the multiply-add) separates it from the formula."""
    rng = np.random.default_rng(1)
    f = random_fields(rng, S=8, G=1, flow_scale=0.0)
    photo = rng.random((8, 8, 3)).astype(np.float32)
    got = np.asarray(jax.jit(mpi.materialize, static_argnums=2)(f, photo, 8))
    b = f["blend"][..., None]
    np.testing.assert_allclose(got[..., :3], b * photo[None] + (1 - b) * f["color"][None],
                               rtol=0, atol=2e-7)
    np.testing.assert_array_equal(got[..., 3], f["alpha"])


def test_upsampling_is_bilinear_with_edge_clamp_and_identity_at_the_same_size():
    x = np.arange(4, dtype=np.float32)  # a ramp 0..3 along x
    field = np.broadcast_to(x[None, :, None], (4, 4, 1))
    up = np.asarray(mpi.upsample_bilinear(field, 8))[0, :, 0]
    # output centres at (j + 0.5)/2 input pixels: x - 0.5 = j/2 - 0.25, clamped to [0, 3]
    np.testing.assert_allclose(up, np.clip(np.arange(8) / 2 - 0.25, 0, 3), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mpi.upsample_bilinear(field, 4)), field)


def test_a_photo_larger_than_the_output_is_reduced_first_without_aliasing():
    rng = np.random.default_rng(2)
    f = random_fields(rng, S=4, G=1, flow_scale=0.0)
    f["blend"][:] = 1.0
    checker = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)
    photo = np.repeat(checker[..., None], 3, -1)
    got = np.asarray(mpi.materialize(f, photo, 16))
    # point sampling a 1-px checkerboard at 4x reduction would give 0s and 1s
    np.testing.assert_allclose(got[..., :3], 0.5, atol=0.05)
    np.testing.assert_allclose(got, np.asarray(mpi.materialize(f, mpi.fit_photo(photo, 16), 16)))


def test_unknown_upsampling_is_refused():
    f = random_fields(np.random.default_rng(3), S=4, G=1)
    with pytest.raises(ValueError, match="upsample"):
        mpi.materialize(f, np.zeros((4, 4, 3)), 4, upsample="nearest")
