"""viewers/mpi_viewer.py: headless and in a real window (Xvfb); the screenshot is the MPI
rendered at the identity pose, as mpitalk.mpi.render gives it."""

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


def expected_image(seq_dir, frames_rendered):
    seq = mpi_io.load(seq_dir)
    ref = mpi.render(seq[(frames_rendered - 1) % len(seq)], seq.depths, seq.K, np.eye(4))
    return np.asarray(ref.rgb)


def run_viewer(args, env=None):
    proc = subprocess.run([sys.executable, str(VIEWER), *args], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def assert_matches(png, ref):
    img = np.asarray(Image.open(png), dtype=np.float64) / 255.0
    assert img.shape == (H, W, 3)  # the MPI's own resolution, no status line
    diff = np.abs(img - ref)[2:-2, 2:-2]
    assert diff.mean() <= 1.0 / 255 and diff.max() <= 4.5 / 255, (diff.mean(), diff.max())


def test_headless_screenshot_is_the_identity_render(seq_dir, tmp_path):
    shot = tmp_path / "headless.png"
    run_viewer([str(seq_dir), "--headless", "--frames", "2", "--screenshot", str(shot)])
    assert_matches(shot, expected_image(seq_dir, 2))


def test_window_under_xvfb_renders_the_identity_view(seq_dir, tmp_path, xvfb_display):
    shot = tmp_path / "window.png"
    env = {**os.environ, "DISPLAY": xvfb_display}
    run_viewer([str(seq_dir), "--frames", "4", "--screenshot", str(shot)], env=env)
    assert_matches(shot, expected_image(seq_dir, 4))


def test_missing_folder_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, str(VIEWER), str(tmp_path / "nope"), "--headless"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
