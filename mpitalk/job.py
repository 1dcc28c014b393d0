"""One job of the main CLI, and batches of them.

A job turns (identity image, expression track or driving video, checkpoint) into a folder:

    OUT/mpi/                 the MPI sequence (mpi_io format)
    OUT/mpitalk_LR.mp4       stereo side-by-side video (or _TB for top-bottom), with stereo metadata
    OUT/mpitalk_<path>.mp4   a mono novel-view camera-path video, e.g. mpitalk_orbit.mp4
    OUT/preview.png          contact sheet: identity, frames, depth, views at -10/+10 degrees
    OUT/web/                 with --web: the WebXR page of the sequence (mpitalk.web)
    OUT/report.json          inputs, settings, per-stage timings, frame count, outputs

Everything is written into a temporary sibling folder and renamed into place when complete, so
``OUT`` either holds a whole result or nothing new. ``report.json`` is written last: a job folder
with it is complete (batch resume relies on this; it holds the job's options, and a batch reruns
a job whose options changed).

Nothing of the user's is ever replaced (:func:`check_output`): ``OUT`` may be missing, empty or
an earlier mpitalk output (its ``report.json`` lists every entry in it); anything else, a file,
the current folder or a mount point is refused before any work starts, unless ``--overwrite``
(folders only). The earlier output stays in place until the new one is complete.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpitalk import UserError, __version__, data_dir
from mpitalk.atomic import clean_stale, is_within, swap_in, temp_dir_beside
from mpitalk.choices import BODIES, GEOMETRIES, PAINTS, PREV_MODES, PRIOR_FILLS, SPACES

DATA_DIR = data_dir()
DEFAULT_IDENTITY = DATA_DIR / "identity.png"
DEFAULT_TRACK = DATA_DIR / "default_track.csv"
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
MIN_FPS, MAX_FPS = 1.0, 1000.0  # output frame rates the video encoder is given (checked first)
MAX_EYE_SIZE = 8192  # pixels per eye: H.264's largest frames are 8192 wide; beyond, memory runs out
MAX_SECONDS = 3600.0  # longest video a job makes (a 10-hour track is a mistake, not a job)
MAX_SCALE = 10.0  # |--expression-scale|, |--pose-scale|: beyond this only garbage comes out
# options that do not change what a job makes: a batch's resume ignores them when comparing
_NOT_RESULT = ("out", "quiet", "overwrite")
NOVEL_VIEWS = ("orbit", "swing", "dolly", "none")
BACKDROPS = ("world", "head")  # mpitalk.backdrop: a still room behind the head, or the MPI whole
LAYOUTS = ("sbs", "tb")
POSE_MODES = ("relative", "absolute")  # track rotations added to the photo's, or as they are
DEFAULT_EYE_SIZE = 512  # pixels per eye when generating (and the factored MPI's photo size)
# JAX's persistent compilation cache: a folder, or "off" (default ~/.cache/mpitalk/jax)
COMPILE_CACHE_ENV = "MPITALK_COMPILE_CACHE"
COMPILE_CACHE_MAX_BYTES = 512 << 20  # least recently used entries go beyond this (a job: ~1 MB)


@dataclass
class JobOptions:
    """The options of one job (the CLI flags; a manifest line may set any of them)."""

    identity: str = str(DEFAULT_IDENTITY)  # portrait image
    controls: str = str(DEFAULT_TRACK)  # track (.csv/.json/.npz/Live Link CSV) or driving video
    out: str = "mpitalk-out"  # output folder
    overwrite: bool = False  # replace OUT even if it is a folder that is not an mpitalk output
    fps: float | None = None  # output frame rate (default: the track's)
    duration: float | None = None  # seconds of the track to use (default: all)
    frames: int | None = None  # number of frames to generate (overrides duration)
    seed: int = 0  # noise seed (one seed shared by every frame)
    steps: int = 4  # sampler steps (4 and 8 measured equal on held-out data, 4 is twice as fast)
    sampler: str = "euler"  # euler or heun (2nd order); euler scored higher (commit d8f7c2f)
    checkpoint: str | None = None  # model checkpoint folder (default: data/checkpoint)
    expression_scale: float = 1.0  # multiplies the 52 blendshapes
    pose_scale: float = 1.0  # multiplies head rotation and offset
    smooth: float = 0.0  # Savitzky-Golay smoothing window, seconds (0 = none)
    ipd_mm: float = 63.0  # stereo baseline
    convergence_m: float | None = 0.6  # zero-disparity distance, metres (the head; None = parallel)
    layout: str = "sbs"  # sbs (left-right) or tb (top-bottom)
    half: bool = False  # half-width / half-height packing
    eye_size: int | None = None  # pixels per eye (width); None: 512 when generating, else MPI's
    novel_view: str = "orbit"  # orbit, swing, dolly or none
    audio: str | None = None  # audio file to mux into the videos
    mpi: str | None = None  # render this existing MPI sequence instead of generating
    no_crop: bool = False  # use the identity image as it is (centre square), no face crop
    ply: int | None = None  # also write a coloured point cloud of this frame
    crf: int = 18  # H.264 quality (lower = better)
    batch_size: int = 4  # frames per generation clip
    pose_mode: str = "relative"  # relative: photo's pose + track rotations about their median
    space: str = "reference"  # camera the model makes MPIs in (generate.SPACES)
    prev_mode: str = "anchor"  # earlier frame later clips are conditioned on (generate.PREV_MODES)
    quiet: bool = False  # no progress bars
    web: bool = False  # also write OUT/web/, the headset page (mpitalk.web; needs format 3)
    backdrop: str = "world"  # world: the room stays still as the head moves; head: moves with it
    body: str = "head"  # with the world backdrop: head: the whole person moves with the head;
    # world: the body stays with the room and the head moves on the neck (mpitalk.body)
    geometry: str = "surface"  # surface: one opaque layer per pixel (mpitalk.surface); layers:
    # the model's soft planes as they are
    paint: str = "holes"  # holes: painted colour only where the photo shows nothing to copy
    # (mpitalk.paint); model: the model's own blend
    prior_fill: str = "outside"  # outside: the rig prior's flow carried past the face without
    # folds (mpitalk.flow_fill); none: zero there, as training has it

    @classmethod
    def from_dict(cls, d: dict, where: str) -> JobOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"{where}: unknown option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(names))}")
        hints = typing.get_type_hints(cls)
        for key, value in d.items():
            allowed = typing.get_args(hints[key]) or (hints[key],)
            if float in allowed:
                allowed += (int,)  # JSON writes 2.0 as 2
            if (type(value) is bool and bool not in allowed) or not isinstance(value, allowed):
                wanted = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
                raise UserError(f"{where}: option {key!r} must be {wanted}, got {value!r}")
        return cls(**d)


def _check_options(o: JobOptions) -> None:
    choices = {"layout": LAYOUTS, "novel_view": NOVEL_VIEWS, "pose_mode": POSE_MODES,
               "space": SPACES, "prev_mode": PREV_MODES, "backdrop": BACKDROPS,
               "body": BODIES, "geometry": GEOMETRIES, "paint": PAINTS,
               "prior_fill": PRIOR_FILLS}
    for name, allowed in choices.items():  # batch lines bypass argparse's choices
        value = getattr(o, name)
        if value not in allowed:
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} must be one of {allowed}, got {value!r}")
    if o.body == "world" and (o.backdrop != "world" or o.space != "reference"):
        raise UserError("--body world keeps the body with the world backdrop: it needs "
                        "--backdrop world and --space reference (the defaults)")
    if o.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {o.batch_size}")
    if o.convergence_m is not None and not o.convergence_m > 0:
        raise UserError(f"--convergence-m must be positive (or inf), got {o.convergence_m}")
    if o.eye_size is not None and o.eye_size < 2:
        raise UserError(f"--eye-size must be at least 2 pixels, got {o.eye_size}")
    if o.eye_size is not None and o.eye_size > MAX_EYE_SIZE:
        raise UserError(f"--eye-size must be at most {MAX_EYE_SIZE} pixels, got {o.eye_size}")
    if not (o.ipd_mm > 0 and math.isfinite(o.ipd_mm)):
        raise UserError(f"--ipd-mm must be a positive number, got {o.ipd_mm}")
    if not 0 <= o.crf <= 51:
        raise UserError(f"--crf must be in 0..51, got {o.crf}")
    if o.steps < 1:
        raise UserError(f"--steps must be at least 1, got {o.steps}")
    if o.frames is not None and o.frames < 1:
        raise UserError(f"--frames must be at least 1, got {o.frames}")
    if o.duration is not None and not (o.duration > 0 and math.isfinite(o.duration)):
        raise UserError(f"--duration must be a positive number of seconds, got {o.duration}")
    if o.fps is not None and not MIN_FPS <= o.fps <= MAX_FPS:  # also refuses nan
        raise UserError(f"--fps must be in {MIN_FPS:g}..{MAX_FPS:g}, got {o.fps}")
    if not 0 <= o.expression_scale <= MAX_SCALE:
        raise UserError(f"--expression-scale must be in 0..{MAX_SCALE:g}, got "
                        f"{o.expression_scale}")
    if not -MAX_SCALE <= o.pose_scale <= MAX_SCALE:
        raise UserError(f"--pose-scale must be in -{MAX_SCALE:g}..{MAX_SCALE:g}, got "
                        f"{o.pose_scale}")
    if not (o.smooth >= 0 and math.isfinite(o.smooth)):
        raise UserError(f"--smooth must be 0 or a positive number of seconds, got {o.smooth}")
    if o.mpi is None:
        for label, path in (("identity image", o.identity), ("controls", o.controls)):
            if not Path(path).is_file():
                raise UserError(f"{path}: {label} not found; check the path")
    if o.audio is not None and not Path(o.audio).is_file():
        raise UserError(f"{o.audio}: audio file not found; check the path")


def load_track(o: JobOptions):
    """The expression track of a job: read or extracted, cut to the frames used, resampled to
    ``--fps``, smoothed, scaled.

    Only the span that is used is resampled (``--fps 1000 --frames 4`` on an hour-long track
    makes 4 frames, not 3.6 million), and a job longer than ``MAX_SECONDS`` is refused before
    any frame is made. A CSV without a time column takes ``--fps`` as the rate of its rows.
    """
    from mpitalk import controls

    path = Path(o.controls)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        from mpitalk import face

        # a driving video's own framing is not the avatar's: keep its motion, not its camera
        track = controls.driving_track(face.extract_track(str(path), progress=not o.quiet))
    else:
        track = controls.load(str(path), rate_if_unknown=o.fps)
    rate = track.fps if o.fps is None else o.fps
    if not MIN_FPS <= rate <= MAX_FPS:
        raise UserError(f"{path}: the track's rate is {rate:.6g} fps, outside "
                        f"{MIN_FPS:g}..{MAX_FPS:g}; pass --fps to resample it")
    # frames at `rate` within the track (the same count Track.resample makes)
    available = int(math.floor((len(track) - 1) / track.fps * rate + 1e-6)) + 1
    if o.frames is not None:
        if o.frames > available:
            raise UserError(f"{path}: the track has {available} frames at {rate:g} fps, --frames "
                            f"asks for {o.frames}; give a longer track or fewer frames")
        count = o.frames
    elif o.duration is not None:
        count = min(available, math.ceil(o.duration * rate - 1e-9))
    else:
        count = available
    if count < 1:
        raise UserError(f"{path}: the track has no frames; give a longer track")
    if count / rate > MAX_SECONDS:
        raise UserError(f"{path}: the job would make {count / rate / 3600:.3g} hours of video "
                        f"({count} frames at {rate:g} fps), over the limit of "
                        f"{MAX_SECONDS / 3600:g} hour; pass --duration or --frames to use a part")
    if abs(rate - track.fps) > 1e-6:
        track = track.resample(rate, num_frames=count)
    else:
        track = controls.Track(values=track.values[:count], pose=track.pose[:count],
                               fps=track.fps, names=track.names)
    if o.smooth > 0:
        track = track.smooth(o.smooth)
    if o.expression_scale != 1.0 or o.pose_scale != 1.0:
        track = track.scaled(o.expression_scale, o.pose_scale)
    return track


def contact_sheet(identity: np.ndarray | None, seq, path: Path, columns: int = 6,
                  backdrop: bool = True) -> None:
    """Preview PNG: the identity, then for a few frames the centre view, the alpha-weighted
    depth (near = bright) and the views from 10 degrees left and right of the head (GL). A
    factored MPI's cells are at its photo's resolution (at most 256 px), the photo first."""
    import jax
    from PIL import Image

    from mpitalk import camera, gl, mpi

    cell = min(seq.photo_size, 256) if seq.factored else seq.height
    K = seq.K_at(cell) if seq.factored else seq.K
    # the frame's depth as seen from its camera, from its dense MPI at the stored size (a
    # factored one's depth has no detail finer than its fields); compiled once for all columns
    depth_at = jax.jit(lambda m, T: mpi.render(m, seq.depths, seq.K, T).depth)
    n = len(seq)
    picks = sorted(set(np.linspace(0, n - 1, min(columns, n)).round().astype(int).tolist()))
    pivot = np.array([0.0, 0.0, camera.DEFAULT_HEAD_DEPTH_M], np.float32)
    poses = [np.eye(4, dtype=np.float32)] + [
        camera.orbit_pose(np.float32(np.radians(a)), np.float32(0.0), pivot) for a in (-10, 10)]
    renderer = gl.GLRenderer(seq.width if not seq.factored else cell, cell)
    if backdrop:  # the sequence's world backdrop, if it has one
        renderer.use_backdrop_of(seq)
    near, far = float(seq.depths[-1]), float(seq.depths[0])
    cols = []
    for t in picks:
        if seq.factored:
            fields, frame_from_mpi = seq.fields_raw_and_pose(t)
            renderer.set_fields(fields, seq.photo_u8, seq.depths, seq.K, cell, frame_from_mpi,
                                seq.plane_groups)
            # the depth is alpha-weighted (mpi.render): the stored alpha is all it reads, so the
            # colour is not materialized (nor the frame read a second time); at the stored size
            # materialize's alpha is the stored alpha (the preview is byte-identical)
            alpha = fields["alpha"].astype(np.float32) / np.float32(255.0)
            rgba = np.concatenate([np.zeros(alpha.shape + (3,), np.float32), alpha[..., None]],
                                  -1)
        else:
            rgba, frame_from_mpi = seq[t], seq.pose(t)
            renderer.set_mpi(rgba, seq.depths, seq.K, frame_from_mpi)
        views = [renderer.render_pose(T, K)[0] for T in poses]
        depth = np.asarray(depth_at(rgba, frame_from_mpi))
        depth_img = np.clip((1 / depth - 1 / far) / (1 / near - 1 / far), 0, 1)
        if depth_img.shape[0] != cell:
            depth_img = np.asarray(Image.fromarray(depth_img.astype(np.float32)).resize(
                (cell, cell), Image.BILINEAR))
        cols.append(np.concatenate([views[0], np.repeat(depth_img[..., None], 3, -1), views[1],
                                    views[2]], 0))
    renderer.release()
    sheet = np.concatenate(cols, 1)
    if seq.factored:
        identity = np.asarray(mpi.fit_photo(seq.photo, cell))
    if identity is not None:
        H = identity.shape[0]
        ident = np.zeros((sheet.shape[0], identity.shape[1], 3), np.float32)
        ident[:H] = identity
        sheet = np.concatenate([ident, sheet], 1)
    Image.fromarray(np.round(np.clip(sheet, 0, 1) * 255).astype(np.uint8)).save(path)


def _earlier_output(folder: Path) -> dict | None:
    """The report of an mpitalk output in ``folder`` (our ``report.json``), else None."""
    try:
        report = json.loads((folder / "report.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if (isinstance(report, dict) and "mpitalk_version" in report
            and isinstance(report.get("options"), dict)
            and isinstance(report.get("outputs"), list)):
        return report
    return None


def check_output(o: JobOptions) -> Path:
    """``--out`` checked before any work: the folder a job may write or replace.

    Allowed: a missing path, an empty folder, an earlier mpitalk output (replaced when the new
    one is complete) holding nothing but what its ``report.json`` lists. Refused with a one-line
    :class:`UserError`: an empty name, the current folder or one above it, an existing file, a
    symbolic link, a mount point, and (unless ``--overwrite``) a folder with anything else in it.
    """
    if not o.out.strip():
        raise UserError("--out is empty; give an output folder, e.g. --out mpitalk-out")
    final = Path(o.out)
    if is_within(Path.cwd(), final):
        raise UserError(f"--out {o.out}: is the current folder or one above it, which a job "
                        f"never replaces; name a new folder, e.g. --out {final / 'mpitalk-out'}")
    if final.is_symlink():
        raise UserError(f"{final}: is a symbolic link; give the folder it points to, or a new "
                        "--out")
    if final.exists() and not final.is_dir():
        raise UserError(f"{final}: exists and is not a folder (an existing file is never "
                        "replaced); choose another --out")
    if os.path.ismount(final):
        raise UserError(f"{final}: is a mount point, which cannot be replaced as a whole; write "
                        f"into a folder inside it, e.g. --out {final / 'mpitalk-out'}")
    if final.is_dir() and not o.overwrite:
        entries = sorted(p.name for p in final.iterdir())
        report = _earlier_output(final) if entries else None
        if entries and report is None:
            raise UserError(f"{final}: the folder is not empty ({entries[0]}, ...) and is not an "
                            "mpitalk output (no report.json of ours); choose a new --out, or "
                            "pass --overwrite to replace it")
        foreign = [n for n in entries if report is not None and n not in report["outputs"]]
        if foreign:
            raise UserError(f"{final}: holds {foreign[0]}"
                            f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}, "
                            "which the earlier mpitalk output there did not write; move it out, "
                            "or pass --overwrite to replace the whole folder")
    return final


def _copy_tree(src: Path, dst: Path) -> Path:
    """``src`` copied to ``dst``: hard links where the filesystem allows (instant; the files are
    never written again), else copies."""
    def link_or_copy(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_or_copy)
    return dst


def enable_compile_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache for this process; return its folder (None:
    off). A job compiles the sampler, the materializer and the preview's renders afresh in every
    process (about 10 s of a cold default job on this machine's 2 cores); cached, later jobs
    load them instead. What is computed is the same: a cache entry is keyed by the compiled
    program, the JAX version and the backend (measured: bit-identical fields with and without).

    The folder: ``$MPITALK_COMPILE_CACHE`` (``off`` disables it), else JAX's own setting
    (``JAX_COMPILATION_CACHE_DIR``) when given, else ``~/.cache/mpitalk/jax``. Capped at
    ``COMPILE_CACHE_MAX_BYTES`` when the ``filelock`` package is there (the cap also makes JAX
    lock the folder, so concurrent jobs share it safely; without it JAX's cache has no cap and
    no lock). A folder that cannot be made leaves the cache off: it is only speed.
    """
    import jax

    setting = os.environ.get(COMPILE_CACHE_ENV, "").strip()
    if setting.lower() in ("off", "0", "none", "false"):
        return None
    if not setting and jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)  # the user's own
    folder = Path(setting).expanduser() if setting else Path.home() / ".cache" / "mpitalk" / "jax"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # every compile: the job's small ones (renders, photo fits) add up to seconds too
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    try:  # JAX's cap needs filelock (not a dependency of ours): without it, no cap, no lock
        import filelock  # noqa: F401
    except ImportError:
        return folder
    jax.config.update("jax_compilation_cache_max_size", COMPILE_CACHE_MAX_BYTES)
    return folder


def run_job(o: JobOptions) -> dict:
    """Run one job; return its report. Raises UserError for anything the user can fix.

    Every check that can be made without the model comes first (options, ``--out``, the track
    or the MPI source, the output folder being writable); then the checkpoint, the identity,
    generation and export.
    """
    from mpitalk import mpi_io, video

    _check_options(o)
    final = check_output(o)
    clean_stale(final)
    enable_compile_cache()  # before anything is compiled
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    track = None
    if o.mpi is not None:
        seq = mpi_io.load(Path(o.mpi))
        if not MIN_FPS <= seq.fps <= MAX_FPS:
            raise UserError(f"{o.mpi}: the sequence's rate is {seq.fps:.6g} fps, outside "
                            f"{MIN_FPS:g}..{MAX_FPS:g}; fix 'fps' in its mpi.json")
    else:
        from mpitalk import checkpoint

        checkpoint.read_config(o.checkpoint)  # its JSON, before a long driving-video extraction
        t0 = time.perf_counter()
        track = load_track(o)
        timings["track_s"] = time.perf_counter() - t0
        if o.audio is not None:  # the video's length is known now: compare before generating
            video.check_audio_length(o.audio, len(track), track.fps)
    try:
        tmp = temp_dir_beside(final)
    except OSError as exc:
        raise UserError(f"{final}: cannot write the output folder ({exc.strerror}); choose "
                        "another --out") from exc
    report: dict = {"mpitalk_version": __version__, "options": dataclasses.asdict(o)}
    try:
        with swap_in(tmp, final):
            identity = None
            if o.mpi is not None:
                mpi_dir = Path(o.mpi)
                if is_within(mpi_dir, final):  # re-rendering an output in place: keep its MPI
                    mpi_dir = _copy_tree(mpi_dir, tmp / "mpi")
                    seq = mpi_io.load(mpi_dir)
            else:
                identity, mpi_dir = _generate(o, track, tmp, timings, report)
                seq = mpi_io.load(mpi_dir)
            if o.web:  # before the export: a sequence the page cannot take fails at once
                from mpitalk import web

                summary = web.build(mpi_dir, tmp / "web", audio=o.audio, progress=not o.quiet,
                                    backdrop=o.backdrop == "world")
                report["web"] = summary | {"out": str(final / "web")}  # not the temporary folder
            t0 = time.perf_counter()
            # eyes: --eye-size, else 512 when generating, else the MPI's own size (a factored one's
            # photo size)
            eye_size = o.eye_size if o.eye_size is not None else (None if o.mpi else
                                                                  DEFAULT_EYE_SIZE)
            outputs = video.export_mpi_sequence(
                mpi_dir, tmp, eye_size=eye_size, layout=o.layout, half=o.half, ipd_mm=o.ipd_mm,
                convergence_m=o.convergence_m, novel_view=o.novel_view, audio=o.audio, crf=o.crf,
                ply_frame=o.ply, progress=not o.quiet, name="mpitalk",
                note=o.mpi is not None,  # a generating job has said what its photo holds
                backdrop=o.backdrop == "world")
            timings["export_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            contact_sheet(identity, seq, tmp / "preview.png", backdrop=o.backdrop == "world")
            timings["preview_s"] = time.perf_counter() - t0
            timings["total_s"] = time.perf_counter() - t_start
            report.update({
                "frames": len(seq), "fps": seq.fps, "mpi_size": [seq.height, seq.width],
                "num_planes": seq.num_planes, "timings_s": timings,
                "outputs": sorted(p.name for p in tmp.iterdir()) + ["report.json"],
                "exported": {k: Path(v).name for k, v in dict(outputs).items()},
                "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                            "cpu_count": os.cpu_count()},
            })
            (tmp / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    except UserError as exc:  # the temporary folder is gone (swap_in removed it)
        if str(tmp) in str(exc):  # e.g. ffmpeg's complaint about a file in the removed folder
            raise UserError(str(exc).replace(str(tmp), str(final))) from None
        raise
    return report


def _generate(o: JobOptions, track, tmp: Path, timings: dict, report: dict):
    """Model half of a job: checkpoint, identity, ``track`` (from :func:`load_track`) ->
    ``tmp/mpi``."""
    from mpitalk import backdrop, body, checkpoint, generate, mpi_io

    t0 = time.perf_counter()
    config, model = checkpoint.load(o.checkpoint)
    timings["load_checkpoint_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    crop_info: dict = {}
    identity = generate.prepare_identity(o.identity, config.image_size, crop=not o.no_crop,
                                         info=crop_info)
    depths, K = generate.mpi_geometry(config)
    # the photo's expression read on the whole image, as the track's frames were read (the
    # crop's own detection has it; uncropped, the image is read for it)
    photo_values = crop_info.pop("blendshapes", None)
    if photo_values is None:
        photo_values = generate.photo_expression(o.identity)
    identity_info = generate.identity_conditions(identity, K, align=config.flow_bound > 0,
                                                 values=photo_values)
    timings["identity_s"] = time.perf_counter() - t0
    if o.pose_mode == "relative":
        track = generate.relative_to_identity(track, identity_info)
    report["identity"] = {"crop": crop_info, "face_found_after_crop": identity_info is not None,
                          "expression_read_on": "whole image" if photo_values is not None
                          else "crop"}
    if config.flow_bound > 0:  # did the rig's prior get moved onto the photo's face
        aligned = bool(identity_info and "prior_align" in identity_info)
        report["identity"]["prior_aligned"] = aligned
        if identity_info is not None and not aligned:
            print(f"note: {o.identity}: the face rig could not be matched to this face, so the "
                  "rig's motion is applied where the rig's features are (the expression "
                  "follows the track less)")
    identity_report = report["identity"]
    report["track"] = {"frames": len(track), "fps": track.fps,
                       "seconds": len(track) / track.fps}
    stages = generate.Timings()
    t0 = time.perf_counter()
    # each MPI stays in the camera it was made in, with its pose in the frame; in the photo's
    # camera as its fields + the photo at the eyes' resolution (mpi_io v3), in the target
    # camera dense (v2: its copy source is the photo's plane sweep, not the photo)
    kw = dict(seed=o.seed, steps=o.steps, sampler=o.sampler, batch_size=o.batch_size,
              progress=not o.quiet, timings=stages, identity_info=identity_info,
              prev_mode=o.prev_mode, space=o.space, geometry=o.geometry,
              paint=o.paint, prior_fill=o.prior_fill)
    if o.space == "reference":
        # the photo at the eyes' size, but never above what the image holds (past 512 px):
        # larger eyes are then upsampled by the renderer, not stored
        eye = o.eye_size if o.eye_size is not None else DEFAULT_EYE_SIZE
        held = crop_info.get("side_px")  # the S-px crop's window, the same at any size
        photo_size = eye if held is None else min(eye, max(DEFAULT_EYE_SIZE, int(np.ceil(held))))
        photo = generate.prepare_identity(o.identity, photo_size, crop=not o.no_crop)
        if held is not None and eye > held:
            print(f"note: {o.identity} holds {held:.0f} px across the face crop; eyes of "
                  f"{eye} px are upsampled from it")
        identity_report.update(photo_size=photo_size, photo_holds_px=held)
        frames = generate.generate_fields(model, config, identity, track, **kw)
        room, back = None, 0
        if o.backdrop == "world":  # the room from the first frame's head planes (mpitalk.backdrop)
            fade = None
            if o.body == "world":  # the head planes end at the neck (mpitalk.body)
                frames, fade = body.cut_at_neck(frames, depths, K, identity_info, track.values)
            room, back, frames = backdrop.from_first_frame(frames, photo, depths,
                                                           keep_photo=fade)
        mpi_dir = mpi_io.save_factored(tmp / "mpi", frames, photo, depths, K, fps=track.fps,
                                       plane_groups=model.heads.plane_groups, backdrop=room,
                                       back_planes=back)
    else:
        frames = generate.generate_frames(model, config, identity, track, **kw)
        mpi_dir = mpi_io.save(tmp / "mpi", frames, depths, K, fps=track.fps)
    timings["generate_s"] = time.perf_counter() - t0
    timings.update({f"generate_{k}": v for k, v in stages.stages.items()})
    return identity, mpi_dir


def read_manifest(path: Path) -> list[tuple[int, dict | None, str | None]]:
    """Lines of a JSONL manifest: (line number, options dict or None, error or None).
    Blank lines and lines starting with # are skipped."""
    if not path.is_file():
        raise UserError(f"{path}: manifest not found; give a .jsonl file, one JSON object a line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file; a manifest is UTF-8 text, one JSON object a "
                        "line") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the manifest ({exc.strerror})") from None
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            rows.append((n, obj, None))
        except ValueError as exc:
            rows.append((n, None, f"invalid JSON ({exc})"))
    return rows


def batch_out(out_root: Path, line: int, obj: dict, where: str) -> Path:
    """The output folder of manifest line ``line``: ``out_root/job-LINE``, or its ``"out"``
    taken inside ``out_root``. A job never writes outside its batch: an absolute ``"out"``, one
    with ``..`` or one that leads out through a symbolic link is refused."""
    rel = obj.get("out", f"job-{line}")
    if not isinstance(rel, str) or not rel.strip():
        raise UserError(f"{where}: \"out\" must be a folder name inside the batch folder, got "
                        f"{rel!r}")
    out = out_root / rel
    if Path(rel).is_absolute() or ".." in Path(rel).parts or not (
            is_within(out, out_root) and out.resolve() != out_root.resolve()):
        raise UserError(f"{where}: \"out\" must be a folder inside the batch folder {out_root} "
                        f"(no absolute path, no ..), got {rel!r}")
    return out


def _result_options(options: dict) -> dict:
    """A job's options as JSON would store them, without those that do not change its result."""
    doc = json.loads(json.dumps(options, default=str))
    return {k: v for k, v in doc.items() if k not in _NOT_RESULT}


def run_batch(manifest: Path, out_root: Path, defaults: JobOptions, shard: tuple[int, int],
              progress: bool = True) -> list[dict]:
    """Run every job of a manifest (this shard's share), going on past failures.

    Line N writes into ``out_root/job-N``, or into its ``"out"`` inside ``out_root``
    (:func:`batch_out`); two lines with the same output folder: the later one fails. A job whose
    folder holds a ``report.json`` with the same options is skipped (resume); one whose options
    changed since is run again. Returns one result dict per job.
    """
    from tqdm import tqdm

    index, count = shard
    all_rows = read_manifest(manifest)
    # output folders over the whole manifest, so every shard refuses the same duplicates
    first_line: dict[Path, int] = {}
    outs: dict[int, Path | str] = {}
    for line, obj, _ in all_rows:
        if obj is None:
            continue
        try:
            out = batch_out(out_root, line, obj, f"{manifest}:{line}")
        except UserError as exc:
            outs[line] = str(exc)
            continue
        key = out.resolve()
        if key in first_line:
            outs[line] = (f"{manifest}:{line}: output folder {out} is also that of line "
                          f"{first_line[key]}; give every job its own \"out\"")
        else:
            first_line[key] = line
            outs[line] = out
    rows = [r for i, r in enumerate(all_rows) if i % count == index]
    results = []
    for line, obj, error in tqdm(rows, desc="jobs", unit="job", disable=not progress):
        result = {"line": line, "status": "failed", "out": None, "reason": error, "seconds": 0.0}
        if obj is not None:
            t0 = time.perf_counter()
            try:
                out = outs[line]
                if isinstance(out, str):
                    raise UserError(out)
                fields = dataclasses.asdict(defaults) | obj | {"out": str(out)}
                opts = JobOptions.from_dict(fields, f"{manifest}:{line}")
                opts.quiet = True
                result["out"] = opts.out
                done = _earlier_output(out)
                same = done is not None and (_result_options(done["options"])
                                             == _result_options(dataclasses.asdict(opts)))
                if same:
                    clean_stale(out)
                    result.update(status="skipped", reason="already complete")
                else:
                    run_job(opts)
                    result.update(status="ok", reason="" if done is None else
                                  "run again: its options changed since it completed")
            except UserError as exc:
                result["reason"] = str(exc)
            except Exception as exc:  # noqa: BLE001 - a batch goes on past any failed job
                result["reason"] = f"{type(exc).__name__}: {exc}"
            result["seconds"] = time.perf_counter() - t0
        results.append(result)
    return results
