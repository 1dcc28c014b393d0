"""Static meshes of one identity in the head frame: the hair shell (and curtain or bun),
glasses, neck and shoulders; plus head normals welded across the rig's UV seams."""

from __future__ import annotations

import functools

import numpy as np

from mpitalk import rig
from mpitalk.synth.identity import Identity, _smoothstep, deform


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
