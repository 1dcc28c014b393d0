"""Expression tracks: every format round-trips, Live Link Face imports with a pinned yaw sign,
bad files give one-line errors, and the time/scale helpers do what their docstrings say."""

import csv
import warnings

import numpy as np
import pytest

from mpitalk import UserError, camera, controls, controls_cli
from mpitalk.controls import ARKIT_NAMES, POSE_NAMES, Track


def _random_track(n=25, fps=30.0, seed=0) -> Track:
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 1, (n, 52))
    pose = camera.default_head_pose() + rng.normal(0, 0.05, (n, 6))
    return Track(values, pose, fps)


def _Ry(a):  # textbook right-handed rotations, independent of camera.rot_*
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def _Rx(a):
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _Rz(a):
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _write_live_link(path, head_ypr, blend=None, n=5):
    """A CSV in Live Link Face's export layout (capitalised names, Timecode, eye rotations)."""
    header = (["Timecode", "BlendShapeCount"] + [n_[0].upper() + n_[1:] for n_ in ARKIT_NAMES] +
              ["HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
               "RightEyeYaw", "RightEyePitch", "RightEyeRoll"])
    blend = np.zeros((n, 52)) if blend is None else blend
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(n):
            w.writerow([f"13:05:49:{i:02d}.{(i * 137) % 1000:03d}", 61] +
                       [f"{x:.4f}" for x in blend[i]] + [f"{a:.5f}" for a in head_ypr] +
                       ["0.01", "-0.02", "0", "0.01", "-0.02", "0"])


# --- construction and helpers ---------------------------------------------------------------


def test_neutral_track():
    t = Track.neutral(10, 25.0)
    assert len(t) == 10 and t.fps == 25.0
    assert t.values.shape == (10, 52) and not t.values.any()
    np.testing.assert_array_equal(t.pose, np.tile(camera.default_head_pose(), (10, 1)))
    assert t.vector().shape == (10, 58) and t.vector().dtype == np.float32
    assert t.names == ARKIT_NAMES


def test_vector_layout():
    t = _random_track()
    v = t.vector()
    np.testing.assert_allclose(v[:, :52], t.values)
    np.testing.assert_allclose(v[:, 52:], t.pose)
    assert v[:, ARKIT_NAMES.index("jawOpen")].tolist() == t.channel("JAWOPEN").tolist()


def test_slice_time():
    t = _random_track(30, fps=10.0)
    s = t.slice_time(1.0, 2.0)
    assert len(s) == 10
    np.testing.assert_array_equal(s.values, t.values[10:20])
    with pytest.raises(UserError, match="no frames"):
        t.slice_time(5.0, 6.0)


def test_resample_keeps_linear_ramps_and_span():
    n = 31
    ramp = np.linspace(0, 1, n)
    values = np.tile(ramp[:, None], (1, 52))
    pose = np.tile(camera.default_head_pose(), (n, 1)).astype(np.float64)
    pose[:, 0] = np.linspace(-0.3, 0.3, n)
    t = Track(values, pose, 30.0)
    r = t.resample(60.0)
    assert len(r) == 61 and r.fps == 60.0
    np.testing.assert_allclose(r.values[:, 0], np.linspace(0, 1, 61), atol=1e-6)
    np.testing.assert_allclose(r.pose[:, 0], np.linspace(-0.3, 0.3, 61), atol=1e-6)
    down = t.resample(10.0)
    assert len(down) == 11
    np.testing.assert_allclose(down.values[:, 5], ramp[::3], atol=1e-6)


def test_smooth_reduces_jitter_and_keeps_constants():
    rng = np.random.default_rng(1)
    n = 90
    clean = 0.5 + 0.3 * np.sin(np.linspace(0, 2 * np.pi, n))
    noisy = np.clip(clean[:, None] + rng.normal(0, 0.05, (n, 52)), 0, 1)
    t = Track(noisy, np.tile(camera.default_head_pose(), (n, 1)), 30.0)
    s = t.smooth(0.2)
    err_before = np.abs(t.values[:, 0] - clean).mean()
    err_after = np.abs(s.values[:, 0] - clean).mean()
    assert err_after < 0.7 * err_before
    np.testing.assert_allclose(s.pose, t.pose, atol=1e-6)  # a constant pose stays put
    np.testing.assert_array_equal(t.smooth(0.0).values, t.values)
    assert s.values.min() >= 0 and s.values.max() <= 1


def test_scaled_expression_and_pose():
    t = _random_track()
    half = t.scaled(expression_scale=0.5)
    np.testing.assert_allclose(half.values, t.values * 0.5, atol=1e-6)
    np.testing.assert_allclose(half.pose, t.pose)
    still = t.scaled(pose_scale=0.0)
    np.testing.assert_allclose(still.pose, np.tile(camera.default_head_pose(), (len(t), 1)))
    double = t.scaled(pose_scale=2.0)
    offset = t.pose - camera.default_head_pose()
    np.testing.assert_allclose(double.pose - camera.default_head_pose(), 2 * offset, atol=1e-6)
    assert t.scaled(expression_scale=3.0).values.max() <= 1.0


# --- formats --------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".csv", ".json", ".npz"])
def test_round_trip(tmp_path, ext):
    t = _random_track(n=17, fps=29.97)
    path = tmp_path / f"track{ext}"
    t.save(path)
    back = controls.load(path)
    assert len(back) == 17 and back.names == ARKIT_NAMES
    assert back.fps == pytest.approx(29.97, rel=1e-4)
    np.testing.assert_allclose(back.values, t.values, atol=1e-5)
    np.testing.assert_allclose(back.pose, t.pose, atol=1e-6)


def test_csv_layout(tmp_path):
    path = tmp_path / "t.csv"
    _random_track(n=3).save(path)
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == ["time", *ARKIT_NAMES, *POSE_NAMES]
    assert len(lines) == 4 and float(lines[2].split(",")[0]) == pytest.approx(1 / 30)


def test_load_with_fps_resamples(tmp_path):
    path = tmp_path / "t.npz"
    _random_track(n=31, fps=30.0).save(path)
    assert len(controls.load(path, fps=15.0)) == 16


def test_arkit_names_any_case_and_missing_columns(tmp_path):
    path = tmp_path / "lower.csv"
    path.write_text("time,jawopen,EYEBLINKLEFT,yaw\n0,0.5,0.25,0.1\n0.04,0.6,0.0,0.2\n")
    t = controls.load(path)
    assert t.fps == pytest.approx(25.0)
    np.testing.assert_allclose(t.channel("jawOpen"), [0.5, 0.6])
    np.testing.assert_allclose(t.channel("eyeBlinkLeft"), [0.25, 0.0])
    np.testing.assert_allclose(t.pose[:, 0], [0.1, 0.2], atol=1e-7)
    np.testing.assert_allclose(t.pose[:, 5], 0.6)  # missing pose -> default
    assert not t.channel("tongueOut").any()


def test_irregular_times_are_put_on_a_grid(tmp_path):
    path = tmp_path / "irr.csv"
    path.write_text("time,jawOpen\n0,0\n0.1,0.1\n0.2,0.2\n0.45,0.45\n0.5,0.5\n")
    with pytest.warns(controls.TrackWarning, match="irregular"):
        t = controls.load(path)
    assert t.fps == pytest.approx(10.0)
    np.testing.assert_allclose(t.channel("jawOpen"), np.arange(6) / 10, atol=1e-6)


# --- Live Link Face -------------------------------------------------------------------------


def test_live_link_face_import(tmp_path):
    blend = np.random.default_rng(2).uniform(0, 1, (5, 52))
    path = tmp_path / "MySlate_1_iPhone.csv"
    _write_live_link(path, (0.2, -0.1, 0.05), blend)
    t = controls.load(path)  # no warnings: every Live Link column is understood
    assert len(t) == 5 and t.fps == 60.0
    np.testing.assert_allclose(t.values, blend, atol=1e-4)
    np.testing.assert_allclose(t.pose[:, 3:], np.tile([0, 0, 0.6], (5, 1)), atol=1e-7)
    assert controls.load(path, fps=30.0).fps == 30.0  # the rate of the rows, when given


def test_live_link_angles_match_the_arkit_frame(tmp_path):
    """Our pose equals the ARKit-frame rotation Ry(yaw) Rx(pitch) Rz(roll) seen through the
    y/z flip F = diag(1,-1,-1) (ARKit face anchor: x right, y up, z toward the camera)."""
    ypr = (0.3, -0.2, 0.1)
    path = tmp_path / "ll.csv"
    _write_live_link(path, ypr, n=2)
    pose = controls.load(path).pose[0]
    F = np.diag([1.0, -1.0, -1.0])
    R_arkit = _Ry(ypr[0]) @ _Rx(ypr[1]) @ _Rz(ypr[2])
    np.testing.assert_allclose(camera.head_pose_matrix(pose)[:3, :3], F @ R_arkit @ F, atol=1e-5)


def test_live_link_yaw_sign_pinned_by_a_known_turn(tmp_path):
    """Positive HeadYaw = the subject turns to their own left, so in an (unmirrored) camera image
    the nose tip moves to the image right: our yaw is negative."""
    path = tmp_path / "ll.csv"
    _write_live_link(path, (0.4, 0.0, 0.0), n=2)
    pose = controls.load(path).pose[0]
    assert pose[0] < 0
    K = camera.intrinsics(500.0, 512, 512)
    nose_head = np.array([0.0, 0.0, -0.1])  # the face looks back at the camera (-z)
    nose_px = camera.project(K, camera.transform_points(camera.head_pose_matrix(pose), nose_head))
    centre_px = camera.project(K, pose[3:6])
    assert nose_px[0] > centre_px[0] + 10


# --- bad input ------------------------------------------------------------------------------


def _header(*names):
    return ",".join(("time",) + names) + "\n"


@pytest.mark.parametrize("cell", ["nan", "abc", ""])
def test_bad_cell_names_file_row_and_column(tmp_path, cell):
    path = tmp_path / "bad.csv"
    path.write_text(_header("jawOpen", "eyeBlinkLeft") + "0,0.1,0.2\n0.1,0.2," + cell + "\n")
    with pytest.raises(UserError) as e:
        controls.load(path)
    msg = str(e.value)
    assert "bad.csv" in msg and "row 2" in msg and "'eyeBlinkLeft'" in msg and "\n" not in msg


def test_out_of_range_values_clipped_with_one_warning(tmp_path):
    path = tmp_path / "clip.csv"
    path.write_text(_header("jawOpen", "mouthPucker") + "0,1.5,-0.2\n0.1,0.5,2\n")
    with pytest.warns(controls.TrackWarning) as record:
        t = controls.load(path)
    assert len(record) == 1 and "3 blendshape value" in str(record[0].message)
    np.testing.assert_allclose(t.channel("jawOpen"), [1.0, 0.5])
    np.testing.assert_allclose(t.channel("mouthPucker"), [0.0, 1.0])


def test_unknown_columns_ignored_with_one_warning(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text(_header("jawOpen", "foo", "bar") + "0,0.5,1,2\n0.1,0.5,3,4\n")
    with pytest.warns(controls.TrackWarning) as record:
        t = controls.load(path)
    assert len(record) == 1 and "foo" in str(record[0].message)
    assert "bar" in str(record[0].message)
    np.testing.assert_allclose(t.channel("jawOpen"), 0.5)


@pytest.mark.parametrize("text,match", [
    ("time,foo,bar\n0,1,2\n", "no usable column"),
    ("", "empty"),
    ("time,jawOpen\n", "no rows"),
    ("time,jawOpen\n0,0.1\n0.1\n", "row 2"),
    ("time,jawOpen\n0,0.1\n0,0.2\n", "times must increase"),
    ("jawOpen\n0.1\n0.2\n", "--fps"),
])
def test_bad_csv_files(tmp_path, text, match):
    path = tmp_path / "x.csv"
    path.write_text(text)
    with warnings.catch_warnings(), pytest.raises(UserError, match=match):
        warnings.simplefilter("ignore")  # the unknown-column warning comes before the error
        controls.load(path)


def test_bad_paths_and_formats(tmp_path):
    with pytest.raises(UserError, match="no such track file"):
        controls.load(tmp_path / "missing.csv")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(UserError, match="unknown track format"):
        controls.load(tmp_path / "t.txt")
    (tmp_path / "t.json").write_text("{not json")
    with pytest.raises(UserError, match="not a JSON track"):
        controls.load(tmp_path / "t.json")
    (tmp_path / "t.npz").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not an NPZ track"):
        controls.load(tmp_path / "t.npz")
    with pytest.raises(UserError, match="unknown track format"):
        _random_track().save(tmp_path / "t.xyz")


def test_json_nan_is_an_error(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"fps": 30, "names": ["jawOpen"], "values": [[0.1], [NaN]]}')
    with pytest.raises(UserError, match="row 2, column 'jawOpen'"):
        controls.load(path)


# --- CLI ------------------------------------------------------------------------------------


def test_cli_info_and_plot(tmp_path, capsys):
    path = tmp_path / "t.csv"
    _random_track(n=40).save(path)
    assert controls_cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "40 frames" in out and "jawOpen" in out and "yaw (deg)" in out
    png = tmp_path / "t.png"
    assert controls_cli.main(["plot", str(path), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,jawOpen\n0,x\n")
    for argv in (["info", str(bad)], ["info", str(tmp_path / "none.csv")],
                 ["plot", str(bad), "-o", str(tmp_path / "p.png")]):
        assert controls_cli.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
