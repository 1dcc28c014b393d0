"""The main job end to end (shipped checkpoint, a few frames), batches, resume, and every error a
user can cause: one line on stderr, a non-zero exit code, nothing half-written."""

import json
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from mpitalk import controls, job, mpi_io, render

FAST = ["--frames", "2", "--steps", "1", "--batch-size", "2", "--eye-size", "64", "--quiet"]


def run_cli(args, capsys):
    rc = render.main(args)
    captured = capsys.readouterr()
    return rc, captured.err


def test_default_job_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = run_cli(["--out", str(out), *FAST], capsys)
    assert rc == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["mpi", "mpitalk_LR.mp4", "mpitalk_orbit.mp4", "preview.png", "report.json"]
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 2 and report["options"]["steps"] == 1
    assert {"generate_s", "export_s", "total_s"} <= set(report["timings_s"])
    seq = mpi_io.load(out / "mpi")
    frame = seq[0]
    assert frame.shape == (seq.num_planes, seq.height, seq.width, 4)
    np.testing.assert_array_equal(frame[0, ..., 3], 1.0)  # the back plane is opaque
    assert (out / "mpitalk_LR.mp4").stat().st_size > 1000
    # no temporary folders left beside the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_same_seed_same_frames(tmp_path, capsys):
    for name in ("a", "b"):
        rc, err = run_cli(["--out", str(tmp_path / name), "--novel-view", "none", *FAST], capsys)
        assert rc == 0, err
    np.testing.assert_array_equal(mpi_io.load(tmp_path / "a" / "mpi").raw(1),
                                  mpi_io.load(tmp_path / "b" / "mpi").raw(1))


def _write_manifest(path, lines):
    path.write_text("\n".join(lines) + "\n")


def test_batch_goes_on_past_a_broken_job_and_resumes(tmp_path, capsys):
    manifest = tmp_path / "jobs.jsonl"
    small = {"frames": 2, "steps": 1, "batch_size": 2, "eye_size": 64, "novel_view": "none"}
    _write_manifest(manifest, [
        json.dumps(small),
        json.dumps(small | {"identity": str(tmp_path / "missing.png")}),
        "{not json",
        json.dumps(small | {"seed": 3}),
    ])
    out = tmp_path / "batch"
    rc = render.main(["--jobs", str(manifest), "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 1  # a job failed
    assert (out / "job-1" / "report.json").is_file() and (out / "job-4" / "report.json").is_file()
    assert not (out / "job-2").exists() and not (out / "job-3").exists()
    assert "missing.png" in text and "invalid JSON" in text
    # an interrupted run leaves only a temporary folder; resume redoes that job and skips others
    shutil.rmtree(out / "job-4")
    (out / ".job-4.tmp-crashed").mkdir()
    _write_manifest(manifest, [json.dumps(small), json.dumps(small | {"seed": 3})])
    rc = render.main(["--jobs", str(manifest), "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "skipped" in text and (out / "job-2" / "report.json").is_file()


def test_shards_split_a_manifest_between_machines(tmp_path, monkeypatch, capsys):
    manifest = tmp_path / "jobs.jsonl"
    _write_manifest(manifest, [json.dumps({"seed": i}) for i in range(5)])
    ran = []

    def record(opts):  # stands in for the expensive job; the batch logic is what is tested
        ran.append(opts.seed)
        return {}

    monkeypatch.setattr(job, "run_job", record)
    for shard in ("0/2", "1/2"):
        assert render.main(["--jobs", str(manifest), "--out", str(tmp_path / "b"), "--shard",
                            shard, "--quiet"]) == 0
    capsys.readouterr()
    assert ran == [0, 2, 4, 1, 3]  # every job exactly once over the two shards
    assert render.main(["--jobs", str(manifest), "--shard", "2/2", "--quiet"]) == 1
    assert "--shard" in capsys.readouterr().err


def test_driving_video_tracks_keep_motion_not_framing(tmp_path):
    track = controls.Track(values=np.zeros((3, 52), np.float32),
                           pose=np.array([[0.3, 0.1, 0.0, 0.02, -0.01, 0.4],
                                          [0.4, 0.1, 0.0, 0.02, -0.01, 0.4],
                                          [0.5, 0.2, 0.1, 0.02, -0.01, 0.4]], np.float32), fps=25)
    out = controls.driving_track(track)
    np.testing.assert_allclose(out.pose[:, :3], [[-0.1, 0, 0], [0, 0, 0], [0.1, 0.1, 0.1]],
                               atol=1e-6)
    np.testing.assert_allclose(out.pose[:, 3:], np.tile([0, 0, 0.6], (3, 1)), atol=1e-7)


@pytest.fixture
def bad_inputs(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noface.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    header = "time," + ",".join(controls.ARKIT_NAMES) + ",yaw,pitch,roll,tx,ty,tz"
    (tmp_path / "empty.csv").write_text(header + "\n")
    row = ["0.0"] + ["0.1"] * 52 + ["0", "0", "0", "0", "0", "0.6"]
    nan_row = ["0.04"] + ["nan"] + ["0.1"] * 51 + ["0", "0", "0", "0", "0", "0.6"]
    (tmp_path / "nan.csv").write_text("\n".join([header, ",".join(row), ",".join(nan_row)]))
    ckpt = tmp_path / "ckpt"
    shutil.copytree(job.DATA_DIR / "checkpoint", ckpt)
    meta = next(p for p in ckpt.iterdir() if p.suffix == ".json")
    d = json.loads(meta.read_text())
    d["format_version"] = 999
    meta.write_text(json.dumps(d))
    (tmp_path / "afile").write_text("x")
    return tmp_path


@pytest.mark.parametrize("case, args, needle", [
    ("missing image", ["--identity", "{t}/nope.png"], "nope.png"),
    ("unreadable image", ["--identity", "{t}/broken.png"], "broken.png"),
    ("no face", ["--identity", "{t}/noface.png"], "--no-crop"),
    ("empty track", ["--controls", "{t}/empty.csv"], "empty.csv"),
    ("nan track", ["--controls", "{t}/nan.csv"], "nan.csv"),
    ("too short track", ["--frames", "100000"], "frames"),
    ("unknown checkpoint version", ["--checkpoint", "{t}/ckpt"], "ckpt"),
    ("unwritable output", ["--out", "{t}/afile/out"], "afile"),
    ("missing MPI folder", ["--mpi", "{t}/nompi"], "nompi"),
    ("zero batch size", ["--batch-size", "0"], "--batch-size"),
    ("zero convergence", ["--convergence-m", "0"], "--convergence-m"),
    ("tiny eye size", ["--eye-size", "1"], "--eye-size"),
])
def test_user_errors_are_one_line_and_leave_nothing(bad_inputs, capsys, case, args, needle):
    t = str(bad_inputs)
    before = sorted(p.name for p in bad_inputs.iterdir())
    out = ["--out", f"{t}/result"] if "--out" not in args else []
    rc, err = run_cli(FAST + out + [a.replace("{t}", t) for a in args], capsys)
    assert rc == 1, case
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "error" in lines[0] and needle in lines[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in bad_inputs.iterdir()) == before  # nothing half-written


def test_batch_job_options_are_checked_like_the_cli():
    # batch JSON jobs bypass argparse's choices: the job's own check names the option
    for field, flag in (("prev_mode", "--prev-mode"), ("space", "--space"),
                        ("pose_mode", "--pose-mode"), ("backdrop", "--backdrop"),
                        ("geometry", "--geometry"), ("paint", "--paint"), ("body", "--body"),
                        ("prior_fill", "--prior-fill")):
        with pytest.raises(job.UserError, match=flag):
            job._check_options(job.JobOptions(**{field: "nonsense"}))
    # the body can only stay with a world backdrop (mpitalk.body)
    for other in ({"backdrop": "head"}, {"space": "target"}):
        with pytest.raises(job.UserError, match="--body world .* needs --backdrop world"):
            job._check_options(job.JobOptions(body="world", **other))
    job._check_options(job.JobOptions(body="world"))


def test_compile_cache_folder_from_the_environment_and_off(tmp_path, monkeypatch):
    # what a job turns on before it compiles anything (that later jobs load the compiled code
    # and make byte-identical files is bench/bench_generate.py's cached run)
    import jax

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_compilation_cache_max_size")
    saved = {n: getattr(jax.config, n) for n in names}
    try:
        monkeypatch.setenv(job.COMPILE_CACHE_ENV, "off")
        assert job.enable_compile_cache() is None
        assert jax.config.jax_compilation_cache_dir == saved["jax_compilation_cache_dir"]
        monkeypatch.setenv(job.COMPILE_CACHE_ENV, str(tmp_path / "c"))
        assert job.enable_compile_cache() == tmp_path / "c" and (tmp_path / "c").is_dir()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
        assert jax.config.jax_compilation_cache_max_size == job.COMPILE_CACHE_MAX_BYTES
        jax.config.update("jax_compilation_cache_max_size", -1)
        monkeypatch.setitem(sys.modules, "filelock", None)  # not installed: no cap (it needs it)
        assert job.enable_compile_cache() == tmp_path / "c"
        assert jax.config.jax_compilation_cache_max_size == -1
        monkeypatch.delitem(sys.modules, "filelock")
        monkeypatch.delenv(job.COMPILE_CACHE_ENV)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        jax.config.update("jax_compilation_cache_dir", None)
        assert job.enable_compile_cache() == tmp_path / "home" / ".cache" / "mpitalk" / "jax"
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "own"))  # the user's own
        assert job.enable_compile_cache() == tmp_path / "own"
        (tmp_path / "file").write_text("")  # a folder that cannot be made: off, not an error
        monkeypatch.setenv(job.COMPILE_CACHE_ENV, str(tmp_path / "file" / "c"))
        assert job.enable_compile_cache() is None
    finally:
        for n, v in saved.items():
            jax.config.update(n, v)
