"""generate_frames / generate_mpis: which earlier frame each clip is conditioned on
(prev_mode), and the camera each MPI is in."""

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


def test_reference_space_mpis_are_moved_into_each_frames_camera(monkeypatch):
    """The model's MPI is in the identity's camera; the stored one, seen from the frame's own
    camera, must show that MPI rendered by the relative head pose (an independent render)."""
    from mpitalk import camera, mpi

    S, D = CFG.image_size, CFG.num_planes
    rng = np.random.default_rng(0)
    ref_mpi = rng.random((D, S, S, 4)).astype(np.float32)
    ref_mpi[0, ..., 3] = 1.0
    spaces = []

    def fake_sample(model, config, identity, cond, key, steps, sampler):
        spaces.append(np.array(cond["camera_space"]))
        return np.broadcast_to(ref_mpi, (identity.shape[0],) + ref_mpi.shape).copy()

    monkeypatch.setattr(M, "sample_mpi", fake_sample)
    pose = np.tile(camera.default_head_pose(), (3, 1)).astype(np.float32)
    pose[1, 0], pose[2, 1] = 0.1, -0.08  # a yaw, then a pitch
    track = controls.Track(np.zeros((3, 52), np.float32), pose, 25.0)
    identity = np.full((S, S, 3), 0.5, np.float32)
    # the model's own planes (geometry="layers"): the move into the frame is what is tested
    out = list(generate.generate_mpis(None, CFG, identity, track, batch_size=3,
                                      geometry="layers"))
    assert np.all(spaces[0] == 1.0)
    depths, K = generate.mpi_geometry(CFG)
    ref_inv = camera.invert_pose(camera.head_pose_matrix(camera.default_head_pose()))
    for k in range(3):
        want = mpi.render(ref_mpi, depths, K, camera.head_pose_matrix(pose[k]) @ ref_inv)
        seen = np.asarray(want.alpha) > 1 - 1e-5
        assert seen.mean() > 0.8
        got = np.asarray(mpi.composite(out[k])[0])
        np.testing.assert_allclose(got[seen], np.asarray(want.rgb)[seen], atol=1e-4)
    target = list(generate.generate_mpis(None, CFG, identity, track, batch_size=3,
                                         space="target", geometry="layers"))
    assert np.all(spaces[-1] == 0.0)
    np.testing.assert_array_equal(target[1], ref_mpi)  # as the model made it


def test_generate_frames_keeps_the_models_mpi_and_gives_its_pose_in_the_frame(monkeypatch):
    """generate_frames yields the model's MPI untouched (geometry="layers"; by default re-laid
    as ``surface.surface_rgba``), with frame_from_mpi = the head's motion from the identity
    (built here from the two head poses); rendering the pair at the frame's own view equals
    the reprojected MPI of generate_mpis seen from there."""
    from mpitalk import camera, mpi, surface

    S, D = CFG.image_size, CFG.num_planes
    rng = np.random.default_rng(1)
    ref_mpi = rng.random((D, S, S, 4)).astype(np.float32)
    ref_mpi[0, ..., 3] = 1.0
    monkeypatch.setattr(M, "sample_mpi", lambda model, config, identity, *a, **k: np.broadcast_to(
        ref_mpi, (identity.shape[0],) + ref_mpi.shape).copy())
    pose = np.tile(camera.default_head_pose(), (2, 1)).astype(np.float32)
    pose[1, 0], pose[1, 3] = -0.12, 0.01
    track = controls.Track(np.zeros((2, 52), np.float32), pose, 25.0)
    identity = np.full((S, S, 3), 0.5, np.float32)
    frames = list(generate.generate_frames(None, CFG, identity, track, batch_size=2,
                                           geometry="layers"))
    moved = list(generate.generate_mpis(None, CFG, identity, track, batch_size=2,
                                        geometry="layers"))
    default = list(generate.generate_frames(None, CFG, identity, track, batch_size=2))
    assert len(default) == len(frames)
    for (rgba, pose_k), (_, pose_l) in zip(default, frames, strict=True):
        np.testing.assert_array_equal(rgba, surface.surface_rgba(ref_mpi))  # the default
        np.testing.assert_array_equal(pose_k, pose_l)
    depths, K = generate.mpi_geometry(CFG)
    ref_from_head = camera.invert_pose(camera.head_pose_matrix(camera.default_head_pose()))
    for k, (rgba, frame_from_mpi) in enumerate(frames):
        np.testing.assert_array_equal(rgba, ref_mpi)
        np.testing.assert_allclose(frame_from_mpi,
                                   camera.head_pose_matrix(pose[k]) @ ref_from_head, atol=1e-6)
        direct = mpi.render(rgba, depths, K, frame_from_mpi)
        seen = np.asarray(direct.alpha) > 1 - 1e-5
        np.testing.assert_allclose(np.asarray(mpi.composite(moved[k])[0])[seen],
                                   np.asarray(direct.rgb)[seen], atol=1e-4)
    target = list(generate.generate_frames(None, CFG, identity, track, batch_size=2,
                                           space="target", geometry="layers"))
    for rgba, frame_from_mpi in target:
        np.testing.assert_array_equal(rgba, ref_mpi)
        np.testing.assert_array_equal(frame_from_mpi, np.eye(4))


def test_motion_from_photo_moves_the_head_across_the_image_as_the_footage_did():
    from mpitalk import camera

    rng = np.random.default_rng(3)
    K = camera.intrinsics(192.0, 128, 128)
    photo_pose = np.array([-0.06, -0.15, -0.01, -0.01, -0.02, 0.42], np.float32)  # tracked
    pose = photo_pose + rng.normal(0, [0.1, 0.1, 0.1, 0.02, 0.02, 0.08], (5, 6))
    track = controls.Track(np.zeros((5, 52), np.float32), pose.astype(np.float32), 25.0)
    # what the model is told for the photo: its own depth, a misread angle and place
    ref = np.array([-0.08, -0.09, -0.02, -0.015, -0.03, 0.6], np.float32)
    info = {"identity_expression": np.r_[np.zeros(52), ref].astype(np.float32)}
    out = generate.motion_from_photo(track, photo_pose, info)
    # points of the filmed head: on a 20 cm box about its centre, in the photo's camera
    local = rng.uniform(-0.1, 0.1, (50, 3))
    points = local @ np.asarray(camera.head_pose_matrix(photo_pose))[:3, :3].T + photo_pose[3:]
    s = 0.6 / 0.42  # the model's scene: the photo's, s times larger (the same image)

    def pixels(M, X):
        Y = X @ np.asarray(M, np.float64)[:3, :3].T + np.asarray(M, np.float64)[:3, 3]
        return Y[:, :2] / Y[:, 2:] * K[0, 0] + K[0, 2]

    np.testing.assert_allclose(pixels(np.eye(4), points), pixels(np.eye(4), s * points))
    old = pose - photo_pose + ref  # adding the pose differences: not the footage's motion
    worst_old = 0.0
    for t in range(5):
        filmed = pixels(camera.head_motion(pose[t], photo_pose), points)
        made = pixels(camera.head_motion(out.pose[t], ref), s * points)
        np.testing.assert_allclose(made, filmed, atol=1e-3)  # px
        worst_old = max(worst_old, np.abs(pixels(camera.head_motion(old[t], ref), s * points)
                                          - filmed).max())
    assert worst_old > 1.0
    np.testing.assert_array_equal(out.values, track.values)


def test_relative_pose_moves_the_photos_pose_by_the_tracks_motion():
    pose = np.array([[0.1, 0.0, 0.0, 0.01, 0.02, 0.6],
                     [0.3, -0.2, 0.05, 0.0, 0.0, 0.62],
                     [0.2, -0.1, 0.02, 0.03, -0.01, 0.58]], np.float32)
    # medians: angles (0.2, -0.1, 0.02), position (0.01, 0.0)
    track = controls.Track(np.zeros((3, 52), np.float32), pose, 25.0)
    info = {"identity_expression": np.r_[np.zeros(52), 0.02, 0.15, -0.01, -0.005, 0.004, 0.6]}
    out = generate.relative_to_identity(track, info)
    want = np.array([[-0.08, 0.25, -0.03], [0.12, 0.05, 0.02], [0.02, 0.15, -0.01]])
    np.testing.assert_allclose(out.pose[:, :3], want, atol=1e-6)
    want_xy = np.array([[-0.005, 0.024], [-0.015, 0.004], [0.015, -0.006]])
    np.testing.assert_allclose(out.pose[:, 3:5], want_xy, atol=1e-6)
    np.testing.assert_allclose(out.pose[:, 5], track.pose[:, 5], atol=1e-6)  # median at 0.6
    np.testing.assert_array_equal(out.values, track.values)
    assert generate.relative_to_identity(track, None) is track


def test_relative_pose_takes_the_tracks_positions_at_the_photos_scale():
    # a driver filmed at 0.8 m (median), moving 8 cm away and 2 cm sideways
    pose = np.array([[0.0, 0.0, 0.0, 0.00, 0.0, 0.8],
                     [0.0, 0.0, 0.0, 0.02, 0.0, 0.88],
                     [0.0, 0.0, 0.0, 0.00, 0.0, 0.76]], np.float32)
    track = controls.Track(np.zeros((3, 52), np.float32), pose, 25.0)
    info = {"identity_expression": np.r_[np.zeros(52), 0.0, 0.0, 0.0, 0.01, 0.0, 0.6]}
    out = generate.relative_to_identity(track, info)
    np.testing.assert_allclose(out.pose[:, 5], [0.6, 0.66, 0.57], atol=1e-6)
    np.testing.assert_allclose(out.pose[:, 3], [0.01, 0.025, 0.01], atol=1e-6)
    # the same image: each head centre projects where the driver's did, relative to its median
    for t in range(3):
        np.testing.assert_allclose((out.pose[t, 3] - 0.01) / out.pose[t, 5],
                                   pose[t, 3] / pose[t, 5], atol=1e-6)


def test_relative_pose_of_a_track_at_zero_depth_keeps_its_positions():
    pose = np.zeros((3, 6), np.float32)
    pose[:, 3] = [0.0, 0.01, 0.02]
    track = controls.Track(np.zeros((3, 52), np.float32), pose, 25.0)
    info = {"identity_expression": np.r_[np.zeros(52), 0.0, 0.0, 0.0, 0.0, 0.0, 0.6]}
    out = generate.relative_to_identity(track, info)
    np.testing.assert_allclose(out.pose[:, 3], [-0.01, 0.0, 0.01], atol=1e-7)
    np.testing.assert_array_equal(out.pose[:, 5], 0.0)
    assert np.all(np.isfinite(out.pose))


def test_shown_pose_lets_the_head_move_away_beyond_the_conditions_depth():
    pose = np.array([[0.9, 0.0, 0.0, 0.2, 0.0, 0.9],
                     [0.0, 0.0, 0.0, 0.0, 0.0, 2.0],
                     [0.0, 0.0, 0.0, 0.0, 0.0, 0.3]], np.float32)
    shown, cond = generate.shown_pose(pose), generate.drivable_pose(pose)
    np.testing.assert_array_equal(shown[:, :5], cond[:, :5])  # angles, sideways: as conditioned
    np.testing.assert_allclose(shown[:, 5], [0.9, 1.2, 0.4])
    assert cond[0, 5] == pytest.approx(0.75)


def test_reference_frames_are_shown_at_the_tracks_own_depth(monkeypatch):
    from mpitalk import camera

    def fake_sample(model, config, identity, cond, key, steps, sampler):
        n, S = identity.shape[0], config.image_size
        return np.zeros((n, config.num_planes, S, S, 4), np.float32)

    monkeypatch.setattr(M, "sample_mpi", fake_sample)
    pose = np.tile(camera.default_head_pose(), (3, 1))
    pose[:, 5] = [0.6, 0.7, 0.9]  # the last beyond the conditions' 0.75 m
    track = controls.Track(np.zeros((3, 52), np.float32), pose, 25.0)
    identity = np.full((CFG.image_size, CFG.image_size, 3), 0.5, np.float32)
    out = list(generate.generate_frames(None, CFG, identity, track, steps=1, batch_size=3))
    moved = np.stack([p for _, p in out])
    np.testing.assert_allclose(moved[:, 2, 3], [0.0, 0.1, 0.3], atol=1e-6)  # metres farther


def test_identity_conditions_take_given_blendshapes_and_still_read_the_pose():
    from mpitalk import camera, data_dir

    S = 128
    K = camera.intrinsics(1.5 * S, S, S)
    photo = generate.prepare_identity(str(data_dir() / "identity.png"), S)
    read = generate.identity_conditions(photo, K)
    mine = np.full(52, 0.25, np.float32)
    given = generate.identity_conditions(photo, K, values=mine)
    np.testing.assert_array_equal(given["identity_expression"][:52], mine)
    np.testing.assert_array_equal(given["identity_expression"][52:],
                                  read["identity_expression"][52:])
    assert not np.array_equal(given["identity_cond"], read["identity_cond"])  # rig re-posed
