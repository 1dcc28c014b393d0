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
instanced points of the tile's size carrying their mask (a quad of two triangles would have
llvmpipe shade the 4x4 pixel blocks along its diagonal twice), those the view's edge cuts as
quads clamped to it; tiles that one plane reaches use a loop-free shader variant.

The planes live in one 2-D texture, the plane atlas (RGBA8, straight alpha): plane i in cell
(i % cols, i // cols), each inside a transparent one-texel border; the shader premultiplies each
of the four bilinear taps before blending them, which is ``mpi.render``'s "premultiply, then
interpolate" exactly, and saves the upload a pass over every texel (a 2-D atlas rather than a
texture array: one program reads both kinds of MPI's planes the same way). A dense MPI is
uploaded as it comes (:meth:`GLRenderer.set_mpi`). A factored MPI (``mpi_io`` version 3:
low-resolution fields and the full-resolution photo, :func:`mpitalk.mpi.materialize`) is
uploaded as its small field textures and the photo (:meth:`GLRenderer.set_fields`), and the
``FIELDS`` variant of ``shaders/mpi.frag`` evaluates each plane where it samples it
(:func:`mpitalk.mpi.render_fields` is its JAX twin): no dense plane is built, on the CPU or the
GPU. Measured (bench_gl.py, README): materializing the 32 planes at 512 px first, in a GPU pass,
cost 0.7 s per real frame on this machine's llvmpipe, three times the stereo render itself.
llvmpipe runs both sides of every branch for all pixels of a SIMD group, so the shader does
not skip work with ifs: a zero flow field is a compile-time variant (``FLOW`` left undefined).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import moderngl
import numpy as np

from mpitalk import UserError
from mpitalk.backdrop import backdrop_mpi, without_back

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
FIELD_TEXTURES = ("u_ab", "u_color", "u_flow", "u_photo")  # texture units 0..3 (FIELDS)
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


def _field_rects(alpha_u8: np.ndarray, size: int, tile: int) -> np.ndarray:
    """Rectangles (N,5) ``(plane, x0, y0, x1, y1)`` in pixels of a dense plane of ``size``
    px covering everywhere the bilinearly upsampled ``alpha_u8`` (D,S,S) may be non-zero: the
    S-px tiles (``tile`` texels) with any alpha > 0, as runs along tile rows, grown by one S
    texel each side (the reach of the upsampling), scaled to ``size`` and rounded outwards."""
    D, S, _ = alpha_u8.shape
    th = -(-S // tile)
    a = alpha_u8 if S == th * tile else np.pad(alpha_u8, ((0, 0), (0, th * tile - S),
                                                          (0, th * tile - S)))
    occ = a.reshape(D, th, tile, th, tile).max(axis=4).max(axis=2) > 0
    edges = np.diff(np.pad(occ.astype(np.int8), ((0, 0), (0, 0), (1, 1))), axis=2)
    d0, r0, c0 = np.nonzero(edges == 1)
    _, _, c1 = np.nonzero(edges == -1)
    scale = size / S
    lo = np.floor((np.stack([c0, r0], 1) * tile - 1) * scale)
    hi = np.ceil((np.stack([np.minimum(c1 * tile, S), np.minimum((r0 + 1) * tile, S)], 1) + 1)
                 * scale)
    rects = np.concatenate([d0[:, None], np.clip(lo, 0, size), np.clip(hi, 0, size)], 1)
    return rects.astype(np.int64)


def atlas_layout(num_planes: int, width: int, height: int, max_size: int) -> tuple[int, int]:
    """(cols, rows) of a near-square plane atlas of bordered (width+2, height+2) cells that
    fits ``max_size`` texels a side; ValueError when it cannot."""
    cw, ch = width + 2, height + 2
    cols = max(1, min(num_planes, int(np.ceil(np.sqrt(num_planes * ch / cw)))))
    cols = min(cols, max_size // cw) if cw <= max_size else 0
    rows = -(-num_planes // cols) if cols else 0
    if not cols or rows * ch > max_size:
        raise ValueError(f"{num_planes} planes of {width}x{height} do not fit this GL's "
                         f"{max_size}-texel textures; render smaller")
    return cols, rows


def _tile_points(mask: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Instance data (mpi.vert) for each selected tile (th,tw) on its own (length 1), drawn as
    one point of TILE px."""
    rows, cols = np.nonzero(sel)
    inst = np.empty(len(rows), dtype=_TILE_DTYPE)
    inst["tile"] = np.stack([cols, rows, np.ones_like(cols)], axis=1)
    inst["mask"] = mask[rows, cols]
    return inst


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
        # and each for a dense MPI (planes in the atlas) and a factored one (FIELDS: planes
        # evaluated from the fields and the photo), with a non-zero flow field or without (a
        # compile-time variant: llvmpipe would fetch the flow under a uniform if all the same)
        common = {"MAX_PLANES": MAX_PLANES, "TILE": TILE}
        variants = {"": {}, "fields_": {"FIELDS": 1}, "flow_": {"FIELDS": 1, "FLOW": 1}}
        self.programs = {
            f"{prefix}{kind}": program(self.ctx, "mpi.vert", "mpi.frag", **common, **defs,
                                       **({"SINGLE_PLANE": 1} if kind == "single" else {}))
            for prefix, defs in variants.items() for kind in ("multi", "single")
        }
        # per-instance data (one tile each: column, row, plane mask), grown on demand
        self._tiles = {k: self.ctx.buffer(reserve=_TILE_DTYPE.itemsize * 1024, dynamic=True)
                       for k in self.programs}
        self._vaos = {k: self._tile_vao(k) for k in self.programs}
        # bilinear, transparent outside the plane: CLAMP_TO_BORDER with a zero border colour
        self.sampler = self.ctx.sampler(repeat_x=False, repeat_y=False,
                                        filter=(moderngl.LINEAR, moderngl.LINEAR),
                                        border_color=(0.0, 0.0, 0.0, 0.0))
        for name, prog in self.programs.items():
            if name.startswith(("fields", "flow")):
                for unit, uniform in enumerate(FIELD_TEXTURES):
                    if uniform in prog:  # u_flow: FLOW only
                        prog[uniform].value = unit
            else:
                prog["u_planes"].value = 0
        self.planes: moderngl.Texture | None = None  # the plane atlas
        self._atlas_shape = (0, 0, 0)  # (D, H, W) the atlas holds
        self._plane_shape = (0, 0, 0)  # (D, H, W) of the MPI set last (dense or factored)
        self._cols = 1
        self._max_texture = int(self.ctx.info["GL_MAX_TEXTURE_SIZE"])
        # whole tiles are drawn as points of TILE px where the GL allows points that large
        # (llvmpipe: up to 255; GL itself promises 1), else as quads (see draw_views)
        self._points = float(self.ctx.info.get("GL_POINT_SIZE_RANGE", (1.0, 1.0))[1]) >= TILE
        self._mode: str | None = None  # "dense" (set_mpi) or "fields" (set_fields)
        self._has_flow = False  # set_fields: the flow field is non-zero (the FLOW variant)
        # a factored MPI's textures: the fields (kept while their shapes stay) and the photo
        # (kept while the same photo array and size come back)
        self._field_tex: dict[str, moderngl.Texture | moderngl.TextureArray] = {}
        self._photo_tex: moderngl.Texture | None = None
        self._photo_key: tuple | None = None
        self._fbos: dict[tuple[int, int, str], moderngl.Framebuffer] = {}
        self.depths = np.zeros(0)
        self.K_src = np.eye(3)
        self.frame_from_mpi = np.eye(4)
        # the world backdrop (set_backdrop): a one-plane renderer of its own, drawn first
        self._backdrop: GLRenderer | None = None
        self._back_planes = 0  # planes of each MPI (from the farthest) it replaces

    # ---- upload --------------------------------------------------------------------------

    def set_backdrop(self, backdrop: np.ndarray | None, depth_m: float = 1.0,
                     K_src: np.ndarray | None = None, back_planes: int = 0) -> None:
        """Show every MPI set from now on over a world backdrop (:mod:`mpitalk.backdrop`):
        ``backdrop`` (P,P,3) uint8 or float in [0,1], an opaque plane at ``depth_m`` in the
        frame's camera with intrinsics ``K_src`` (at P px), drawn at each view's pose alone (a
        frame's ``frame_from_mpi`` does not move it); the first ``back_planes`` planes of each
        MPI are not drawn. The JAX twin: ``mpi.over`` of the head planes' render over the
        backdrop's. None: no backdrop (each MPI drawn whole, the default)."""
        if backdrop is None:
            if self._backdrop is not None:
                self._backdrop.release()
            self._backdrop, self._back_planes = None, 0
            return
        rgba, depths = backdrop_mpi(backdrop, depth_m)
        if self._backdrop is None:
            self._backdrop = GLRenderer(*self.size, ctx=self.ctx)
        self._backdrop.set_mpi(rgba, depths, K_src)
        self._back_planes = int(back_planes)

    def use_backdrop_of(self, seq) -> None:
        """Show the frames of ``seq`` (an ``mpi_io.MPISequence``) over its world backdrop when
        it has one (``seq.backdrop_plane()``), else whole; call before uploading its frames."""
        plane = seq.backdrop_plane() if seq.factored else None
        if plane is None:
            self.set_backdrop(None)
        else:
            self.set_backdrop(*plane)

    def set_frame_of(self, seq, index: int, size: int | None = None) -> None:
        """Upload frame ``index`` of ``seq`` (an ``mpi_io.MPISequence``) with its pose: a dense
        MPI as it is stored, a factored one as its fields and photo, its planes ``size`` px
        (default the photo's; :meth:`set_fields`)."""
        if seq.factored:
            fields, frame_from_mpi = seq.fields_raw_and_pose(index)
            self.set_fields(fields, seq.photo_u8, seq.depths, seq.K,
                            seq.photo_size if size is None else size, frame_from_mpi,
                            seq.plane_groups)
        else:
            rgba, frame_from_mpi = seq.raw_and_pose(index)
            self.set_mpi(rgba, seq.depths, seq.K, frame_from_mpi)

    def set_mpi(self, rgba: np.ndarray, depths: np.ndarray, K_src: np.ndarray,
                frame_from_mpi: np.ndarray | None = None) -> None:
        """Upload an MPI: ``rgba`` (D,H,W,4) straight alpha, back to front, float in [0,1] or
        uint8; ``depths`` (D,) metres; ``K_src`` (3,3); ``frame_from_mpi`` (4,4) the pose of
        the MPI's camera in the frame's (``mpi_io``; default the identity). Stored as RGBA8,
        straight alpha, in the plane atlas."""
        rgba = np.asarray(rgba)
        D, H, W, C = rgba.shape
        if C != 4 or not 1 <= D <= MAX_PLANES:
            raise ValueError(f"rgba must be (D<={MAX_PLANES},H,W,4), got {rgba.shape}")
        straight = to_u8(rgba)  # premultiplied per bilinear tap in the shader
        if self._back_planes:  # replaced by the world backdrop
            straight = straight.copy()
            straight[:self._back_planes, ..., 3] = 0
        self._atlas(D, H, W)
        for i in range(D):
            x, y = self._cell_origin(i)
            self.planes.write(np.ascontiguousarray(straight[i]), viewport=(x + 1, y + 1, W, H))
        self._mode = "dense"
        self._set_geometry(depths, K_src, frame_from_mpi, _occupied_rects(straight, TILE))
        self._set_corners()

    def _atlas(self, D: int, H: int, W: int) -> None:
        """(Re)allocate the plane atlas for D planes of H x W: a one-texel transparent border
        round each plane (see plane_sample in mpi.frag), zeroed here; uploads and the fields
        pass write the interiors only."""
        self._plane_shape = (D, H, W)
        if self.planes is not None and self._atlas_shape == (D, H, W):
            return
        self._release_atlas()
        cols, rows = atlas_layout(D, W, H, self._max_texture)
        size = (cols * (W + 2), rows * (H + 2))
        self.planes = self.ctx.texture(size, 4, dtype="f1", data=bytes(size[0] * size[1] * 4))
        self._atlas_shape, self._cols = (D, H, W), cols
        for prog in (self.programs["multi"], self.programs["single"]):
            prog["u_cols"].value = cols
            prog["u_cell"].value = (W + 2, H + 2)

    def _release_atlas(self) -> None:
        if self.planes is not None:
            self.planes.release()
            self.planes = None

    def _unbind(self, fbo: moderngl.Framebuffer) -> None:
        # moderngl rebinds the current framebuffer after creating one: never leave it on a
        # deleted one (a standalone context has no screen; framebuffer 0 is always valid)
        if self.ctx.fbo is fbo:
            (self.ctx.screen or self.ctx.detect_framebuffer(0)).use()

    def _cell_origin(self, i: int) -> tuple[int, int]:
        D, H, W = self._atlas_shape
        return (i % self._cols) * (W + 2), (i // self._cols) * (H + 2)

    def _set_geometry(self, depths, K_src, frame_from_mpi, rects: np.ndarray) -> None:
        D = self._plane_shape[0]
        self.depths = np.asarray(depths, dtype=np.float64).reshape(D)
        self.K_src = np.asarray(K_src, dtype=np.float64).reshape(3, 3)
        self.frame_from_mpi = (np.eye(4) if frame_from_mpi is None
                               else np.asarray(frame_from_mpi, dtype=np.float64).reshape(4, 4))
        self._rects = rects

    def _set_corners(self) -> None:
        """Source rectangle corners, grown by one texel (a bilinear tap reaches 0.5 texel out),
        as points on their planes in the source camera frame: (N,4,3)."""
        p, x0, y0, x1, y1 = (self._rects[:, k].astype(np.float64) for k in range(5))
        xs = np.stack([x0 - 1, x1 + 1, x1 + 1, x0 - 1], axis=1)
        ys = np.stack([y0 - 1, y0 - 1, y1 + 1, y1 + 1], axis=1)
        pix = np.stack([xs, ys, np.ones_like(xs)], axis=-1)
        rays = pix @ np.linalg.inv(self.K_src).T
        self._corners = rays * self.depths[self._rects[:, 0]][:, None, None]

    def set_fields(self, fields: dict, photo: np.ndarray, depths: np.ndarray,
                   K_src: np.ndarray, size: int, frame_from_mpi: np.ndarray | None = None,
                   plane_groups: np.ndarray | None = None) -> None:
        """Upload a factored MPI whose planes are ``size`` px (the GL twin of
        :func:`mpitalk.mpi.render_fields`; tests hold the two equal, and both close to
        ``mpi.render(mpi.materialize(...))``); then render as after :meth:`set_mpi`.

        fields: ``alpha``, ``blend`` (D,S,S), ``color`` (S,S,3), uint8 or float in [0,1];
        ``flow`` (G,S,S,2) float (``mpi_io`` stores these). photo: (P,P,3) uint8 or float, the
        sequence's photo (uploaded once while the same array and size come back; reduced with
        :func:`mpitalk.mpi.fit_photo` when ``size < P``). K_src: (3,3) at S; the renderer's
        ``K_src`` becomes K at ``size``. Nothing dense is built: the shader evaluates each
        plane from the small field textures and the photo where it samples it, so an upload
        costs the fields' few hundred kilobytes, not D planes of ``size``^2 texels.
        """
        alpha8, blend8, color8 = (to_u8(np.asarray(fields[k])) for k in ("alpha", "blend",
                                                                           "color"))
        flow = np.ascontiguousarray(np.asarray(fields["flow"], np.float32))
        if self._back_planes:  # replaced by the world backdrop
            alpha8 = without_back(alpha8, self._back_planes)
        D, S, _ = alpha8.shape
        G = flow.shape[0]
        if not 1 <= D <= MAX_PLANES or blend8.shape != (D, S, S) or color8.shape != (S, S, 3) \
                or flow.shape != (G, S, S, 2):
            raise ValueError(f"fields must be alpha/blend (D<={MAX_PLANES},S,S), color (S,S,3), "
                             f"flow (G,S,S,2); got {alpha8.shape}, {blend8.shape}, "
                             f"{color8.shape}, {flow.shape}")
        groups = np.zeros(MAX_PLANES, np.int32)
        if plane_groups is not None:
            groups[:D] = np.asarray(plane_groups, np.int32).reshape(D)
        size = int(size)
        # RGBA8, not RG8: llvmpipe filters four 8-bit channels on its fast path (measured:
        # the stereo render took 1.3x as long with RG8); B and A are unused
        ab = self._field_texture("ab", (S, S, D), 4, "f1", array=True)
        zero = np.zeros_like(alpha8)
        ab.write(np.ascontiguousarray(np.stack([alpha8, blend8, zero, zero], -1)))
        col = self._field_texture("color", (S, S), 4, "f1")
        col.write(np.ascontiguousarray(np.concatenate(
            [color8, np.full((S, S, 1), 255, np.uint8)], -1)))
        has_flow = bool(np.any(flow))
        fl = self._field_texture("flow", (S, S, G), 2, "f4", array=True)
        if has_flow:
            fl.write(flow)
        self._upload_photo(photo, size)
        for kind in ("flow_multi", "flow_single"):
            prog = self.programs[kind]
            if "u_group" in prog:  # unused uniforms are optimized away
                prog["u_group"].write(groups.tobytes())
        self._mode = "fields"
        self._has_flow = has_flow
        self._plane_shape = (D, size, size)
        K = np.asarray(K_src, np.float64).reshape(3, 3).copy()
        K[:2] *= size / S
        # each plane's rectangles where the upsampled alpha may be non-zero (the tile mask)
        self._set_geometry(depths, K, frame_from_mpi,
                           _field_rects(alpha8, size, max(1, (TILE * S) // size)))
        self._set_corners()

    def _field_texture(self, name: str, shape: tuple, components: int, dtype: str,
                       array: bool = False):
        """A field texture of that shape, bilinear and clamped to its edge (the upsampling of
        ``mpi.materialize``), reused while the shape stays."""
        tex = self._field_tex.get(name)
        key = (shape, components, dtype)
        if tex is None or getattr(tex, "_mpitalk_key", None) != key:
            if tex is not None:
                tex.release()
            make = self.ctx.texture_array if array else self.ctx.texture
            tex = make(shape, components, dtype=dtype)
            tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
            tex.repeat_x = tex.repeat_y = False  # CLAMP_TO_EDGE
            tex._mpitalk_key = key
            self._field_tex[name] = tex
        return tex

    def _upload_photo(self, photo: np.ndarray, size: int) -> None:
        """The photo texture (RGBA8, bilinear, edge-clamped) for dense planes of ``size``; kept
        while the same photo array and size come back (a sequence has one photo)."""
        key = (id(photo), photo.shape, size)
        if self._photo_tex is not None and self._photo_key == key:
            return
        img = np.asarray(photo)
        if img.shape[0] > size:
            from mpitalk import mpi  # JAX: only for a photo larger than the output

            src = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img
            img = np.asarray(mpi.fit_photo(src, size))
        img8 = to_u8(img)
        P = img8.shape[0]
        if self._photo_tex is not None:
            self._photo_tex.release()
        self._photo_tex = self.ctx.texture((P, P), 4, np.ascontiguousarray(np.concatenate(
            [img8, np.full((P, P, 1), 255, np.uint8)], -1)), dtype="f1")
        self._photo_tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self._photo_tex.repeat_x = self._photo_tex.repeat_y = False
        self._photo_key = key
        self._photo_ref = photo  # keeps id(photo) from being reused while cached

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
                  size: tuple[int, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Set the pose uniforms; return the instance data of the tiles to draw, split into
        those that one plane reaches (``"single"``) and those that several may (``"multi"``),
        each as ``(points, quads)``: the tiles wholly inside the view one by one (drawn as
        points) and runs of the others (drawn as quads clamped to the view)."""
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
        W, H = self._plane_shape[2], self._plane_shape[1]
        for prog in self.programs.values():
            prog["u_size"].value = (W, H)
        self._set_uniform("u_inv_size", [1.0 / W, 1.0 / H])
        self._set_uniform("u_disp", disp)
        self._set_uniform("u_c", c)
        mask = self.tile_mask(T, K_tgt, size)
        count = np.unpackbits(mask.view(np.uint8), axis=-1).sum(-1)
        # equal masks get equal keys; a run of equal keys along a row becomes one quad
        _, key = np.unique(mask.reshape(-1, 4), axis=0, return_inverse=True)
        key = key.reshape(count.shape) + 1
        whole = np.zeros(count.shape, dtype=bool)  # tiles wholly inside the view: points
        whole[:size[1] // TILE, :size[0] // TILE] = self._points
        return {kind: (_tile_points(mask, sel & whole),
                       _tile_runs(mask, np.where(sel & ~whole, key, 0)))
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
        if self._mode is None:
            raise RuntimeError("GLRenderer.set_mpi or set_fields must be called before "
                               "rendering")
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
        self.ctx.enable(moderngl.PROGRAM_POINT_SIZE)  # mpi.vert sets gl_PointSize = TILE
        if self._backdrop is not None:
            # the world backdrop first (at each view's own pose), then the head planes over it:
            # the shader's output is premultiplied, so "over" is (ONE, ONE_MINUS_SRC_ALPHA)
            self._backdrop._draw_into(fbo, views, layout, w, h)
            self.ctx.enable(moderngl.BLEND)
            self.ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA
        self._draw_into(fbo, views, layout, w, h)
        self.ctx.disable(moderngl.BLEND)
        return fbo

    def _draw_into(self, fbo: moderngl.Framebuffer, views: Sequence[View], layout: str,
                   w: int, h: int) -> None:
        """Draw this renderer's MPI for each view into ``fbo`` (bound, cleared, state set)."""
        fields = self._mode == "fields"
        if fields:  # the textures' own bilinear, edge-clamped filtering is the upsampling
            for unit, name in enumerate(("ab", "color", "flow")):
                self._field_tex[name].use(unit)
            self._photo_tex.use(3)
        else:
            self.planes.use(0)
            self.sampler.use(0)
        self._set_uniform("u_fb", [fbo.width, fbo.height])
        self._set_uniform("u_view", [w, h])
        for k, (pose, K_tgt) in enumerate(views):
            self._set_uniform("u_origin", [w * k, 0] if layout == "sbs" else [0, h * k])
            tgt_from_src = np.asarray(pose, np.float64) @ self.frame_from_mpi
            for kind, (points, quads) in self._set_pose(tgt_from_src, K_tgt, (w, h)).items():
                if fields:
                    kind = f"{'flow' if self._has_flow else 'fields'}_{kind}"
                # A tile as a point: a quad is two triangles, and llvmpipe shades each 4x4
                # block that their shared diagonal crosses once for each (a quarter or more
                # of the tiles' blocks); a point is one square (measured: a real factored
                # frame rendered in 0.88 of the time)
                for prim, inst, vertices in ((moderngl.POINTS, points, 1),
                                             (moderngl.TRIANGLE_STRIP, quads, 4)):
                    if len(inst) == 0:
                        continue
                    if inst.nbytes > self._tiles[kind].size:
                        self._tiles[kind].orphan(inst.nbytes)
                        self._vaos[kind] = self._tile_vao(kind)
                    self._tiles[kind].write(inst.tobytes())
                    self.programs[kind]["u_points"].value = prim == moderngl.POINTS
                    self._vaos[kind].render(prim, vertices=vertices, instances=len(inst))
        if not fields:
            self.sampler.clear(0)

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
        for fbo in self._fbos.values():
            self._unbind(fbo)
        self._release_atlas()
        textures = [att for fbo in self._fbos.values() for att in fbo.color_attachments]
        for obj in (*self._fbos.values(), *textures, *self._vaos.values(),
                    *self._tiles.values(), *self.programs.values(), self.sampler,
                    *self._field_tex.values(), self._photo_tex):
            if obj is not None:
                obj.release()
        self._fbos, self._vaos, self._tiles, self._field_tex = {}, {}, {}, {}
        self._photo_tex, self._photo_key, self._mode = None, None, None
        self.set_backdrop(None)


def to_u8(rgba: np.ndarray) -> np.ndarray:
    """Float in [0,1] -> uint8, rounded; uint8 passes through."""
    if rgba.dtype == np.uint8:
        return rgba
    out = np.empty(rgba.shape, dtype=np.uint8)
    np.rint(np.clip(np.asarray(rgba, dtype=np.float32), 0.0, 1.0) * 255.0, out=out,
            casting="unsafe")
    return out
