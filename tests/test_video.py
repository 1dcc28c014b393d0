"""Stereo/novel-view export (mpitalk.video, python -m mpitalk.render): decoded disparity, 3D
metadata, layouts, audio, and one-line errors."""

import re
import subprocess
import wave

import av
import numpy as np
import pytest

from mpitalk import UserError, camera, mpi_io, render, video

W, H, F = 160, 96, 120.0  # MPI size and focal length (pixels)
NEAR, FAR = 0.5, 2.0
IPD_M = 0.063
FPS = 10.0
FRAMES = 3


def smooth_noise(rng, shape, passes=4):
    x = rng.random(shape).astype(np.float32)
    for ax in (0, 1):
        for _ in range(passes):
            x = (x + np.roll(x, 1, ax) + np.roll(x, -1, ax)) / 3
    return (x - x.min()) / (x.max() - x.min())


@pytest.fixture(scope="module")
def plane_mpi(tmp_path_factory):
    """A textured opaque square at NEAR over a textured opaque background at FAR."""
    rng = np.random.default_rng(0)
    rgba = np.zeros((2, H, W, 4), np.float32)
    rgba[0, ..., :3] = smooth_noise(rng, (H, W, 3))
    rgba[0, ..., 3] = 1.0
    rgba[1, 24:72, 56:112, :3] = smooth_noise(rng, (48, 56, 3))
    rgba[1, 24:72, 56:112, 3] = 1.0
    path = tmp_path_factory.mktemp("mpi") / "plane"
    mpi_io.save(path, [rgba] * FRAMES, [FAR, NEAR], camera.intrinsics(F, W, H), FPS)
    return path


def decode(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def horizontal_shift(a, b, rows, cols):
    """The s minimising sum (a(x) - b(x - s))^2 over the region: a's content sits s pixels to
    the right of b's. Sub-pixel by linear interpolation of b."""
    a = a.astype(np.float64).mean(-1)[rows]
    b = b.astype(np.float64).mean(-1)[rows]
    x = np.arange(b.shape[1], dtype=np.float64)
    shifts = np.arange(-12.0, 20.0, 0.05)
    errs = [np.mean((a[:, cols] - np.array([np.interp(x[cols] - s, x, r) for r in b])) ** 2)
            for s in shifts]
    return shifts[int(np.argmin(errs))]


def st3d_mode(path):
    """The stereo_mode byte of the MP4 st3d box (1 top-bottom, 2 left-right), or None."""
    data = path.read_bytes()
    i = data.find(b"st3d")
    return None if i < 0 else data[i + 8]


def ffmpeg_stereo_type(path):
    """The stereo type ffmpeg's MP4 reader reports for the video stream ("side by side", ...)."""
    probe = subprocess.run([video.ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                           capture_output=True, text=True)
    found = re.search(r"stereo ?3d: *([a-z ]+)", probe.stderr, re.IGNORECASE)
    return None if found is None else found.group(1).strip().lower()


def has_frame_packing_sei(path):
    """An H.264 SEI NAL (length-prefixed, type 6) whose first payload is type 45."""
    return re.search(rb"\x00\x00\x00[\x08-\x30]\x06\x2d", path.read_bytes()) is not None


def test_sbs_disparity_metadata_and_novel_view(plane_mpi, tmp_path):
    out = video.export_mpi_sequence(plane_mpi, tmp_path, convergence_m=FAR, ipd_mm=IPD_M * 1e3,
                                    novel_view="orbit", progress=False)
    assert out["stereo"].name == "plane_LR.mp4" and out["novel_view"].name == "plane_orbit.mp4"
    frames = decode(out["stereo"])
    assert frames.shape == (FRAMES, H, 2 * W, 3)
    left, right = frames[0][:, :W], frames[0][:, W:]
    expected = F * IPD_M * (1 / NEAR - 1 / FAR)  # 11.34 px, converged at the background
    inner = slice(30, 66)
    assert horizontal_shift(left, right, inner, slice(66, 100)) == pytest.approx(expected, abs=1.0)
    assert horizontal_shift(left, right, inner, slice(8, 40)) == pytest.approx(0.0, abs=1.0)
    assert st3d_mode(out["stereo"]) == 2  # left-right
    assert ffmpeg_stereo_type(out["stereo"]) == "side by side"  # no box contradicts st3d
    assert has_frame_packing_sei(out["stereo"])
    assert st3d_mode(out["novel_view"]) is None
    assert decode(out["novel_view"]).shape == (FRAMES, H, W, 3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_tb_half_layout_via_cli(plane_mpi, tmp_path, capsys):
    out = tmp_path / "job"
    code = render.main(["--mpi", str(plane_mpi), "--out", str(out), "--layout", "tb",
                        "--half", "--eye-size", "120", "--novel-view", "none", "--ply", "1",
                        "--quiet"])
    assert code == 0, capsys.readouterr().err
    path = out / "mpitalk_TB.mp4"  # the job runner names its outputs "mpitalk"
    assert st3d_mode(path) == 1  # top-bottom
    assert ffmpeg_stereo_type(path) == "top and bottom"
    assert has_frame_packing_sei(path)
    assert (out / "mpitalk_frame000001.ply").is_file()
    assert not (out / "mpitalk_orbit.mp4").exists()
    frames = decode(path)
    assert frames.shape == (FRAMES, 72, 120, 3)  # eyes 120x72, each squeezed to 36 rows
    # default convergence 0.6 m: d_conv moves to zero disparity, the background goes negative
    f = F * 120 / W
    top, bottom = frames[0][:36], frames[0][36:]
    for cols, depth in ((slice(50, 76), NEAR), (slice(6, 30), FAR)):
        expected = f * IPD_M * (1 / depth - 1 / camera.DEFAULT_HEAD_DEPTH_M)
        assert horizontal_shift(top, bottom, slice(12, 24), cols) == pytest.approx(expected,
                                                                                   abs=1.0)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_point_cloud_lies_on_the_near_plane(plane_mpi, tmp_path):
    from mpitalk import geometry

    seq = mpi_io.load(plane_mpi)
    points, colors = geometry.surface_points(seq[0], seq.depths, seq.K)
    assert len(points) == 48 * 56  # the square; the background is left out
    np.testing.assert_allclose(points[:, 2], NEAR, rtol=1e-5)
    assert colors.min() >= 0 and colors.max() <= 1
    # with the frame's pose the same points are moved into the frame's camera
    T = camera.orbit_pose(np.float32(0.3), np.float32(0.1), np.array([0.0, 0.0, 0.6]))
    moved, _ = geometry.surface_points(seq[0], seq.depths, seq.K, frame_from_mpi=T)
    want = (np.c_[points, np.ones(len(points))] @ np.asarray(T, np.float64).T)[:, :3]
    np.testing.assert_allclose(moved, want, atol=1e-6)


def write_wav(path, seconds, rate=8000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(int(seconds * rate), np.int16).tobytes())
    return path


def test_audio_is_muxed_when_lengths_match(tmp_path):
    wav = write_wav(tmp_path / "a.wav", FRAMES / FPS)
    frames = np.zeros((FRAMES, 32, 48, 3), np.uint8)
    path = video.write_video(tmp_path / "m.mp4", frames, FPS, audio=wav)
    with av.open(str(path)) as c:
        assert len(c.streams.audio) == 1 and len(c.streams.video) == 1


def test_audio_length_mismatch_is_one_line_error(plane_mpi, tmp_path, capsys):
    wav = write_wav(tmp_path / "long.wav", 2.0)
    code = render.main(["--mpi", str(plane_mpi), "--out", str(tmp_path / "o"), "--audio",
                        str(wav), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "audio lasts 2.000 s" in err
    with pytest.raises(UserError, match="audio lasts"):
        video.check_audio_length(wav, FRAMES, FPS)


def test_missing_and_foreign_mpi_folders(tmp_path, capsys):
    out = tmp_path / "out"  # a new folder: tmp_path holds the foreign folder below
    assert render.main(["--mpi", str(tmp_path / "nope"), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such MPI folder" in err
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("hello")
    assert render.main(["--mpi", str(tmp_path / "foreign"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an MPI folder" in err


def test_unwritable_output_is_one_line_error(plane_mpi, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert render.main(["--mpi", str(plane_mpi), "--out", str(blocker / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err
    with pytest.raises(UserError, match="cannot write here"):
        video.export_mpi_sequence(plane_mpi, blocker / "out", progress=False)


def test_pack_stereo_layouts():
    left = np.full((4, 6, 3), 10, np.uint8)
    right = np.full((4, 6, 3), 200, np.uint8)
    sbs = video.pack_stereo(left, right)
    assert sbs.shape == (4, 12, 3) and sbs[0, 0, 0] == 10 and sbs[0, -1, 0] == 200
    tb = video.pack_stereo(left, right, "tb", half=True)
    assert tb.shape == (4, 6, 3) and tb[0, 0, 0] == 10 and tb[-1, 0, 0] == 200


@pytest.mark.parametrize("turned", [False, True], ids=["own_camera", "stored_pose"])
def test_each_eye_of_the_video_is_that_eye_rendered_upright(plane_mpi, tmp_path, turned):
    """The packed frame's left half is the left eye and the right half the right eye, each the
    reference renderer's image for that eye (not flipped, not swapped), up to H.264 loss; with
    a stored frame_from_mpi pose (mpi_io v2), each eye is posed from the frame's camera."""
    from mpitalk import gl, mpi

    seq = mpi_io.load(plane_mpi)
    rgba = seq[0]
    rgba[1, 24:48, 56:112, :3] = 0.0  # make the picture top-bottom asymmetric: a flip would show
    asym = tmp_path / "asym"
    frame_from_mpi = np.eye(4, dtype=np.float32)
    if turned:  # the head turned a little from the camera the MPI was made in
        frame_from_mpi = camera.orbit_pose(np.float32(np.radians(4)), np.float32(0.0),
                                           np.array([0.0, 0.0, NEAR], np.float32))
    mpi_io.save(asym, [(rgba, frame_from_mpi)] * FRAMES, seq.depths, seq.K, FPS)
    out = video.export_mpi_sequence(asym, tmp_path, convergence_m=0.8, ipd_mm=IPD_M * 1e3,
                                    novel_view="none", crf=10, progress=False)
    frame = decode(out["stereo"])[0].astype(np.float64) / 255.0
    rgba = mpi_io.load(asym)[0]
    for half, (pose, K_eye) in zip((frame[:, :W], frame[:, W:]),
                                   gl.stereo_views(seq.K, IPD_M, 0.8), strict=True):
        ref = np.asarray(mpi.render(rgba, seq.depths, seq.K,
                                    (pose @ frame_from_mpi).astype(np.float32),
                                    K_tgt=K_eye.astype(np.float32)).rgb)
        inner = (slice(8, H - 8), slice(16, W - 16))
        # compare brightness: yuv420p keeps luma at full resolution but halves chroma
        got, want = half[inner].mean(-1), ref[inner].mean(-1)
        assert np.abs(got - want).mean() < 3 / 255
        assert np.abs(got[::-1] - want).mean() > 20 / 255  # a flip would be caught
