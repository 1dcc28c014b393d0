"""The rig prior moved onto the photo's face (prior_align), held against a construction: two
'photos' made from textured rig renders at expressions A and B by one known smooth map of the
image plane; the rig's flow aligned by landmarks related by that map must warp photo A into
photo B, as the rig's own flow warps render A into render B."""

from __future__ import annotations

import numpy as np
import pytest

from mpitalk import data_dir, generate, prior_align, rig, train
from mpitalk import model as M
from tests.test_rig_flow import NEUTRAL, P0, TALK, K, S, _sample, _uv_pattern

SCALE, CENTRE, SHIFT = 1.06, np.array([64.0, 64.0]), np.array([1.5, -2.0])


def _to_rig(q: np.ndarray) -> np.ndarray:
    """The known map: the photo's point q shows the rig's point q + _to_rig(q) (px)."""
    return (SCALE - 1.0) * (q - CENTRE) + SHIFT


def test_an_aligned_prior_warps_one_photo_into_the_other():
    texture = _uv_pattern(256)
    A, B = (rig.render_textured(w, P0, K, S, texture) for w in (NEUTRAL, TALK))
    q = rig.pixel_centres(S).astype(np.float64)
    photo_a, photo_b = (_sample(img, q + _to_rig(q)) for img in (A, B))
    g = np.linspace(8, S - 8, 12)
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    alignment = prior_align.fit(pts, pts + _to_rig(pts), S)
    assert alignment.shape == (2, S, S, 2) and alignment.dtype == np.float32
    # an affine map is reproduced exactly (the spline's affine part), both ways
    np.testing.assert_allclose(alignment[0], _to_rig(q), atol=2e-3)
    np.testing.assert_allclose(q + alignment[1] + _to_rig(q + alignment[1]), q, atol=2e-3)

    flow, valid = rig.render_prior_flow(NEUTRAL, P0, TALK, P0, K, S)
    aligned, ok = prior_align.align_flow(flow, valid, alignment)
    assert aligned.shape == (S, S, 2) and ok.dtype == bool
    assert 0.8 < ok.sum() / valid.sum() < 1.25  # the face region moved, about the same size

    def mae(flow_px, where):
        warped = _sample(photo_a, q + flow_px)
        region = where & (warped[..., 3] > 0.999) & (photo_b[..., 3] > 0.999)
        return float(np.abs(warped[..., :3] - photo_b[..., :3]).mean(-1)[region].mean())

    moving = ok & (np.abs(aligned).sum(-1) > 0.5)  # where the face moves (mouth, brows, lid)
    assert moving.sum() > 100
    err = mae(aligned, moving)
    unaligned = mae(flow, moving)  # the rig's flow used on the photo as it is
    still = mae(np.zeros_like(aligned), moving)
    rig_own = float(np.abs(_sample(A, q + flow)[..., :3] - B[..., :3]).mean(-1)[
        valid & (np.abs(flow).sum(-1) > 0.5)].mean())
    assert err < 0.5 * unaligned and err < 0.5 * still
    assert err < 1.3 * rig_own  # as good as the rig's own warp, up to one more resampling


def test_no_rig_motion_gives_no_aligned_flow():
    flow, valid = rig.render_prior_flow(TALK, P0, TALK, P0, K, S)
    q = rig.pixel_centres(S)
    g = np.linspace(8, S - 8, 10)
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    # a non-affine correspondence too: the zero stays exactly zero
    alignment = prior_align.fit(pts, pts + 2.0 * np.sin(pts / 20.0), S)
    aligned, ok = prior_align.align_flow(np.zeros_like(flow), valid, alignment)
    assert ok.sum() > 0.5 * valid.sum() and not aligned.any()
    # batched = one by one
    two, oks = prior_align.align_flow(np.stack([flow, flow * 0.5]), np.stack([valid, valid]),
                                      alignment)
    one, _ = prior_align.align_flow(flow * 0.5, valid, alignment)
    np.testing.assert_array_equal(two[1], one)
    assert oks.shape == (2, S, S) and q.shape == (S, S, 2)


@pytest.fixture(scope="module")
def photo():
    return generate.prepare_identity(str(data_dir() / "identity.png"), S)


def test_a_photo_gets_an_alignment_that_moves_the_reference_prior_only(photo):
    from mpitalk import face

    info = generate.identity_conditions(photo, K, align=True)
    assert "prior_align" not in generate.identity_conditions(photo, K)
    to_rig = info["prior_align"][0]
    # at the photo's landmarks, the map lands on MediaPipe's reading of the rig's landmarks
    photo_px = face.detect_faces(np.round(photo * 255).astype(np.uint8), 1)[0].landmarks_px
    values, pose = info["identity_expression"][:52], info["identity_expression"][52:]
    rig_px = prior_align.rig_landmarks(values, pose, K, S)
    ij = np.clip(photo_px.astype(int), 0, S - 1)
    err = np.linalg.norm(photo_px + to_rig[ij[:, 1], ij[:, 0]] - rig_px, axis=-1)
    assert np.median(err) < 1.0  # the spline smooths the ~0.8 px landmark jitter
    assert np.abs(rig_px - photo_px).mean() > 1.0  # and there is something to align
    expr = np.concatenate([TALK, pose])[None].astype(np.float32)
    plain = {k: v for k, v in info.items() if k != "prior_align"}
    for reference in (True, False):
        moved = generate.prior_conditions(expr, info, K, S, reference=reference)
        rigs = generate.prior_conditions(expr, plain, K, S, reference=reference)
        same = np.array_equal(moved["prior_flow"], rigs["prior_flow"])
        assert same != reference  # the frame's camera keeps the rig's prior


def test_training_samples_carry_the_aligned_prior_in_the_reference_camera(photo):
    cfg = M.micro().replace(flow_bound=0.1, p_drop_identity_info=0.0)
    clips = train.fake_clips(1, cfg.image_size, 3)
    clip = clips[0]
    clip["identity_rgb"] = np.round(generate.prepare_identity(
        str(data_dir() / "identity.png"), cfg.image_size) * 255).astype(np.uint8)
    alignment = train.clip_alignment(clip)
    assert alignment is not None and train.clip_alignment(clip) is alignment  # fitted once
    n = cfg.batch_size - 1  # the batch's last sample is in the reference camera
    s = train.make_sample(clips, cfg, n)
    rng = np.random.default_rng((cfg.seed, n))
    t = int(rng.integers(clip["target_rgb"].shape[0]))
    args = (clip["identity_controls"], clip["identity_pose"], clip["controls"][t],
            clip["pose"][t], clip["K"], cfg.image_size, True)
    want = train.prior_flow_of(*args, alignment)
    np.testing.assert_array_equal(s["prior_flow"], want["prior_flow"])
    assert not np.array_equal(s["prior_flow"], train.prior_flow_of(*args)["prior_flow"])
    # an identity image without a face: the rig's prior as it is
    assert train.clip_alignment(train.fake_clips(1, cfg.image_size, 3)[0]) is None
