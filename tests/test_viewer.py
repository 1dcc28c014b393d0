"""viewers/mpi_viewer.py: headless and in a real window (Xvfb); the screenshot is the MPI
rendered at the identity pose, as mpitalk.mpi.render gives it (headless: at the MPI's own
resolution, a factored MPI's photo size; in the window: what the window shows, at its size);
bad input is one line on stderr and exit 1, with nothing written."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpitalk import camera, mpi, mpi_io

VIEWER = Path(__file__).resolve().parents[1] / "viewers" / "mpi_viewer.py"
W, H, FRAMES = 64, 48, 3


@pytest.fixture(scope="module")
def seq_dir(tmp_path_factory):
    rng = np.random.default_rng(1)
    frames = rng.random((FRAMES, 4, H, W, 4)).astype(np.float32)
    for ax in (2, 3):
        for _ in range(3):
            frames = (frames + np.roll(frames, 1, ax) + np.roll(frames, -1, ax)) / 3
    frames[:, 0, ..., 3] = 1.0
    path = tmp_path_factory.mktemp("viewer") / "seq"
    mpi_io.save(path, frames, mpi.plane_depths(0.45, 2.0, 4), camera.intrinsics(55.0, W, H), 10)
    return path


@pytest.fixture(scope="module")
def xvfb_display():
    """A private X server; -displayfd picks a free display number (parallel runs don't clash)."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.fail("Xvfb is not installed; run scripts/setup_system.sh")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(write_fd), "-screen", "0", "800x600x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()
    assert number, "Xvfb did not start"
    yield f":{number}"
    proc.terminate()
    proc.wait(timeout=10)


def expected_image(seq_dir, frames_rendered, size=None):
    """mpi.render at the identity pose of the frame shown last; ``size`` (w, h) of the view
    (default the MPI's own, a factored MPI's photo size)."""
    seq = mpi_io.load(seq_dir)
    t = (frames_rendered - 1) % len(seq)
    if seq.factored:
        P = seq.photo_size
        rgba, K, (w, h) = seq.dense(t, P), seq.K_at(P), (P, P)
    else:
        rgba, K, (w, h) = seq[t], seq.K, (seq.width, seq.height)
    K_view = K
    if size is not None:
        K_view = camera.scale_intrinsics(K, size[0] / w, size[1] / h)
        w, h = size
    ref = mpi.render(rgba, seq.depths, K, np.eye(4), K_tgt=K_view, hw=(h, w))
    return np.asarray(ref.rgb)


def run_viewer(args, env=None):
    proc = subprocess.run([sys.executable, str(VIEWER), *args], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def assert_matches(png, ref):
    img = np.asarray(Image.open(png), dtype=np.float64) / 255.0
    assert img.shape == ref.shape  # the expected resolution, no status line
    diff = np.abs(img - ref)[2:-2, 2:-2]
    assert diff.mean() <= 1.0 / 255 and diff.max() <= 4.5 / 255, (diff.mean(), diff.max())


def test_headless_screenshot_is_the_identity_render(seq_dir, tmp_path):
    shot = tmp_path / "headless.png"
    run_viewer([str(seq_dir), "--headless", "--frames", "2", "--screenshot", str(shot)])
    assert_matches(shot, expected_image(seq_dir, 2))


def test_window_under_xvfb_shows_the_identity_view_at_the_windows_size(seq_dir, tmp_path,
                                                                        xvfb_display):
    """The window (640x480, the MPI's 4:3 aspect) shows the view rendered at 640x480, and the
    screenshot is what it shows, at that size."""
    shot = tmp_path / "window.png"
    env = {**os.environ, "DISPLAY": xvfb_display}
    run_viewer([str(seq_dir), "--frames", "4", "--screenshot", str(shot)], env=env)
    assert_matches(shot, expected_image(seq_dir, 4, size=(640, 480)))


@pytest.fixture(scope="module")
def factored_dir(tmp_path_factory):
    """A factored MPI (version 3): 16-px fields, a 96-px real photo, a non-zero flow."""
    from skimage import data

    rng = np.random.default_rng(2)
    S, D, P = 16, 4, 96
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((P, P), Image.BILINEAR))
    frames = []
    for t in range(2):
        alpha = rng.random((D, S, S)) * (rng.random((D, S, S)) > 0.5)
        alpha[0] = 1.0
        fields = {"alpha": alpha, "blend": rng.random((D, S, S)) * 0.5 + 0.5,
                  "color": rng.random((S, S, 3)),
                  "flow": np.full((1, S, S, 2), 0.01 * (t + 1), np.float32)}
        frames.append((fields, np.eye(4)))
    path = tmp_path_factory.mktemp("viewer") / "factored"
    mpi_io.save_factored(path, frames, photo, mpi.plane_depths(0.45, 2.0, D),
                         camera.intrinsics(24.0, S, S), 10)
    return path


def test_headless_screenshot_of_a_factored_mpi_is_at_the_photos_resolution(factored_dir,
                                                                           tmp_path):
    shot = tmp_path / "factored.png"
    run_viewer([str(factored_dir), "--headless", "--frames", "2", "--screenshot", str(shot)])
    ref = expected_image(factored_dir, 2)
    assert ref.shape == (96, 96, 3)
    assert_matches(shot, ref)


def test_missing_folder_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(VIEWER), str(tmp_path / "nope"), "--headless"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1


def _viewer_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mpi_viewer", VIEWER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _damaged(tmp_path, seq_dir, name, **changes):
    import json

    dst = tmp_path / name
    shutil.copytree(seq_dir, dst)
    meta = json.loads((dst / "mpi.json").read_text())
    meta.update(changes)
    (dst / "mpi.json").write_text(json.dumps(meta))
    return dst


def test_bad_input_is_one_line_and_exit_1_with_nothing_written(seq_dir, factored_dir, tmp_path,
                                                               capsys):
    """Issue 22's viewer cases, in-process (main returns the exit code)."""
    import json

    main = _viewer_main()
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "mpi.json").write_text(json.dumps([1, 2]))
    shot = tmp_path / "out.png"
    (tmp_path / "adir").mkdir()
    cases = [
        [str(listed)],
        [str(_damaged(tmp_path, seq_dir, "zero", num_frames=0))],
        [str(_damaged(tmp_path, seq_dir, "neg", num_frames=-4))],
        [str(_damaged(tmp_path, seq_dir, "huge", num_frames=1e12))],
        [str(_damaged(tmp_path, seq_dir, "sing", K=[[0, 0, 0], [0, 0, 0], [0, 0, 1]]))],
        [str(_damaged(tmp_path, factored_dir, "groups", plane_groups=[0, 3, 0, 0]))],
        [str(seq_dir), "--screenshot", "/proc/shot.png"],
        [str(seq_dir), "--screenshot", str(tmp_path / "noextension")],
        [str(seq_dir), "--screenshot", str(tmp_path / "adir")],
        [str(seq_dir), "--screenshot", str(tmp_path / "missing" / "x.png")],
        [str(seq_dir), "--frames", "-5", "--screenshot", str(shot)],
        [str(seq_dir), "--frames", "0", "--screenshot", str(shot)],
    ]
    photo_gone = tmp_path / "nophoto"
    shutil.copytree(factored_dir, photo_gone)
    (photo_gone / "photo.png").write_bytes(b"garbage")
    cases.append([str(photo_gone), "--screenshot", str(shot)])
    nan_frame = tmp_path / "nanpose"
    shutil.copytree(seq_dir, nan_frame)
    with np.load(nan_frame / "frames" / "000000.npz") as z:
        rgba = z["rgba"]
    np.savez_compressed(nan_frame / "frames" / "000000.npz", rgba=rgba,
                        frame_from_mpi=np.full((4, 4), np.nan, np.float32))
    cases.append([str(nan_frame), "--screenshot", str(shot)])
    for args in cases:
        code = main([*args, "--headless"])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and err.startswith("mpi_viewer: error:"), \
            (args, code, err)
        assert not shot.exists(), args
    assert sorted(p.name for p in (tmp_path / "adir").iterdir()) == []
