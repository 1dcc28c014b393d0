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


# ---- version 3: the factored MPI ------------------------------------------------------------

def _fields(rng, D=4, S=6, G=2):
    return {"alpha": rng.integers(0, 256, (D, S, S), dtype=np.uint8),
            "blend": rng.integers(0, 256, (D, S, S), dtype=np.uint8),
            "color": rng.integers(0, 256, (S, S, 3), dtype=np.uint8),
            "flow": (rng.standard_normal((G, S, S, 2)) * 0.05).astype(np.float16)}


def _save_v3(path, T=3, P=16, seed=0):
    rng = np.random.default_rng(seed)
    frames = [(_fields(rng), camera.orbit_pose(np.float32(0.1 * t), np.float32(0.0),
                                                np.array([0, 0, 0.6]))) for t in range(T)]
    photo = rng.integers(0, 256, (P, P, 3), dtype=np.uint8)
    depths = np.array([1.2, 0.9, 0.7, 0.5])
    K = camera.intrinsics(9.0, 6, 6)
    mpi_io.save_factored(path, iter(frames), photo, depths, K, fps=25, plane_groups=[0, 1, 1, 0])
    return frames, photo, depths, K


def test_factored_round_trip_and_dense_frames_through_materialize(tmp_path):
    from mpitalk import mpi

    frames, photo, depths, K = _save_v3(tmp_path / "seq")
    seq = mpi_io.load(tmp_path / "seq")
    assert seq.version == 3 and seq.factored and len(seq) == 3 and seq.fps == 25
    assert (seq.height, seq.width, seq.num_planes, seq.photo_size, seq.num_groups) == \
        (6, 6, 4, 16, 2)
    np.testing.assert_array_equal(seq.plane_groups, [0, 1, 1, 0])
    np.testing.assert_array_equal(seq.photo_u8, photo)  # PNG: lossless
    np.testing.assert_array_equal(seq.K, K)
    meta = json.loads((tmp_path / "seq" / "mpi.json").read_text())
    assert meta["kind"] == "factored" and meta["photo"] == "photo.png"
    assert meta["upsample"] == "bilinear" and meta["num_groups"] == 2
    for t, (fields, pose) in enumerate(frames):
        raw, got_pose = seq.fields_raw_and_pose(t)
        for k in fields:
            np.testing.assert_array_equal(raw[k], fields[k])  # bit-exact as stored
        np.testing.assert_array_equal(got_pose, np.asarray(pose, np.float32))
        np.testing.assert_array_equal(seq.pose(t), got_pose)
        f = seq.fields(t)
        np.testing.assert_array_equal(f["alpha"], fields["alpha"] / np.float32(255))
        assert f["flow"].dtype == np.float32
        # dense frames: materialize of the stored fields with the photo, at S and at P
        for size in (6, 16):
            want = np.asarray(mpi.materialize(f, seq.photo, size, seq.plane_groups))
            np.testing.assert_allclose(seq.dense(t, size), want, atol=1e-6)
        np.testing.assert_allclose(seq[t], seq.dense(t, 6), atol=1e-6)
        rgba8, pose8 = seq.raw_and_pose(t)
        assert rgba8.dtype == np.uint8 and rgba8.shape == (4, 6, 6, 4)
        assert np.abs(rgba8 / 255.0 - seq[t]).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_allclose(seq.K_at(12), camera.scale_intrinsics(K, 2.0, 2.0), rtol=1e-6)


def test_factored_saving_refuses_inconsistent_frames_and_leaves_nothing(tmp_path):
    rng = np.random.default_rng(0)
    photo = np.zeros((8, 8, 3), np.uint8)
    good, other = _fields(rng), _fields(rng, S=5)
    nan = {**_fields(rng), "flow": np.full((2, 6, 6, 2), np.nan, np.float32)}
    for frames, groups, match in (
            ([(good, np.eye(4)), (other, np.eye(4))], [0, 1, 1, 0], "earlier frames"),
            ([(good, np.eye(4))], [0, 2, 1, 0], "max\\(plane_groups\\)"),
            ([(nan, np.eye(4))], None, "NaN"),
            ([(good, np.full((4, 4), np.nan))], None, "finite"),
            ([], None, "no frames")):
        with pytest.raises(ValueError, match=match):
            mpi_io.save_factored(tmp_path / "seq", frames, photo, np.ones(4), np.eye(3), 25,
                                 plane_groups=groups)
    assert list(tmp_path.iterdir()) == []


def test_frames_written_on_the_background_thread_are_those_of_savez_compressed(tmp_path):
    # the frame files are written on a thread while the caller makes the next frame: the same
    # bytes as np.savez_compressed in the caller's thread, even when the caller refills one
    # buffer for every frame
    rng = np.random.default_rng(3)
    frames = [(_fields(rng), np.eye(4, dtype=np.float32) * (t + 1)) for t in range(5)]
    buffer = {k: np.empty_like(v) for k, v in frames[0][0].items()}

    def reused():
        for fields, pose in frames:
            for k, v in fields.items():
                buffer[k][...] = v
            yield buffer, pose

    mpi_io.save_factored(tmp_path / "seq", reused(), np.zeros((8, 8, 3), np.uint8),
                         np.ones(4), np.eye(3), 25, plane_groups=[0, 1, 1, 0])
    for t, (fields, pose) in enumerate(frames):
        np.savez_compressed(tmp_path / "want.npz", **fields, frame_from_mpi=pose)
        assert (tmp_path / "seq" / "frames" / f"{t:06d}.npz").read_bytes() == \
            (tmp_path / "want.npz").read_bytes()
    dense = _frames(T=4)
    mpi_io.save(tmp_path / "dense", iter(dense), np.ones(4), np.eye(3), fps=25)
    np.savez_compressed(tmp_path / "want.npz", rgba=dense[3], frame_from_mpi=np.eye(4,
                                                                                  dtype=np.float32))
    assert (tmp_path / "dense" / "frames" / "000003.npz").read_bytes() == \
        (tmp_path / "want.npz").read_bytes()


def test_a_failed_background_write_is_raised_and_leaves_nothing(tmp_path, monkeypatch):
    real = np.savez_compressed
    calls = []

    def full_disk(path, **arrays):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(path, **arrays)

    monkeypatch.setattr(mpi_io.np, "savez_compressed", full_disk)
    rng = np.random.default_rng(4)
    frames = [(_fields(rng), np.eye(4)) for _ in range(6)]
    with pytest.raises(OSError, match="No space left"):
        mpi_io.save_factored(tmp_path / "seq", iter(frames), np.zeros((8, 8, 3), np.uint8),
                             np.ones(4), np.eye(3), 25, plane_groups=[0, 1, 1, 0])
    assert list(tmp_path.iterdir()) == []  # no sequence, no temporary folder
    assert len(calls) < 6  # the error stopped the writing (at most `depth` frames later)


def _write_meta(folder, **changes):
    meta = json.loads((folder / "mpi.json").read_text())
    meta.update(changes)
    (folder / "mpi.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("changes,match", [
    ({"num_frames": 0}, "num_frames"), ({"num_frames": -3}, "num_frames"),
    ({"num_frames": 1e12}, "num_frames"), ({"num_frames": 7}, "000006.npz: missing"),
    ({"num_frames": "3"}, "num_frames"), ({"fps": 0}, "fps"), ({"fps": "nan"}, "fps"),
    ({"K": [[0, 0, 3], [0, 0, 3], [0, 0, 1]]}, "singular"), ({"K": [[1, 2], [3, 4]]}, "3x3"),
    ({"depths": [1.2, -0.9, 0.7, 0.5]}, "positive"), ({"depths": [1.0, 0.5]}, "depths"),
    ({"depths": [1.2, None, 0.7, 0.5]}, "depths"), ({"version": 9}, "newer"),
    ({"version": 0}, "version"), ({"photo": "../x.png"}, "photo"),
    ({"photo_size": 0}, "photo_size"), ({"plane_groups": [0, 1, 2, 0]}, "plane_groups"),
    ({"plane_groups": [0, 1]}, "plane_groups"), ({"upsample": "magic"}, "upsample"),
    ({"kind": "dense"}, "kind"), ({"num_groups": 0}, "num_groups")])
def test_damaged_descriptions_are_one_line_errors(tmp_path, changes, match):
    _save_v3(tmp_path / "seq")
    _write_meta(tmp_path / "seq", **changes)
    with pytest.raises(UserError, match=match) as err:
        mpi_io.load(tmp_path / "seq")
    assert "\n" not in str(err.value)
    assert "mpi.json" in str(err.value) or "000006.npz" in str(err.value)


def test_a_list_or_a_binary_mpi_json_is_a_one_line_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "mpi.json").write_text("[1, 2, 3]")
    with pytest.raises(UserError, match="not a valid.*list"):
        mpi_io.load(tmp_path / "a")
    (tmp_path / "a" / "mpi.json").write_bytes(b"\x89PNG\x00\xff\xfe")
    with pytest.raises(UserError, match="not a valid"):
        mpi_io.load(tmp_path / "a")


def test_damaged_frames_and_photo_are_one_line_errors(tmp_path):
    frames, *_ = _save_v3(tmp_path / "seq")
    folder = tmp_path / "seq"

    def put(t, **changes):
        fields, pose = frames[t]
        arrays = {**fields, "frame_from_mpi": np.asarray(pose, np.float32), **changes}
        arrays = {k: v for k, v in arrays.items() if v is not None}
        np.savez_compressed(folder / "frames" / f"{t:06d}.npz", **arrays)

    seq = mpi_io.load(folder)
    put(1, flow=np.full((2, 6, 6, 2), np.nan, np.float16))
    with pytest.raises(UserError, match="000001.npz: the flow field holds NaN"):
        seq.fields(1)
    put(1, frame_from_mpi=np.full((4, 4), np.nan, np.float32))
    with pytest.raises(UserError, match="000001.npz: frame_from_mpi holds NaN"):
        seq.pose(1)
    put(1, alpha=frames[1][0]["alpha"].astype(np.float16))
    with pytest.raises(UserError, match="alpha is a float16"):
        seq[1]
    put(1, color=None)
    with pytest.raises(UserError, match="no color"):
        seq.dense(1, 12)
    put(1)
    seq.fields(1)
    (folder / "photo.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="photo.png: damaged photo"):
        _ = mpi_io.load(folder).photo
    from PIL import Image
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(folder / "photo.png")
    with pytest.raises(UserError, match="photo_size"):
        mpi_io.load(folder)[0]
    (folder / "photo.png").unlink()
    with pytest.raises(UserError, match="photo is missing"):
        mpi_io.load(folder)
    with pytest.raises(ValueError, match="no fields"):
        mpi_io.save(tmp_path / "d", _frames(T=1), np.ones(4), np.eye(3), fps=25)
        mpi_io.load(tmp_path / "d").fields(0)


def test_dense_sequences_refuse_nan_frames_float16_in_uint8_and_negative_depths(tmp_path):
    mpi_io.save(tmp_path / "s", _frames(T=2), np.ones(4), np.eye(3), fps=25)
    bad = np.zeros((4, 6, 5, 4), np.float16)
    np.savez_compressed(tmp_path / "s" / "frames" / "000001.npz", rgba=bad,
                        frame_from_mpi=np.eye(4, dtype=np.float32))
    seq = mpi_io.load(tmp_path / "s")
    with pytest.raises(UserError, match="000001.npz: a float16 frame in a uint8 sequence"):
        seq[1]
    mpi_io.save(tmp_path / "h", _frames(T=1).astype(np.float32) / 255, np.ones(4), np.eye(3),
                fps=25, dtype="float16")
    nan = np.full((4, 6, 5, 4), np.nan, np.float16)
    np.savez_compressed(tmp_path / "h" / "frames" / "000000.npz", rgba=nan,
                        frame_from_mpi=np.eye(4, dtype=np.float32))
    with pytest.raises(UserError, match="NaN"):
        mpi_io.load(tmp_path / "h")[0]
    obj = np.array([{"a": 1}], dtype=object)
    np.savez(tmp_path / "h" / "frames" / "000000.npz", rgba=obj)
    with pytest.raises(UserError, match="damaged"):  # pickled content is never loaded
        mpi_io.load(tmp_path / "h")[0]


def test_backdrop_round_trip_and_its_errors(tmp_path):
    rng = np.random.default_rng(3)
    frames = [(_fields(rng), np.eye(4, dtype=np.float32)) for _ in range(2)]
    photo = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    room = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    depths = np.array([1.2, 0.9, 0.7, 0.5])
    K = camera.intrinsics(9.0, 6, 6)
    folder = tmp_path / "seq"
    mpi_io.save_factored(folder, iter(frames), photo, depths, K, fps=25, backdrop=room,
                         back_planes=2)
    seq = mpi_io.load(folder)
    image, depth_m, K_room, k = seq.backdrop_plane()
    np.testing.assert_array_equal(image, room)  # PNG: lossless
    assert depth_m == pytest.approx(1.2) and k == 2
    np.testing.assert_allclose(K_room, camera.scale_intrinsics(K, 16 / 6, 16 / 6), rtol=1e-6)
    # a sequence without one (and every older one) says so; its frames are shown whole
    mpi_io.save_factored(tmp_path / "plain", iter(frames), photo, depths, K, fps=25)
    plain = mpi_io.load(tmp_path / "plain")
    assert plain.backdrop_plane() is None and plain.back_planes == 0
    # nonsense is refused before anything is written, and damage is a one-line error
    with pytest.raises(ValueError, match="back_planes"):
        mpi_io.save_factored(tmp_path / "bad", iter(frames), photo, depths, K, fps=25,
                             backdrop=room, back_planes=4)
    assert not (tmp_path / "bad").exists()
    (folder / "backdrop.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="backdrop.png: damaged backdrop"):
        mpi_io.load(folder).backdrop_plane()
    (folder / "backdrop.png").unlink()
    with pytest.raises(UserError, match="backdrop is missing"):
        mpi_io.load(folder)
    meta = json.loads((folder / "mpi.json").read_text())
    meta["backdrop"]["back_planes"] = 9
    (folder / "mpi.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="back_planes"):
        mpi_io.load(folder)
