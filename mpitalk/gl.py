"""ModernGL context, shader loading, and the GL multiplane-image renderer.

This is the one place that creates GL contexts. Headless rendering uses EGL on Mesa llvmpipe
(``moderngl.create_standalone_context(backend="egl")``); the interactive viewer gets its context
from moderngl-window instead and hands it to :class:`GLRenderer`. Shaders live as files in
``shaders/`` (a checkout) or ``mpitalk/shaders`` (an installed wheel).

:class:`GLRenderer` is the GL twin of :func:`mpitalk.mpi.render` (tests hold the two equal): the
same plane homographies, bilinear sampling of premultiplied colour with a transparent border,
planes behind the target camera dropped, over-compositing. It is fast on a CPU rasteriser because
each fragment walks only the planes that can hold something at its pixel, front to back, and
stops once the accumulated alpha saturates (``shaders/mpi.frag``). Which planes can: at upload,
the occupied 16x16 tiles of each plane are found (runs of them per tile row, as rectangles); per
pose, each rectangle is projected into the target and its bounding box marks the target tiles it
may touch, giving a small per-target-tile bit mask over planes. Target tiles are drawn as
instanced quads carrying their mask; tiles that one plane reaches use a loop-free shader variant.

The planes are uploaded as they come (RGBA8, straight alpha) into a texture array with a
transparent one-texel border; the shader premultiplies each of the four bilinear taps before
blending them, which is ``mpi.render``'s "premultiply, then interpolate" exactly, and saves the
upload a pass over every texel (~30 ms instead of ~200 ms for 32 planes of 512x512 here).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import moderngl
import numpy as np

from mpitalk import UserError

_CONTEXT: moderngl.Context | None = None


def shader_dir() -> Path:
    """The folder holding the GLSL files: ``mpitalk/shaders`` in a wheel, ``shaders/`` in a
    checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "shaders", here.parent / "shaders"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"GLSL shader folder not found next to {here}; reinstall mpitalk")


@functools.cache
def shader_source(name: str) -> str:
    """The text of ``shaders/<name>`` (e.g. ``"mpi.frag"``)."""
    path = shader_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"shader {path} is missing; reinstall mpitalk")
    return path.read_text()


def program(ctx: moderngl.Context, vert: str, frag: str,
            **defines: int | float) -> moderngl.Program:
    """Compile a program from two shader files; ``defines`` become ``#define NAME value`` lines
    inserted after the ``#version`` line of both stages."""

    def with_defines(src: str) -> str:
        if not defines:
            return src
        head, _, rest = src.partition("\n")
        lines = "".join(f"#define {k} {v}\n" for k, v in defines.items())
        return f"{head}\n{lines}{rest}"

    return ctx.program(
        vertex_shader=with_defines(shader_source(vert)),
        fragment_shader=with_defines(shader_source(frag)),
    )


def context() -> moderngl.Context:
    """The process-wide headless GL context (EGL, Mesa llvmpipe on a CPU machine), created once."""
    global _CONTEXT
    if _CONTEXT is None:
        try:
            _CONTEXT = moderngl.create_standalone_context(backend="egl", require=330)
        except Exception as exc:  # noqa: BLE001 - any failure here means the system lacks EGL
            raise UserError(
                f"cannot create a headless OpenGL context ({exc}); "
                "run scripts/setup_system.sh to install libegl1 libegl-mesa0 libgl1-mesa-dri"
            ) from exc
    return _CONTEXT


# --------------------------------------------------------------------------------------------
# The MPI renderer

MAX_PLANES = 128  # planes per MPI: four 32-bit words of tile mask (shaders/mpi.frag)
TILE = 16  # tile size in pixels, both for source occupancy and for the target tile mask
_TILE_DTYPE = np.dtype([("tile", "<i4", 3), ("mask", "<u4", 4)])  # mpi.vert's instance data
_Z_MIN = 1e-6  # target z below which a projected corner counts as behind the camera

# (view_from_frame (4,4), K_view (3,3)) of one rendered view; the frame's camera is the MPI's own
# unless set_mpi gave it a frame_from_mpi pose
View = tuple[np.ndarray, np.ndarray]


def stereo_views(K: np.ndarray, ipd_m: float, convergence_m: float | None = None,
                 center_from_src: np.ndarray | None = None) -> list[View]:
    """``[(left_from_src, K_left), (right_from_src, K_right)]`` for two parallel eyes.

    The eyes sit at x = -+ipd/2 of the centre camera (``camera.stereo_eyes``), so a point at depth
    d has disparity ``u_left - u_right = f*ipd/d``. With ``convergence_m`` the eyes' principal
    points move apart (left by -f*ipd/(2 d_conv), right by +f*ipd/(2 d_conv)): a horizontal image
    shift, not a toe-in, so the disparity becomes ``f*ipd*(1/d - 1/d_conv)``: zero at d_conv (the
    screen plane), positive (in front of the screen) nearer, negative (behind it) farther.
    ``None`` or ``inf`` keeps parallel eyes (zero disparity at infinity).
    """
    from mpitalk import camera  # camera imports jax; keep plain GL use light

    K = np.asarray(K, dtype=np.float64)
    center = np.eye(4) if center_from_src is None else np.asarray(center_from_src, np.float64)
    shift = 0.0
    if convergence_m is not None and np.isfinite(convergence_m):
        shift = K[0, 0] * ipd_m / (2.0 * convergence_m)
    views = []
    for eye_from_center, sign in zip(camera.stereo_eyes(ipd_m), (-1.0, 1.0), strict=True):
        K_eye = K.copy()
        K_eye[0, 2] += sign * shift
        views.append((np.asarray(eye_from_center, np.float64) @ center, K_eye))
    return views


def _occupied_rects(rgba_u8: np.ndarray, tile: int) -> np.ndarray:
    """Rectangles covering the tiles with any alpha > 0: (N,5) int rows
    ``(plane, x0, y0, x1, y1)`` in source pixels (x1, y1 exclusive), one per run of occupied
    tiles along a tile row. ``rgba_u8``: (D,H,W,4) uint8."""
    D, H, W, _ = rgba_u8.shape
    th, tw = -(-H // tile), -(-W // tile)
    # one little-endian uint32 per texel, alpha in the top byte: max-reduce without a copy
    texel = np.ascontiguousarray(rgba_u8).view("<u4")[..., 0]
    if (H, W) != (th * tile, tw * tile):
        texel = np.pad(texel, ((0, 0), (0, th * tile - H), (0, tw * tile - W)))
    occ = texel.reshape(D, th, tile, tw, tile).max(axis=4).max(axis=2) >= (1 << 24)
    edges = np.diff(np.pad(occ.astype(np.int8), ((0, 0), (0, 0), (1, 1))), axis=2)
    d0, r0, c0 = np.nonzero(edges == 1)  # run starts, in row-major order
    d1, r1, c1 = np.nonzero(edges == -1)  # run ends (exclusive), same order
    rects = np.stack([d0, c0 * tile, r0 * tile, np.minimum(c1 * tile, W),
                      np.minimum((r1 + 1) * tile, H)], axis=1)
    return rects.astype(np.int64)


def _tile_runs(mask: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Instance data (mpi.vert) for the maximal runs of equal non-zero ``key`` (th,tw) along
    each tile row: first column, row, length, and the run's plane mask."""
    pad = np.pad(key, ((0, 0), (1, 1)))
    change = pad[:, 1:] != pad[:, :-1]  # (th, tw+1): a run starts/ends at these column edges
    rows, cols = np.nonzero(change[:, :-1] & (key != 0))
    ends = np.nonzero(change[:, 1:] & (key != 0))[1] + 1  # same row-major order as the starts
    inst = np.empty(len(rows), dtype=_TILE_DTYPE)
    inst["tile"] = np.stack([cols, rows, ends - cols], axis=1)
    inst["mask"] = mask[rows, cols]
    return inst


class GLRenderer:
    """Render MPIs with OpenGL: ``set_mpi`` once per MPI, then ``render_pose`` per view.

    Views are posed relative to the frame's camera: ``set_mpi``'s ``frame_from_mpi`` (default
    the identity: the MPI's own camera) is applied after each view's pose, so a view at
    ``view_from_frame`` renders the MPI at ``view_from_frame @ frame_from_mpi``.

    ``width``, ``height``: the default target image size. ``ctx``: a moderngl context (default:
    the headless :func:`context`; the viewer passes its window's). Outputs follow
    :func:`mpitalk.mpi.render`: ``rgb`` composited over black (premultiplied) and ``alpha``.
    """

    def __init__(self, width: int, height: int, ctx: moderngl.Context | None = None):
        self.ctx = context() if ctx is None else ctx
        self.size = (int(width), int(height))
        # two variants of one program: tiles that several planes reach walk them in a loop;
        # tiles that exactly one reaches (most of a face MPI's background) sample it directly
        self.programs = {
            "multi": program(self.ctx, "mpi.vert", "mpi.frag", MAX_PLANES=MAX_PLANES, TILE=TILE),
            "single": program(self.ctx, "mpi.vert", "mpi.frag", MAX_PLANES=MAX_PLANES, TILE=TILE,
                              SINGLE_PLANE=1),
        }
        # per-instance data (one tile each: column, row, plane mask), grown on demand
        self._tiles = {k: self.ctx.buffer(reserve=_TILE_DTYPE.itemsize * 1024, dynamic=True)
                       for k in self.programs}
        self._vaos = {k: self._tile_vao(k) for k in self.programs}
        # bilinear, transparent outside the plane: CLAMP_TO_BORDER with a zero border colour
        self.sampler = self.ctx.sampler(repeat_x=False, repeat_y=False,
                                        filter=(moderngl.LINEAR, moderngl.LINEAR),
                                        border_color=(0.0, 0.0, 0.0, 0.0))
        for prog in self.programs.values():
            prog["u_planes"].value = 0
        self.planes: moderngl.TextureArray | None = None
        self._plane_shape = (0, 0, 0)
        self._fbos: dict[tuple[int, int, str], moderngl.Framebuffer] = {}
        self.depths = np.zeros(0)
        self.K_src = np.eye(3)
        self.frame_from_mpi = np.eye(4)

    # ---- upload --------------------------------------------------------------------------

    def set_mpi(self, rgba: np.ndarray, depths: np.ndarray, K_src: np.ndarray,
                frame_from_mpi: np.ndarray | None = None) -> None:
        """Upload an MPI: ``rgba`` (D,H,W,4) straight alpha, back to front, float in [0,1] or
        uint8; ``depths`` (D,) metres; ``K_src`` (3,3); ``frame_from_mpi`` (4,4) the pose of
        the MPI's camera in the frame's (``mpi_io``; default the identity). Stored as RGBA8,
        straight alpha."""
        rgba = np.asarray(rgba)
        D, H, W, C = rgba.shape
        if C != 4 or not 1 <= D <= MAX_PLANES:
            raise ValueError(f"rgba must be (D<={MAX_PLANES},H,W,4), got {rgba.shape}")
        straight = to_u8(rgba)  # premultiplied per bilinear tap in the shader
        if self.planes is None or self._plane_shape != (D, H, W):
            if self.planes is not None:
                self.planes.release()
            # a one-texel transparent border round each plane (see plane_sample in mpi.frag),
            # zeroed once here; uploads write the interior only
            self.planes = self.ctx.texture_array((W + 2, H + 2, D), 4, dtype="f1",
                                                 data=bytes((W + 2) * (H + 2) * D * 4))
            self._plane_shape = (D, H, W)
        self.planes.write(np.ascontiguousarray(straight), viewport=(1, 1, 0, W, H, D))
        self.depths = np.asarray(depths, dtype=np.float64).reshape(D)
        self.K_src = np.asarray(K_src, dtype=np.float64).reshape(3, 3)
        self.frame_from_mpi = (np.eye(4) if frame_from_mpi is None
                               else np.asarray(frame_from_mpi, dtype=np.float64).reshape(4, 4))
        self._rects = _occupied_rects(straight, TILE)
        # source rectangle corners, grown by one texel (a bilinear tap reaches 0.5 texel out),
        # as points on their planes in the source camera frame: (N,4,3)
        p, x0, y0, x1, y1 = (self._rects[:, k].astype(np.float64) for k in range(5))
        xs = np.stack([x0 - 1, x1 + 1, x1 + 1, x0 - 1], axis=1)
        ys = np.stack([y0 - 1, y0 - 1, y1 + 1, y1 + 1], axis=1)
        pix = np.stack([xs, ys, np.ones_like(xs)], axis=-1)
        rays = pix @ np.linalg.inv(self.K_src).T
        self._corners = rays * self.depths[self._rects[:, 0]][:, None, None]

    # ---- per pose ------------------------------------------------------------------------

    def tile_mask(self, tgt_from_src: np.ndarray, K_tgt: np.ndarray,
                  size: tuple[int, int]) -> np.ndarray:
        """(th,tw,4) uint32: bit i%32 of word i//32 set where plane i may show in that target
        tile (a conservative superset: the bounding box of each projected source rectangle; the
        back plane, which extends past its edges, in every tile)."""
        w, h = size
        th, tw = -(-h // TILE), -(-w // TILE)
        D = len(self.depths)
        T = np.asarray(tgt_from_src, dtype=np.float64)
        X = self._corners @ T[:3, :3].T + T[:3, 3]  # (N,4,3) target frame
        z = X[..., 2]
        behind = z <= _Z_MIN
        uvw = X @ np.asarray(K_tgt, dtype=np.float64).T
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.clip(uvw[..., :2] / np.where(behind, 1.0, z)[..., None], -1e6, 1e6)
        # pixel centres j + 0.5 inside [min, max], with a pixel of slack for rounding
        j0 = np.floor((uv[..., 0].min(1) - 1.5) / TILE)
        j1 = np.floor((uv[..., 0].max(1) + 0.5) / TILE)
        i0 = np.floor((uv[..., 1].min(1) - 1.5) / TILE)
        i1 = np.floor((uv[..., 1].max(1) + 0.5) / TILE)
        # partly behind the camera: the projection is unbounded, so mark every tile
        partial = behind.any(1) & ~behind.all(1)
        j0[partial], i0[partial], j1[partial], i1[partial] = 0, 0, tw - 1, th - 1
        j0, i0 = np.maximum(j0, 0).astype(np.int64), np.maximum(i0, 0).astype(np.int64)
        j1, i1 = np.minimum(j1, tw - 1).astype(np.int64), np.minimum(i1, th - 1).astype(np.int64)
        keep = ~behind.all(1) & (j0 <= j1) & (i0 <= i1)
        plane = self._rects[keep, 0]
        j0, j1, i0, i1 = j0[keep], j1[keep] + 1, i0[keep], i1[keep] + 1
        # 2-D difference array per plane: +1/-1 at the box corners, then prefix sums
        stride = (th + 1) * (tw + 1)
        idx = np.concatenate([plane * stride + i0 * (tw + 1) + j0,
                              plane * stride + i0 * (tw + 1) + j1,
                              plane * stride + i1 * (tw + 1) + j0,
                              plane * stride + i1 * (tw + 1) + j1])
        sgn = np.concatenate([np.ones_like(j0), -np.ones_like(j0), -np.ones_like(j0),
                              np.ones_like(j0)])
        diff = np.bincount(idx, weights=sgn, minlength=D * stride).reshape(D, th + 1, tw + 1)
        covered = diff.cumsum(1).cumsum(2)[:, :th, :tw] > 0.5  # (D,th,tw)
        if (self._rects[:, 0] == 0).any():  # the back plane extends past its edges (mpi.frag)
            covered[0] = True
        bits = np.zeros((th, tw, MAX_PLANES), dtype=bool)
        bits[..., :D] = covered.transpose(1, 2, 0)
        return np.packbits(bits, axis=-1, bitorder="little").view("<u4")

    def _set_uniform(self, name: str, value: np.ndarray) -> None:
        """Write a uniform of both program variants (those that use it) from float32 bytes."""
        data = np.asarray(value, dtype="f4").tobytes()
        for prog in self.programs.values():
            if name in prog:
                prog[name].write(data)

    def _set_pose(self, tgt_from_src: np.ndarray, K_tgt: np.ndarray,
                  size: tuple[int, int]) -> dict[str, np.ndarray]:
        """Set the pose uniforms; return the instance data of the tiles to draw, split into
        those that one plane reaches (``"single"``) and those that several may (``"multi"``)."""
        T = np.asarray(tgt_from_src, dtype=np.float64)
        R, t = T[:3, :3], T[:3, 3]
        A = R.T @ np.linalg.inv(np.asarray(K_tgt, dtype=np.float64))
        b = R.T @ t
        D = len(self.depths)
        disp = np.zeros(MAX_PLANES)
        c = np.zeros(MAX_PLANES)
        disp[:D] = 1.0 / self.depths
        c[:D] = self.depths + b[2]
        Ks = self.K_src
        self._set_uniform("u_A", A.T)  # GLSL matrices are column-major
        self._set_uniform("u_b", b)
        self._set_uniform("u_Ks", Ks[:2, :2].T)
        self._set_uniform("u_Ks_c", Ks[:2, 2])
        for prog in self.programs.values():
            prog["u_size"].value = (self._plane_shape[2], self._plane_shape[1])
        self._set_uniform("u_disp", disp)
        self._set_uniform("u_c", c)
        mask = self.tile_mask(T, K_tgt, size)
        count = np.unpackbits(mask.view(np.uint8), axis=-1).sum(-1)
        # equal masks get equal keys; a run of equal keys along a row becomes one quad
        _, key = np.unique(mask.reshape(-1, 4), axis=0, return_inverse=True)
        key = key.reshape(count.shape) + 1
        return {kind: _tile_runs(mask, np.where(sel, key, 0))
                for kind, sel in (("single", count == 1), ("multi", count > 1))}

    def _tile_vao(self, kind: str) -> moderngl.VertexArray:
        return self.ctx.vertex_array(self.programs[kind],
                                     [(self._tiles[kind], "3i 4u/i", "in_tile", "in_mask")])

    # ---- drawing -------------------------------------------------------------------------

    def framebuffer(self, width: int, height: int, dtype: str = "f4") -> moderngl.Framebuffer:
        """The renderer's own RGBA framebuffer of that size (``"f4"`` float or ``"f1"`` 8-bit)."""
        key = (width, height, dtype)
        fbo = self._fbos.get(key)
        if fbo is None:
            fbo = self.ctx.framebuffer([self.ctx.texture((width, height), 4, dtype=dtype)])
            self._fbos[key] = fbo
        return fbo

    def draw_views(self, views: Sequence[View], layout: str = "sbs",
                   size: tuple[int, int] | None = None, dtype: str = "f4") -> moderngl.Framebuffer:
        """Render views packed side by side (``"sbs"``, first on the left) or top to bottom
        (``"tb"``, first on top, i.e. first in memory) into one framebuffer and return it.
        ``size``: (w, h) of each view, default the renderer's. No readback: the viewer shows
        the framebuffer's texture directly."""
        if self.planes is None:
            raise RuntimeError("GLRenderer.set_mpi must be called before rendering")
        if layout not in ("sbs", "tb"):
            raise ValueError(f"layout must be 'sbs' or 'tb', got {layout!r}")
        w, h = self.size if size is None else (int(size[0]), int(size[1]))
        n = len(views)
        fbo = self.framebuffer(w * n if layout == "sbs" else w, h * n if layout == "tb" else h,
                               dtype)
        fbo.use()
        fbo.clear()  # tiles that no plane reaches are not drawn: transparent black
        # our own state: the context may be shared (rig renders, the viewer's text overlay)
        self.ctx.disable(moderngl.DEPTH_TEST | moderngl.BLEND | moderngl.CULL_FACE)
        self.planes.use(0)
        self.sampler.use(0)
        self._set_uniform("u_fb", [fbo.width, fbo.height])
        self._set_uniform("u_view", [w, h])
        for k, (pose, K_tgt) in enumerate(views):
            self._set_uniform("u_origin", [w * k, 0] if layout == "sbs" else [0, h * k])
            tgt_from_src = np.asarray(pose, np.float64) @ self.frame_from_mpi
            for kind, inst in self._set_pose(tgt_from_src, K_tgt, (w, h)).items():
                if len(inst) == 0:
                    continue
                if inst.nbytes > self._tiles[kind].size:
                    self._tiles[kind].orphan(inst.nbytes)
                    self._vaos[kind] = self._tile_vao(kind)
                self._tiles[kind].write(inst.tobytes())
                self._vaos[kind].render(moderngl.TRIANGLE_STRIP, vertices=4,
                                        instances=len(inst))
        self.sampler.clear(0)
        return fbo

    def render_views(self, views: Sequence[View], layout: str = "sbs",
                     size: tuple[int, int] | None = None, dtype: str = "f4") -> np.ndarray:
        """:meth:`draw_views` and read back: (h', w', 4) premultiplied RGB + alpha, float32
        (``dtype="f4"``) or uint8 (``"f1"``), image row 0 first."""
        fbo = self.draw_views(views, layout, size, dtype)
        out = np.empty((fbo.height, fbo.width, 4), dtype=np.float32 if dtype == "f4" else np.uint8)
        fbo.read_into(out, components=4, dtype=dtype)
        return out

    def render_pose(self, tgt_from_src: np.ndarray,
                    K_tgt: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Render the uploaded MPI to one pose (from the frame's camera: see the class):
        ``(rgb (h,w,3), alpha (h,w))`` float32, as :func:`mpitalk.mpi.render` (``K_tgt``
        defaults to the MPI's own ``K_src``)."""
        K = self.K_src if K_tgt is None else K_tgt
        out = self.render_views([(tgt_from_src, K)])
        return out[..., :3], out[..., 3]

    def render(self, rgba: np.ndarray, depths: np.ndarray, K_src: np.ndarray,
               tgt_from_src: np.ndarray,
               K_tgt: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`set_mpi` then :meth:`render_pose`."""
        self.set_mpi(rgba, depths, K_src)
        return self.render_pose(tgt_from_src, K_tgt)

    def render_stereo(self, ipd_m: float, convergence_m: float | None = None,
                      center_from_src: np.ndarray | None = None, K_tgt: np.ndarray | None = None,
                      layout: str = "sbs", dtype: str = "f4") -> np.ndarray:
        """Both eyes (:func:`stereo_views`) in one framebuffer and one readback: (h, 2w, 4)
        for ``"sbs"`` (left eye on the left) or (2h, w, 4) for ``"tb"`` (left eye on top)."""
        K = self.K_src if K_tgt is None else K_tgt
        return self.render_views(stereo_views(K, ipd_m, convergence_m, center_from_src),
                                 layout, dtype=dtype)

    def release(self) -> None:
        """Free the GL objects (the context itself is not released)."""
        if any(self.ctx.fbo is fbo for fbo in self._fbos.values()):
            # moderngl rebinds the current framebuffer after creating one: never leave it on a
            # deleted one (a standalone context has no screen; framebuffer 0 is always valid)
            (self.ctx.screen or self.ctx.detect_framebuffer(0)).use()
        textures = [att for fbo in self._fbos.values() for att in fbo.color_attachments]
        for obj in (self.planes, *self._fbos.values(), *textures, *self._vaos.values(),
                    *self._tiles.values(), *self.programs.values(), self.sampler):
            if obj is not None:
                obj.release()
        self.planes, self._fbos, self._vaos, self._tiles = None, {}, {}, {}


def to_u8(rgba: np.ndarray) -> np.ndarray:
    """Float in [0,1] -> uint8, rounded; uint8 passes through."""
    if rgba.dtype == np.uint8:
        return rgba
    out = np.empty(rgba.shape, dtype=np.uint8)
    np.rint(np.clip(np.asarray(rgba, dtype=np.float32), 0.0, 1.0) * 255.0, out=out,
            casting="unsafe")
    return out
