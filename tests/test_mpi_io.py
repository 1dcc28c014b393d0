"""The on-disk MPI format: bit-exact round trips, streaming, atomic writes, clear errors."""

import json

import numpy as np
import pytest

from mpitalk import UserError, camera, mpi_io


def _frames(T=3, D=4, H=6, W=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (T, D, H, W, 4), dtype=np.uint8)


def test_round_trip_is_bit_exact(tmp_path):
    frames = _frames()
    depths = np.array([1.2, 0.9, 0.7, 0.5])
    K = camera.intrinsics(7.5, 5, 6)
    mpi_io.save(tmp_path / "seq", frames, depths, K, fps=25)
    seq = mpi_io.load(tmp_path / "seq")
    assert len(seq) == 3 and seq.fps == 25 and seq.num_planes == 4
    np.testing.assert_array_equal(seq.depths, depths.astype(np.float32))
    np.testing.assert_array_equal(seq.K, K)
    for t, frame in enumerate(seq):
        np.testing.assert_array_equal(seq.raw(t), frames[t])
        # floats that are multiples of 1/255 survive a float round trip exactly
        np.testing.assert_array_equal(frame, frames[t].astype(np.float32) / np.float32(255))
    mpi_io.save(tmp_path / "again", list(seq), depths, K, fps=25)
    np.testing.assert_array_equal(mpi_io.load(tmp_path / "again").raw(2), frames[2])


def test_streamed_generator_and_float16(tmp_path):
    frames = np.random.default_rng(1).random((4, 2, 3, 3, 4)).astype(np.float32)
    consumed = []

    def gen():
        for f in frames:
            consumed.append(1)
            yield f

    mpi_io.save(tmp_path / "s", gen(), [1.0, 0.5], np.eye(3), fps=10, dtype="float16")
    seq = mpi_io.load(tmp_path / "s")
    assert len(seq) == 4 == len(consumed)
    np.testing.assert_array_equal(seq[3], frames[3].astype(np.float16).astype(np.float32))


def test_per_frame_poses_round_trip_and_version_1_frames_read_as_identity(tmp_path):
    frames = _frames(T=2)
    poses = [camera.orbit_pose(np.float32(0.2), np.float32(-0.1), np.array([0, 0, 0.6])),
             camera.make_pose(np.eye(3, dtype=np.float32), np.array([0.01, 0.0, 0.02]))]
    mpi_io.save(tmp_path / "seq", zip(frames, poses, strict=True), np.ones(4), np.eye(3), fps=25)
    seq = mpi_io.load(tmp_path / "seq")
    assert seq.version == 2
    for t in range(2):
        np.testing.assert_array_equal(seq.raw(t), frames[t])
        np.testing.assert_array_equal(seq.pose(t), np.asarray(poses[t], np.float32))
        rgba, pose = seq.raw_and_pose(t)  # both from one read
        np.testing.assert_array_equal(rgba, frames[t])
        np.testing.assert_array_equal(pose, seq.pose(t))
    # plain frames get the identity; a version-1 frame (no pose stored) reads as the identity
    mpi_io.save(tmp_path / "plain", frames, np.ones(4), np.eye(3), fps=25)
    np.testing.assert_array_equal(mpi_io.load(tmp_path / "plain").pose(1), np.eye(4))
    v1 = tmp_path / "v1"
    (v1 / "frames").mkdir(parents=True)
    meta = json.loads((tmp_path / "plain" / "mpi.json").read_text())
    (v1 / "mpi.json").write_text(json.dumps({**meta, "version": 1}))
    np.savez_compressed(v1 / "frames" / "000000.npz", rgba=frames[0])
    np.savez_compressed(v1 / "frames" / "000001.npz", rgba=frames[1])
    old = mpi_io.load(v1)
    np.testing.assert_array_equal(old.raw(1), frames[1])
    np.testing.assert_array_equal(old.pose(0), np.eye(4))
    np.testing.assert_array_equal(old.raw_and_pose(1)[1], np.eye(4))
    with pytest.raises(ValueError, match="frame_from_mpi"):
        mpi_io.save(tmp_path / "bad", [(frames[0], np.eye(3))], np.ones(4), np.eye(3), fps=25)
    assert not (tmp_path / "bad").exists()


def test_no_partial_output_on_failure_and_overwrite(tmp_path):
    def bad():
        yield _frames()[0]
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError):
        mpi_io.save(tmp_path / "seq", bad(), np.ones(4), np.eye(3), fps=25)
    assert list(tmp_path.iterdir()) == []  # neither the final name nor a temp folder remains
    mpi_io.save(tmp_path / "seq", _frames(T=2), np.ones(4), np.eye(3), fps=25)
    mpi_io.save(tmp_path / "seq", _frames(T=1), np.ones(4), np.eye(3), fps=25)
    assert len(mpi_io.load(tmp_path / "seq")) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["seq"]


def test_clear_errors_for_missing_foreign_and_damaged_folders(tmp_path):
    with pytest.raises(UserError, match="no such MPI folder"):
        mpi_io.load(tmp_path / "nope")
    (tmp_path / "foreign").mkdir()
    with pytest.raises(UserError, match="no mpi.json"):
        mpi_io.load(tmp_path / "foreign")
    (tmp_path / "foreign" / "mpi.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(UserError, match="not a valid"):
        mpi_io.load(tmp_path / "foreign")
    mpi_io.save(tmp_path / "seq", _frames(T=2), np.ones(4), np.eye(3), fps=25)
    (tmp_path / "seq" / "frames" / "000001.npz").write_bytes(b"garbage")
    seq = mpi_io.load(tmp_path / "seq")
    seq[0]
    with pytest.raises(UserError, match="000001.npz"):
        seq[1]
