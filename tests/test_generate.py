"""generate_mpis: which earlier frame each clip is conditioned on (prev_mode)."""

import numpy as np
import pytest

from mpitalk import controls, generate
from mpitalk import model as M

CFG = M.micro()


def run(monkeypatch, prev_mode, frames=7, batch_size=3):
    """Generate with a stand-in sampler whose MPI of call c, frame k is the flat colour
    (c, k, 1)/10 on an opaque back plane; returns what each call was conditioned on."""
    seen = []

    def fake_sample(model, config, identity, cond, key, steps, sampler):
        c = len(seen)
        seen.append((np.array(cond["prev_frame"]), np.array(cond["has_prev"])))
        n, S = identity.shape[0], config.image_size
        rgba = np.zeros((n, config.num_planes, S, S, 4), np.float32)
        rgba[:, 0, ..., 3] = 1.0
        for k in range(n):
            rgba[k, 0, ..., :3] = np.array([c, k, 1]) / 10.0
        return rgba

    monkeypatch.setattr(M, "sample_mpi", fake_sample)
    track = controls.Track.neutral(frames)
    identity = np.full((CFG.image_size, CFG.image_size, 3), 0.5, np.float32)
    out = list(generate.generate_mpis(None, CFG, identity, track, batch_size=batch_size,
                                      prev_mode=prev_mode))
    assert len(out) == frames
    return seen


def colour(prev):
    """The single colour of a (n,S,S,3) stack of identical flat frames, times ten."""
    assert np.ptp(prev) < 1e-6 or np.allclose(prev, prev.reshape(-1, 3)[0])
    return tuple(np.round(prev.reshape(-1, 3)[0] * 10).astype(int))


@pytest.mark.parametrize("mode, want", [
    # calls cover frames [0,3) [3,6) [6,7); the last frame of call c has colour (c, n-1, 1)
    ("anchor", [None, (0, 2, 1), (0, 2, 1)]),
    ("chain", [None, (0, 2, 1), (1, 2, 1)]),
    ("none", [None, None, None]),
])
def test_each_clip_is_conditioned_on_the_right_earlier_frame(monkeypatch, mode, want):
    seen = run(monkeypatch, mode)
    assert len(seen) == 3
    for (prev, has_prev), w in zip(seen, want, strict=True):
        if w is None:
            assert np.all(has_prev == 0.0) and np.all(prev == 0.0)
        else:
            assert np.all(has_prev == 1.0) and colour(prev) == w


def test_unknown_prev_mode_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="prev_mode"):
        run(monkeypatch, "previous")
