"""Where the painted colour shows (mpitalk.paint): the holes of the rig prior's valid region,
against a construction by hand, and generation handing the model its copy mask."""

import numpy as np
import pytest

from mpitalk import paint

S = 128


def disk(cy, cx, r):
    yy, xx = np.mgrid[0:S, 0:S]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_holes_are_the_invalid_pixels_the_face_encloses_grown_by_one_texel():
    face, mouth, eye = disk(64, 64, 30), disk(78, 64, 6), disk(52, 52, 3)
    valid = face & ~mouth & ~eye
    valid[:, :3] = True  # a valid strip along the edge: what lies between it and the face is
    # invalid, touches the image's border and is not enclosed: not a hole
    inside = mouth | eye
    np.testing.assert_array_equal(paint.holes(valid.astype(np.float32), grow=0), inside)
    grown = np.zeros_like(inside)  # by hand: within one texel (8-neighbours) of a hole
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown |= np.roll(np.roll(inside, dy, 0), dx, 1)
    np.testing.assert_array_equal(paint.holes(valid.astype(np.float32)), grown)
    assert not paint.holes(valid.astype(np.float32))[0, 40]  # the outside is copied
    mask = paint.copy_mask(np.stack([valid, face]).astype(np.float32))
    assert mask.shape == (2, S, S) and mask.dtype == np.float32
    np.testing.assert_array_equal(mask[0], ~grown)
    np.testing.assert_array_equal(mask[1], 1.0)  # a face with no holes: copied everywhere


@pytest.mark.parametrize("paint_mode, space", [("holes", "reference"), ("model", "reference"),
                                               ("holes", "target")])
def test_generation_gives_a_flow_model_the_copy_mask_of_its_prior(monkeypatch, paint_mode,
                                                                  space):
    from mpitalk import camera, controls, generate
    from mpitalk import model as M

    cfg = M.micro().replace(flow_bound=0.1)
    s, d = cfg.image_size, cfg.num_planes
    seen = {}

    def fake_sample(model, config, identity, cond, *a, **k):
        seen.update(cond)
        return np.zeros((identity.shape[0], d, s, s, 4), np.float32)

    monkeypatch.setattr(M, "sample_mpi", fake_sample)
    values = np.zeros((2, 52), np.float32)
    values[:, controls.ARKIT_NAMES.index("jawOpen")] = [0.2, 0.9]
    track = controls.Track(values, np.tile(camera.default_head_pose(), (2, 1)), 25.0)
    list(generate.generate_frames(None, cfg, np.full((s, s, 3), 0.5, np.float32), track,
                                  batch_size=2, space=space, paint=paint_mode))
    if paint_mode == "model" or space == "target":
        assert "copy_mask" not in seen
    else:
        np.testing.assert_array_equal(seen["copy_mask"], paint.copy_mask(seen["prior_valid"]))
        assert not np.all(seen["copy_mask"][1])  # the open jaw's inside is left to paint
