"""The headset page: pack a factored MPI sequence (format 3) into a static WebXR web bundle, and
serve it.

    python -m mpitalk.web MPI_DIR --out SITE     # build the bundle
    python -m mpitalk.web --serve SITE           # serve it on http://127.0.0.1:8000/

A bundle is a folder that works from any plain web server and loads nothing from the network:

    SITE/index.html, SITE/js/*.js, SITE/glsl/*   the page (copied from ``web/``)
    SITE/scene.json    depths, K (at S), per-frame frame_from_mpi, fps, plane groups, atlas layout
    SITE/photo.jpg     the identity photo (P,P,3) once, JPEG 4:4:4
    SITE/backdrop.jpg  the world backdrop (B,B,3), JPEG 4:4:4, when the sequence has one
                       (scene.json "backdrop": file, size, back_planes; mpitalk.backdrop)
    SITE/fields.mp4    the per-frame fields as a tiled atlas video (H.264), with the audio if any

The atlas (one video frame per MPI frame) holds every field as a grey S x S tile in the luma
plane: 4:2:0 video halves the chroma resolution, so only luma keeps the fields' full resolution;
the chroma planes stay neutral (128). Tiles are laid out row-major, ``cols`` to a row: tile k has
its top-left pixel at ((k % cols) S, (k // cols) S). In order: the D alpha planes (back to front),
the D blend planes, the colour's r, g, b, then (only when some flow is non-zero) the flow's x and
y for each group. A value v in [0,1] is stored as luma Y = 16 + 219 v (limited range, the range
every H.264 decoder and browser converts from); a flow offset f (units of the photo's side) as
v = 0.5 + f / (2 flow_range). The page samples each tile bilinearly with its coordinates clamped
to the tile's texel centres, which is ``mpi.materialize``'s edge-clamped upsampling.

scene.json also lists each plane's footprint: the box outside which its alpha is zero in every
frame, so the page skips it there (most of a face MPI's planes are empty most of the way).

The page (``web/``) repacks each decoded atlas frame once (``glsl/unpack.frag``: a layer per
plane holding alpha, blend and its group's flow, and a colour texture, so a plane costs one
filtered fetch), then renders every view in one fragment shader (``glsl/mpi.frag``) that does
what ``mpi.materialize`` + ``mpi.render`` do; a test (tests/test_web.py) holds its pixels equal to
the JAX reference render of the decoded bundle (:func:`load_bundle`).
"""

from __future__ import annotations

import argparse
import http.server
import json
import math
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from mpitalk import UserError, run_cli
from mpitalk.atomic import is_within, swap_in, temp_dir_beside

BUNDLE_FORMAT = "mpitalk-web"
BUNDLE_VERSION = 1
# x264 quality of the field atlas. Default job (bench/bench_web.py): crf 16 / 20 / 24 grow the
# bundle 1.42 / 0.96 / 0.63 MB per second of video and cost the rendered picture (decoded vs
# stored fields, JAX) at least 45.2 / 42.7 / 41.0 dB; 20 halves the size of 16 for little
DEFAULT_CRF = 20
DEFAULT_PHOTO_QUALITY = 92  # JPEG quality of the photo (4:4:4)
DEFAULT_PORT = 8000
MAX_ATLAS_SIDE = 4096  # widest frame a headset's H.264 decoder is sure to take
_Y0, _YSPAN = 16.0, 219.0  # limited-range luma: v in [0,1] <-> Y = 16 + 219 v
PAGE_FILES = ("index.html", "js", "glsl")  # what of web/ goes into a bundle
BACKDROP_FILE = "backdrop.jpg"  # the world backdrop, when the sequence has one (JPEG 4:4:4)


def asset_dir() -> Path:
    """The page's files: ``mpitalk/webpage`` in an installed wheel, ``web/`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "webpage", here.parent / "web"):
        if (candidate / "index.html").is_file():
            return candidate
    raise FileNotFoundError(f"the web page's files are missing next to {here}; reinstall mpitalk")


# ---- the atlas ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Atlas:
    """Where each field lies in a frame of the atlas video (see the module docstring)."""

    tile: int  # S: tile side, pixels (the fields' resolution)
    cols: int
    rows: int
    num_planes: int  # D
    flow_groups: int  # G stored, or 0 when every flow is zero (nothing stored)

    @property
    def width(self) -> int:
        return self.cols * self.tile

    @property
    def height(self) -> int:
        return self.rows * self.tile

    @property
    def first(self) -> dict[str, int]:
        """Index of the first tile of each field."""
        D = self.num_planes
        return {"alpha": 0, "blend": D, "color": 2 * D, "flow": 2 * D + 3}

    @property
    def num_tiles(self) -> int:
        return 2 * self.num_planes + 3 + 2 * self.flow_groups

    @staticmethod
    def layout(tile: int, num_planes: int, flow_groups: int) -> Atlas:
        """The most nearly square grid (wider than tall) holding all the tiles."""
        n = 2 * num_planes + 3 + 2 * flow_groups
        cols = math.ceil(math.sqrt(n))
        return Atlas(tile, cols, math.ceil(n / cols), num_planes, flow_groups)

    def to_json(self) -> dict:
        return {"tile": self.tile, "cols": self.cols, "rows": self.rows, "width": self.width,
                "height": self.height, "first": self.first, "flow_groups": self.flow_groups,
                "luma": "limited range: Y = 16 + 219 v; chroma neutral"}


def _tiles(fields: dict, atlas: Atlas, flow_range: float) -> np.ndarray:
    """(num_tiles,S,S) values in [0,1] of one frame's fields, in atlas order."""
    parts = [np.asarray(fields["alpha"], np.float32), np.asarray(fields["blend"], np.float32),
             np.moveaxis(np.asarray(fields["color"], np.float32), -1, 0)]
    if atlas.flow_groups:
        flow = np.asarray(fields["flow"], np.float32)  # (G,S,S,2) -> (2G,S,S): x, y per group
        parts.append(0.5 + np.moveaxis(flow, -1, 1).reshape(-1, *flow.shape[1:3]) /
                     (2.0 * flow_range))
    return np.clip(np.concatenate(parts, 0), 0.0, 1.0)


def _atlas_yuv(tiles: np.ndarray, atlas: Atlas) -> bytes:
    """One yuv420p frame (limited-range luma, neutral chroma) of the tiles (N,S,S)."""
    S, W, H = atlas.tile, atlas.width, atlas.height
    y = np.full((H, W), _Y0, np.float32)
    for k, t in enumerate(tiles):
        r, c = divmod(k, atlas.cols)
        y[r * S:(r + 1) * S, c * S:(c + 1) * S] = _Y0 + _YSPAN * t
    chroma = np.full((H // 2) * (W // 2) * 2, 128, np.uint8)
    return np.round(y).astype(np.uint8).tobytes() + chroma.tobytes()


def _untile(luma: np.ndarray, atlas: Atlas, flow_range: float) -> dict:
    """Fields (float32) from one decoded frame's luma plane (H,W) uint8: inverse of _tiles."""
    S, D = atlas.tile, atlas.num_planes
    v = np.clip((luma.astype(np.float32) - _Y0) / _YSPAN, 0.0, 1.0)
    tiles = np.stack([v[(k // atlas.cols) * S:(k // atlas.cols + 1) * S,
                        (k % atlas.cols) * S:(k % atlas.cols + 1) * S]
                      for k in range(atlas.num_tiles)])
    fields = {"alpha": tiles[:D], "blend": tiles[D:2 * D],
              "color": np.moveaxis(tiles[2 * D:2 * D + 3], 0, -1)}
    G = atlas.flow_groups
    if G:
        xy = (tiles[2 * D + 3:] - 0.5) * (2.0 * flow_range)  # (2G,S,S)
        fields["flow"] = np.moveaxis(xy.reshape(G, 2, S, S), 1, -1)
    else:
        fields["flow"] = np.zeros((1, S, S, 2), np.float32)
    return fields


# ---- building a bundle ---------------------------------------------------------------------------

def _open_factored(mpi_dir: Path):
    from mpitalk import mpi_io

    seq = mpi_io.load(mpi_dir)
    if not getattr(seq, "factored", False):
        raise UserError(f"{mpi_dir}: MPI format version {seq.version} holds dense planes; the web "
                        "page needs a factored sequence (format 3, written by `python -m "
                        "mpitalk.render` with --space reference); re-generate it")
    return seq


def _scan(seq) -> tuple[float, np.ndarray]:
    """One pass over the stored fields: the flow range and each plane's footprint.

    flow range: the largest |flow| over the sequence (0: no flow stored), rounded up to a power
    of two over 1024, so that small changes of the sequence keep the same quantisation.
    footprint: (D,4) the box (x0, y0, x1, y1, fractions of the side) outside which plane i's
    upsampled alpha is zero in every frame: texels with alpha > 0, widened by the bilinear
    reach (one texel) plus one texel for the codec's spread; the page skips a plane outside it
    (most of a face MPI), which is where its time goes. The back plane spans everything.
    """
    peak = 0.0
    occupied = None
    for t in range(len(seq)):
        raw = seq.fields_raw(t)
        peak = max(peak, float(np.max(np.abs(raw["flow"].astype(np.float32)), initial=0.0)))
        occ = raw["alpha"] > 0
        occupied = occ if occupied is None else occupied | occ
    flow_range = 0.0 if peak == 0.0 else 2.0 ** math.ceil(math.log2(peak * 1024)) / 1024
    D, S = occupied.shape[:2]
    boxes = np.tile(np.array([2.0, 2.0, -1.0, -1.0]), (D, 1))  # empty: never hit
    for i in range(D):
        rows, cols = np.nonzero(occupied[i])
        if i == 0 or rows.size == 0:
            continue
        boxes[i] = [(cols.min() - 1.5) / S, (rows.min() - 1.5) / S, (cols.max() + 2.5) / S,
                    (rows.max() + 2.5) / S]
    boxes[0] = [0.0, 0.0, 1.0, 1.0]
    return flow_range, np.clip(boxes, 0.0, 1.0)  # an empty plane: (1, 1, 0, 0), never inside


def _copy_page(dest: Path) -> int:
    """Copy the page's files into ``dest``; return their total size in bytes."""
    src = asset_dir()
    for name in PAGE_FILES:
        if (src / name).is_dir():
            shutil.copytree(src / name, dest / name)
        else:
            shutil.copy2(src / name, dest / name)
    return sum(p.stat().st_size for name in PAGE_FILES for p in
               ([dest / name] if (dest / name).is_file() else (dest / name).rglob("*"))
               if p.is_file())


def _check_out(out: Path, mpi_dir: Path) -> None:
    """Refuse an output folder whose replacement would lose something: the sequence itself (or
    a folder holding it), or an existing folder that is not a web bundle."""
    if is_within(mpi_dir, out):
        raise UserError(f"{out}: the bundle would replace the MPI sequence {mpi_dir}; choose "
                        "another --out")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_bundle(out))):
        raise UserError(f"{out}: exists and is not a web bundle (it would be replaced); choose "
                        "another --out, or remove it")


def _is_bundle(folder: Path) -> bool:
    try:
        return json.loads((folder / "scene.json").read_text()).get("format") == BUNDLE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def build(mpi_dir: str | os.PathLike, out: str | os.PathLike, *, audio: str | None = None,
          crf: int = DEFAULT_CRF, photo_quality: int = DEFAULT_PHOTO_QUALITY,
          progress: bool = False, backdrop: bool = True) -> dict:
    """Write the web bundle of the factored MPI sequence ``mpi_dir`` to the folder ``out``
    (an older bundle there is replaced; written to a temporary sibling and renamed when
    complete; any other existing folder is refused).

    audio: a sound file to mux into fields.mp4 (cut to the video's length). crf: x264 quality of
    the atlas (lower = better, larger). backdrop: pack the sequence's world backdrop, if it has
    one (False: the page draws each frame whole). Returns a summary: frames, seconds, byte
    sizes of the parts, ``fixed_bytes`` (page + photo + backdrop: what does not grow with the
    sequence),
    ``growth_bytes_per_s`` (video + scene.json per second of video), build seconds.
    """
    from PIL import Image
    from tqdm import tqdm

    from mpitalk import video

    t_start = time.perf_counter()
    mpi_dir, out = Path(mpi_dir), Path(out)
    seq = _open_factored(mpi_dir)
    if audio is not None and not Path(audio).is_file():
        raise UserError(f"{audio}: audio file not found; check the path")
    if not 0 <= crf <= 51:
        raise UserError(f"crf must be in 0..51, got {crf}")
    _check_out(out, mpi_dir)
    T, D, S = len(seq), int(seq.num_planes), int(seq.height)
    flow_range, footprints = _scan(seq)
    G = int(seq.num_groups) if flow_range > 0 else 0
    if S % 2:
        raise UserError(f"{mpi_dir}: fields of {S} px; H.264 4:2:0 needs an even size")
    atlas = Atlas.layout(S, D, G)
    if max(atlas.width, atlas.height) > MAX_ATLAS_SIDE:
        raise UserError(f"{mpi_dir}: {D} planes of {S} px make a {atlas.width}x{atlas.height} "
                        f"atlas, wider than {MAX_ATLAS_SIDE} px (the headset's H.264 limit); "
                        "use fewer planes")
    try:
        tmp = temp_dir_beside(out)
    except OSError as exc:
        raise UserError(f"{out}: cannot write here ({exc.strerror}); choose another --out") from exc
    with swap_in(tmp, out):
        page_bytes = _copy_page(tmp)
        photo = np.round(np.clip(np.asarray(seq.photo, np.float32), 0, 1) * 255).astype(np.uint8)
        # 4:4:4 (subsampling=0): the photo carries the full-resolution detail of the face
        Image.fromarray(photo).save(tmp / "photo.jpg", quality=photo_quality, subsampling=0)
        room = seq.backdrop_u8 if backdrop else None  # the world backdrop (mpitalk.backdrop)
        if room is not None:
            Image.fromarray(room).save(tmp / BACKDROP_FILE, quality=photo_quality,
                                       subsampling=0)
        cmd = [video.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{atlas.width}x{atlas.height}",
               "-r", f"{seq.fps}", "-i", "-"]
        if audio is not None:
            cmd += ["-i", str(audio), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "128k",
                    "-t", f"{T / seq.fps}"]
        # a key frame every second keeps seeking (frame step, ?frame=N) quick; sRGB tags (BT.709
        # primaries, sRGB transfer, limited range) so that a browser converts YUV -> RGB only
        cmd += ["-c:v", "libx264", "-preset", "medium", "-crf", str(crf),
                "-g", str(max(1, round(seq.fps))), "-pix_fmt", "yuv420p",
                "-color_range", "tv", "-colorspace", "bt709", "-color_primaries", "bt709",
                "-color_trc", "iec61966-2-1", "-movflags", "+faststart",
                str(tmp / "fields.mp4")]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        poses = []
        try:
            for t in tqdm(range(T), desc="web atlas", unit="frame", disable=not progress):
                fields, pose = seq.fields_and_pose(t)
                proc.stdin.write(_atlas_yuv(_tiles(fields, atlas, flow_range), atlas))
                # float32 poses: 7 significant digits hold them exactly enough and keep
                # scene.json small (it grows by one pose a frame)
                poses.append([[float(f"{x:.7g}") for x in row] for row in np.asarray(pose)])
            proc.stdin.close()
        except BrokenPipeError:
            pass
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            raise UserError(f"ffmpeg failed while encoding {out}/fields.mp4: "
                            f"{err.splitlines()[-1] if err else 'no message'}")
        groups = np.asarray(seq.plane_groups, np.int64).reshape(-1)
        scene = {
            "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION,
            "fps": float(seq.fps), "num_frames": T, "num_planes": D, "size": S,
            "K": np.asarray(seq.K, np.float64).tolist(),
            "depths": np.asarray(seq.depths, np.float64).tolist(),
            "plane_order": "back_to_front", "alpha": "straight", "color_space": "srgb",
            "plane_groups": groups.tolist(), "flow_range": flow_range,
            "plane_footprints": np.round(footprints, 6).tolist(),
            "photo": "photo.jpg", "photo_size": int(photo.shape[0]),
            "video": "fields.mp4", "audio": audio is not None, "atlas": atlas.to_json(),
            "frame_from_mpi": poses,
            "source": str(mpi_dir),
        }
        if room is not None:
            scene["backdrop"] = {"file": BACKDROP_FILE, "size": int(room.shape[0]),
                                 "back_planes": int(seq.back_planes)}
        (tmp / "scene.json").write_text(json.dumps(scene) + "\n")
        sizes = {"page_bytes": page_bytes, "photo_bytes": (tmp / "photo.jpg").stat().st_size,
                 "scene_bytes": (tmp / "scene.json").stat().st_size,
                 "video_bytes": (tmp / "fields.mp4").stat().st_size,
                 "backdrop_bytes": (tmp / BACKDROP_FILE).stat().st_size if room is not None
                 else 0}
    seconds = T / seq.fps
    # what a longer sequence adds (the video, and scene.json's pose a frame) vs what it does not
    return {"out": str(out), "frames": T, "fps": float(seq.fps), "seconds": seconds,
            "atlas": [atlas.width, atlas.height], "flow_range": flow_range, **sizes,
            "fixed_bytes": sizes["page_bytes"] + sizes["photo_bytes"] + sizes["backdrop_bytes"],
            "video_bytes_per_s": sizes["video_bytes"] / seconds,
            "growth_bytes_per_s": (sizes["video_bytes"] + sizes["scene_bytes"]) / seconds,
            "build_s": time.perf_counter() - t_start}


# ---- reading a bundle back (the reference for the page's tests) ------------------------------

class Bundle:
    """A built bundle read back as the page sees it: ``scene`` (scene.json), ``photo`` (P,P,3)
    float32 decoded from the JPEG, ``poses`` (T,4,4) frame_from_mpi, and :meth:`frames`, the
    fields decoded from fields.mp4 (PyAV), each a dict like ``mpi_io``'s ``seq.fields(t)``."""

    def __init__(self, site: str | os.PathLike):
        from PIL import Image

        self.site = Path(site)
        try:
            self.scene = json.loads((self.site / "scene.json").read_text())
            a = self.scene["atlas"]
            self.atlas = Atlas(int(a["tile"]), int(a["cols"]), int(a["rows"]),
                               int(self.scene["num_planes"]), int(a["flow_groups"]))
            self.photo = np.asarray(Image.open(self.site / self.scene["photo"]).convert("RGB"),
                                    np.float32) / 255.0
            room = self.scene.get("backdrop")
            self.backdrop = None if room is None else np.asarray(
                Image.open(self.site / room["file"]).convert("RGB"), np.float32) / 255.0
            self.back_planes = 0 if room is None else int(room["back_planes"])
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{self.site}: not a web bundle ({exc}); build it with "
                            "`python -m mpitalk.web MPI_DIR --out SITE`") from exc
        self.poses = np.asarray(self.scene["frame_from_mpi"], np.float32).reshape(-1, 4, 4)
        self.depths = np.asarray(self.scene["depths"], np.float32)
        self.K = np.asarray(self.scene["K"], np.float32)
        self.plane_groups = np.asarray(self.scene["plane_groups"], np.int32)

    def reference(self, fields: dict, view_from_frame, frame_from_mpi, K_view, hw,
                  twin: bool = True):
        """The JAX render (``mpi.RenderOut``) the page is held to for a frame's decoded
        ``fields`` seen at ``view_from_frame``: ``mpi.render_fields`` (the shader's exact twin)
        or, ``twin`` False, ``mpi.render(mpi.materialize(...))`` at the photo's size; with a
        world backdrop, its first ``back_planes`` planes left out and the rest drawn over the
        backdrop at ``view_from_frame`` alone (``mpi.over``), as the page does. jit-able with
        ``hw`` static."""
        import jax.numpy as jnp

        from mpitalk import backdrop, camera, mpi

        S, P = int(self.scene["size"]), self.photo.shape[0]
        pose = jnp.asarray(view_from_frame, jnp.float32) @ jnp.asarray(frame_from_mpi,
                                                                       jnp.float32)
        if self.backdrop is not None:  # the page leaves the back planes out
            fields = {**fields, "alpha": jnp.asarray(fields["alpha"]).at[:self.back_planes].set(0)}
        if twin:
            out = mpi.render_fields(fields, self.photo, P, self.depths, self.K, pose, K_view, hw,
                                    self.plane_groups)
        else:
            dense = mpi.materialize(fields, self.photo, P, self.plane_groups)
            out = mpi.render(dense, self.depths, camera.scale_intrinsics(self.K, P / S), pose,
                             K_view, hw)
        if self.backdrop is None:
            return out
        rgba, depth = backdrop.backdrop_mpi(self.backdrop, float(self.depths[0]))
        room = mpi.render(rgba, depth, camera.scale_intrinsics(self.K, rgba.shape[1] / S),
                          jnp.asarray(view_from_frame, jnp.float32), K_view, hw)
        return mpi.over(out, room)

    def frames(self) -> Iterator[dict]:
        """The decoded fields of every frame, in order."""
        import av

        with av.open(str(self.site / self.scene["video"])) as container:
            for frame in container.decode(video=0):
                luma = frame.to_ndarray(format="yuv420p")[:self.atlas.height]  # the Y plane
                yield _untile(luma, self.atlas, float(self.scene["flow_range"]))


def load_bundle(site: str | os.PathLike) -> Bundle:
    return Bundle(site)


def codec_loss(site: str | os.PathLike, mpi_dir: str | os.PathLike) -> dict:
    """PSNR (dB) of the bundle's decoded fields and photo against the sequence's own (8-bit
    quantisation + H.264 + JPEG), per field over all frames."""
    bundle = Bundle(site)
    seq = _open_factored(Path(mpi_dir))
    sq: dict[str, list[float]] = {"alpha": [], "blend": [], "color": [], "flow": []}
    for t, dec in enumerate(bundle.frames()):
        ref = seq.fields(t)
        for k in sq:
            r = np.asarray(ref[k], np.float32)
            d = dec[k] if dec[k].shape == r.shape else np.zeros_like(r)
            sq[k].append(float(np.mean((d - r) ** 2)))

    def psnr(mse: float, peak: float = 1.0) -> float:
        return float("inf") if mse == 0 else 10 * math.log10(peak ** 2 / mse)

    out = {k: psnr(float(np.mean(v))) for k, v in sq.items() if k != "flow"}
    # flow in photo pixels: PSNR over a 1-pixel peak would mislead; report the RMS error instead
    out["flow_rms_px"] = math.sqrt(float(np.mean(sq["flow"]))) * bundle.photo.shape[0]
    out["photo"] = psnr(float(np.mean((bundle.photo - np.asarray(seq.photo, np.float32)) ** 2)))
    return out


# ---- serving ---------------------------------------------------------------------------------

class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".json": "application/json",
                      ".vert": "text/plain", ".frag": "text/plain", ".mp4": "video/mp4",
                      ".jpg": "image/jpeg"}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")  # a rebuilt bundle shows on reload
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)


def make_server(site: str | os.PathLike, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                cert: str | None = None, key: str | None = None,
                verbose: bool = False) -> http.server.ThreadingHTTPServer:
    """An HTTP(S) server for the bundle folder ``site`` (not yet serving: call
    ``serve_forever``). Port 0 picks a free one (``server.server_address``)."""
    site = Path(site)
    if not (site / "index.html").is_file() or not (site / "scene.json").is_file():
        raise UserError(f"{site}: not a web bundle (no index.html / scene.json); build it with "
                        "`python -m mpitalk.web MPI_DIR --out SITE`")
    if (cert is None) != (key is None):
        raise UserError("--cert and --key go together (the certificate and its private key)")
    try:
        server = http.server.ThreadingHTTPServer((host, port),
                                                 partial(_Handler, directory=str(site)))
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another "
                        "--port") from exc
    server.verbose = verbose
    if cert is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            server.server_close()
            raise UserError(f"{cert} / {key}: cannot load the certificate and key ({exc}); "
                            "give a PEM certificate and its PEM private key") from exc
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    return server


def url_of(server: http.server.HTTPServer, path: str = "") -> str:
    host, port = server.server_address[:2]
    scheme = "https" if isinstance(server.socket, ssl.SSLSocket) else "http"
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"{scheme}://{shown}:{port}/{path}"


# ---- CLI ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mpitalk.web",
        description="Pack a factored MPI sequence into a static WebXR page (a folder for any web "
                    "server), or serve such a folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("mpi_dir", nargs="?", metavar="MPI_DIR",
                   help="factored MPI sequence (format 3) to pack")
    p.add_argument("--out", metavar="SITE", help="bundle folder to write (replaced)")
    p.add_argument("--audio", metavar="FILE", help="sound to play with the sequence")
    p.add_argument("--crf", type=int, default=DEFAULT_CRF,
                   help="H.264 quality of the field atlas (lower = better, larger)")
    p.add_argument("--backdrop", choices=("world", "head"), default="world",
                   help="world: the sequence's still backdrop, if it has one (the room stays put "
                        "as the head moves); head: each frame drawn whole")
    p.add_argument("--serve", metavar="SITE", help="serve this bundle folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 opens it to the network")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--cert", metavar="PEM", help="TLS certificate: serve HTTPS (for the LAN)")
    p.add_argument("--key", metavar="PEM", help="the certificate's private key")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        if args.mpi_dir is None and args.serve is None:
            raise UserError("give MPI_DIR --out SITE to build a bundle, or --serve SITE")
        if args.mpi_dir is not None:
            if args.out is None:
                raise UserError("--out SITE is required with MPI_DIR (the bundle folder)")
            s = build(args.mpi_dir, args.out, audio=args.audio, crf=args.crf,
                      progress=not args.quiet, backdrop=args.backdrop == "world")
            print(f"wrote {s['out']}/: {s['frames']} frames, {s['seconds']:.1f} s, "
                  f"{s['growth_bytes_per_s'] / 1e6:.2f} MB per second of video + page and "
                  f"photo {s['fixed_bytes'] / 1e6:.2f} MB, built in {s['build_s']:.1f} s")
        if args.serve is not None:
            server = make_server(args.serve, args.host, args.port, args.cert, args.key,
                                 args.verbose)
            if args.host not in ("127.0.0.1", "localhost", "::1"):
                print(f"warning: listening on {args.host}: anyone on your network can open "
                      "this page and its files", file=sys.stderr)
                if args.cert is None:
                    print("warning: over plain HTTP a headset treats a LAN address as insecure "
                          "and offers no WebXR; use --cert/--key, or adb reverse (README)",
                          file=sys.stderr)
            lan = " here; from the network use this machine's address" if args.host in (
                "0.0.0.0", "", "::") else ""
            print(f"serving {args.serve} at {url_of(server)}{lan} (Ctrl-C stops)", flush=True)
            try:
                server.serve_forever()
            finally:
                server.server_close()
        return 0

    return run_cli(run, interrupted="stopped")


if __name__ == "__main__":
    sys.exit(main())
