"""Interactive MPI sequence viewer: ``python viewers/mpi_viewer.py DIR``.

Thin by design: input -> a camera pose (mpitalk.camera) -> mpitalk.gl.GLRenderer (the same
shaders the exporter uses) -> shaders/present.frag on screen.

Controls: drag orbits about the head (clamped to +-30 deg yaw, +-20 deg pitch, the angles an MPI
from one camera supports), scroll zooms, W/S move in/out, A/D left/right, space plays/pauses at
the sequence's fps, left/right step frames, M cycles mono / side-by-side stereo / red-cyan
anaglyph, I cycles the IPD (55/63/70 mm), P saves a PNG screenshot of what the window shows, at
the window's size (without the status line), R resets the view, Esc quits.

The views are rendered at the size they are shown at (the window's, letterboxed to the MPI's
aspect), so a factored MPI (``mpi_io`` version 3) is as sharp on screen as its photo: its planes
are materialized on the GPU at the photo's resolution (``GLRenderer.set_fields``).

``--headless --frames N --screenshot FILE`` renders N frames at the centre view without a window
(EGL) and saves the last one at the MPI's own resolution (a factored MPI's photo size) and
intrinsics: what ``mpitalk.mpi.render`` gives at the identity pose (of
``mpi.materialize(...)``). Without ``--headless``, ``--frames N`` closes the window after N
frames (and ``--screenshot`` saves what the window showed last), for tests under Xvfb. Bad
input (a damaged MPI folder, a screenshot path that cannot be written) is a one-line error and
exit code 1, found before anything is rendered where it can be.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mpitalk import UserError, camera, gl, mpi_io

MAX_YAW_DEG, MAX_PITCH_DEG = 30.0, 20.0  # beyond these an MPI's missing sides show
MAX_MOVE_M = 0.15
ZOOM_RANGE = (0.5, 3.0)
IPDS_MM = (63.0, 70.0, 55.0)
MODES = ("mono", "sbs", "anaglyph")


class ViewState:
    """Where the viewer looks from and what it shows; maps to a pose with camera functions."""

    def __init__(self, seq: mpi_io.MPISequence):
        self.seq = seq
        self.pivot = np.array([0.0, 0.0, camera.DEFAULT_HEAD_DEPTH_M], np.float32)
        self.frame = 0
        self.playing = False
        self.mode = 0
        self.ipd_index = 0
        self.reset()

    def reset(self) -> None:
        self.yaw = self.pitch = 0.0  # degrees
        self.zoom = 1.0
        self.move = np.zeros(3, np.float32)  # camera position offset, metres

    def orbit(self, dx_px: float, dy_px: float) -> None:
        self.yaw = float(np.clip(self.yaw - 0.2 * dx_px, -MAX_YAW_DEG, MAX_YAW_DEG))
        self.pitch = float(np.clip(self.pitch + 0.2 * dy_px, -MAX_PITCH_DEG, MAX_PITCH_DEG))

    def step_move(self, dx: float, dz: float) -> None:
        self.move = np.clip(self.move + np.array([dx, 0.0, dz], np.float32), -MAX_MOVE_M,
                            MAX_MOVE_M)

    def step_zoom(self, clicks: float) -> None:
        self.zoom = float(np.clip(self.zoom * 1.1 ** clicks, *ZOOM_RANGE))

    @property
    def ipd_mm(self) -> float:
        return IPDS_MM[self.ipd_index]

    def native_size(self) -> tuple[int, int]:
        """(w, h) the MPI holds: its own size, a factored MPI's photo size."""
        if self.seq.factored:
            return self.seq.photo_size, self.seq.photo_size
        return self.seq.width, self.seq.height

    def views(self, size: tuple[int, int] | None = None) -> list[gl.View]:
        """(tgt_from_src, K) of each view to draw, each ``size`` (w, h) pixels (default
        :meth:`native_size`): one (mono) or two eyes."""
        w, h = self.native_size() if size is None else size
        K = np.array(camera.scale_intrinsics(self.seq.K, w / self.seq.width,
                                             h / self.seq.height), np.float64)
        K[0, 0] *= self.zoom
        K[1, 1] *= self.zoom
        orbit = camera.orbit_pose(np.radians(self.yaw), np.radians(self.pitch), self.pivot)
        center = camera.translation(-self.move) @ orbit  # the camera moved by +move
        if MODES[self.mode] == "mono":
            return [(center, K)]
        return gl.stereo_views(K, self.ipd_mm / 1000.0, float(self.pivot[2]), center)


def check_screenshot(path: str | None) -> Path | None:
    """The screenshot's path, checked before anything renders: a .png file name in a folder
    that exists and can be written; UserError otherwise."""
    if path is None:
        return None
    p = Path(path)
    if p.is_dir() or str(path).endswith(("/", os.sep)):
        raise UserError(f"--screenshot {path}: is a folder; give a file name ending in .png")
    if p.suffix.lower() != ".png":
        raise UserError(f"--screenshot {path}: give a file name ending in .png")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"--screenshot {path}: folder {parent} does not exist; create it or "
                        "choose another path")
    try:  # can a file be made there? (/proc, a read-only mount: no)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{p.name}.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise UserError(f"--screenshot {path}: cannot write in {parent} ({exc.strerror}); "
                        "choose another path") from None
    return p


def save_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an image (h,w,3+) float in [0,1] or uint8 as PNG, atomically (a temporary name,
    renamed when complete); UserError if it cannot be written."""
    from PIL import Image

    rgb = np.asarray(rgb)[..., :3]
    if rgb.dtype != np.uint8:
        rgb = np.rint(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        Image.fromarray(rgb).save(tmp, format="PNG")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write the screenshot ({exc.strerror or exc}); "
                        "choose another path") from None


def set_frame(renderer: gl.GLRenderer, seq: mpi_io.MPISequence, index: int) -> None:
    """Upload frame ``index``: a dense MPI as it is, a factored one materialized at its photo's
    size on the GPU."""
    renderer.set_frame_of(seq, index)


def run_headless(seq: mpi_io.MPISequence, frames: int, screenshot: Path | None) -> None:
    state = ViewState(seq)
    renderer = gl.GLRenderer(*state.native_size())
    renderer.use_backdrop_of(seq)
    try:
        image = None
        for k in range(frames):
            set_frame(renderer, seq, k % len(seq))
            image = renderer.render_views(state.views())
        if screenshot is not None and image is not None:
            save_png(screenshot, image)
    finally:
        renderer.release()


def run_window(seq: mpi_io.MPISequence, frames: int | None, screenshot: Path | None,
               window_backend: str) -> None:
    import moderngl

    try:
        import moderngl_window as mglw
        from moderngl_window.text.bitmapped import TextWriter2D
        from moderngl_window.timers.clock import Timer
    except ImportError as exc:
        raise UserError(f"the viewer needs moderngl-window ({exc}); pip install "
                        "'mpitalk[viewer]', or use --headless") from None

    class Viewer(mglw.WindowConfig):
        gl_version = (3, 3)
        title = f"mpitalk viewer - {seq.path.name}"
        clear_color = (0.1, 0.1, 0.1, 1.0)

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.state = ViewState(seq)
            self.renderer = gl.GLRenderer(*self.state.native_size(), ctx=self.ctx)
            self.renderer.use_backdrop_of(seq)
            self.present = gl.program(self.ctx, "fullscreen.vert", "present.frag")
            self.present_vao = self.ctx.vertex_array(self.present, [])
            self.text = TextWriter2D()
            self.loaded = -1
            self.rendered = 0
            self.pending_shot: Path | None = None  # saved after the next image is shown
            self.play_clock = 0.0
            self.fps = 0.0

        def on_render(self, time_s: float, frame_time: float) -> None:
            st = self.state
            if frames is not None:  # scripted run: one sequence frame per drawn frame
                st.frame = self.rendered % len(seq)
            elif st.playing:
                self.play_clock += frame_time
                steps = int(self.play_clock * seq.fps)
                self.play_clock -= steps / seq.fps
                st.frame = (st.frame + steps) % len(seq)
            if st.frame != self.loaded:
                set_frame(self.renderer, seq, st.frame)
                self.loaded = st.frame
            t0 = time.perf_counter()
            # render at the size shown: the window letterboxed to the MPI's aspect (side by
            # side: both eyes; anaglyph: one eye's shape, the shader mixes the two)
            win_w, win_h = self.wnd.buffer_size
            nat_w, nat_h = st.native_size()
            per_row = 2 if MODES[st.mode] == "sbs" else 1
            aspect = per_row * nat_w / nat_h
            w = max(per_row, min(win_w, int(win_h * aspect)))
            h = max(1, int(w / aspect))
            view = (max(1, w // per_row), h)
            fbo = self.renderer.draw_views(st.views(view), size=view)
            self.wnd.use()
            shown = (view[0] * per_row, h)
            self.ctx.viewport = ((win_w - shown[0]) // 2, (win_h - h) // 2, *shown)
            fbo.color_attachments[0].use(0)
            self.present["u_image"].value = 0
            self.present["u_mode"].value = st.mode
            self.present_vao.render(moderngl.TRIANGLES, vertices=3)
            self.ctx.viewport = (0, 0, win_w, win_h)
            if frames is not None and self.rendered + 1 >= frames and screenshot:
                self.pending_shot = screenshot
            if self.pending_shot is not None:  # what the window shows, before the status line
                path, self.pending_shot = self.pending_shot, None
                try:
                    self.save(path, win_w, win_h)
                except UserError as exc:
                    if path == screenshot:  # --screenshot: the run fails
                        raise
                    print(f"mpi_viewer: {exc}", file=sys.stderr)  # P: the viewer goes on
            dt = time.perf_counter() - t0
            self.fps = 0.9 * self.fps + 0.1 / max(dt, 1e-6) if self.fps else 1.0 / max(dt, 1e-6)
            self.ctx.enable(moderngl.BLEND)
            self.text.text = (f"frame {st.frame + 1}/{len(seq)} {'play' if st.playing else 'pause'}"
                              f"  {self.fps:5.1f} fps  {MODES[st.mode]}  ipd {st.ipd_mm:.0f} mm"
                              f"  yaw {st.yaw:+.0f} pitch {st.pitch:+.0f} zoom {st.zoom:.2f}")
            self.text.draw((8, win_h - 22), size=14)
            self.ctx.disable(moderngl.BLEND)
            self.rendered += 1
            if frames is not None and self.rendered >= frames:
                self.wnd.close()

        def save(self, path: str | Path, win_w: int, win_h: int) -> None:
            """The window's image as shown (its size, letterbox included, no status line)."""
            data = self.wnd.fbo.read(viewport=(0, 0, win_w, win_h), components=3, alignment=1)
            # the window's row 0 is its bottom row
            save_png(path, np.frombuffer(data, np.uint8).reshape(win_h, win_w, 3)[::-1])

        def on_mouse_drag_event(self, x: int, y: int, dx: int, dy: int) -> None:
            self.state.orbit(dx, dy)

        def on_mouse_scroll_event(self, x_offset: float, y_offset: float) -> None:
            self.state.step_zoom(y_offset)

        def on_key_event(self, key, action, modifiers) -> None:
            keys, st = self.wnd.keys, self.state
            if action != keys.ACTION_PRESS:
                return
            step = 0.01
            actions = {
                keys.W: lambda: st.step_move(0.0, step), keys.S: lambda: st.step_move(0.0, -step),
                keys.A: lambda: st.step_move(-step, 0.0), keys.D: lambda: st.step_move(step, 0.0),
                keys.SPACE: lambda: setattr(st, "playing", not st.playing),
                keys.RIGHT: lambda: setattr(st, "frame", (st.frame + 1) % len(seq)),
                keys.LEFT: lambda: setattr(st, "frame", (st.frame - 1) % len(seq)),
                keys.M: lambda: setattr(st, "mode", (st.mode + 1) % len(MODES)),
                keys.I: lambda: setattr(st, "ipd_index", (st.ipd_index + 1) % len(IPDS_MM)),
                keys.R: st.reset,
                keys.P: lambda: setattr(self, "pending_shot",
                                        Path(f"mpi_viewer_{seq.path.name}_{st.frame:06d}.png")),
                keys.ESCAPE: self.wnd.close,
            }
            if key in actions:
                actions[key]()

    window_cls = mglw.get_local_window_cls(window_backend)
    nat_w, nat_h = ViewState(seq).native_size()
    window = window_cls(title=Viewer.title, size=(max(640, min(nat_w, 1280)),
                                                  max(480, min(nat_h, 960))),
                        gl_version=Viewer.gl_version, vsync=frames is None, resizable=True)
    mglw.activate_context(window=window)
    viewer = Viewer(ctx=window.ctx, wnd=window, timer=Timer())
    mglw.run_window_config_instance(viewer)
    window.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("dir", help="MPI sequence folder (mpi.json + frames/)")
    parser.add_argument("--headless", action="store_true", help="render without a window (EGL)")
    parser.add_argument("--frames", type=int, help="render this many frames, then stop")
    parser.add_argument("--screenshot", metavar="FILE", help="save the last frame as PNG")
    parser.add_argument("--window", default="pyglet", help="moderngl-window backend")
    args = parser.parse_args(argv)
    try:
        if args.frames is not None and args.frames < 1:
            raise UserError(f"--frames must be at least 1, got {args.frames}")
        shot = check_screenshot(args.screenshot)
        seq = mpi_io.load(args.dir)
        if args.headless:
            run_headless(seq, args.frames or 1, shot)
        else:
            if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                         or os.environ.get("WAYLAND_DISPLAY")):
                raise UserError("no display to open a window on; use --headless, or run "
                                "under xvfb-run")
            run_window(seq, args.frames, shot, args.window)
    except UserError as exc:
        print(f"mpi_viewer: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
