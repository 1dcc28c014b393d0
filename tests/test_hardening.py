"""Issue 22: a demanding user's bad inputs, as a table: input -> exit code, one stderr line, what
is on disk afterwards, the user's own files untouched. Also: no import circle in mpitalk/, the
pinned MediaPipe, and a render that opens no network socket (under strace).

Most cases fail before generation and run in-process (``main(argv)``); the few that need a real
render use 2 frames of 1 sampler step at 64 px, or ``--mpi`` (no model) from one shared render.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mpitalk import atomic, controls, controls_cli, job, render

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--frames", "2", "--steps", "1", "--batch-size", "2", "--eye-size", "64", "--quiet"]
HEADER = "time," + ",".join(controls.ARKIT_NAMES) + ",yaw,pitch,roll,tx,ty,tz"
ROW = ["0.1"] * 52 + ["0", "0", "0", "0", "0", "0.6"]
OWNER = f"{socket.gethostname()}"


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` -> a hash of its bytes ('dir' for folders)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def write_csv(path: Path, times) -> Path:
    path.write_text("\n".join([HEADER] + [",".join([f"{t}"] + ROW) for t in times]) + "\n")
    return path


@pytest.fixture
def world(tmp_path):
    """A user's folder: their files, bad tracks, a broken checkpoint or three."""
    t = tmp_path
    (t / "mine").mkdir()
    (t / "mine" / "thesis.txt").write_text("years of work")
    (t / "notes.txt").write_text("a file of the user's")
    (t / "empty").mkdir()
    doc = {"fps": 25, "names": list(controls.ARKIT_NAMES), "values": [[0.1] * 52] * 3}
    (t / "names5.json").write_text(json.dumps(doc | {"names": 5}))
    (t / "posenull.json").write_text(json.dumps(doc | {"pose_names": None,
                                                       "pose": [[0, 0, 0, 0, 0, 0.6]] * 3}))
    np.save(t / "arr.npy", np.zeros((3, 52)))
    os.rename(t / "arr.npy", t / "renamed.npz")
    write_csv(t / "ten_hours.csv", [0.0, 36000.0])
    (t / "notime.csv").write_text("\n".join([",".join(controls.ARKIT_NAMES)] +
                                            [",".join(["0.1"] * 52)] * 30) + "\n")
    (t / "extra_col.csv").write_text("\n".join(
        [HEADER + ",mystery"] + [",".join([f"{i / 25}"] + ROW + ["1"]) for i in range(3)]))
    (t / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    import wave

    with wave.open(str(t / "one_second.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000)
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(noise).save(t / "noface.png")
    for name, meta in (("ckpt_unknown_key", lambda d: d | {"colour": 1}),
                       ("ckpt_no_config", lambda d: {k: v for k, v in d.items() if k != "config"}),
                       ("ckpt_list", lambda d: [d]),
                       ("ckpt_bad_config", lambda d: d | {"config": d["config"] | {"wat": 1}})):
        (t / name).mkdir()
        src = json.loads((job.DATA_DIR / "checkpoint" / "mpitalk_checkpoint.json").read_text())
        (t / name / "mpitalk_checkpoint.json").write_text(json.dumps(meta(src)))
        (t / name / "state").symlink_to(job.DATA_DIR / "checkpoint" / "state")  # weights: fine
    return t


# (case, argv with {t} = the world folder, exit code, a piece of the one stderr line)
# Every one fails before generation starts: nothing in the world changes.
REFUSED = [
    ("user's folder as --out", ["--out", "{t}/mine"], 1, "not an mpitalk output"),
    ("existing file as --out", ["--out", "{t}/notes.txt"], 1, "is not a folder"),
    ("existing file as --out, --overwrite", ["--out", "{t}/notes.txt", "--overwrite"], 1,
     "is not a folder"),
    ("--out ''", ["--out", ""], 1, "--out is empty"),
    ("--out .", ["--out", "."], 1, "current folder"),
    ("--out a mount point", ["--out", "/proc"], 1, "mount point"),
    ('track JSON "names": 5', ["--controls", "{t}/names5.json"], 1, "'names' must be a list"),
    ('track JSON "pose_names": null', ["--controls", "{t}/posenull.json"], 1, "'pose_names'"),
    (".npy renamed .npz", ["--controls", "{t}/renamed.npz"], 1, "not an NPZ track"),
    ("--fps 1e9", ["--fps", "1e9"], 1, "--fps must be in 1..1000"),
    ("--fps 1e12 (ffmpeg would fail)", ["--fps", "1e12"], 1, "--fps must be in"),
    ("--fps 0", ["--fps", "0"], 1, "--fps must be in"),
    ("--fps nan", ["--fps", "nan"], 1, "--fps must be in"),
    ("--pose-scale inf", ["--pose-scale", "inf"], 1, "--pose-scale"),
    ("--expression-scale nan", ["--expression-scale", "nan"], 1, "--expression-scale"),
    ("--smooth -1", ["--smooth", "-1"], 1, "--smooth"),
    ("--eye-size 16000", ["--eye-size", "16000"], 1, "at most 8192"),
    ("--layout xyz", ["--layout", "xyz"], 1, "invalid choice: 'xyz'"),
    ("--backdrop xyz", ["--backdrop", "xyz"], 1, "invalid choice: 'xyz'"),
    ("--geometry xyz", ["--geometry", "xyz"], 1, "invalid choice: 'xyz'"),
    ("--paint xyz", ["--paint", "xyz"], 1, "invalid choice: 'xyz'"),
    ("10-hour track (two rows)", ["--controls", "{t}/ten_hours.csv"], 1, "pass --fps"),
    ("10-hour track at --fps 30", ["--controls", "{t}/ten_hours.csv", "--fps", "30",
                                   "--frames", "1000000"], 1, "limit of 1 hour"),
    ("checkpoint JSON unknown key", ["--checkpoint", "{t}/ckpt_unknown_key"], 1, "colour"),
    ("checkpoint JSON no config", ["--checkpoint", "{t}/ckpt_no_config"], 1, "'config'"),
    ("checkpoint JSON a list", ["--checkpoint", "{t}/ckpt_list"], 1, "got a list"),
    ("checkpoint config unknown field", ["--checkpoint", "{t}/ckpt_bad_config"], 1, "wat"),
    ("no face in the photo", ["--identity", "{t}/noface.png"], 1, "noface.png: no face"),
    ("binary manifest", ["--jobs", "{t}/binary.jsonl"], 1, "not a text file"),
    ("audio of another length", ["--audio", "{t}/one_second.wav"], 1, "audio lasts 1.000 s"),
]
# these get as far as the checkpoint (the model code imports JAX), still before generation
EXPENSIVE = {"no face in the photo", "checkpoint JSON unknown key", "checkpoint JSON no config",
             "checkpoint JSON a list", "checkpoint config unknown field"}


@pytest.mark.parametrize("case, argv, code, needle", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_in_one_line_and_nothing_changes(world, capsys, monkeypatch, case, argv, code,
                                                 needle):
    monkeypatch.chdir(world)
    before = snapshot(world)
    args = [a.replace("{t}", str(world)) for a in argv]
    out = [] if "--out" in args else ["--out", str(world / "result")]
    t0 = time.perf_counter()
    rc = render.main(FAST + out + args)  # FAST first: a case's own --eye-size/--frames win
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == code, (case, err)
    assert len(lines) == 1 and needle in lines[0] and "error" in lines[0], (case, err)
    assert snapshot(world) == before, case  # nothing written, nothing of the user's touched
    if case not in EXPENSIVE:  # found before the model: no checkpoint, no generation
        assert seconds < 5, (case, seconds)


def test_warnings_are_one_line_each(world, capsys):
    rc = render.main(FAST + ["--controls", str(world / "extra_col.csv"), "--frames", "99",
                             "--out", str(world / "result")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(lines) == 2, lines  # the warning, then the error; no source line, no file:line
    assert lines[0].startswith("warning: ") and "mystery" in lines[0]
    assert "TrackWarning" not in lines[0] and ".py:" not in lines[0]
    assert "error" in lines[1] and "99" in lines[1]


def test_controls_info_bad_files_and_closed_pipe(world, capsys):
    for argv, needle in ((["renamed.npz"], "not an NPZ track"), (["names5.json"], "'names'"),
                         (["ten_hours.csv", "--fps", "1e9"], "use a lower fps")):
        assert controls_cli.main(["info", str(world / argv[0]), *argv[1:]]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and argv[0] in lines[0], lines
    # `info T | head`: the reader is gone before anything is written (its end of the pipe is
    # closed before the child has even started up)
    track = write_csv(world / "ok.csv", [0.0, 0.04, 0.08])
    for module in ("mpitalk.controls_cli", "mpitalk.controls"):
        proc = subprocess.Popen([sys.executable, "-m", module, "info", str(track)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0 and err == "", err
    proc = subprocess.run([sys.executable, "-m", "mpitalk.controls", "info", str(track)],
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 0 and "3 frames" in proc.stdout, proc.stderr


def _env() -> dict:
    return os.environ | {"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


# --- the track: the advice to pass --fps is true, only the span used is resampled -----------


def test_fps_advice_is_true_and_only_the_used_span_is_resampled(world):
    o = job.JobOptions(controls=str(world / "notime.csv"), fps=25.0)
    track = job.load_track(o)  # "no 'time' column ... pass --fps": --fps now works
    assert len(track) == 30 and track.fps == 25.0
    o = job.JobOptions(controls=str(world / "ten_hours.csv"), fps=1000.0, frames=4)
    t0 = time.perf_counter()
    track = job.load_track(o)  # 10 hours at 1000 fps would be 36 million frames
    assert len(track) == 4 and time.perf_counter() - t0 < 1.0
    o = job.JobOptions(controls=str(world / "ten_hours.csv"), fps=30.0, duration=2.0)
    assert len(job.load_track(o)) == 60


# --- stale temporary folders ----------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_temp_folders_of_dead_processes_are_removed(world, capsys):
    dead, alive = _dead_pid(), os.getppid()
    for name in (f".result.tmp-{OWNER}-{dead}-abc", f".result.tmp-{OWNER}-{alive}-abc",
                 f".result.tmp-otherhost-{dead}-abc", ".result.tmp-oldformat"):
        (world / name).mkdir()
        (world / name / "frame.npz").write_bytes(b"x" * 100)
    (world / f".lost.old-{OWNER}-{dead}").mkdir()  # died between the two renames
    (world / f".lost.old-{OWNER}-{dead}" / "report.json").write_text("{}")
    rc = render.main(FAST + ["--out", str(world / "result"), "--fps", "nan"])
    assert rc == 1  # refused; the option check comes before anything is written ...
    assert (world / f".result.tmp-{OWNER}-{dead}-abc").exists()
    capsys.readouterr()
    rc = render.main(FAST + ["--out", str(world / "result"), "--frames", "1000000"])
    assert rc == 1  # ... the clean-up comes after --out is checked, before the work
    assert not (world / f".result.tmp-{OWNER}-{dead}-abc").exists()
    assert (world / f".result.tmp-{OWNER}-{alive}-abc").exists()  # still running: kept
    assert (world / f".result.tmp-otherhost-{dead}-abc").exists()  # another machine's
    assert (world / ".result.tmp-oldformat").exists()  # no owner: cannot tell, kept
    rc = render.main(FAST + ["--out", str(world / "lost"), "--frames", "1000000"])
    assert (world / "lost" / "report.json").is_file()  # the moved-aside output restored
    assert not (world / f".lost.old-{OWNER}-{dead}").exists()


def test_a_killed_process_leaves_a_folder_the_next_run_removes(tmp_path):
    # a process that makes its temporary folder and dies without cleaning up (as under kill -9)
    code = ("import os; from pathlib import Path; from mpitalk.atomic import temp_dir_beside; "
            f"t = temp_dir_beside(Path({str(tmp_path / 'out')!r})); (t / 'x').write_text('1'); "
            "os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code], env=_env(), timeout=60).returncode == 9
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(f".out.tmp-{OWNER}-")
    assert atomic.clean_stale(tmp_path / "out") == [left] and not left.exists()


# --- batches --------------------------------------------------------------------------------


def _batch(tmp, monkeypatch, lines, root="batch"):
    """Run a batch with the job itself recorded instead of run (the batch logic is tested)."""
    ran = []

    def record(opts):
        ran.append(opts)
        out = Path(opts.out)
        out.mkdir(parents=True, exist_ok=True)
        report = {"mpitalk_version": "test", "options": dataclasses.asdict(opts),
                  "outputs": ["report.json"]}
        (out / "report.json").write_text(json.dumps(report))
        return report

    monkeypatch.setattr(job, "run_job", record)
    manifest = tmp / "jobs.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rc = render.main(["--jobs", str(manifest), "--out", str(tmp / root), "--quiet"])
    return rc, ran


def test_batch_outs_stay_inside_the_batch_folder(world, capsys, monkeypatch):
    (world / "batch").mkdir()
    (world / "batch" / "user.txt").write_text("mine")  # a batch's own root may hold anything
    outside = world / "x"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    rc, ran = _batch(world, monkeypatch, [
        {"seed": 1, "out": "../x"},
        {"seed": 2, "out": str(outside)},
        {"seed": 3, "out": "a/b"},
        {"seed": 4, "out": "a/b"},
        {"seed": 5},
        {"seed": 6, "out": "."},
        {"seed": 7, "out": 5},
    ])
    text = capsys.readouterr().out
    assert rc == 1
    assert [Path(o.out) for o in ran] == [world / "batch" / "a" / "b", world / "batch" / "job-5"]
    rows = {int(ln.split()[0]): ln for ln in text.splitlines()[1:-1]}
    assert "failed" in rows[1] and "jobs.jsonl:1" in rows[1] and "no absolute path" in rows[1]
    assert "failed" in rows[2] and "jobs.jsonl:2" in rows[2]
    assert "failed" in rows[4] and "also that of line 3" in rows[4]
    assert "failed" in rows[6] and "failed" in rows[7]
    assert (outside / "precious.txt").read_text() == "keep"
    assert (world / "batch" / "user.txt").read_text() == "mine"


def test_batch_resume_reruns_a_job_whose_options_changed(world, capsys, monkeypatch):
    rc, ran = _batch(world, monkeypatch, [{"seed": 1}, {"seed": 2}])
    assert rc == 0 and len(ran) == 2
    capsys.readouterr()
    rc, ran = _batch(world, monkeypatch, [{"seed": 1}, {"seed": 3}])  # line 2 edited
    text = capsys.readouterr().out
    assert rc == 0 and [o.seed for o in ran] == [3]
    assert "skipped" in text and "options changed" in text


def test_batch_job_options_have_their_types_checked(world, capsys, monkeypatch):
    rc, ran = _batch(world, monkeypatch, [{"frames": "2"}, {"fps": True}, {"fps": 25}])
    text = capsys.readouterr().out
    assert rc == 1 and [o.fps for o in ran] == [25]
    assert "'frames' must be int" in text and "'fps' must be float" in text


# --- real renders: replacing an earlier output ----------------------------------------------


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """The README's main command (2 frames) run once in a fresh folder: ./mpitalk-out."""
    cwd = tmp_path_factory.mktemp("readme")
    old = Path.cwd()
    os.chdir(cwd)
    try:
        assert render.main(FAST) == 0
    finally:
        os.chdir(old)
    return cwd / "mpitalk-out"


def test_rerunning_the_main_command_replaces_its_earlier_output(earlier, monkeypatch, capsys):
    monkeypatch.chdir(earlier.parent)
    first = json.loads((earlier / "report.json").read_text())
    assert render.main(FAST + ["--seed", "1"]) == 0, capsys.readouterr().err
    second = json.loads((earlier / "report.json").read_text())
    assert first["options"]["seed"] == 0 and second["options"]["seed"] == 1
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["mpitalk-out"]  # no leftovers


def test_rerender_in_place_keeps_the_mpi_and_foreign_files_refuse(earlier, tmp_path, capsys):
    out = tmp_path / "again"
    shutil.copytree(earlier, out)
    frames = snapshot(out / "mpi")
    rc = render.main(["--mpi", str(out / "mpi"), "--out", str(out), "--eye-size", "64",
                      "--novel-view", "none", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert snapshot(out / "mpi") == frames  # the source was read first, and kept
    assert not (out / "mpitalk_orbit.mp4").exists()  # the new output replaced the old whole
    # a file of the user's dropped into an earlier output: that output is no longer replaced
    (out / "my_edit.mp4").write_bytes(b"user")
    before = snapshot(tmp_path)
    rc = render.main(["--mpi", str(out / "mpi"), "--out", str(out), "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "my_edit.mp4" in lines[0]
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_a_user_folder_only_when_asked(earlier, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = render.main(["--mpi", str(earlier / "mpi"), "--out", str(tmp_path / "empty"),
                      "--eye-size", "64", "--novel-view", "none", "--quiet"])
    assert rc == 0, capsys.readouterr().err  # an empty folder is fine
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.txt").write_text("x")
    rc = render.main(["--mpi", str(earlier / "mpi"), "--out", str(tmp_path / "mine"),
                      "--eye-size", "64", "--novel-view", "none", "--quiet", "--overwrite"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "mine" / "report.json").is_file()
    assert not (tmp_path / "mine" / "a.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mine"]  # nothing beside


def test_mpi_source_with_an_unusable_rate_is_refused_before_ffmpeg(earlier, tmp_path, capsys):
    src = tmp_path / "seq"
    shutil.copytree(earlier / "mpi", src)
    meta = json.loads((src / "mpi.json").read_text())
    (src / "mpi.json").write_text(json.dumps(meta | {"fps": 1e12}))
    rc = render.main(["--mpi", str(src), "--out", str(tmp_path / "o"), "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "seq" in lines[0] and "fps" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]


# --- import circles -------------------------------------------------------------------------


def _import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the mpitalk modules it imports anywhere (functions included: a lazy import is
    still a dependency), except inside ``if __name__ == "__main__":`` (never run on import)
    and imports of its own parent packages (always imported before it, by Python itself)."""
    mods = {}
    for p in package.rglob("*.py"):
        parts = list(p.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p

    def is_main_guard(node: ast.AST) -> bool:
        return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")

    graph = {}
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        stack = [ast.parse(path.read_text())]
        while stack:
            node = stack.pop()
            if is_main_guard(node):
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                               for a in node.names)
            stack.extend(ast.iter_child_nodes(node))
        deps = set()
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):
                deps.add(t)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, as the path of one, by depth-first search."""
    found, state = [], {}

    def visit(v, path):
        state[v] = "open"
        for w in sorted(graph[v]):
            if state.get(w) == "open":
                found.append(path[path.index(w):] + [w])
            elif w not in state:
                visit(w, path + [w])
        state[v] = "done"

    for v in sorted(graph):
        if v not in state:
            visit(v, [v])
    return found


def test_no_import_circle_in_mpitalk():
    graph = _import_graph(ROOT / "mpitalk")
    assert "mpitalk.face" in graph["mpitalk.controls_cli"]  # the graph does see lazy imports
    assert _cycles(graph) == []
    # and the check can fail: a circle put in by hand is found
    graph["mpitalk.controls"] = graph["mpitalk.controls"] | {"mpitalk.face"}
    assert {"mpitalk.controls", "mpitalk.face"} in [set(c) for c in _cycles(graph)]


def test_job_stays_free_of_jax_at_import():
    code = "import sys, mpitalk.job, mpitalk.render; print('jax' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


# --- no network -----------------------------------------------------------------------------


def test_mediapipe_is_the_pinned_build():
    import mediapipe

    pins = re.findall(r'"mediapipe==([\w.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pins and mediapipe.__version__ == pins[0]  # later releases send usage telemetry


_CONNECT = re.compile(r"(connect|sendto|sendmsg)\((?P<args>.*)")


def network_attempts(strace_log: str) -> list[str]:
    """The lines of an ``strace -f -e trace=connect,sendto,sendmsg`` log that reach beyond this
    machine: an AF_INET/AF_INET6 address that is not loopback, anything to port 53 (a DNS query,
    even to a local resolver, which forwards it) and host lookups through systemd-resolved.

    Not counted: AF_UNIX sockets, nscd's included. nscd caches passwd and group as well as
    hosts, and a render asks it only for passwd (Mesa's llvmpipe calls getpwuid_r for its
    shader cache folder: seen with ``strace -k``); with no nscd running, as here, a host lookup
    would go on to port 53 and be counted there."""
    bad = []
    for line in strace_log.splitlines():
        m = _CONNECT.search(line)
        if not m:
            continue
        args = m.group("args")
        if "AF_UNIX" in args:
            if "systemd/resolve" in args:
                bad.append(line)
            continue
        if "AF_INET" not in args:
            continue
        if "htons(53)" in args:
            bad.append(line)
            continue
        addr = re.search(r'inet_addr\("([\d.]+)"\)|inet_pton\(AF_INET6, "([^"]+)"', args)
        ip = addr and (addr.group(1) or addr.group(2))
        loopback = ip is not None and (ip.startswith("127.") or ip in ("::1", "::ffff:127.0.0.1")
                                       or ip.startswith("::ffff:127."))
        if not loopback:
            bad.append(line)
    return bad


def test_network_check_catches_what_it_should():
    log = "\n".join([
        '123 connect(5, {sa_family=AF_UNIX, sun_path="/tmp/x"}, 110) = 0',
        '123 connect(5, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr('
        '"127.0.0.1")}, 16) = 0',
        '124 connect(7, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr('
        '"127.0.0.53")}, 16) = 0',
        '125 connect(8, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "2a00:1450::1", &sin6_addr), sin6_scope_id=0}, 28) = -1',
        '126 connect(9, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr('
        '"142.250.1.1")}, 16) = -1 ENETUNREACH',
        '127 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1',
        '128 connect(3, {sa_family=AF_UNIX, sun_path="/run/systemd/resolve/io.systemd.Resolve"}'
        ', 110) = 0',
        '129 sendto(5, "\\0", 1, 0, NULL, 0)    = 1',
    ])
    assert [ln.split()[0] for ln in network_attempts(log)] == ["124", "125", "126", "128"]


def _traced(tmp_path: Path, name: str, argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stderr, strace log) of ``argv`` run under ``strace -f``."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (scripts/setup_system.sh installs it): the "
                    "no-network check cannot run")
    log = tmp_path / f"{name}.strace"
    cmd = [strace, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(log), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()[:200]}")
    return proc.returncode, proc.stderr, log.read_text() if log.exists() else ""


def test_a_render_opens_no_network_socket(tmp_path):
    # the probe first: a connection attempt to a documentation address (TEST-NET-1, RFC 5737)
    # made under the same strace must be caught, or a clean render log would prove nothing
    probe = ("import socket; s = socket.socket(); s.settimeout(0.05)\n"
             "try: s.connect(('192.0.2.1', 9))\nexcept OSError: pass")
    rc, err, log = _traced(tmp_path, "probe", [sys.executable, "-c", probe])
    assert rc == 0 and any("192.0.2.1" in ln for ln in network_attempts(log)), (err, log)
    rc, err, log = _traced(tmp_path, "render", [
        sys.executable, "-m", "mpitalk.render", *FAST, "--out", str(tmp_path / "out"),
        "--identity", str(job.DEFAULT_IDENTITY)])  # the photo crop runs MediaPipe's landmarker
    assert rc == 0, err
    assert network_attempts(log) == []


def test_swap_in_replaces_only_when_the_body_completes(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    tmp = atomic.temp_dir_beside(final)
    with pytest.raises(RuntimeError):
        with atomic.swap_in(tmp, final):
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert not tmp.exists() and sorted(p.name for p in final.iterdir()) == ["old.txt"]
    tmp = atomic.temp_dir_beside(final)
    with atomic.swap_in(tmp, final):
        (tmp / "new.txt").write_text("new")
    assert not tmp.exists() and sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left beside it


def test_is_within_follows_links_and_agrees_with_commonpath(tmp_path):
    """atomic.is_within (what replacing a folder would lose) against os.path.commonpath on the
    real paths; a link into the folder counts as inside, a sibling sharing a prefix does not."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "ab").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a" / "b")
    paths = [tmp_path / n for n in ("a", "a/b", "ab", "link", "a/missing")]
    for p in paths:
        for f in paths + [tmp_path]:
            rp, rf = os.path.realpath(p), os.path.realpath(f)
            assert atomic.is_within(p, f) == (os.path.commonpath([rp, rf]) == rf), (p, f)
    assert atomic.is_within(tmp_path / "link", tmp_path / "a")
    assert not atomic.is_within(tmp_path / "ab", tmp_path / "a")


def test_run_cli_says_each_kind_of_failure_in_one_line(capsys):
    """mpitalk.run_cli, shared by every command (the main job's with its name and --debug): a
    user error exits 1, Ctrl-C 130, a bug 2 in one line unless --debug, each on one stderr line
    led by the command's name; without debug given a bug is raised as before."""
    from mpitalk import UserError, run_cli

    def fail(exc):
        def body():
            raise exc
        return body

    cases = [(UserError("bad\ninput"), {}, 1, "error: bad input"),
             (KeyboardInterrupt(), {"interrupted": "stopped"}, 130, "stopped"),
             (ValueError("oops"), {"debug": False}, 2, "internal error: ValueError: oops")]
    for exc, kw, code, text in cases:
        assert run_cli(fail(exc), prog="mpitalk.x", **kw) == code
        lines = capsys.readouterr().err.splitlines()
        assert lines == [f"mpitalk.x: {text}"] or (code == 2 and len(lines) == 1 and
                                                  lines[0].startswith(f"mpitalk.x: {text} ("))
    assert run_cli(fail(UserError("plain"))) == 1
    assert capsys.readouterr().err == "error: plain\n"
    for kw in ({}, {"debug": True}):
        with pytest.raises(ValueError):
            run_cli(fail(ValueError("bug")), **kw)
    assert run_cli(lambda: None) == 0 and run_cli(lambda: 3) == 3
