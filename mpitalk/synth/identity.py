"""One synthetic person: head-shape deformation, procedural albedo baked into the rig's UV
atlas (skin, lips, brows, stubble/makeup, eyes, teeth), hair, clothing, backdrop and lighting,
all drawn from one random generator seeded by (seed, identity)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import moderngl
import numpy as np
from scipy import ndimage

from mpitalk import gl, rig

ATLAS_PX = 512  # albedo atlas resolution (the rig's UV layout)
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
    # rebound before ours is released: a released framebuffer left bound makes the next one
    # anyone creates set GL_INVALID_OPERATION when moderngl rebinds it
    bound = ctx.fbo or ctx.detect_framebuffer(0)
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
    bound.use()
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
