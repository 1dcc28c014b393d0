"""The main job writes a factored MPI (mpi_io version 3) in the photo's camera, dense (version 2)
in the target camera; exporting a factored MPI gives eyes at its photo's resolution, as sharp as
the GL renderer makes them from the fields, with a note when asked for more."""

import json

import av
import numpy as np
import pytest

from mpitalk import checkpoint, gl, mpi_io, render, video

FAST = ["--frames", "2", "--steps", "1", "--batch-size", "2", "--quiet", "--novel-view", "none"]


def decode(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.fixture(scope="module")
def job_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("job") / "out"
    assert render.main(["--out", str(out), "--eye-size", "96", *FAST]) == 0
    return out


def test_reference_space_job_writes_version_3_with_the_photo_at_the_eye_size(job_out):
    seq = mpi_io.load(job_out / "mpi")
    assert seq.version == 3 and seq.factored and seq.photo_size == 96
    assert seq.height == 128 and seq.num_groups == 1
    # the shipped model's flow is the gated rig prior (data/README.md, stage 5): it moves the
    # face (the track's expression is not the photo's), within the bound, and nothing else
    flow = seq.fields(0)["flow"]
    bound = checkpoint.read_config().flow_bound
    moved = np.abs(flow).max(-1) > 0
    assert moved.any() and moved.mean() < 0.5
    assert np.abs(flow).max() <= bound + 1e-3
    report = json.loads((job_out / "report.json").read_text())
    assert report["identity"]["photo_size"] == 96 and report["identity"]["photo_holds_px"] > 96
    assert report["identity"]["prior_aligned"] is True  # the prior on the photo's own face
    eyes = decode(job_out / "mpitalk_LR.mp4")
    assert eyes.shape[1:] == (96, 192, 3)


def test_the_job_stores_surface_planes_unless_asked_for_layers(job_out, tmp_path):
    """By default each pixel's planes are one surface (mpitalk.surface): opaque from it back to
    the far plane, so the alphas never rise from back to front, and one blend for all planes;
    ``--geometry layers`` stores the model's soft planes."""
    report = json.loads((job_out / "report.json").read_text())
    assert report["options"]["geometry"] == "surface"
    f = mpi_io.load(job_out / "mpi").fields(0)
    assert np.all(np.diff(f["alpha"], axis=0) <= 1e-6)
    assert np.all(f["blend"] == f["blend"][:1])
    out = tmp_path / "layers"
    assert render.main(["--out", str(out), "--eye-size", "64", "--geometry", "layers",
                        *FAST]) == 0
    f = mpi_io.load(out / "mpi").fields(0)
    assert np.any(np.diff(f["alpha"], axis=0) > 0.05)  # a nearer plane more opaque somewhere
    assert not np.all(f["blend"] == f["blend"][:1])


def test_target_space_job_keeps_writing_version_2(tmp_path):
    out = tmp_path / "t"
    assert render.main(["--out", str(out), "--eye-size", "64", "--space", "target", *FAST]) == 0
    seq = mpi_io.load(out / "mpi")
    assert seq.version == 2 and not seq.factored


def test_rerendering_a_factored_mpi_defaults_to_its_photo_size_and_notes_more(job_out, tmp_path,
                                                                             capsys):
    out = tmp_path / "again"
    assert render.main(["--mpi", str(job_out / "mpi"), "--out", str(out), "--quiet",
                        "--novel-view", "none"]) == 0
    assert decode(out / "mpitalk_LR.mp4").shape[1:] == (96, 192, 3)
    capsys.readouterr()
    out2 = tmp_path / "bigger"
    assert render.main(["--mpi", str(job_out / "mpi"), "--out", str(out2), "--quiet",
                        "--novel-view", "none", "--eye-size", "160"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("note:")]
    assert len(lines) == 1 and "96-px photo" in lines[0]
    assert decode(out2 / "mpitalk_LR.mp4").shape[1:] == (160, 320, 3)


def test_exported_eyes_are_the_gl_render_of_the_fields(job_out, tmp_path):
    """The left eye of frame 0, decoded, against GLRenderer.set_fields' left eye (which the GL
    tests hold equal to mpi.render(mpi.materialize(...))): only the codec in between."""
    seq = mpi_io.load(job_out / "mpi")
    outputs = video.export_mpi_sequence(job_out / "mpi", tmp_path, novel_view=None, crf=4,
                                        progress=False)
    left = decode(outputs["stereo"])[0][:, :96].astype(np.float64) / 255
    r = gl.GLRenderer(96, 96)
    r.use_backdrop_of(seq)  # the job's world backdrop under the head planes
    fields, pose = seq.fields_raw_and_pose(0)
    r.set_fields(fields, seq.photo_u8, seq.depths, seq.K, 96, pose, seq.plane_groups)
    K = seq.K_at(96)
    both = r.render_views(gl.stereo_views(K, 0.063, 0.6))
    r.release()
    err = np.abs(left - both[:, :96, :3]).mean()
    # H.264 with 4:2:0 chroma on a 96-px face: about 2.5/255; the other eye differs by more
    assert err < 4 / 255 and np.abs(left - both[:, 96:, :3]).mean() > 1.5 * err


def test_the_job_stores_a_world_backdrop_unless_asked_not_to(job_out, tmp_path):
    from mpitalk import backdrop

    seq = mpi_io.load(job_out / "mpi")
    image, depth_m, K_room, k = seq.backdrop_plane()
    assert k == backdrop.back_planes(seq.depths) and depth_m == pytest.approx(seq.depths[0])
    assert image.shape == seq.photo_u8.shape
    # the person is taken out: where the first frame's head planes cover the photo the
    # backdrop differs from it; well away from them (4 field texels) it is the photo
    cover = backdrop.head_cover(seq.fields(0)["alpha"], k)
    assert cover[48:80, 48:80].mean() > 0.9
    room = ~backdrop._grow(cover > 0.05, 4)  # (128,128) field texels; the photo is 96 px
    room96 = room[(np.arange(96) * 4) // 3][:, (np.arange(96) * 4) // 3]
    assert room96.mean() > 0.05  # the astronaut fills most of her crop
    diff = np.abs(image.astype(float) - seq.photo_u8).mean(-1)
    assert diff[36:60, 36:60].mean() > 10 and diff[room96].max() <= 1
    out = tmp_path / "whole"
    assert render.main(["--out", str(out), "--eye-size", "64", "--backdrop", "head", *FAST]) == 0
    assert mpi_io.load(out / "mpi").backdrop_plane() is None
    assert not (out / "mpi" / "backdrop.png").exists()


def test_eyes_above_what_the_photo_holds_store_no_larger_photo_and_say_so(tmp_path, capsys):
    """data/identity.png holds about 217 px across its crop: eyes of 640 px keep a 512-px photo
    (the renderer upsamples the rest) and print one note."""
    out = tmp_path / "big"
    assert render.main(["--out", str(out), "--eye-size", "640", *FAST]) == 0
    notes = [x for x in capsys.readouterr().out.splitlines() if x.startswith("note:")]
    assert len(notes) == 1 and "640 px" in notes[0]
    seq = mpi_io.load(out / "mpi")
    assert seq.photo_size == 512
    assert decode(out / "mpitalk_LR.mp4").shape[1:] == (640, 1280, 3)


def test_preview_depth_is_that_of_the_materialized_frame(job_out):
    # the contact sheet's depth reads only the stored alpha; built here from the whole
    # materialized frame (colour included), it is the same to the last bit
    from PIL import Image

    from mpitalk import mpi

    seq = mpi_io.load(job_out / "mpi")
    sheet = np.asarray(Image.open(job_out / "preview.png"))
    cell = seq.photo_size  # 96: the sheet's cells are the photo's size (at most 256)
    near, far = float(seq.depths[-1]), float(seq.depths[0])
    for column, t in enumerate((0, len(seq) - 1)):
        depth = np.asarray(mpi.render(seq.dense(t), seq.depths, seq.K, seq.pose(t)).depth)
        img = np.clip((1 / depth - 1 / far) / (1 / near - 1 / far), 0, 1).astype(np.float32)
        img = np.asarray(Image.fromarray(img).resize((cell, cell), Image.BILINEAR))
        want = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
        x = cell * (1 + column)  # after the photo's column; the depth is a column's 2nd cell
        got = sheet[cell:2 * cell, x:x + cell]
        assert np.abs(got.astype(int) - want[..., None]).max() == 0


def test_a_face_the_rig_cannot_be_matched_to_is_said_and_reported(tmp_path, monkeypatch, capsys):
    """When MediaPipe cannot read the rig's render (prior_align.rig_landmarks gives None) the
    job still runs, with the rig's prior as it is, and says so in its output and report."""
    from mpitalk import prior_align

    monkeypatch.setattr(prior_align, "rig_landmarks", lambda *a, **k: None)
    out = tmp_path / "out"
    assert render.main(["--out", str(out), "--eye-size", "96", *FAST]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["identity"]["face_found_after_crop"] is True
    assert report["identity"]["prior_aligned"] is False
    assert "could not be matched to this face" in capsys.readouterr().out


def test_rerendering_with_backdrop_head_draws_the_frames_whole(job_out, tmp_path):
    """``--mpi`` with ``--backdrop head``: the stored world backdrop is not shown; the eyes are
    the GL render of each frame whole (test_exported_eyes_... checks the other way)."""
    seq = mpi_io.load(job_out / "mpi")
    assert seq.backdrop_plane() is not None
    out = tmp_path / "whole"
    assert render.main(["--mpi", str(job_out / "mpi"), "--out", str(out), "--quiet",
                        "--novel-view", "none", "--backdrop", "head", "--crf", "4"]) == 0
    left = decode(out / "mpitalk_LR.mp4")[0][:, :96].astype(np.float64) / 255
    r = gl.GLRenderer(96, 96)
    fields, pose = seq.fields_raw_and_pose(0)
    K = seq.K_at(96)
    views = gl.stereo_views(K, 0.063, 0.6)
    r.set_fields(fields, seq.photo_u8, seq.depths, seq.K, 96, pose, seq.plane_groups)
    whole = r.render_views(views)[:, :96, :3]
    r.use_backdrop_of(seq)
    r.set_fields(fields, seq.photo_u8, seq.depths, seq.K, 96, pose, seq.plane_groups)
    over = r.render_views(views)[:, :96, :3]
    r.release()
    assert np.abs(left - whole).mean() < 4 / 255
    assert np.abs(whole - over).max() > 0.1  # the two differ somewhere (the premise)


def test_body_world_cuts_the_stored_head_planes_at_the_neck(job_out, tmp_path):
    """``--body world`` (mpitalk.body): the same frames as the default job, with the head planes
    faded out below the photo's chin, the back planes untouched, and the backdrop keeping the
    photo where the body was taken off the head planes."""
    from mpitalk import backdrop

    out = tmp_path / "body"
    assert render.main(["--out", str(out), "--eye-size", "96", "--body", "world", *FAST]) == 0
    whole, cut = mpi_io.load(job_out / "mpi"), mpi_io.load(out / "mpi")
    assert json.loads((out / "report.json").read_text())["options"]["body"] == "world"
    _, _, _, k = cut.backdrop_plane()
    a, b = whole.fields(0)["alpha"], cut.fields(0)["alpha"]
    np.testing.assert_array_equal(a[:k], b[:k])
    assert np.all(b[k:] <= a[k:] + 1.5 / 255)  # stored as uint8
    rows = np.nonzero((a[k:] - b[k:]).max(0).max(1) > 0.5)[0]  # texel rows cut
    assert rows.size > 10 and rows.min() > 64  # below the middle of the face crop: the body
    assert np.array_equal(a[k:, :40], b[k:, :40])  # the hair and the forehead are untouched
    # the backdrop keeps the photo under the body (its lower corners of the crop)
    image = cut.backdrop_plane()[0].astype(float)
    body_px = np.zeros((128, 128), bool)
    body_px[120:, 40:88] = True
    body_px &= backdrop.head_cover(a, k) > 0.9
    assert body_px.sum() > 50
    photo = cut.photo_u8.astype(float)
    idx = (np.arange(96) * 4) // 3
    body96 = body_px[idx][:, idx]
    assert np.abs(image - photo).mean(-1)[body96].max() <= 2


def test_the_photo_expression_is_read_on_the_whole_image(tmp_path, monkeypatch):
    """The model is told the photo's blendshapes as MediaPipe reads them on the whole image, as
    a driving track's frames are read (``generate.photo_expression``), not on the S-px crop,
    where the same face reads otherwise (the rig would move the face by the difference)."""
    from mpitalk import face, generate, job

    told = []
    real = generate.identity_conditions

    def spy(identity, K, align=False, values=None):
        told.append(values)
        return real(identity, K, align=align, values=values)

    monkeypatch.setattr(generate, "identity_conditions", spy)
    out = tmp_path / "out"
    assert render.main(["--out", str(out), "--eye-size", "64", *FAST]) == 0
    whole = face.detect_faces(face.load_image(job.DEFAULT_IDENTITY))[0].blendshapes
    crop = generate.prepare_identity(str(job.DEFAULT_IDENTITY), checkpoint.read_config().image_size)
    on_crop = face.detect_faces(np.round(crop * 255).astype(np.uint8))[0].blendshapes
    assert len(told) == 1 and told[0] is not None
    np.testing.assert_allclose(told[0], whole, atol=1e-6)
    assert np.abs(np.asarray(on_crop) - whole).max() > 0.03  # the two readings differ here
    report = json.loads((out / "report.json").read_text())
    assert report["identity"]["expression_read_on"] == "whole image"
