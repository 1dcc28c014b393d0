"""Synthetic multi-view talking-head dataset with ground truth (format: docs/dataset.md).

Each identity is the ARKit face rig (``rig.py``) with a random smooth head-shape deformation, a
procedural albedo baked into the rig's UV atlas (skin tone, lips, brows, stubble/makeup, eye
colour), a procedural hair shell (several styles and colours), a neck/shoulders proxy, random
lighting and a backdrop plane at head-frame z = +0.5 m textured with a crop of a real photograph
(``skimage.data``) or a procedural pattern. Motion mixes random windows of the rig's captured
performance (speed changes, mirroring) with random blendshape combinations, plus head pose.

Per frame five cameras are rendered with one GL context: the target view and the extra views
``yaw_plus10``, ``yaw_minus10`` (``camera.orbit_pose`` about the head centre), ``left_eye``,
``right_eye`` (``camera.stereo_eyes``), each with RGB, alpha and metric z-depth, 2x supersampled.
Shading is diffuse only, so every view of one instant agrees in colour (a test reprojects pixels
through the depth maps to check it). Every random choice derives from ``--seed``, identity and
clip numbers, and NPZs are written with fixed zip timestamps: same arguments, same bytes.

CLI: ``python -m mpitalk.synth --out DIR --identities N --clips-per-identity M --frames T
--size S --seed K [--preview]``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import moderngl
import numpy as np
from scipy import ndimage

from mpitalk import UserError, camera, gl, rig
from mpitalk.controls import ARKIT_NAMES

FORMAT_VERSION = 1
VIEWS = ("yaw_plus10", "yaw_minus10", "left_eye", "right_eye")
NEAR_M, FAR_M = 0.42, 1.2  # MPI range the model uses (docs/dataset.md)
FPS = 15.0  # dataset frame rate: every other frame of the 30 fps performance at speed 1
BACKDROP_Z_M = 0.5  # backdrop plane, head frame
SUPERSAMPLE = 2  # render at 2S x 2S, box-filter down to S x S
ATLAS_PX = 512  # albedo atlas resolution (the rig's UV layout)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_IDX = {n: i for i, n in enumerate(ARKIT_NAMES)}
_BACKDROP_PHOTOS = (
    "chelsea",
    "coffee",
    "rocket",
    "cat",
    "immunohistochemistry",
    "hubble_deep_field",
    "brick",
    "grass",
    "gravel",
    "retina",
    "colorwheel",
)
HAIR_STYLES = ("buzz", "short", "medium", "bob", "long", "volume", "bun")


def intrinsics(size: int) -> np.ndarray:
    """The one K of every camera in the dataset (docs/dataset.md): focal 1.5 * S."""
    return camera.intrinsics(1.5 * size, size, size)


# ------------------------------------------------------------------------------------------
# identity parameters


@dataclass(frozen=True)
class Identity:
    """Everything that makes one synthetic person, drawn from one random generator."""

    scale: np.ndarray  # (3,) head proportions
    bumps: tuple  # ((centre (3,), sigma m, offset (3,)), ...) smooth shape changes
    nose_scale: float
    albedo: np.ndarray  # (ATLAS_PX, ATLAS_PX, 3) uint8 skin/eyes/teeth atlas
    hair_albedo: np.ndarray  # (ATLAS_PX, ATLAS_PX, 3) uint8 (same UV layout)
    skin_rgb: np.ndarray  # (3,) float
    hair_style: str
    hair_rgb: np.ndarray
    hairline: float  # head-frame y of the front hairline (m, negative = up)
    hair_thick: float  # shell thickness (m)
    glasses: np.ndarray | None  # (3,) frame colour, or None
    cloth: np.ndarray  # (64, 64, 3) uint8
    backdrop: np.ndarray  # (256, 256, 3) uint8
    light_dir_cam: np.ndarray  # (3,) unit, target-camera frame, toward the light
    light_rgb: np.ndarray
    sky_rgb: np.ndarray
    ground_rgb: np.ndarray


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    """An sRGB skin colour across the human range (very light to very dark) with undertone."""
    t = rng.uniform(0.0, 1.0)
    light = np.array([0.96, 0.80, 0.70])
    mid = np.array([0.76, 0.55, 0.40])
    dark = np.array([0.30, 0.19, 0.13])
    c = (1 - 2 * t) * light + 2 * t * mid if t < 0.5 else (2 - 2 * t) * mid + (2 * t - 1) * dark
    under = rng.normal(0, 0.03, 3) + np.array([0.02, 0.0, -0.02]) * rng.uniform(-1, 1)
    return np.clip(c + under, 0.08, 1.0)


_HAIR_COLOURS = np.array(
    [
        [0.05, 0.04, 0.04],
        [0.12, 0.08, 0.05],
        [0.25, 0.15, 0.08],
        [0.45, 0.28, 0.14],
        [0.55, 0.22, 0.10],
        [0.80, 0.65, 0.40],
        [0.90, 0.82, 0.60],
        [0.62, 0.62, 0.62],
        [0.85, 0.85, 0.85],
        [0.35, 0.10, 0.40],
        [0.10, 0.25, 0.45],
        [0.70, 0.20, 0.30],
    ]
)
_HAIR_P = np.array([20, 18, 14, 10, 5, 6, 4, 5, 3, 2, 2, 2], float)
_EYE_COLOURS = np.array(
    [
        [0.25, 0.14, 0.07],
        [0.40, 0.25, 0.12],
        [0.30, 0.45, 0.65],
        [0.35, 0.50, 0.35],
        [0.45, 0.40, 0.25],
        [0.45, 0.50, 0.55],
    ]
)


def _noise3(rng: np.random.Generator, pts: np.ndarray, cell_m: float, n: int = 12) -> np.ndarray:
    """Smooth value noise in [-1,1] at head-frame points (...,3): a random grid, cubic spline."""
    grid = rng.uniform(-1, 1, (n, n, n))
    coords = (pts.reshape(-1, 3).T / cell_m) + n / 2
    out = ndimage.map_coordinates(grid, coords, order=3, mode="wrap")
    return out.reshape(pts.shape[:-1])


@functools.cache
def _atlas_maps() -> tuple[np.ndarray, np.ndarray]:
    """(ATLAS_PX,ATLAS_PX,3) neutral head-frame position baked into the UV atlas and
    (ATLAS_PX,ATLAS_PX) part id (0 none, 1 head, 2 eye (position relative to its centre), 3 teeth).
    Empty texels are filled from their nearest covered texel so filtering never reads holes."""
    r = rig.load()
    ctx = gl.context()
    prog = gl.program(ctx, "rig_uv.vert", "rig_uv.frag")
    fbo = ctx.framebuffer(color_attachments=[ctx.texture((ATLAS_PX, ATLAS_PX), 4, dtype="f4")])
    fbo.use()
    fbo.clear(0, 0, 0, 0)
    ctx.disable(moderngl.DEPTH_TEST)
    parts = [
        (r.neutral, r.triangles, r.uv, 1.0),
        (r.eye_left[0] - r.eye_centers[0], r.eye_left[1], r.eye_left[2], 2.0),
        (r.teeth[0], r.teeth[1], r.teeth[2], 3.0),
    ]
    for pos, tri, uv, pid in parts:
        data = np.concatenate([uv, pos, np.full((len(pos), 1), pid)], 1).astype(np.float32)
        vbo = ctx.buffer(data.tobytes())
        ibo = ctx.buffer(tri.astype(np.int32).tobytes())
        vao = ctx.vertex_array(prog, [(vbo, "2f 4f", "in_uv", "in_attr")], index_buffer=ibo)
        vao.render(moderngl.TRIANGLES)
        vao.release()
        vbo.release()
        ibo.release()
    m = np.frombuffer(fbo.read(components=4, dtype="f4"), np.float32).reshape(ATLAS_PX, ATLAS_PX, 4)
    fbo.color_attachments[0].release()
    fbo.release()
    pid = np.rint(m[..., 3]).astype(np.int32)
    _, (ii, jj) = ndimage.distance_transform_edt(pid == 0, return_indices=True)
    return m[ii, jj, :3].copy(), pid[ii, jj].copy()


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _make_albedo(
    rng: np.random.Generator, skin: np.ndarray, hair_rgb: np.ndarray, male: bool
) -> np.ndarray:
    """Skin, lips, brows, stubble/makeup, eyes and teeth in the rig's UV atlas (uint8 sRGB)."""
    pos, pid = _atlas_maps()
    x, y, z = pos[..., 0], pos[..., 1], pos[..., 2]
    ax = np.abs(x)
    col = np.broadcast_to(skin, pos.shape).copy()
    # blotchy low-frequency variation and redder cheeks, nose, ears
    col *= 1 + 0.06 * _noise3(rng, pos, 0.02)[..., None]
    col *= 1 + 0.03 * _noise3(rng, pos, 0.004)[..., None]
    red = np.exp(-((ax - 0.045) ** 2 + (y - 0.01) ** 2) / (2 * 0.018**2)) * (z < -0.05)
    red += 0.6 * np.exp(-(x**2 + (y - 0.01) ** 2 + (z + 0.115) ** 2) / (2 * 0.012**2))
    col *= 1 + (rng.uniform(0.1, 0.4) * red)[..., None] * np.array([0.25, -0.1, -0.1])
    front = z < -0.06
    # stubble / beard (mostly "male" identities): lower face, not lips
    lips_d = (x / rng.uniform(0.022, 0.029)) ** 2 + ((y - 0.049) / rng.uniform(0.011, 0.016)) ** 2
    lips = _smoothstep(1.15, 0.85, lips_d) * (z < -0.088)
    mouth_in = (lips_d < 1.3) & (z > -0.092) & (ax < 0.03) & (y > 0.035) & (y < 0.07)
    if male and rng.uniform() < 0.6:
        beard = _smoothstep(0.02, 0.035, y) * front
        beard *= _smoothstep(0.085, 0.06, ax + 0.3 * np.maximum(-0.02 - y, 0))
        amount = rng.uniform(0.25, 0.9)
        dots = 0.5 + 0.5 * _noise3(rng, pos, 0.0015)
        col = (
            col * (1 - (amount * beard * dots)[..., None])
            + (amount * beard * dots)[..., None] * hair_rgb * 0.8
        )
    lip_rgb = skin * np.array([0.85, 0.55, 0.55]) + np.array([0.08, 0.0, 0.02])
    if not male and rng.uniform() < 0.5:
        lip_rgb = [
            np.array([0.65, 0.08, 0.12]),
            np.array([0.80, 0.35, 0.45]),
            np.array([0.45, 0.12, 0.22]),
            np.array([0.75, 0.45, 0.40]),
        ][rng.integers(4)]
        # eye shadow above the eyes
        shadow = np.exp(-((ax - 0.033) ** 2 / 0.016**2 + (y + 0.03) ** 2 / 0.006**2)) * front
        sh = rng.uniform(0.1, 0.5) * shadow
        col = col * (1 - sh[..., None]) + sh[..., None] * rng.uniform(0.1, 0.6, 3)
    col = col * (1 - lips[..., None]) + lips[..., None] * lip_rgb
    col[mouth_in] = np.array([0.35, 0.10, 0.10]) * skin.mean() * 1.5
    # brows: arcs above the eyes
    bx = (ax - 0.012) / 0.046
    arch = rng.uniform(0.003, 0.009)
    by = -0.041 - arch * np.sin(np.pi * np.clip(bx, 0, 1)) + rng.uniform(-0.004, 0.003)
    bw = rng.uniform(0.0025, 0.0055) * (1.2 - 0.6 * np.clip(bx, 0, 1))
    brow = _smoothstep(1.0, 0.5, np.abs(y - by) / bw) * (bx > -0.05) * (bx < 1.05) * (z < -0.07)
    brow *= 0.6 + 0.4 * (0.5 + 0.5 * _noise3(rng, pos, 0.0012))
    brow_rgb = hair_rgb * 0.7 if hair_rgb.mean() < 0.6 else np.array([0.35, 0.3, 0.25])
    col = col * (1 - brow[..., None]) + brow[..., None] * brow_rgb
    col = np.where((pid == 1)[..., None], col, 0)
    # eyes: sclera, iris, pupil by angle from the eye's forward axis (-z)
    d = pos / np.maximum(np.linalg.norm(pos, axis=-1, keepdims=True), 1e-9)
    ang = np.degrees(np.arccos(np.clip(-d[..., 2], -1, 1)))
    iris_rgb = _EYE_COLOURS[rng.integers(len(_EYE_COLOURS))] * rng.uniform(0.8, 1.2)
    iris_r = rng.uniform(24, 30)
    eye = np.broadcast_to(np.array([0.85, 0.82, 0.78]), pos.shape).copy()
    ring = (0.8 + 0.4 * _smoothstep(iris_r, 0.0, ang))[..., None]
    eye = np.where((ang < iris_r)[..., None], iris_rgb * ring, eye)
    eye = np.where((ang < iris_r * 0.4)[..., None], np.array([0.03, 0.03, 0.03]), eye)
    col = np.where((pid == 2)[..., None], eye, col)
    teeth = np.array([0.85, 0.80, 0.70]) * rng.uniform(0.85, 1.0)
    col = np.where((pid == 3)[..., None], teeth, col)
    return (np.clip(col, 0, 1) * 255 + 0.5).astype(np.uint8)


def _make_hair_albedo(rng: np.random.Generator, hair_rgb: np.ndarray) -> np.ndarray:
    """Strand-like streaks flowing from the crown, in the head atlas layout."""
    pos, _ = _atlas_maps()
    az = np.arctan2(pos[..., 0], pos[..., 2] + 0.01)
    strands = _noise3(
        rng, np.stack([np.cos(az) * 0.2, np.sin(az) * 0.2, pos[..., 1] * 0.04], -1), 0.0025
    )
    lum = 0.75 + 0.25 * strands + 0.15 * _noise3(rng, pos, 0.02)
    col = hair_rgb * lum[..., None] + 0.04 * (hair_rgb.mean() < 0.2)
    return (np.clip(col, 0, 1) * 255 + 0.5).astype(np.uint8)


def _photo(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    return img[..., :3]


def _make_backdrop(rng: np.random.Generator) -> np.ndarray:
    """(256,256,3) uint8: a random crop of a real photo (tinted, softened) or a procedural one."""
    k = rng.integers(len(_BACKDROP_PHOTOS) + 3)
    if k < len(_BACKDROP_PHOTOS):
        img = _photo(_BACKDROP_PHOTOS[k]).astype(np.float32) / 255
        h, w = img.shape[:2]
        c = int(rng.uniform(0.35, 0.9) * min(h, w))
        i0, j0 = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
        crop = img[i0 : i0 + c, j0 : j0 + c]
        if rng.uniform() < 0.5:
            crop = crop[:, ::-1]
        zoom = 256 / c
        crop = ndimage.zoom(crop, (zoom, zoom, 1), order=1)[:256, :256]
        crop = ndimage.gaussian_filter(crop, (rng.uniform(0, 2.5),) * 2 + (0,))
        if img.std(axis=-1).mean() < 1e-3:  # greyscale photo: tint it
            crop = crop * rng.uniform(0.5, 1.0, 3)
        crop = crop * rng.uniform(0.6, 1.1) + rng.uniform(-0.05, 0.05, 3)
    else:
        yy, xx = np.mgrid[0:256, 0:256] / 256.0
        a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        g = np.clip(xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1) + 0.5, 0, 1)[..., None]
        crop = a * (1 - g) + b * g
        if k == len(_BACKDROP_PHOTOS) + 1:  # soft blobs ("bokeh")
            blobs = ndimage.gaussian_filter(rng.uniform(0, 1, (256, 256)) ** 40, 6) * 60
            crop = crop + blobs[..., None] * rng.uniform(0.3, 1.0, 3)
    return (np.clip(crop, 0, 1) * 255 + 0.5).astype(np.uint8)


def _make_cloth(rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0.05, 0.9, 3)
    b = rng.uniform(0.05, 0.9, 3)
    yy, xx = np.mgrid[0:64, 0:64]
    kind = rng.integers(3)
    if kind == 0:
        m = np.zeros((64, 64))
    elif kind == 1:
        m = ((yy // rng.integers(3, 9)) % 2).astype(float)
    else:
        m = (((yy // 6) + (xx // 6)) % 2).astype(float) * 0.5
    col = a * (1 - m[..., None]) + b * m[..., None]
    return (col * 255 + 0.5).astype(np.uint8)


def make_identity(seed: int, identity: int) -> Identity:
    """All of one identity's random parameters from (seed, identity)."""
    rng = np.random.default_rng([seed, identity, 1])
    male = rng.uniform() < 0.5
    skin = _skin_tone(rng)
    hair_rgb = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_P / _HAIR_P.sum())]
    hair_rgb = np.clip(hair_rgb * rng.uniform(0.85, 1.15, 3), 0, 1)
    styles = ("buzz", "short", "medium", "volume") if male else HAIR_STYLES
    style = styles[rng.integers(len(styles))]
    if not male and rng.uniform() < 0.3:
        style = "long"
    thick = {
        "buzz": 0.002,
        "short": 0.008,
        "medium": 0.014,
        "bob": 0.016,
        "long": 0.014,
        "volume": 0.03,
        "bun": 0.01,
    }[style] * rng.uniform(0.8, 1.3)
    bumps = []
    for c, sigma, direction in (
        ((0.06, 0.07, -0.03), 0.03, (1, 0, 0)),
        ((-0.06, 0.07, -0.03), 0.03, (-1, 0, 0)),  # jaw
        ((0.0, 0.095, -0.08), 0.025, (0, 1, -0.5)),  # chin
        ((0.05, 0.015, -0.075), 0.025, (1, 0, -0.5)),
        ((-0.05, 0.015, -0.075), 0.025, (-1, 0, -0.5)),
        ((0.0, -0.07, -0.09), 0.04, (0, 0, -1)),  # forehead
        ((0.0, 0.045, -0.1), 0.02, (0, 0, -1)),  # mouth protrusion
    ):
        a = rng.normal(0, 0.006)
        if direction[0] != 0 and bumps and bumps[-1][0][0] == -c[0]:
            a = bumps[-1][3] + rng.normal(0, 0.001)  # near-symmetric pairs
        bumps.append(
            (np.array(c), sigma, np.array(direction, float) / np.linalg.norm(direction), a)
        )
    bumps = tuple((c, s, d * a, a) for c, s, d, a in bumps)
    key = rng.normal(size=3) * np.array([1.0, 0.6, 0.5]) + np.array([0, -0.6, -1.0])
    key /= np.linalg.norm(key)
    warm = rng.uniform(-1, 1)
    light_rgb = rng.uniform(0.6, 1.0) * (
        np.array([1.0, 0.95, 0.9]) + warm * np.array([0.05, 0, -0.1])
    )
    amb = rng.uniform(0.45, 0.7)
    sky = amb * rng.uniform(0.92, 1.08, 3)
    ground = amb * rng.uniform(0.4, 0.8) * rng.uniform(0.92, 1.08, 3)
    return Identity(
        scale=np.array([rng.uniform(0.9, 1.1), rng.uniform(0.93, 1.08), rng.uniform(0.94, 1.06)]),
        bumps=bumps,
        nose_scale=float(rng.uniform(-0.2, 0.3)),
        albedo=_make_albedo(rng, skin, hair_rgb, male),
        hair_albedo=_make_hair_albedo(rng, hair_rgb),
        skin_rgb=skin,
        hair_style=style,
        hair_rgb=hair_rgb,
        hairline=float(rng.uniform(-0.085, -0.06) - (0.012 if male and rng.uniform() < 0.3 else 0)),
        hair_thick=float(thick),
        cloth=_make_cloth(rng),
        backdrop=_make_backdrop(rng),
        glasses=rng.uniform(0.02, 0.6, 3) * rng.uniform(0.2, 1.0) if rng.uniform() < 0.2 else None,
        light_dir_cam=key,
        light_rgb=light_rgb,
        sky_rgb=sky,
        ground_rgb=ground,
    )


def deform(ident: Identity, pts: np.ndarray) -> np.ndarray:
    """The identity's smooth head-shape change applied to head-frame points (...,3)."""
    out = pts * ident.scale
    for c, sigma, offset, _ in ident.bumps:
        g = np.exp(-np.sum((pts - c) ** 2, -1) / (2 * sigma**2))
        out = out + g[..., None] * offset
    nose = np.array([0.0, 0.005, -0.11])
    g = np.exp(-np.sum((pts - nose) ** 2, -1) / (2 * 0.018**2))
    out = out + (ident.nose_scale * g)[..., None] * (pts - nose) * np.array([1.0, 0.6, 1.0])
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------
# static geometry per identity: hair shell, neck/shoulders, backdrop


@functools.cache
def _weld_map() -> tuple[np.ndarray, int]:
    """(V,) index of each head vertex's position class: the mesh splits vertices along UV
    seams, and normals must agree across a seam or the offset hair shell cracks open there."""
    key = np.round(rig.load().neutral * 1e5).astype(np.int64)
    _, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    return inverse, int(inverse.max()) + 1


def welded_normals(head_v: np.ndarray) -> np.ndarray:
    """(V,3) vertex normals of the head mesh, averaged over vertices split at UV seams."""
    n = rig.vertex_normals(head_v, rig.load().triangles)
    inverse, count = _weld_map()
    acc = np.stack([np.bincount(inverse, weights=n[:, d], minlength=count) for d in range(3)], 1)
    acc /= np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-12)
    return acc[inverse].astype(np.float32)


def _hair_weight(ident: Identity, v: np.ndarray) -> np.ndarray:
    """(V,) in [0,1]: how much hair covers each neutral head vertex (1 = full thickness)."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    az = np.arctan2(np.abs(x), -z)  # 0 at the face, pi at the back
    # hairline height by azimuth: forehead -> temples -> over the ears -> nape
    line = np.interp(
        az,
        [0, 0.7, 1.2, 1.6, 2.2, np.pi],
        [ident.hairline, ident.hairline + 0.01, -0.01, 0.0, 0.06, 0.075],
    )
    if ident.hair_style in ("bob", "long"):
        line = np.interp(
            az, [0, 0.6, 0.9, 1.3, np.pi], [ident.hairline, ident.hairline + 0.01, 0.02, 0.07, 0.09]
        )
    return _smoothstep(0.0, 0.012, line - y)


def _hair_mesh(
    ident: Identity, head_v: np.ndarray, head_n: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r = rig.load()
    w = _hair_weight(ident, r.neutral)
    keep = (w[r.triangles] > 0.02).all(1)
    y = head_v[:, 1]
    top = np.clip((-0.03 - y) / 0.09, 0, 1)
    thick = ident.hair_thick * (0.4 + 0.6 * top)
    if ident.hair_style == "volume":
        thick = ident.hair_thick * (0.3 + 1.0 * top)
    if ident.hair_style in ("bob", "long", "medium"):
        thick = np.maximum(thick, ident.hair_thick * 0.8)
    v = head_v + head_n * (0.0015 + w * thick)[:, None]
    verts, tris, uvs, norms = [v], [r.triangles[keep]], [r.uv], [head_n]
    if ident.hair_style in ("long", "bob", "bun"):
        extra = _hair_extra(ident, head_v)
        base = len(v)
        verts.append(extra[0])
        tris.append(extra[1] + base)
        uvs.append(extra[2])
        norms.append(extra[3])
    return (
        np.concatenate(verts).astype(np.float32),
        np.concatenate(tris).astype(np.int32),
        np.concatenate(uvs).astype(np.float32),
        np.concatenate(norms).astype(np.float32),
    )


def _hair_extra(ident: Identity, head_v: np.ndarray):
    """A curtain of hair behind and beside the head (long, bob) or a bun at the back."""
    if ident.hair_style == "bun":
        n = 12
        th, ph = np.meshgrid(np.linspace(0, np.pi, n), np.linspace(0, 2 * np.pi, 2 * n))
        d = np.stack([np.sin(th) * np.cos(ph), np.cos(th), np.sin(th) * np.sin(ph)], -1).reshape(
            -1, 3
        )
        c = np.array([0.0, -0.07, head_v[:, 2].max() + 0.005])
        v = c + d * 0.035
        tri = _grid_tris(2 * n, n)
        uv = np.full((len(v), 2), 0.45)
        return v, tri, uv, d
    x_half = 0.85 * np.abs(head_v[:, 0]).max() + ident.hair_thick  # over the ears, not outside
    z_back = head_v[:, 2].max() + ident.hair_thick
    length = 0.22 if ident.hair_style == "long" else 0.09
    na, ny = 26, 8
    a = np.linspace(-0.3 * np.pi, 1.3 * np.pi, na)  # from the right cheek round the back
    ys = np.linspace(-0.06, length, ny)
    A, Y = np.meshgrid(a, ys, indexing="ij")
    flare = 1 + 0.12 * np.clip(Y / 0.2, 0, 1)
    X = np.cos(A) * x_half * flare
    Z = 0.005 + np.sin(A) * (z_back - 0.005) * flare
    # in front of the ears the curtain becomes two flat side panels (never across the face)
    front = np.sin(A) < 0
    X = np.where(front, np.sign(np.cos(A)) * x_half * flare, X)
    Z = np.where(front, 0.005 + np.sin(A) * 0.07, Z)
    v = np.stack([X, Y, Z], -1).reshape(-1, 3)
    n = np.stack(
        [
            np.where(front, np.sign(np.cos(A)), np.cos(A)),
            np.zeros_like(A),
            np.where(front, 0.0, np.sin(A)),
        ],
        -1,
    ).reshape(-1, 3)
    uv = np.stack([0.2 + 0.4 * A / (2 * np.pi), 0.1 + 0.5 * Y / 0.25], -1).reshape(-1, 2)
    return v, _grid_tris(na, ny), np.clip(uv, 0.01, 0.8), n


def _glasses_mesh(ident: Identity) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin frames: two flat rims in front of the eyes, a bridge and two temples (head frame)."""
    r = rig.load()
    eyes = deform(ident, r.eye_centers)
    z = float(eyes[:, 2].mean()) - 0.033
    n_seg, w = 24, 0.0025
    verts, norms, tris = [], [], []

    def strip(inner: np.ndarray, outer: np.ndarray, normal: np.ndarray) -> None:
        base = sum(len(v) for v in verts)
        verts.append(np.concatenate([inner, outer]))
        norms.append(np.broadcast_to(normal, (2 * len(inner), 3)))
        k = np.arange(len(inner) - 1)
        m = len(inner)
        tris.append(
            np.concatenate([np.stack([k, k + m, k + 1], 1), np.stack([k + 1, k + m, k + m + 1], 1)])
            + base
        )

    a = np.linspace(0, 2 * np.pi, n_seg + 1)
    rx, ry = 0.024 * ident.scale[0], 0.017
    for c in eyes:
        ring = np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], 1)
        centre = np.array([c[0], c[1] + 0.002, z])
        strip(
            centre + ring * [rx - w, ry - w, 0], centre + ring * [rx, ry, 0], np.array([0, 0, -1.0])
        )
    xi = eyes[:, 0].min() + rx
    strip(
        np.array([[-xi, eyes[0, 1] - 0.004, z], [xi, eyes[0, 1] - 0.004, z]]),
        np.array([[-xi, eyes[0, 1] - 0.004 - w, z], [xi, eyes[0, 1] - 0.004 - w, z]]),
        np.array([0, 0, -1.0]),
    )
    for sgn in (-1, 1):
        x = sgn * (np.abs(eyes[:, 0]).max() + rx)
        y0 = eyes[0, 1] - 0.004
        zz = np.array([z, 0.0])
        strip(
            np.stack([np.full(2, x), np.full(2, y0), zz], 1),
            np.stack([np.full(2, x), np.full(2, y0 - w), zz], 1),
            np.array([sgn, 0, 0.0]),
        )
    return (
        np.concatenate(verts).astype(np.float32),
        np.concatenate(norms).astype(np.float32),
        np.concatenate(tris).astype(np.int32),
    )


def _grid_tris(nu: int, nv: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(nu - 1), np.arange(nv - 1), indexing="ij")
    a = (i * nv + j).ravel()
    b, c, d = a + nv, a + 1, a + nv + 1
    return np.concatenate([np.stack([a, b, c], 1), np.stack([c, b, d], 1)]).astype(np.int32)


def _body_mesh(ident: Identity, rng_scale: float) -> tuple[np.ndarray, ...]:
    """Neck (a tapered cylinder) and shoulders (a flattened half-ellipsoid), head frame."""
    na, ny = 20, 6
    a = np.linspace(0, 2 * np.pi, na)
    y = np.linspace(0.0, 0.17, ny)
    A, Y = np.meshgrid(a, y, indexing="ij")
    r = 0.052 * rng_scale * (1 + 0.15 * np.clip((Y - 0.12) / 0.08, 0, 1))
    neck = np.stack([np.cos(A) * r, Y, 0.025 + np.sin(A) * r * 0.95 + 0.12 * Y], -1).reshape(-1, 3)
    neck_n = np.stack([np.cos(A), np.zeros_like(A), np.sin(A)], -1).reshape(-1, 3)
    neck_t = _grid_tris(na, ny)
    # shoulders: the upper half of an ellipsoid, centred below the neck
    nu, nv = 28, 10
    th, ph = np.meshgrid(
        np.linspace(0, 0.55 * np.pi, nv), np.linspace(0, 2 * np.pi, nu), indexing="ij"
    )
    d = np.stack([np.sin(th) * np.cos(ph), -np.cos(th), np.sin(th) * np.sin(ph)], -1)
    radii = np.array([0.21 * rng_scale, 0.12, 0.11])
    sh = (d * radii + np.array([0.0, 0.27, 0.05])).reshape(-1, 3)
    sh_n = (d / radii).reshape(-1, 3)
    sh_n /= np.linalg.norm(sh_n, axis=1, keepdims=True)
    sh_t = _grid_tris(nv, nu)
    return (
        neck.astype(np.float32),
        neck_n.astype(np.float32),
        neck_t,
        sh.astype(np.float32),
        sh_n.astype(np.float32),
        sh_t,
    )


# ------------------------------------------------------------------------------------------
# the renderer


class _Object:
    """One mesh on the GPU: a vertex buffer (pos, normal, uv), index buffer, texture."""

    def __init__(
        self,
        r: SceneRenderer,
        n_vertices: int,
        triangles: np.ndarray,
        texture: np.ndarray | None,
        foreground: float,
        lit: float,
    ):
        ctx = r.ctx
        self.vbo = ctx.buffer(reserve=max(n_vertices, 1) * 32)
        self.ibo = ctx.buffer(np.ascontiguousarray(triangles, np.int32).tobytes())
        self.vao = ctx.vertex_array(
            r.prog, [(self.vbo, "3f 3f 2f", "in_pos", "in_normal", "in_uv")], index_buffer=self.ibo
        )
        self.tex = None
        if texture is not None:
            self.tex = ctx.texture(texture.shape[1::-1], 3, np.ascontiguousarray(texture).tobytes())
            self.tex.build_mipmaps()
            self.tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
            self.tex.repeat_x = self.tex.repeat_y = False
        self.foreground, self.lit = foreground, lit

    def write(self, v: np.ndarray, n: np.ndarray, uv: np.ndarray) -> None:
        self.vbo.write(np.concatenate([v, n, uv], 1).astype(np.float32).tobytes())

    def release(self) -> None:
        for o in (self.vao, self.vbo, self.ibo, self.tex):
            if o is not None:
                o.release()


class SceneRenderer:
    """Renders one identity's scene from several cameras; GL objects reused across frames."""

    def __init__(self, size: int, supersample: int = SUPERSAMPLE):
        self.ctx = gl.context()
        self.size, self.ss = size, supersample
        px = size * supersample
        self.prog = gl.program(self.ctx, "rig_scene.vert", "rig_scene.frag")
        self.prog["albedo"].value = 0
        self.fbo = self.ctx.framebuffer(
            color_attachments=[
                self.ctx.texture((px, px), 4),
                self.ctx.texture((px, px), 1, dtype="f4"),
            ],
            depth_attachment=self.ctx.depth_renderbuffer((px, px)),
        )
        K = intrinsics(size)
        self.K = K
        self.clip_from_cam = rig.gl_from_K(
            camera.scale_intrinsics(K, supersample), px, px, 0.05, 5.0
        )
        r = rig.load()
        self.parts = ("head", "eye_left", "eye_right", "teeth")
        tris, base, self.offsets = [], 0, []
        for name in self.parts:
            v, t = (r.neutral, r.triangles) if name == "head" else getattr(r, name)[:2]
            tris.append(t + base)
            self.offsets.append(base)
            base += len(v)
        self.face_tris = np.concatenate(tris).astype(np.int32)
        # The file maps the two eyes to two atlas islands, the right one overlapping skin; both
        # eyes have the same vertex order, so both use the left eye's island (baked as "eye").
        self.face_uv = np.concatenate([r.uv, r.eye_left[2], r.eye_left[2], r.teeth[2]])
        self.n_face = base
        self.objects: dict[str, _Object] = {}
        self.ident: Identity | None = None

    def set_identity(self, ident: Identity) -> None:
        """Upload the identity's textures and static meshes (hair, body, backdrop)."""
        for o in self.objects.values():
            o.release()
        self.objects = {}
        self.ident = ident
        r = rig.load()
        head_v = deform(ident, r.neutral)
        head_n = welded_normals(head_v)
        self.objects["face"] = _Object(self, self.n_face, self.face_tris, ident.albedo, 1.0, 1.0)
        hv, ht, huv, hn = _hair_mesh(ident, head_v, head_n)
        o = _Object(self, len(hv), ht, ident.hair_albedo, 1.0, 1.0)
        o.write(hv, hn, huv)
        self.objects["hair"] = o
        width = float(ident.scale[0])
        nv, nn, nt, sv, sn, st = _body_mesh(ident, width)
        skin_tex = np.broadcast_to((ident.skin_rgb * 0.92 * 255).astype(np.uint8), (4, 4, 3))
        o = _Object(self, len(nv), nt, skin_tex, 1.0, 1.0)
        o.write(nv, nn, np.full((len(nv), 2), 0.5, np.float32))
        self.objects["neck"] = o
        o = _Object(self, len(sv), st, ident.cloth, 1.0, 1.0)
        suv = np.stack([sv[:, 0] * 2 + 0.5, sv[:, 1] * 3], 1) % 1.0
        o.write(sv, sn, suv)
        self.objects["body"] = o
        if ident.glasses is not None:
            gv, gn, gt = _glasses_mesh(ident)
            tex = np.broadcast_to((ident.glasses * 255).astype(np.uint8), (4, 4, 3))
            o = _Object(self, len(gv), gt, tex, 1.0, 1.0)
            o.write(gv, gn, np.full((len(gv), 2), 0.5, np.float32))
            self.objects["glasses"] = o
        # backdrop: a 3 m square at head-frame z = +0.5, facing the camera
        h = 1.5
        bv = np.array(
            [
                [-h, -h, BACKDROP_Z_M],
                [h, -h, BACKDROP_Z_M],
                [-h, h, BACKDROP_Z_M],
                [h, h, BACKDROP_Z_M],
            ],
            np.float32,
        )
        buv = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float32)
        o = _Object(self, 4, np.array([[0, 1, 2], [2, 1, 3]]), ident.backdrop, 0.0, 0.0)
        o.write(bv, np.tile([[0, 0, -1.0]], (4, 1)).astype(np.float32), buv)
        self.objects["backdrop"] = o

    def set_expression(self, weights: np.ndarray) -> None:
        """Pose and deform the face for one instant and upload it (once for all views)."""
        ident = self.ident
        meshes = rig.posed_meshes(weights)
        r = rig.load()
        vs = []
        for k, name in enumerate(self.parts):
            v = meshes[name][0]
            if name.startswith("eye"):
                # eyes move rigidly with the deformed socket: translate and scale about the centre
                c = r.eye_centers[k - 1]
                v = (v - c) * ident.scale.mean() + deform(ident, c[None])[0]
            else:
                v = deform(ident, v)
            vs.append(v)
        v = np.concatenate(vs)
        n = rig.vertex_normals(v, self.face_tris)
        n[: len(r.neutral)] = welded_normals(v[: len(r.neutral)])
        self.objects["face"].write(v, n, self.face_uv)

    def render(
        self, cam_from_head: np.ndarray, light_cam_from_head: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB (S,S,3) uint8, alpha (S,S) uint8, z-depth (S,S) float32 from one camera.
        ``light_cam_from_head``: the world (target camera) pose that fixes the lighting."""
        ident = self.ident
        ctx = self.ctx
        self.fbo.use()
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE)
        p = self.prog
        p["cam_from_head"].write(np.ascontiguousarray(cam_from_head.T, np.float32).tobytes())
        p["clip_from_cam"].write(np.ascontiguousarray(self.clip_from_cam.T).tobytes())
        R = light_cam_from_head[:3, :3]
        p["light_dir"].value = tuple(float(c) for c in R.T @ ident.light_dir_cam)
        p["up_dir"].value = tuple(float(c) for c in R.T @ np.array([0.0, -1.0, 0.0]))
        p["light_rgb"].value = tuple(float(c) for c in ident.light_rgb)
        p["sky_rgb"].value = tuple(float(c) for c in ident.sky_rgb)
        p["ground_rgb"].value = tuple(float(c) for c in ident.ground_rgb)
        for o in self.objects.values():
            o.tex.use(0)
            p["foreground"].value = o.foreground
            p["lit"].value = o.lit
            o.vao.render(moderngl.TRIANGLES)
        px, s = self.size * self.ss, self.ss
        rgba = np.frombuffer(self.fbo.read(components=4, attachment=0), np.uint8).reshape(px, px, 4)
        z = np.frombuffer(
            self.fbo.read(components=1, attachment=1, dtype="f4"), np.float32
        ).reshape(px, px)
        acc = np.zeros((self.size, self.size, 4), np.uint16)
        zmin = z[::s, ::s].copy()
        for di in range(s):
            for dj in range(s):
                acc += rgba[di::s, dj::s]
                np.minimum(zmin, z[di::s, dj::s], out=zmin)  # nearest surface under the pixel
        out = ((acc + (s * s) // 2) // (s * s)).astype(np.uint8)
        return out[..., :3].copy(), out[..., 3].copy(), zmin


# ------------------------------------------------------------------------------------------
# motion


def _mirror_weights(w: np.ndarray) -> np.ndarray:
    """Swap Left/Right blendshapes (and jawLeft/jawRight, mouthLeft/mouthRight) of (...,52)."""
    out = w.copy()
    for i, n in enumerate(ARKIT_NAMES):
        for a, b in (("Left", "Right"), ("Right", "Left")):
            if n.endswith(a) or n in ("jaw" + a, "mouth" + a):
                m = n[: -len(a)] + b if n.endswith(a) else n.replace(a, b)
                out[..., i] = w[..., _IDX[m]]
    return out


_COMBOS = (  # random blendshape combinations: (name, max weight)
    (
        ("mouthSmileLeft", 1.0),
        ("mouthSmileRight", 1.0),
        ("cheekSquintLeft", 0.6),
        ("cheekSquintRight", 0.6),
        ("eyeSquintLeft", 0.4),
        ("eyeSquintRight", 0.4),
    ),
    (
        ("jawOpen", 0.9),
        ("browInnerUp", 1.0),
        ("browOuterUpLeft", 1.0),
        ("browOuterUpRight", 1.0),
        ("eyeWideLeft", 0.8),
        ("eyeWideRight", 0.8),
    ),
    (
        ("mouthFrownLeft", 1.0),
        ("mouthFrownRight", 1.0),
        ("browDownLeft", 0.8),
        ("browDownRight", 0.8),
        ("mouthPressLeft", 0.5),
        ("mouthPressRight", 0.5),
    ),
    (("mouthPucker", 1.0), ("mouthFunnel", 0.6)),
    (("jawOpen", 0.6), ("mouthStretchLeft", 0.6), ("mouthStretchRight", 0.6)),
    (("eyeBlinkLeft", 1.0), ("eyeBlinkRight", 1.0)),
    (("mouthSmileLeft", 0.9), ("eyeBlinkLeft", 0.9), ("cheekSquintLeft", 0.5)),
    (
        ("noseSneerLeft", 0.8),
        ("noseSneerRight", 0.8),
        ("mouthUpperUpLeft", 0.7),
        ("mouthUpperUpRight", 0.7),
        ("browDownLeft", 0.6),
        ("browDownRight", 0.6),
    ),
    (("cheekPuff", 1.0), ("mouthClose", 0.4)),
    (("jawOpen", 0.5), ("tongueOut", 0.8)),
    (("mouthLeft", 0.8), ("jawLeft", 0.5)),
    (("mouthRollLower", 0.8), ("mouthRollUpper", 0.8), ("mouthShrugLower", 0.6)),
)


def _combo(rng: np.random.Generator) -> np.ndarray:
    w = np.zeros(52, np.float32)
    for _ in range(rng.integers(1, 3)):
        for name, mx in _COMBOS[rng.integers(len(_COMBOS))]:
            w[_IDX[name]] = max(w[_IDX[name]], mx * rng.uniform(0.4, 1.0))
    if rng.uniform() < 0.5:
        w = _mirror_weights(w) if rng.uniform() < 0.5 else w
    return w


def make_motion(
    seed: int, identity: int, clip: int, frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(controls (T,52), pose (T,6), identity controls (52,), identity pose (6,)) for one clip."""
    rng = np.random.default_rng([seed, identity, clip + 100])
    perf = rig.load().performance
    n = len(perf)
    speed = rng.uniform(0.6, 1.6)
    step = perf.fps / FPS * speed
    span = step * (frames - 1)
    t0 = rng.uniform(0, max(n - 1 - span, 0))
    t = np.clip(t0 + step * np.arange(frames), 0, n - 1)
    i0 = np.floor(t).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    f = (t - i0)[:, None]
    w = perf.values[i0] * (1 - f) + perf.values[i1] * f
    pose_perf = perf.pose[i0] * (1 - f) + perf.pose[i1] * f
    mirror = rng.uniform() < 0.5
    if mirror:
        w = _mirror_weights(w)
        pose_perf = pose_perf * np.array([-1, 1, -1, -1, 1, 1])
    w = w * rng.uniform(0.6, 1.4)
    # blend in random expression combinations, ramping smoothly between two of them
    a, b = _combo(rng), _combo(rng)
    mix = rng.uniform(0.0, 1.0)
    ramp = _smoothstep(rng.uniform(-0.5, 0.5), rng.uniform(0.5, 1.5), np.linspace(0, 1, frames))
    combo = a * (1 - ramp[:, None]) + b * ramp[:, None]
    w = np.clip(np.maximum(w * (1 - 0.5 * mix), combo * mix), 0, 1).astype(np.float32)
    # head pose: a base orientation within ~+-15 deg, the performance's motion, a slow sway
    base = np.radians(rng.uniform([-15, -12, -6], [15, 10, 6]))
    phase = rng.uniform(0, 2 * np.pi, 3)
    amp = np.radians(rng.uniform(0, 6, 3))
    tt = np.arange(frames) / FPS
    sway = amp * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * tt[:, None] + phase)
    rot = base + (pose_perf[:, :3] - perf.pose[:, :3].mean(0)) * rng.uniform(0.5, 1.5) + sway
    rot[:, :2] = np.clip(rot[:, :2], np.radians(-20), np.radians(20))
    trans = (pose_perf[:, 3:] - perf.pose[:, 3:].mean(0)) + np.array(
        [rng.uniform(-0.02, 0.02), rng.uniform(-0.015, 0.02), 0.6 + rng.uniform(-0.04, 0.05)]
    )
    pose = np.concatenate([rot, trans], 1).astype(np.float32)
    # identity (reference) frame: near-neutral expression, near-frontal
    wid = np.clip(perf.values[rng.integers(n)] * rng.uniform(0.0, 0.3), 0, 1)
    wid[_IDX["eyeBlinkLeft"]] = wid[_IDX["eyeBlinkRight"]] = 0.0
    pid = np.array(
        [
            *np.radians(rng.uniform([-6, -5, -3], [6, 5, 3])),
            rng.uniform(-0.01, 0.01),
            rng.uniform(-0.01, 0.01),
            0.6 + rng.uniform(-0.02, 0.02),
        ]
    )
    return w, pose, wid.astype(np.float32), pid.astype(np.float32)


def view_poses(pose6: np.ndarray) -> dict[str, np.ndarray]:
    """{view: (4,4) view_from_target} for the extra ground-truth views of one frame."""
    pivot = np.asarray(pose6[3:6], np.float32)
    left, right = camera.stereo_eyes(camera.DEFAULT_IPD_M)
    return {
        "yaw_plus10": camera.orbit_pose(np.radians(10.0), 0.0, pivot),
        "yaw_minus10": camera.orbit_pose(np.radians(-10.0), 0.0, pivot),
        "left_eye": left,
        "right_eye": right,
    }


# ------------------------------------------------------------------------------------------
# clips, files, splits


def render_clip(
    renderer: SceneRenderer, ident: Identity, seed: int, identity: int, clip: int, frames: int
) -> dict[str, np.ndarray]:
    """All arrays of one clip NPZ (docs/dataset.md)."""
    S = renderer.size
    K = renderer.K
    w, pose, wid, pid = make_motion(seed, identity, clip, frames)
    out: dict[str, np.ndarray] = {}
    renderer.set_expression(wid)
    M = camera.head_pose_matrix(pid)
    rgb, alpha, _ = renderer.render(M, M)
    out["identity_rgb"], out["identity_alpha"] = rgb, alpha
    out["identity_controls"], out["identity_pose"] = wid, pid
    out["identity_cond"] = rig.render_condition(wid, pid, K, S)
    out["K"] = K.astype(np.float32)
    out["controls"], out["pose"] = w, pose
    cond = np.zeros((frames, S, S, 4), np.uint8)
    arr = {
        v: (
            np.zeros((frames, S, S, 3), np.uint8),
            np.zeros((frames, S, S), np.uint8),
            np.zeros((frames, S, S), np.float32),
            np.zeros((frames, 4, 4), np.float32),
        )
        for v in ("target",) + VIEWS
    }
    for t in range(frames):
        renderer.set_expression(w[t])
        cam_from_head = camera.head_pose_matrix(pose[t])
        cond[t] = rig.render_condition(w[t], pose[t], K, S)
        for v, T in [("target", np.eye(4, dtype=np.float32))] + list(view_poses(pose[t]).items()):
            rgb, alpha, z = renderer.render(T @ cam_from_head, cam_from_head)
            arr[v][0][t], arr[v][1][t], arr[v][2][t], arr[v][3][t] = rgb, alpha, z, T
    out["cond"] = cond
    for v, (rgb, alpha, z, T) in arr.items():
        out[f"{v}_rgb"], out[f"{v}_alpha"], out[f"{v}_depth"] = rgb, alpha, z
        if v != "target":
            out[f"{v}_from_target"] = T
    return out


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz (np.load-able) with fixed zip timestamps and member order: byte-identical output.
    ``np.savez`` stamps members with the wall clock, so it is not used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".npz.tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    tmp.replace(path)


def split_identities(
    n: int, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[int]]:
    """Disjoint identity ids per split; every split gets >= 1 identity once n >= 3."""
    order = np.random.default_rng([seed, 7]).permutation(n)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_val, n_test = min(n_val, n), min(n_test, max(n - n_val, 0))
    n_train = n - n_val - n_test
    return {
        "train": sorted(int(i) for i in order[:n_train]),
        "val": sorted(int(i) for i in order[n_train : n_train + n_val]),
        "test": sorted(int(i) for i in order[n_train + n_val :]),
    }


def clip_name(identity: int, clip: int) -> str:
    return f"clip-{identity:04d}-{clip:02d}.npz"


def _preview_tile(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """identity | target mid-frame | yaw_plus10 | left_eye | cond, side by side."""
    T = arrays["target_rgb"].shape[0]
    m = T // 2
    cond = arrays["cond"][m]
    cond_rgb = (cond[..., :3].astype(np.float32) * (cond[..., 3:] / 255.0)).astype(np.uint8)
    return np.concatenate(
        [
            arrays["identity_rgb"],
            arrays["target_rgb"][m],
            arrays["yaw_plus10_rgb"][m],
            arrays["right_eye_rgb"][m],
            cond_rgb,
        ],
        1,
    )


def generate(
    out: Path,
    identities: int,
    clips_per_identity: int,
    frames: int,
    size: int,
    seed: int,
    preview: bool = False,
    progress: bool = True,
) -> dict:
    """Write the dataset under ``out`` and return the manifest."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    splits = split_identities(identities, seed)
    split_of = {i: s for s, ids in splits.items() for i in ids}
    renderer = SceneRenderer(size)
    tiles = []
    t_start = time.perf_counter()
    n_views = 0
    log = []
    bar = tqdm(
        total=identities * clips_per_identity, desc="synth clips", disable=not progress, unit="clip"
    )
    for i in range(identities):
        t0 = time.perf_counter()
        ident = make_identity(seed, i)
        renderer.set_identity(ident)
        t_ident = time.perf_counter() - t0
        for c in range(clips_per_identity):
            t0 = time.perf_counter()
            arrays = render_clip(renderer, ident, seed, i, c, frames)
            t_render = time.perf_counter() - t0
            write_npz(out / split_of[i] / clip_name(i, c), arrays)
            n_views += frames * (1 + len(VIEWS))
            log.append(
                f"identity {i} clip {c}: identity setup {t_ident:.2f}s render {t_render:.2f}s "
                f"write {time.perf_counter() - t0 - t_render:.2f}s"
            )
            if preview and c == 0 and len(tiles) < 16:
                tiles.append(_preview_tile(arrays))
            bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - t_start
    manifest = {
        "version": FORMAT_VERSION,
        "args": {
            "identities": identities,
            "clips_per_identity": clips_per_identity,
            "frames": frames,
            "size": size,
            "seed": seed,
        },
        "size": size,
        "frames_per_clip": frames,
        "fps": FPS,
        "near_m": NEAR_M,
        "far_m": FAR_M,
        "views": list(VIEWS),
        "splits": {
            s: [f"{s}/{clip_name(i, c)}" for i in ids for c in range(clips_per_identity)]
            for s, ids in splits.items()
        },
        "identities": splits,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log.append(f"total {elapsed:.1f}s, {n_views} views, {n_views / max(elapsed, 1e-9):.1f} views/s")
    (out / "synth.log").write_text("\n".join(log) + "\n")
    if preview and tiles:
        from PIL import Image

        cols = 2
        while len(tiles) % cols:
            tiles.append(np.zeros_like(tiles[0]))
        rows = [np.concatenate(tiles[k : k + cols], 1) for k in range(0, len(tiles), cols)]
        Image.fromarray(np.concatenate(rows, 0)).save(out / "preview.png", optimize=False)
    return manifest


# ------------------------------------------------------------------------------------------
# loader


_TRAIN_KEYS = (
    "identity_rgb",
    "identity_alpha",
    "identity_controls",
    "identity_pose",
    "identity_cond",
    "K",
    "controls",
    "pose",
    "cond",
    "target_rgb",
)


class ClipDataset:
    """Clips of one split. ``ds[i]`` -> {key: numpy array} as in docs/dataset.md.

    With ``hide_ground_truth=True`` (training) only ``_TRAIN_KEYS`` are read from the NPZ: no
    depth, alpha or extra views are ever loaded, as real monocular video would not have them.
    """

    def __init__(self, root: str | Path, split: str = "train", hide_ground_truth: bool = True):
        self.root = Path(root)
        path = self.root / "manifest.json"
        if not path.is_file():
            raise UserError(
                f"{path} not found; generate data with python -m mpitalk.synth --out {root}"
            )
        self.manifest = json.loads(path.read_text())
        if split not in self.manifest["splits"]:
            raise UserError(
                f"split {split!r} not in {path}; choose from {sorted(self.manifest['splits'])}"
            )
        self.files = [self.root / p for p in self.manifest["splits"][split]]
        self.hide_ground_truth = hide_ground_truth

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        with np.load(self.files[i], allow_pickle=False) as z:
            keys = _TRAIN_KEYS if self.hide_ground_truth else z.files
            return {k: z[k] for k in keys}


# ------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mpitalk.synth",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--identities", type=int, default=20, help="number of synthetic people")
    p.add_argument("--clips-per-identity", type=int, default=4, help="clips per person")
    p.add_argument("--frames", type=int, default=12, help="frames per clip")
    p.add_argument("--size", type=int, default=128, help="image size S (S x S pixels)")
    p.add_argument("--seed", type=int, default=0, help="every random choice derives from it")
    p.add_argument("--preview", action="store_true", help="write DIR/preview.png, a contact sheet")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    try:
        if min(a.identities, a.clips_per_identity, a.frames) < 1 or a.size < 16:
            raise UserError(
                "--identities, --clips-per-identity and --frames must be >= 1, --size >= 16"
            )
        generate(
            a.out,
            a.identities,
            a.clips_per_identity,
            a.frames,
            a.size,
            a.seed,
            preview=a.preview,
            progress=not a.quiet,
        )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write under {a.out}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
