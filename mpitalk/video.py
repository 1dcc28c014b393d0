"""Video output: stereo packing, H.264 MP4 that players recognise as 3D, audio mux, MPI export.

Stereo files carry both kinds of 3D signalling that players look for:
- the H.264 frame-packing-arrangement SEI (x264 ``frame-packing=3`` side-by-side, ``4``
  top-bottom), in the bitstream;
- the MP4 ``st3d`` box (Google's Spherical Video V2 "stereo mode": 1 top-bottom, 2 left-right).
  ffmpeg writes ``st3d`` only when remuxing a stream that already has stereo side data, so the
  video is first encoded into a Matroska file with ``stereo_mode`` metadata and then remuxed with
  ``-c copy -strict unofficial`` into the MP4 (a direct MP4 encode carries no ``st3d``).
  ffmpeg 8+ also writes Apple's ``vexu`` box there, without its packing kind: ffmpeg-based
  readers then report the stereo type as "unspecified" instead of the ``st3d`` layout. The box
  is renamed to ``free`` (which every reader skips) after the remux, so one consistent layout
  remains (:func:`_hide_sample_entry_box`).
- and the file name suffix: ``NAME_LR.mp4`` (side by side) / ``NAME_TB.mp4`` (top-bottom). Some
  players prefer ``_3dh`` (half side-by-side) / ``_3dv`` (half top-bottom), or ``_SBS``/``_OU``:
  pass ``suffix=`` to :func:`export_mpi_sequence` for those.

Everything streams: frames are piped to ffmpeg one at a time (constant memory), into a hidden
temporary file beside the output that is renamed into place only when complete.

Convergence. Parallel eyes give a point at depth d the disparity ``f*ipd/d`` (pixels), largest for
the nearest things, so the face would float far in front of the screen. Shifting the two eyes'
principal points apart by ``f*ipd/(2*d_conv)`` each (:func:`mpitalk.gl.stereo_views`) turns it
into ``disparity(d) = f*ipd*(1/d - 1/d_conv)``: zero for the face at d_conv (default 0.6 m, the
screen plane), negative (behind the screen) for the background.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from mpitalk import UserError

LAYOUTS = {"sbs": ("_LR", 3, "left_right"), "tb": ("_TB", 4, "top_bottom")}  # suffix, SEI, mkv


# ---- ffmpeg -----------------------------------------------------------------------------------


@functools.cache
def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped by imageio-ffmpeg, checked once for libx264."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        encoders = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True,
                                  text=True, check=True).stdout
    except Exception as exc:  # noqa: BLE001 - any failure means no usable encoder
        raise UserError(f"no ffmpeg found ({exc}); pip install imageio-ffmpeg") from exc
    if "libx264" not in encoders:
        raise UserError(f"{exe} has no libx264 H.264 encoder; pip install imageio-ffmpeg")
    return exe


def _run_ffmpeg(args: list[str], what: str) -> None:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise UserError(f"ffmpeg failed while {what}: {tail[0]}")


def media_duration_s(path: str | os.PathLike) -> float:
    """Duration of an audio (or video) file in seconds, read with PyAV."""
    import av

    try:
        with av.open(str(path)) as container:
            if container.duration is not None:
                return container.duration / 1_000_000
            stream = container.streams[0]
            return float(stream.duration * stream.time_base)
    except (av.error.FFmpegError, OSError, IndexError, TypeError) as exc:
        raise UserError(f"{path}: cannot read this media file ({exc}); give an audio file "
                        "such as .wav, .mp3 or .m4a") from exc


def check_audio_length(audio: str | os.PathLike, num_frames: int, fps: float) -> None:
    """Raise a one-line UserError when the audio and the video differ by more than one frame."""
    audio_s = media_duration_s(audio)
    video_s = num_frames / fps
    if abs(audio_s - video_s) > 1.0 / fps:
        raise UserError(f"{audio}: audio lasts {audio_s:.3f} s but the video lasts {video_s:.3f} s "
                        f"({num_frames} frames at {fps:g} fps); trim or pad the audio to match")


# ---- packing ----------------------------------------------------------------------------------


def pack_stereo(left: np.ndarray, right: np.ndarray, layout: str = "sbs",
                half: bool = False) -> np.ndarray:
    """Pack two eye images (h,w,C) into one frame: ``"sbs"`` left eye on the left (h,2w,C),
    ``"tb"`` left eye on top (2h,w,C). ``half`` halves each eye along the packing axis (average
    of pixel pairs) so the frame keeps one eye's size."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    axis = 1 if layout == "sbs" else 0
    eyes = [np.asarray(left), np.asarray(right)]
    if half:
        eyes = [_halve(e, axis) for e in eyes]
    return np.concatenate(eyes, axis=axis)


def _halve(img: np.ndarray, axis: int) -> np.ndarray:
    n = img.shape[axis] // 2 * 2
    x = img.astype(np.float32)
    out = 0.5 * (np.take(x, np.arange(0, n, 2), axis=axis) + np.take(x, np.arange(1, n, 2), axis))
    return np.rint(out).astype(np.uint8) if img.dtype == np.uint8 else out


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float [0,1] -> uint8, rounded (uint8 passes through)."""
    if img.dtype == np.uint8:
        return img
    return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


# ---- writing ----------------------------------------------------------------------------------


class VideoWriter:
    """Stream RGB frames into an H.264 MP4 (yuv420p, CRF), optionally stereo and with audio.

    ``stereo``: None (mono), ``"sbs"`` or ``"tb"``: the frames are already packed (see
    :func:`pack_stereo`); the file then carries the frame-packing SEI and the ``st3d`` box.
    ``audio``: a file muxed in as AAC; its length must match the video within one frame (checked
    up front when ``num_frames`` is given, else at :meth:`close`). Use as a context manager: on an
    exception nothing is left behind; on success the file appears under ``path`` at once.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float, *,
                 crf: int = 18, stereo: str | None = None, audio: str | os.PathLike | None = None,
                 num_frames: int | None = None, preset: str = "fast"):
        if stereo is not None and stereo not in LAYOUTS:
            raise ValueError(f"stereo must be None or one of {sorted(LAYOUTS)}, got {stereo!r}")
        self.path = Path(path)
        self.size = (int(width), int(height))
        self.fps = float(fps)
        self.stereo = stereo
        self.audio = None if audio is None else Path(audio)
        self.count = 0
        if self.audio is not None:
            if not self.audio.is_file():
                raise UserError(f"{self.audio}: no such audio file")
            if num_frames is not None:
                check_audio_length(self.audio, num_frames, self.fps)
        exe = ffmpeg_exe()
        self._tmp_dir = _writable_dir(self.path.parent)
        stem = f".{self.path.name}.partial-{os.getpid()}"
        self._mkv = self._tmp_dir / f"{stem}.mkv"
        self._mp4 = self._tmp_dir / f"{stem}.mp4"
        rate = Fraction(self.fps).limit_denominator(1001)
        args = [exe, "-hide_banner", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                "-r", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0"]
        if width % 2 or height % 2:  # yuv420p needs even sizes: pad one black row/column
            args += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        args += ["-c:v", "libx264", "-preset", preset, "-crf", str(int(crf)),
                 "-pix_fmt", "yuv420p"]
        if stereo is not None:
            _, sei, mode = LAYOUTS[stereo]
            args += ["-x264-params", f"frame-packing={sei}", "-metadata:s:v", f"stereo_mode={mode}"]
        args.append(str(self._mkv))
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=self._log)

    def write(self, frame: np.ndarray) -> None:
        """Append one (h,w,3) RGB frame, uint8 or float in [0,1]."""
        frame = to_uint8(np.asarray(frame))
        expected = (self.size[1], self.size[0], 3)
        if frame.shape != expected:
            raise ValueError(f"frame shape {frame.shape}, expected {expected}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError as exc:
            self._proc.wait()
            raise UserError(f"ffmpeg stopped while writing {self.path}: "
                            f"{self._ffmpeg_error()}") from exc
        self.count += 1

    def _ffmpeg_error(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self._proc.returncode}"

    def close(self) -> Path:
        """Finish encoding, mux audio, move the file into place; return its path."""
        try:
            self._proc.stdin.close()
            if self._proc.wait() != 0:
                raise UserError(f"ffmpeg failed while encoding {self.path}: {self._ffmpeg_error()}")
            if self.count == 0:
                raise ValueError("no frames were written")
            args = ["-i", str(self._mkv)]
            if self.audio is not None:
                check_audio_length(self.audio, self.count, self.fps)
                args += ["-i", str(self.audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac",
                         "-b:a", "192k"]
            # remuxing a stream with stereo side data is what makes ffmpeg write st3d
            args += ["-c:v", "copy", "-strict", "unofficial", "-movflags", "+faststart",
                     str(self._mp4)]
            _run_ffmpeg(args, f"writing {self.path}")
            if self.stereo is not None:
                _hide_sample_entry_box(self._mp4, b"vexu")
            os.replace(self._mp4, self.path)
        finally:
            self._cleanup()
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the temporary files; nothing appears under ``path``."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        for p in (self._mkv, self._mp4):
            p.unlink(missing_ok=True)
        self._log.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl")
_H264_ENTRIES = (b"avc1", b"avc3")  # the sample entries VideoWriter's files can have
_VISUAL_ENTRY_FIELDS = 78  # bytes of a VisualSampleEntry before its child boxes (ISO 14496-12)


def _boxes(data: bytearray, start: int, end: int):
    """(start, type, payload start, end) of each ISO BMFF box in ``data[start:end]``."""
    while start + 8 <= end:
        size, head = int.from_bytes(data[start:start + 4], "big"), 8
        if size == 1:  # 64-bit size
            size, head = int.from_bytes(data[start + 8:start + 16], "big"), 16
        elif size == 0:  # to the end of the enclosing box
            size = end - start
        if size < head or start + size > end:
            return
        yield start, bytes(data[start + 4:start + 8]), start + head, start + size
        start += size


def _hide_sample_entry_box(path: Path, kind: bytes) -> None:
    """Rename every ``kind`` box inside the sample entries (moov/trak/.../stsd/<entry>) of the
    MP4 at ``path`` to ``free``, in place (sizes unchanged, so no offset moves)."""
    data = bytearray(path.read_bytes())
    found: list[int] = []

    def walk(start: int, end: int) -> None:
        for _, box, body, stop in _boxes(data, start, end):
            if box in _CONTAINERS:
                walk(body, stop)
            elif box == b"stsd":  # full box header (4) + entry count (4), then the entries
                for _, codec, entry, entry_end in _boxes(data, body + 8, stop):
                    if codec not in _H264_ENTRIES:
                        continue
                    found.extend(at for at, child, _, _ in
                                 _boxes(data, entry + _VISUAL_ENTRY_FIELDS, entry_end)
                                 if child == kind)

    walk(0, len(data))
    for at in found:
        data[at + 4:at + 8] = b"free"
    if found:
        path.write_bytes(data)


def _writable_dir(folder: Path) -> Path:
    """Create ``folder`` if needed and check that files can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"{folder}: cannot write here ({exc.strerror or exc}); choose another "
                        "output folder") from exc
    return folder


def write_video(path: str | os.PathLike, frames, fps: float, **kwargs) -> Path:
    """Write an iterable of (h,w,3) frames (all the same size) with :class:`VideoWriter`."""
    it = iter(frames)
    first = to_uint8(np.asarray(next(it)))
    with VideoWriter(path, first.shape[1], first.shape[0], fps, **kwargs) as writer:
        writer.write(first)
        for frame in it:
            writer.write(frame)
    return Path(path)


# ---- MPI sequence export ----------------------------------------------------------------------


def _even(n: float) -> int:
    return max(2, int(round(n / 2.0)) * 2)


def export_mpi_sequence(mpi_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                        eye_size: int | None = None, layout: str = "sbs", half: bool = False,
                        ipd_mm: float = 63.0, convergence_m: float | None = 0.6,
                        novel_view: str | None = "orbit", audio: str | os.PathLike | None = None,
                        ply_frame: int | None = None, crf: int = 18, progress: bool = True,
                        name: str | None = None, suffix: str | None = None,
                        note: bool = True, backdrop: bool = True) -> dict[str, Path]:
    """Render a saved MPI sequence (:mod:`mpitalk.mpi_io`) to videos with the GL renderer.

    Writes into ``out_dir``: ``NAME_LR.mp4`` (or ``_TB``; ``suffix`` overrides) stereo, each eye
    ``eye_size`` pixels wide (default the MPI's width, a factored MPI's photo size; height keeps
    the aspect, both even; above a factored MPI's photo size a note is printed unless ``note``
    is False), packed
    at full size or, with ``half``, squeezed to one eye's size; ``NAME_<path>.mp4`` a mono
    novel-view video along ``camera.CAMERA_PATHS[novel_view]`` (None or ``"none"`` skips it);
    ``NAME_frameNNNNNN.ply`` a point cloud of frame ``ply_frame`` (:mod:`mpitalk.geometry`).
    ``ipd_mm``: the eye baseline; ``convergence_m``: the depth put at zero disparity (None or inf:
    parallel eyes, see the module docstring). ``NAME`` defaults to the MPI folder's name.
    ``backdrop``: show the sequence's world backdrop if it has one (:mod:`mpitalk.backdrop`);
    False draws each frame whole.
    Returns ``{"stereo": path, "novel_view": path, "ply": path}`` for what was written.
    """
    from tqdm import tqdm

    from mpitalk import camera, gl, mpi_io

    if layout not in LAYOUTS:
        raise UserError(f"unknown stereo layout {layout!r}; use one of {sorted(LAYOUTS)}")
    if novel_view == "none":
        novel_view = None
    if novel_view is not None and novel_view not in camera.CAMERA_PATHS:
        raise UserError(f"unknown camera path {novel_view!r}; use one of "
                        f"{sorted(camera.CAMERA_PATHS)} or none")
    seq = mpi_io.load(mpi_dir)
    out_dir = _writable_dir(Path(out_dir))
    name = name or Path(mpi_dir).resolve().name
    T, H, W = len(seq), seq.height, seq.width
    if ply_frame is not None and not -T <= ply_frame < T:
        raise UserError(f"--ply frame {ply_frame} is out of range: {mpi_dir} has {T} frames")
    if audio is not None:
        if not Path(audio).is_file():
            raise UserError(f"{audio}: no such audio file")
        check_audio_length(audio, T, seq.fps)

    # a factored MPI (version 3) holds its photo's resolution: eyes default to it, and the
    # planes are materialized at the eye size (no larger than the photo: beyond it the GL
    # renderer's bilinear sampling of the planes is the same upsampling)
    native = seq.photo_size if seq.factored else W
    eye_w = _even(native if eye_size is None else eye_size)
    if note and seq.factored and eye_w > native:
        print(f"note: {mpi_dir} holds a {native}-px photo; eyes of {eye_w} px are upsampled "
              "from it")
    dense_size = max(W, min(eye_w, native)) if seq.factored else W
    eye_h = _even(eye_w * H / W)
    K_eye = np.asarray(camera.scale_intrinsics(seq.K, eye_w / W, eye_h / H), dtype=np.float64)
    # each eye's rendered size: squeezed along the packing axis for half packing
    sx, sy = (0.5, 1.0) if half and layout == "sbs" else (1.0, 0.5) if half else (1.0, 1.0)
    view_w, view_h = int(eye_w * sx), int(eye_h * sy)
    if half and (view_w % 2 or view_h % 2):
        view_w, view_h = _even(view_w), _even(view_h)
    K_view = np.asarray(camera.scale_intrinsics(K_eye, view_w / eye_w, view_h / eye_h))
    views = gl.stereo_views(K_view, ipd_mm / 1000.0, convergence_m)
    frame_w, frame_h = (2 * view_w, view_h) if layout == "sbs" else (view_w, 2 * view_h)

    renderer = gl.GLRenderer(view_w, view_h)
    if backdrop:
        renderer.use_backdrop_of(seq)
    outputs: dict[str, Path] = {}
    suffix = LAYOUTS[layout][0] if suffix is None else suffix
    stereo_path = out_dir / f"{name}{suffix}.mp4"
    writers: list[VideoWriter] = []
    poses = None
    try:  # writers are opened inside: if the second fails, the first is aborted too
        writers.append(VideoWriter(stereo_path, frame_w, frame_h, seq.fps, crf=crf,
                                   stereo=layout, audio=audio, num_frames=T))
        if novel_view is not None:
            poses = camera.CAMERA_PATHS[novel_view](T)
            writers.append(VideoWriter(out_dir / f"{name}_{novel_view}.mp4", eye_w, eye_h,
                                       seq.fps, crf=crf, audio=audio, num_frames=T))
        for t in tqdm(range(T), desc=f"rendering {name}", unit="frame", disable=not progress):
            renderer.set_frame_of(seq, t, dense_size)
            packed = renderer.render_views(views, layout, dtype="f1")
            writers[0].write(packed[..., :3])
            if poses is not None:
                mono = renderer.render_views([(poses[t], K_eye)], size=(eye_w, eye_h), dtype="f1")
                writers[1].write(mono[..., :3])
        outputs["stereo"] = writers.pop(0).close()
        if poses is not None:
            outputs["novel_view"] = writers.pop(0).close()
    finally:
        for w in writers:  # whatever is not complete leaves nothing behind
            w.abort()
        renderer.release()
    if ply_frame is not None:
        from mpitalk import geometry

        index = ply_frame % T
        # a factored MPI's cloud at the photo's resolution (at most 512 px: 262k points)
        rgba, K = seq[index], seq.K
        if seq.factored:
            size = min(native, 512)
            rgba, K = seq.dense(index, size), seq.K_at(size)
        outputs["ply"] = geometry.save_ply(out_dir / f"{name}_frame{index:06d}.ply", rgba,
                                           seq.depths, K, frame_from_mpi=seq.pose(index))
    return outputs
