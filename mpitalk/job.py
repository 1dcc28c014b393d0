"""One job of the main CLI, and batches of them.

A job turns (identity image, expression track or driving video, checkpoint) into a folder:

    OUT/mpi/                 the MPI sequence (mpi_io format)
    OUT/mpitalk_LR.mp4       stereo side-by-side video (or _TB for top-bottom), with stereo metadata
    OUT/mpitalk_<path>.mp4   a mono novel-view camera-path video, e.g. mpitalk_orbit.mp4
    OUT/preview.png          contact sheet: identity, frames, depth, views at -10/+10 degrees
    OUT/report.json          inputs, settings, per-stage timings, frame count, outputs

Everything is written into a temporary sibling folder and renamed into place when complete, so
``OUT`` either holds a whole result or nothing new. ``report.json`` is written last: a job folder
with it is complete (batch resume relies on this).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpitalk import UserError, __version__, data_dir
from mpitalk.atomic import replace_dir, temp_dir_beside

DATA_DIR = data_dir()
DEFAULT_IDENTITY = DATA_DIR / "identity.png"
DEFAULT_TRACK = DATA_DIR / "default_track.csv"
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
NOVEL_VIEWS = ("orbit", "swing", "dolly", "none")
LAYOUTS = ("sbs", "tb")
SPACES = ("reference", "target")  # camera the model makes each MPI in (mpitalk.generate)
PREV_MODES = ("anchor", "chain", "none")  # earlier frame later clips are conditioned on
POSE_MODES = ("relative", "absolute")  # track rotations added to the photo's, or as they are
DEFAULT_EYE_SIZE = 512  # pixels per eye when generating (and the factored MPI's photo size)


@dataclass
class JobOptions:
    """The options of one job (the CLI flags; a manifest line may set any of them)."""

    identity: str = str(DEFAULT_IDENTITY)  # portrait image
    controls: str = str(DEFAULT_TRACK)  # track (.csv/.json/.npz/Live Link CSV) or driving video
    out: str = "mpitalk-out"  # output folder
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

    @classmethod
    def from_dict(cls, d: dict, where: str) -> JobOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"{where}: unknown option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(names))}")
        return cls(**d)


def _check_options(o: JobOptions) -> None:
    if o.layout not in LAYOUTS:
        raise UserError(f"--layout must be one of {LAYOUTS}, got {o.layout!r}")
    if o.novel_view not in NOVEL_VIEWS:
        raise UserError(f"--novel-view must be one of {NOVEL_VIEWS}, got {o.novel_view!r}")
    if o.pose_mode not in POSE_MODES:
        raise UserError(f"--pose-mode must be one of {POSE_MODES}, got {o.pose_mode!r}")
    if o.space not in SPACES:
        raise UserError(f"--space must be one of {SPACES}, got {o.space!r}")
    if o.prev_mode not in PREV_MODES:
        raise UserError(f"--prev-mode must be one of {PREV_MODES}, got {o.prev_mode!r}")
    if o.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {o.batch_size}")
    if o.convergence_m is not None and not o.convergence_m > 0:
        raise UserError(f"--convergence-m must be positive (or inf), got {o.convergence_m}")
    if o.eye_size is not None and o.eye_size < 2:
        raise UserError(f"--eye-size must be at least 2 pixels, got {o.eye_size}")
    if not o.ipd_mm > 0:
        raise UserError(f"--ipd-mm must be positive, got {o.ipd_mm}")
    if not 0 <= o.crf <= 51:
        raise UserError(f"--crf must be in 0..51, got {o.crf}")
    if o.steps < 1:
        raise UserError(f"--steps must be at least 1, got {o.steps}")
    if o.frames is not None and o.frames < 1:
        raise UserError(f"--frames must be at least 1, got {o.frames}")
    if o.duration is not None and o.duration <= 0:
        raise UserError(f"--duration must be positive, got {o.duration}")
    if o.fps is not None and o.fps <= 0:
        raise UserError(f"--fps must be positive, got {o.fps}")
    if o.mpi is None:
        for label, path in (("identity image", o.identity), ("controls", o.controls)):
            if not Path(path).is_file():
                raise UserError(f"{path}: {label} not found; check the path")
    if o.audio is not None and not Path(o.audio).is_file():
        raise UserError(f"{o.audio}: audio file not found; check the path")


def load_track(o: JobOptions):
    """The expression track of a job: read or extracted, resampled, cut, smoothed, scaled."""
    from mpitalk import controls

    path = Path(o.controls)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        from mpitalk import face

        # a driving video's own framing is not the avatar's: keep its motion, not its camera
        track = controls.driving_track(face.extract_track(str(path), progress=not o.quiet))
    else:
        track = controls.load(str(path))
    if o.fps is not None and abs(o.fps - track.fps) > 1e-6:
        track = track.resample(o.fps)
    if o.frames is not None:
        if o.frames > len(track):
            raise UserError(f"{path}: the track has {len(track)} frames, --frames asks for "
                            f"{o.frames}; give a longer track or fewer frames")
        track = controls.Track(values=track.values[:o.frames], pose=track.pose[:o.frames],
                               fps=track.fps)
    elif o.duration is not None:
        track = track.slice_time(0.0, o.duration)
    if len(track) < 1:
        raise UserError(f"{path}: the track has no frames; give a longer track")
    if o.smooth > 0:
        track = track.smooth(o.smooth)
    if o.expression_scale != 1.0 or o.pose_scale != 1.0:
        track = track.scaled(o.expression_scale, o.pose_scale)
    return track


def contact_sheet(identity: np.ndarray | None, seq, path: Path, columns: int = 6) -> None:
    """Preview PNG: the identity, then for a few frames the centre view, the alpha-weighted
    depth (near = bright) and the views from 10 degrees left and right of the head (GL). A
    factored MPI's cells are at its photo's resolution (at most 256 px), the photo first."""
    import jax
    from PIL import Image

    from mpitalk import camera, gl, mpi

    cell = min(seq.photo_size, 256) if seq.factored else seq.height
    K = seq.K_at(cell) if seq.factored else seq.K
    # the frame's depth as seen from its camera; compiled once for all columns (same shapes)
    depth_at = jax.jit(lambda m, T: mpi.render(m, seq.depths, K, T).depth)
    n = len(seq)
    picks = sorted(set(np.linspace(0, n - 1, min(columns, n)).round().astype(int).tolist()))
    pivot = np.array([0.0, 0.0, camera.DEFAULT_HEAD_DEPTH_M], np.float32)
    poses = [np.eye(4, dtype=np.float32)] + [
        camera.orbit_pose(np.float32(np.radians(a)), np.float32(0.0), pivot) for a in (-10, 10)]
    renderer = gl.GLRenderer(seq.width if not seq.factored else cell, cell)
    near, far = float(seq.depths[-1]), float(seq.depths[0])
    cols = []
    for t in picks:
        if seq.factored:
            fields, frame_from_mpi = seq.fields_raw_and_pose(t)
            renderer.set_fields(fields, seq.photo_u8, seq.depths, seq.K, cell, frame_from_mpi,
                                seq.plane_groups)
            rgba = seq.dense(t, cell)
        else:
            rgba, frame_from_mpi = seq[t], seq.pose(t)
            renderer.set_mpi(rgba, seq.depths, seq.K, frame_from_mpi)
        views = [renderer.render_pose(T, K)[0] for T in poses]
        depth = np.asarray(depth_at(rgba, frame_from_mpi))
        depth_img = np.clip((1 / depth - 1 / far) / (1 / near - 1 / far), 0, 1)
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


def run_job(o: JobOptions) -> dict:
    """Run one job; return its report. Raises UserError for anything the user can fix."""
    from mpitalk import mpi_io, video

    _check_options(o)
    final = Path(o.out)
    try:
        tmp = temp_dir_beside(final)
    except OSError as exc:
        raise UserError(f"{final}: cannot write the output folder ({exc.strerror}); choose "
                        "another --out") from exc
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    report: dict = {"mpitalk_version": __version__, "options": dataclasses.asdict(o)}
    try:
        identity = None
        if o.mpi is not None:
            mpi_dir = Path(o.mpi)
            seq = mpi_io.load(mpi_dir)
        else:
            identity, mpi_dir = _generate(o, tmp, timings, report)
            seq = mpi_io.load(mpi_dir)
        t0 = time.perf_counter()
        # eyes: --eye-size, else 512 when generating, else the MPI's own size (a factored one's
        # photo size)
        eye_size = o.eye_size if o.eye_size is not None else (None if o.mpi else
                                                              DEFAULT_EYE_SIZE)
        outputs = video.export_mpi_sequence(
            mpi_dir, tmp, eye_size=eye_size, layout=o.layout, half=o.half, ipd_mm=o.ipd_mm,
            convergence_m=o.convergence_m, novel_view=o.novel_view, audio=o.audio, crf=o.crf,
            ply_frame=o.ply, progress=not o.quiet, name="mpitalk")
        timings["export_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        contact_sheet(identity, seq, tmp / "preview.png")
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
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _generate(o: JobOptions, tmp: Path, timings: dict, report: dict):
    """Model half of a job: checkpoint, identity, track -> ``tmp/mpi``."""
    from mpitalk import checkpoint, generate, mpi_io

    t0 = time.perf_counter()
    config, model = checkpoint.load(o.checkpoint)
    timings["load_checkpoint_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    crop_info: dict = {}
    identity = generate.prepare_identity(o.identity, config.image_size, crop=not o.no_crop,
                                         info=crop_info)
    depths, K = generate.mpi_geometry(config)
    identity_info = generate.identity_conditions(identity, K)
    timings["identity_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    track = load_track(o)
    if o.pose_mode == "relative":
        track = generate.relative_to_identity(track, identity_info)
    timings["track_s"] = time.perf_counter() - t0
    report["identity"] = {"crop": crop_info, "face_found_after_crop": identity_info is not None}
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
              prev_mode=o.prev_mode, space=o.space)
    if o.space == "reference":
        photo_size = o.eye_size if o.eye_size is not None else DEFAULT_EYE_SIZE
        photo_info: dict = {}
        photo = generate.prepare_identity(o.identity, photo_size, crop=not o.no_crop,
                                          info=photo_info)
        held = photo_info.get("side_px")
        if held is not None and photo_size > held:
            print(f"note: {o.identity} holds {held:.0f} px across the face crop; eyes of "
                  f"{photo_size} px are upsampled from it")
        identity_report.update(photo_size=photo_size, photo_holds_px=held)
        frames = generate.generate_fields(model, config, identity, track, **kw)
        mpi_dir = mpi_io.save_factored(tmp / "mpi", frames, photo, depths, K, fps=track.fps)
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
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
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


def run_batch(manifest: Path, out_root: Path, defaults: JobOptions, shard: tuple[int, int],
              progress: bool = True) -> list[dict]:
    """Run every job of a manifest (this shard's share), going on past failures.

    Line N writes into ``out_root/job-N`` unless it sets ``out``. Jobs whose folder already
    holds ``report.json`` are skipped (resume). Returns one result dict per job.
    """
    from tqdm import tqdm

    index, count = shard
    rows = [r for i, r in enumerate(read_manifest(manifest)) if i % count == index]
    results = []
    for line, obj, error in tqdm(rows, desc="jobs", unit="job", disable=not progress):
        result = {"line": line, "status": "failed", "out": None, "reason": error, "seconds": 0.0}
        if obj is not None:
            t0 = time.perf_counter()
            try:
                fields = dataclasses.asdict(defaults) | {"out": str(out_root / f"job-{line}")}
                opts = JobOptions.from_dict(fields | obj, f"{manifest}:{line}")
                opts.quiet = True
                result["out"] = opts.out
                if (Path(opts.out) / "report.json").is_file():
                    result.update(status="skipped", reason="already complete")
                else:
                    run_job(opts)
                    result.update(status="ok", reason="")
            except UserError as exc:
                result["reason"] = str(exc)
            except Exception as exc:  # noqa: BLE001 - a batch goes on past any failed job
                result["reason"] = f"{type(exc).__name__}: {exc}"
            result["seconds"] = time.perf_counter() - t0
        results.append(result)
    return results
