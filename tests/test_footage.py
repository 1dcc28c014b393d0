"""mpitalk.footage: a tiny dataset built from a generated video with a face in it (the default
identity moved and scaled over time), read back through the training loader. Never fetches."""

import json

import numpy as np
import pytest

from mpitalk import data_dir, footage, train
from mpitalk import model as M
from mpitalk.face import load_image

FPS = 25
N = 70  # 2.8 s
BLANK = (30, 31, 32)  # frames with no face in them: dropped, never guessed
W = H = 240


def _scale(i: int) -> float:
    return 0.45 + 0.4 * i / (N - 1)  # the face grows: the head comes nearer


def _shift(i: int) -> float:
    return -20.0 + 40.0 * i / (N - 1)  # and moves to the image's right, pixels


def _write_video(path, frames):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"qscale": "2"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _face_frames():
    import cv2

    face = load_image(data_dir() / "identity.png")
    out = []
    for i in range(N):
        canvas = np.full((H, W, 3), 90, np.uint8)
        if i not in BLANK:
            s = _scale(i)
            A = np.array([[s, 0, W / 2 + _shift(i) - s * 160], [0, s, H / 2 - s * 160]])
            canvas = cv2.warpAffine(face, A, (W, H), dst=canvas, borderMode=cv2.BORDER_TRANSPARENT)
        out.append(canvas)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("footage")
    _write_video(root / "talk.mp4", _face_frames())
    _write_video(root / "empty.mp4", [np.full((H, W, 3), 90, np.uint8)] * N)
    _write_video(root / "short.mp4", _face_frames()[:20])
    out = root / "ds"
    rc = footage.main([str(root / "talk.mp4"), str(root / "empty.mp4"), str(root / "short.mp4"),
                       "--out", str(out), "--size", "32", "--frames", "4", "--stride", "5",
                       "--val-fraction", "0.3", "--test-videos", "--test-tail", "--preview",
                       "--quiet"])
    assert rc == 0
    return out


def test_manifest_lists_clips_skips_faceless_and_short_videos(built):
    m = json.loads((built / "manifest.json").read_text())
    assert m["source"] == "video" and m["size"] == 32 and m["frames_per_clip"] == 4
    assert m["views"] == []
    assert set(m["skipped"]) == {"empty", "short"}
    assert "no face" in m["skipped"]["empty"] and "too short" in m["skipped"]["short"]
    assert m["splits"]["train"] and m["splits"]["val"] and m["splits"]["test"] == []
    seg = m["videos"]["talk"]["segments"]
    assert seg["train"][1] <= seg["val"][0]  # time segments, in order, never overlapping
    used = set()
    for path, c in m["clips"].items():
        assert c["video"] == "talk" and (built / path).is_file()
        a, b = seg[c["split"]]
        assert a <= c["frames"][0] and c["frames"][-1] < b
        assert a <= c["identity_frame"] < b and c["identity_frame"] not in c["frames"]
        assert not set(BLANK) & set(c["frames"]) and c["identity_frame"] not in BLANK
        assert not used & set(c["frames"])  # clips never share frames
        used |= set(c["frames"])
        assert c["frame_range"] == [c["frames"][0], c["frames"][-1] + 1]
        assert {"x0", "y0", "side", "crop_from_image"} <= set(c["crop"])
    assert (built / "preview.png").stat().st_size > 10_000


def test_clips_read_back_through_the_training_loader(built):
    clips = train.load_clips(built, "train")
    m = json.loads((built / "manifest.json").read_text())
    assert len(clips) == len(m["splits"]["train"])
    c = clips[0]
    assert "identity_alpha" not in c and "target_depth" not in c
    assert c["target_rgb"].shape == (4, 32, 32, 3) and c["cond"].shape == (4, 32, 32, 4)
    assert c["head_mask"].shape == (4, 32, 32) and c["head_mask"].dtype == np.uint8
    assert 0.1 < (c["head_mask"] > 0).mean() < 0.8
    # the rig's condition covers the face, inside the head mask
    cover = c["cond"][..., 3] > 0
    assert (c["head_mask"][cover] > 0).mean() > 0.95
    sample = train.make_sample(clips, M.micro(), 3)
    assert sample["loss_mask"].shape == (32, 32)
    assert any(np.array_equal(sample["loss_mask"], cl["head_mask"][t])
               for cl in clips for t in range(4))


def test_tracked_pose_follows_the_known_motion(built):
    """Depth from face size: tz / tz_median follows 1 / scale within a clip (within 5 %: the
    landmarks' frame-to-frame noise is about 1.5 % of the size); the head moves to the image's
    right, so tx grows (the crop is fixed per clip)."""
    m = json.loads((built / "manifest.json").read_text())
    ds = __import__("mpitalk").synth.ClipDataset(built, "train")
    for i, path in enumerate(m["splits"]["train"]):
        frames = m["clips"][path]["frames"]
        pose = ds[i]["pose"]
        want = 1.0 / np.array([_scale(f) for f in frames])
        got = pose[:, 5] / np.median(pose[:, 5])
        np.testing.assert_allclose(got, want / np.median(want), rtol=0.05)
        assert np.corrcoef(got, want)[0, 1] > 0.95
        assert np.all(np.diff(pose[:, 3]) > 0)
        assert abs(np.median(pose[:, 5]) - 0.6) < 0.02
        np.testing.assert_allclose(pose[:, 0], 0.0, atol=0.1)  # a frontal photo: no yaw


def test_test_videos_make_a_test_only_dataset(built, tmp_path):
    video = built.parent / "talk.mp4"
    m = footage.build([video], tmp_path / "t", size=32, frames=4, stride=2,
                      test_videos=["talk"], progress=False)
    assert m["splits"]["train"] == [] and m["splits"]["val"] == [] and m["splits"]["test"]
    with pytest.raises(footage.UserError, match="no clips"):
        train.load_clips(tmp_path / "t", "train")


def test_bad_input_is_one_line_and_writes_nothing(built, tmp_path, capsys):
    rc = footage.main([str(built.parent / "empty.mp4"), "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 1 and not (tmp_path / "x").exists()
    assert "no clip" in capsys.readouterr().err
    assert footage.main([str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "y")]) == 1
    assert not list(tmp_path.glob(".y.tmp-*")) and not list(tmp_path.glob(".x.tmp-*"))


def test_split_segments_and_windows():
    seg = footage.split_segments(1000, 25.0, False, 0.2, 0.1)
    gap = round(footage.BOUNDARY_GAP_S * 25)
    assert seg == {"train": (0, 720 - gap), "val": (720, 800 - gap), "test": (800, 1000)}
    assert footage.split_segments(50, 25.0, True, 0.2, 0.1) == {"test": (0, 50)}
    found = np.ones(20, bool)
    found[4] = False
    assert footage.window_frames(found, 0, 4, 2) == [0, 2, 5, 6]  # 4 missing: its neighbour
    found[3:6] = False
    assert footage.window_frames(found, 0, 4, 2) is None


def test_crop_cuts_where_its_transform_says():
    """A bright dot at a known source pixel lands where ``crop_from_image`` maps it, for a
    shrinking crop (area-filtered first) and an enlarging one."""
    img = np.zeros((200, 300, 3), np.uint8)
    img[120:124, 170:174] = 255  # centre (172, 122) in continuous pixels
    for crop in (footage.Crop(100.0, 60.0, 150.0, 32), footage.Crop(161.5, 112.0, 20.0, 32)):
        out = crop.cut(img).astype(np.float64)[..., 0]
        ys, xs = np.mgrid[0:32, 0:32] + 0.5
        got = np.array([(out * xs).sum(), (out * ys).sum()]) / out.sum()
        want = (np.array([172.0, 122.0]) - [crop.x0, crop.y0]) * 32 / crop.side
        np.testing.assert_allclose(crop.points(np.array([172.0, 122.0])), want, rtol=1e-6)
        np.testing.assert_allclose(crop.crop_from_image @ [172.0, 122.0, 1.0], [*want, 1.0])
        np.testing.assert_allclose(got, want, atol=0.15)
