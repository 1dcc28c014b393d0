"""The rig prior's flow carried past the face (``mpitalk.flow_fill``), held against constructions
by hand: an affine field (harmonic, so its own fill), distances measured pixel by pixel, and
the Jacobian of an affine map."""

import numpy as np
import pytest

from mpitalk import flow_fill, paint

S = 48


def _disc(radius: float, centre=(S / 2, S / 2)) -> np.ndarray:
    y, x = np.mgrid[0:S, 0:S] + 0.5
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius ** 2


def test_fold_mask_is_the_sign_of_an_affine_maps_determinant():
    y, x = (np.mgrid[0:S, 0:S] + 0.5) / S  # crop sides
    for A, folds in (([[0.3, 0.2], [-0.1, 0.4]], False),  # det(I + A) = 1.84 > 0
                     ([[-1.5, 0.0], [0.0, 0.2]], True),  # det = -0.6: x runs backwards
                     ([[-0.5, 1.2], [-1.2, -0.5]], False),  # det 0.25 + 1.44: rotates, keeps
                     ([[0.0, 2.0], [2.0, 0.0]], True)):  # det 1 - 4 < 0
        A = np.asarray(A)
        flow = np.stack([A[0, 0] * x + A[0, 1] * y, A[1, 0] * x + A[1, 1] * y], -1)
        assert np.all(flow_fill.fold_mask(flow) == folds), A
    assert not flow_fill.fold_mask(np.zeros((S, S, 2))).any()


def test_holes_are_filled_harmonically_an_affine_field_fills_with_itself():
    valid = _disc(18) & ~_disc(6, (20, 26)) & ~_disc(3, (31, 17))  # two holes in a face
    y, x = (np.mgrid[0:S, 0:S] + 0.5) / S
    affine = np.stack([0.02 + 0.05 * x - 0.03 * y, -0.04 + 0.02 * x + 0.06 * y], -1)
    flow = np.where(valid[..., None], affine, 0.0)
    filled = flow_fill.fill_holes(flow, valid)
    hole = paint.holes(valid, grow=0)
    assert hole.sum() > 100 and not (hole & valid).any()
    np.testing.assert_allclose(filled[hole], affine[hole], atol=2e-5)
    np.testing.assert_array_equal(filled[~hole], flow[~hole])  # nothing else moves


def test_carried_flow_shrinks_with_distance_by_the_slope_and_stops():
    valid = _disc(8)
    f0 = np.array([0.0, -0.1])  # the face reads the photo 0.1 crop sides higher
    flow = np.where(valid[..., None], f0, 0.0)
    slope = 0.5
    out = flow_fill.extend(flow, valid, slope=slope, smooth=0.0)
    centres = np.stack(np.nonzero(valid), -1)
    for (i, j) in [(S // 2, S // 2 + 10), (S // 2 + 12, S // 2), (5, 5), (S - 1, S // 2),
                   (S // 2 - 9, S // 2 + 4)]:
        d = np.min(np.hypot(centres[:, 0] - i, centres[:, 1] - j))  # texels, by hand
        want = max(0.0, 0.1 - slope * d / S)
        np.testing.assert_allclose(out[i, j], [0.0, -want], atol=1e-6, err_msg=str((i, j, d)))
    np.testing.assert_allclose(out[valid], flow[valid], atol=1e-7)


@pytest.mark.parametrize("fill", [True, False])
def test_a_moving_face_no_longer_folds_at_its_outline(fill):
    """A jaw-like face whose lower half reads the photo higher: zero outside, its outline
    folds the map; carried out, nothing folds and the valid flow is untouched."""
    valid = _disc(14) & ~_disc(4, (24, 28))  # a mouth hole
    y = (np.mgrid[0:S, 0:S][0] + 0.5) / S
    flow = np.zeros((S, S, 2))
    flow[..., 1] = -0.12 * np.clip((y - 0.4) / 0.3, 0, 1)  # lower face moved down
    flow[..., 0] = 0.01
    flow = np.where(valid[..., None], flow, 0.0)
    assert flow_fill.fold_mask(flow).sum() > 5  # the jump at the chin
    out = flow_fill.extend(flow, valid, fill=fill)
    assert out.dtype == np.float32 and out.shape == flow.shape
    np.testing.assert_allclose(out[valid], flow[valid], atol=1e-7)
    hole = paint.holes(valid, grow=0)
    # with the hole kept at zero its rim still folds (central differences reach into it)
    kept = hole if fill else ndimage_dilate(hole, 1)
    assert not flow_fill.fold_mask(out)[~kept].any()
    if fill:
        assert np.all(out[hole][:, 1] < 0)  # between the lips' flows
    else:
        np.testing.assert_array_equal(out[hole], 0.0)  # as trained: the mouth reads in place
    # past |f| / slope (0.12 / 0.5 crop sides, 11.5 texels) and the smoothing, nothing moves
    ij = np.argwhere(valid)
    dist = np.min(np.hypot(*(np.mgrid[0:S, 0:S][:, :, :, None] - ij.T[:, None, None])), -1)
    far = dist > 0.12 * S / flow_fill.SLOPE + 3 * flow_fill.SMOOTH_TEXELS
    assert far.sum() > 100 and np.abs(out[far]).max() < 1e-4


def ndimage_dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=steps) if steps else mask


def test_batched_equals_one_at_a_time_and_no_face_means_no_flow():
    rng = np.random.default_rng(0)
    valid = np.stack([_disc(10), _disc(6, (15, 30))])
    flow = (0.05 * rng.standard_normal((2, S, S, 2))).astype(np.float32)
    out = flow_fill.extend(flow, valid)
    for k in range(2):
        np.testing.assert_array_equal(out[k], flow_fill.extend(flow[k], valid[k]))
    np.testing.assert_array_equal(flow_fill.extend(flow[0], np.zeros((S, S))), 0.0)
    with pytest.raises(ValueError, match="slope"):
        flow_fill.extend(flow[0], valid[0], slope=1.0)
