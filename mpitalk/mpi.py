"""Multiplane images: plane depths, homographies, warping, over-compositing, rendering to a pose.

An MPI is ``rgba`` (D,H,W,4) with straight (not premultiplied) alpha in [0,1], planes ordered
back to front (index 0 = farthest), fronto-parallel in the MPI's own (source) camera at ``depths``
(D,) metres, uniform in disparity (Zhou et al. 2018, "Stereo Magnification"). Rendering to a new
camera warps every plane by its plane-induced homography (Hartley & Zisserman, eq. 13.2),
samples it bilinearly (premultiplied colour, so edges fade instead of darkening; outside a plane
is transparent, except for the back plane: it is the backdrop, sampled clamped to its edge
texels, so a view beyond the MPI's field of view continues the backdrop instead of showing empty
black wedges), drops plane points behind the target camera, and composites with the over
operator back to front.

All functions are JAX, jit/grad/vmap safe, and accept numpy input.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

_EPS = 1e-6


class RenderOut(NamedTuple):
    """A rendered view. A NamedTuple, so it is a pytree (``jit``/``vmap`` work on it)."""

    rgb: jax.Array  # (h,w,3) colour, premultiplied by ``alpha`` (i.e. composited over black)
    alpha: jax.Array  # (h,w) accumulated opacity
    depth: jax.Array  # (h,w) alpha-weighted expected depth (target-camera z, metres)


def plane_depths(near: float, far: float, num_planes: int) -> jax.Array:
    """(D,) plane depths uniform in disparity 1/z, back to front: ``[0] = far``, ``[-1] = near``."""
    disparity = jnp.linspace(1.0 / far, 1.0 / near, num_planes)
    return 1.0 / disparity


def over_weights(alpha: jax.Array) -> jax.Array:
    """Compositing weights (D,...) for alphas (D,...) ordered back to front.

    w_i = a_i * prod_{j>i} (1 - a_j): plane i's opacity times the transmittance of the planes in
    front of it. ``sum_i w_i = 1 - prod_i (1 - a_i)``.
    """
    trans = jnp.cumprod((1.0 - alpha)[::-1], axis=0)[::-1]  # prod_{j>=i}(1 - a_j)
    trans_in_front = jnp.concatenate([trans[1:], jnp.ones_like(trans[:1])], axis=0)
    return alpha * trans_in_front


def composite(rgba: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Over-composite straight-alpha planes (D,H,W,4), back to front.

    Returns ``rgb`` (H,W,3) (composited over black) and ``alpha`` (H,W).
    """
    rgba = jnp.asarray(rgba)
    w = over_weights(rgba[..., 3])
    rgb = jnp.sum(w[..., None] * rgba[..., :3], axis=0)
    return rgb, jnp.sum(w, axis=0)


def composite_premultiplied(premult: jax.Array, z: jax.Array) -> RenderOut:
    """Over-composite premultiplied planes (D,h,w,4) back to front; ``z`` (D,h,w) per-plane
    target depths for the expected depth."""
    a = premult[..., 3]
    trans = jnp.cumprod((1.0 - a)[::-1], axis=0)[::-1]
    trans_in_front = jnp.concatenate([trans[1:], jnp.ones_like(trans[:1])], axis=0)
    rgb = jnp.sum(trans_in_front[..., None] * premult[..., :3], axis=0)
    w = a * trans_in_front
    alpha = jnp.sum(w, axis=0)
    depth = jnp.sum(w * z, axis=0) / jnp.maximum(alpha, _EPS)
    return RenderOut(rgb, alpha, depth)


def plane_homographies(depths: jax.Array, K_src: jax.Array, tgt_from_src: jax.Array,
                       K_tgt: jax.Array) -> jax.Array:
    """(D,3,3) homographies mapping source pixels to target pixels, one per source plane.

    A point X on the source plane n.X = d (n = (0,0,1)) maps to the target as
    X_tgt = (R + t n^T / d) X, so ``H_tgt_from_src = K_tgt (R + t n^T/d) K_src^-1``.
    """
    R = tgt_from_src[:3, :3]
    t = tgt_from_src[:3, 3]
    n = jnp.array([0.0, 0.0, 1.0], dtype=R.dtype)
    plane = R[None] + (t[:, None] * n[None, :])[None] / depths[:, None, None]
    return K_tgt[None] @ plane @ jnp.linalg.inv(K_src)[None]


def homographies(depths: jax.Array, K_src: jax.Array, tgt_from_src: jax.Array,
                 K_tgt: jax.Array) -> jax.Array:
    """(D,3,3) homographies mapping target pixels to source pixels, one per plane: the inverses
    of ``plane_homographies`` (we sample the source for each target pixel)."""
    return jnp.linalg.inv(plane_homographies(depths, K_src, tgt_from_src, K_tgt))


def pixel_grid(h: int, w: int) -> jax.Array:
    """(h,w,3) homogeneous pixel-centre coordinates (j + 0.5, i + 0.5, 1)."""
    x = jnp.arange(w, dtype=jnp.float32) + 0.5
    y = jnp.arange(h, dtype=jnp.float32) + 0.5
    xx, yy = jnp.meshgrid(x, y)
    return jnp.stack([xx, yy, jnp.ones_like(xx)], axis=-1)


def plane_z_in_target(depths: jax.Array, K_tgt: jax.Array, tgt_from_src: jax.Array,
                      h: int, w: int) -> jax.Array:
    """(D,h,w) target-camera z where each target pixel's ray meets each source plane.

    The plane z_src = d is, in target coordinates, {X : n_t.X = d_t} with n_t = R n (R's third
    column) and d_t = d + n_t.t. The ray X = z K_tgt^-1 p (unit z component) meets it at
    z = d_t / (n_t . K_tgt^-1 p). Non-positive or infinite values mean behind the camera / parallel.
    """
    R = tgt_from_src[:3, :3]
    t = tgt_from_src[:3, 3]
    n_t = R[:, 2]
    d_t = depths + jnp.dot(n_t, t)
    rays = pixel_grid(h, w) @ jnp.linalg.inv(K_tgt).T  # (h,w,3), z = 1
    denom = rays @ n_t  # (h,w)
    denom = jnp.where(jnp.abs(denom) < _EPS, _EPS, denom)
    return d_t[:, None, None] / denom[None]


def bilinear_zero(image: jax.Array, xy: jax.Array) -> jax.Array:
    """Sample ``image`` (H,W,C) at continuous pixel coordinates ``xy`` (...,2) bilinearly.

    Texel centres are at +0.5; taps outside the image read zero.
    """
    H, W = image.shape[:2]
    u = xy[..., 0] - 0.5
    v = xy[..., 1] - 0.5
    x0 = jnp.floor(u)
    y0 = jnp.floor(v)
    fx = (u - x0)[..., None]
    fy = (v - y0)[..., None]
    x0 = x0.astype(jnp.int32)
    y0 = y0.astype(jnp.int32)
    flat = image.reshape(H * W, -1)

    def tap(yi, xi):
        inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
        idx = jnp.clip(yi, 0, H - 1) * W + jnp.clip(xi, 0, W - 1)
        return jnp.take(flat, idx, axis=0) * inside[..., None]

    return ((1 - fy) * ((1 - fx) * tap(y0, x0) + fx * tap(y0, x0 + 1))
            + fy * ((1 - fx) * tap(y0 + 1, x0) + fx * tap(y0 + 1, x0 + 1)))


def source_xy(H_src_from_tgt: jax.Array, h: int, w: int) -> jax.Array:
    """(h,w,2) source pixel coordinates of each target pixel centre under a homography."""
    q = pixel_grid(h, w) @ H_src_from_tgt.T
    # a non-positive third coordinate means the source point is behind: masked by the caller
    return q[..., :2] / jnp.where(jnp.abs(q[..., 2:]) < _EPS, _EPS, q[..., 2:])


def _premultiply(rgba: jax.Array) -> jax.Array:
    """Straight-alpha (...,4) -> premultiplied (...,4)."""
    return jnp.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=-1)


def _warp_general(plane: jax.Array, H_src_from_tgt: jax.Array, h: int, w: int,
                  clamp: bool = False) -> jax.Array:
    """One premultiplied plane (H,W,4) warped to (h,w,4) by a homography, 2-D bilinear gather.
    Outside the plane reads zero, or with ``clamp`` (the back plane) the nearest edge texels."""
    xy = source_xy(H_src_from_tgt, h, w)
    if clamp:  # texel centres span 0.5 .. size - 0.5: inside that, every tap is a real texel
        H, W = plane.shape[:2]
        xy = jnp.clip(xy, 0.5, jnp.array([W - 0.5, H - 0.5], jnp.float32))
    return bilinear_zero(plane, xy)


def _warp_shift_x(plane: jax.Array, shift_px: jax.Array, clamp: bool = False) -> jax.Array:
    """One plane (H,W,C) shifted horizontally: ``out[:, j]`` = the plane sampled at
    x = j + 0.5 + shift (zero outside; with ``clamp``, the nearest edge column).

    The fast path for translation-only poses in x with equal intrinsics (stereo eyes): each
    plane's homography is a pure horizontal shift, so bilinear sampling reduces to blending two
    integer-shifted copies, which are contiguous slices of a padded plane (zeros, or the edge
    columns repeated: the same as clamping the sample position to the texel centres).
    """
    H, W, C = plane.shape
    k = jnp.floor(shift_px)
    f = shift_px - k
    k = jnp.clip(k.astype(jnp.int32), -W - 1, W)
    padded = jnp.pad(plane, ((0, 0), (W + 1, W + 1), (0, 0)), mode="edge" if clamp else "constant")
    a = lax.dynamic_slice(padded, (0, W + 1 + k, 0), (H, W, C))
    b = lax.dynamic_slice(padded, (0, W + 2 + k, 0), (H, W, C))
    return (1 - f) * a + f * b


def _over_scan(warp_one, planes, params, z_of_plane):
    """Warp and over-composite planes back to front in one pass (no (D,h,w,4) intermediate).

    ``planes`` (D,H,W,4) straight alpha; ``warp_one(premultiplied plane, param, clamp) ->
    (h,w,4)``, ``clamp`` True for the back plane (edge texels extend it); ``z_of_plane(i) ->
    (h,w)`` target z. Carry: premultiplied colour, alpha, and alpha-weighted depth, each updated
    by the over operator ``acc = acc * (1 - a) + new``.
    """

    def step(carry, xs):
        rgb, alpha, dsum = carry
        plane, param, i = xs
        z = z_of_plane(i)
        # premultiply before interpolating, so that colour fades with alpha at plane edges
        premult = _premultiply(plane)
        # lax.cond, not a select: only the back plane pays for the clamped variant
        c = lax.cond(i == 0, lambda: warp_one(premult, param, True),
                     lambda: warp_one(premult, param, False))
        c = c * (z > 0)[..., None]  # behind the target camera: dropped
        a = c[..., 3]
        keep = 1.0 - a
        return (rgb * keep[..., None] + c[..., :3], alpha * keep + a, dsum * keep + a * z), None

    h, w = z_of_plane(0).shape
    init = (jnp.zeros((h, w, 3)), jnp.zeros((h, w)), jnp.zeros((h, w)))
    idx = jnp.arange(planes.shape[0])
    (rgb, alpha, dsum), _ = lax.scan(step, init, (planes, params, idx))
    return RenderOut(rgb, alpha, dsum / jnp.maximum(alpha, _EPS))


def render(rgba: jax.Array, depths: jax.Array, K_src: jax.Array, tgt_from_src: jax.Array,
           K_tgt: jax.Array | None = None, hw: tuple[int, int] | None = None) -> RenderOut:
    """Render an MPI into a target camera.

    rgba: (D,H,W,4) straight alpha, back to front. depths: (D,) metres in the source camera.
    K_src, K_tgt: (3,3) intrinsics (``K_tgt`` defaults to ``K_src``). tgt_from_src: (4,4).
    hw: target (h, w), default the MPI's (H, W). Returns ``RenderOut(rgb, alpha, depth)``.

    Poses that only translate along x with ``K_tgt == K_src`` and the same size (the stereo eyes,
    the identity) take an exact fast path (each plane is a horizontal shift); others use a 2-D
    bilinear gather through the plane homographies. ``lax.cond`` picks at run time; under
    ``vmap`` with a batched pose both branches run (still correct; use ``render_many``).
    """
    rgba = jnp.asarray(rgba, dtype=jnp.float32)
    depths = jnp.asarray(depths, dtype=jnp.float32)
    K_src = jnp.asarray(K_src, dtype=jnp.float32)
    K_tgt = K_src if K_tgt is None else jnp.asarray(K_tgt, dtype=jnp.float32)
    tgt_from_src = jnp.asarray(tgt_from_src, dtype=jnp.float32)
    D, H, W, _ = rgba.shape
    h, w = (H, W) if hw is None else hw

    Hs = homographies(depths, K_src, tgt_from_src, K_tgt)
    # target z of each plane along each target ray (see plane_z_in_target), one plane at a time
    R = tgt_from_src[:3, :3]
    t = tgt_from_src[:3, 3]
    n_t = R[:, 2]
    d_t = depths + jnp.dot(n_t, t)
    denom = (pixel_grid(h, w) @ jnp.linalg.inv(K_tgt).T) @ n_t
    denom = jnp.where(jnp.abs(denom) < _EPS, _EPS, denom)

    def z_of_plane(i):
        return d_t[i] / denom

    def general(_):
        return _over_scan(lambda p, Hm, clamp: _warp_general(p, Hm, h, w, clamp), rgba, Hs,
                          z_of_plane)

    if (h, w) != (H, W):
        return general(None)
    shift_only = ((jnp.max(jnp.abs(R - jnp.eye(3))) < 1e-7) & (jnp.abs(t[1]) < 1e-9)
                  & (jnp.abs(t[2]) < 1e-9) & (jnp.max(jnp.abs(K_tgt - K_src)) < 1e-6))
    # For such poses H_src_from_tgt maps x -> x + H[0,2] (a pure shift; see homographies).
    return lax.cond(shift_only,
                    lambda _: _over_scan(_warp_shift_x, rgba, Hs[:, 0, 2], z_of_plane),
                    general, None)


def over(front: RenderOut, back: RenderOut) -> RenderOut:
    """``front`` composited over ``back`` (two renders of one view, ``front`` nearer
    everywhere): premultiplied colour and alpha by the over operator; the depth is the
    alpha-weighted mean of the two."""
    keep = 1.0 - front.alpha
    alpha = front.alpha + keep * back.alpha
    depth = (front.alpha * front.depth + keep * back.alpha * back.depth) / jnp.maximum(alpha, _EPS)
    return RenderOut(front.rgb + keep[..., None] * back.rgb, alpha, depth)


def render_many(rgba: jax.Array, depths: jax.Array, K_src: jax.Array, tgt_from_src: jax.Array,
                K_tgt: jax.Array | None = None, hw: tuple[int, int] | None = None) -> RenderOut:
    """Render one MPI to many poses (N,4,4) -> RenderOut with a leading N axis.

    Poses are rendered one after another (``lax.map``), so each takes its own fast path where
    it can (a ``vmap`` would run both paths for every pose).
    """
    return lax.map(lambda T: render(rgba, depths, K_src, T, K_tgt, hw), jnp.asarray(tgt_from_src))


def reproject(rgba: jax.Array, depths: jax.Array, K: jax.Array,
              tgt_from_src: jax.Array) -> jax.Array:
    """The MPI ``rgba`` (D,H,W,4, straight alpha, back to front) moved into another camera with
    the same intrinsics and the same plane depths.

    Each source plane is warped into the target image by its homography and put, whole, on the
    target plane nearest (in disparity) to where it crosses the target camera's central ray;
    source planes that land on the same target plane are over-composited there in order. The
    back plane stays the back plane. Parallel planes keep their order along every ray, so the
    assignment is monotone and, seen from the target camera, the result renders exactly what
    ``render(rgba, depths, K, tgt_from_src)`` shows (the back plane clamped to its edge texels
    as there, so target pixels the source camera never saw take the nearest edge colour). Around
    the target camera (stereo eyes, small orbits) the parallax is that of each warped plane's
    centre depth: a turn's tilt across a plane is dropped, a move towards or away from the camera
    is kept, and whole planes move together, so surfaces never tear.
    """
    rgba = jnp.asarray(rgba, dtype=jnp.float32)
    depths = jnp.asarray(depths, dtype=jnp.float32)
    K = jnp.asarray(K, dtype=jnp.float32)
    tgt_from_src = jnp.asarray(tgt_from_src, dtype=jnp.float32)
    D, H, W, _ = rgba.shape
    Hs = homographies(depths, K, tgt_from_src, K)
    z = plane_z_in_target(depths, K, tgt_from_src, H, W)
    premult = _premultiply(rgba)
    back = _warp_general(premult[0], Hs[0], H, W, clamp=True)  # extended past its edges
    rest = jax.vmap(lambda p, Hm: _warp_general(p, Hm, H, W))(premult[1:], Hs[1:])
    warped = jnp.concatenate([back[None], rest]) * (z > 0)[..., None]
    # target plane of each source plane: nearest in disparity where it meets the central ray
    # (the principal point's ray); running max keeps the order if a plane is behind the camera
    c = jnp.linalg.inv(K) @ jnp.array([K[0, 2], K[1, 2], 1.0])
    n_t = tgt_from_src[:3, 2]  # plane normal in the target camera (see plane_z_in_target)
    denom = jnp.dot(n_t, c)
    z_c = (depths + jnp.dot(n_t, tgt_from_src[:3, 3])) / jnp.where(jnp.abs(denom) < _EPS, _EPS,
                                                                    denom)
    disparity = 1.0 / jnp.where(z_c > 0, z_c, jnp.inf)
    slot = jnp.argmin(jnp.abs(disparity[:, None] - 1.0 / depths[None, :]), axis=1)
    slot = lax.cummax(slot.at[0].set(0), axis=0)

    def over(acc, xs):  # source planes back to front, each over its target plane
        c, s = xs
        onehot = (jnp.arange(D) == s).astype(jnp.float32)[:, None, None, None]  # (D,1,1,1)
        return acc * (1.0 - onehot * c[None, ..., 3:]) + onehot * c[None], None

    out, _ = lax.scan(over, jnp.zeros((D, H, W, 4)), (warped, slot))
    a = out[..., 3:]
    rgb = jnp.where(a > _EPS, out[..., :3] / jnp.maximum(a, _EPS), 0.0)
    return jnp.concatenate([jnp.clip(rgb, 0.0, 1.0), a], axis=-1)


def alpha_weighted_depth(rgba: jax.Array, depths: jax.Array) -> jax.Array:
    """(H,W) expected depth of the MPI seen from its own camera: sum w_i d_i / sum w_i."""
    w = over_weights(jnp.asarray(rgba)[..., 3])
    return jnp.sum(w * jnp.asarray(depths)[:, None, None], 0) / jnp.maximum(jnp.sum(w, 0), _EPS)


# --------------------------------------------------------------------------------------------
# The factored MPI: the model's low-resolution fields + the photo at full resolution

FIELD_KEYS = ("alpha", "blend", "color", "flow")
UPSAMPLE_METHODS = ("bilinear",)


def interp_matrix(n_in: int, n_out: int) -> jax.Array:
    """(n_out, n_in) weights of 1-D bilinear resampling with texel centres at +0.5, edges
    clamped: output texel j reads the input at x = (j + 0.5) n_in / n_out (continuous pixel
    coordinates), clamped to [0.5, n_in - 0.5]. ``n_in == n_out`` gives the identity exactly."""
    import numpy as np  # static shapes: built on the host, a constant under jit

    x = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1.0)
    i0 = np.floor(x).astype(np.int64)
    f = x - i0
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = np.zeros((n_out, n_in), np.float32)
    np.add.at(w, (np.arange(n_out), i0), 1.0 - f)
    np.add.at(w, (np.arange(n_out), i1), f)
    return jnp.asarray(w)


def upsample_bilinear(field: jax.Array, size: int) -> jax.Array:
    """A field (..., S, S, C) resampled to (..., size, size, C), bilinear, texel centres at
    +0.5, edge-clamped (the ``upsample`` of :func:`materialize`)."""
    field = jnp.asarray(field, jnp.float32)
    A_y = interp_matrix(field.shape[-3], size)
    A_x = interp_matrix(field.shape[-2], size)
    # HIGHEST: accelerators would otherwise multiply float32 in reduced precision (TF32/bf16)
    return jnp.einsum("ys,...stc,xt->...yxc", A_y, field, A_x,
                      precision=lax.Precision.HIGHEST)


def fit_photo(photo: jax.Array, size: int) -> jax.Array:
    """The photo (P,P,3) as :func:`materialize` samples it for an output of ``size`` px: as it
    is when ``size >= P``; reduced to (size,size,3) with an antialiased triangle filter when
    smaller (a point-sampled reduction would alias)."""
    photo = jnp.asarray(photo, jnp.float32)
    if photo.shape[0] <= size:
        return photo
    return jax.image.resize(photo, (size, size, photo.shape[2]), "linear", antialias=True)


def sample_photo(photo: jax.Array, xy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The photo (P,P,3) sampled bilinearly at continuous pixel coordinates ``xy`` (...,2),
    clamped to its edge texels, and the validity (...) : 1 where ``xy`` lies inside [0,P]^2,
    0 outside (nothing to copy there)."""
    P = photo.shape[0]
    inside = jnp.all((xy >= 0.0) & (xy <= P), axis=-1).astype(jnp.float32)
    # clamped to the texel centres, so every tap that carries weight is a real texel
    return bilinear_zero(photo, jnp.clip(xy, 0.5, P - 0.5)), inside


def materialize(fields: dict, photo: jax.Array, size: int, plane_groups=None,
                upsample: str = "bilinear") -> jax.Array:
    """The dense RGBA MPI (D,size,size,4) of a factored MPI, in the photo's camera.

    fields (the model's output for one frame, S px):
      ``alpha`` (D,S,S) straight alpha in [0,1], back to front; ``blend`` (D,S,S) in [0,1],
      already times the copy validity; ``color`` (S,S,3) the predicted colour shared by all
      planes; ``flow`` (G,S,S,2) the sampling offset into the photo in units of the photo's side
      (x right, y down; zeros for today's model). ``photo``: (P,P,3) in [0,1], the identity crop
      at full resolution, the same crop window as the model's S-px input. ``plane_groups``: (D,)
      ints, plane i uses ``flow[plane_groups[i]]`` (default all 0).

    For the output pixel centre u = ((j + 0.5)/size, (i + 0.5)/size) (fractions of the side):
      a_i, b_i, c, f_g = the fields upsampled to size (bilinear, edge-clamped),
      p_i = the photo sampled bilinearly at (u + f_{group(i)}) P pixels, edge-clamped, with the
      validity v = 1 where that point is inside the photo, else 0,
      rgb_i = b_i v p_i + (1 - b_i v) c.
    In the photo's camera each MPI pixel copies from the photo where it lies (plus the flow), so
    at size = S with the photo at S this is the model's own dense output exactly (training).
    When ``size < P`` the photo is first reduced to ``size`` (:func:`fit_photo`). Render the
    result with :func:`render` and K scaled by size / S.
    """
    if upsample not in UPSAMPLE_METHODS:
        raise ValueError(f"upsample must be one of {UPSAMPLE_METHODS}, got {upsample!r}")
    alpha = jnp.asarray(fields["alpha"], jnp.float32)
    blend = jnp.asarray(fields["blend"], jnp.float32)
    D = alpha.shape[0]
    flow = jnp.asarray(fields["flow"], jnp.float32)
    groups = (jnp.zeros((D,), jnp.int32) if plane_groups is None
              else jnp.asarray(plane_groups, jnp.int32))
    photo = fit_photo(photo, size)
    P = photo.shape[0]
    a = upsample_bilinear(alpha[..., None], size)[..., 0]  # (D,size,size)
    b = upsample_bilinear(blend[..., None], size)[..., 0]
    c = upsample_bilinear(jnp.asarray(fields["color"], jnp.float32), size)  # (size,size,3)
    f = upsample_bilinear(flow, size)  # (G,size,size,2)
    # photo pixel of each output pixel centre: (j + 0.5) P / size (exact when P == size) + f P
    centre = (jnp.arange(size, dtype=jnp.float32) + 0.5) * jnp.float32(P / size)
    xy = jnp.stack(jnp.meshgrid(centre, centre), axis=-1)  # (size,size,2): (x, y)
    p, v = sample_photo(photo, xy[None] + f * jnp.float32(P))  # (G,size,size,3), (G,size,size)
    bv = (b * v[groups])[..., None]
    rgb = bv * p[groups] + (1.0 - bv) * c[None]
    return jnp.concatenate([rgb, a[..., None]], axis=-1)



def render_fields(fields: dict, photo: jax.Array, size: int, depths: jax.Array, K: jax.Array,
                  tgt_from_src: jax.Array, K_tgt: jax.Array | None = None,
                  hw: tuple[int, int] | None = None, plane_groups=None) -> RenderOut:
    """Render a factored MPI into a target camera, each plane evaluated from the fields where
    it is sampled (the JAX twin of the GL renderer's ``set_fields``; no dense plane is built).

    fields, photo, plane_groups as :func:`materialize`; the planes are ``size`` px with
    intrinsics K (3,3, at the fields' S) scaled by size / S; ``depths`` (D,), ``tgt_from_src``
    (4,4), ``K_tgt`` (default the planes' K), ``hw`` (default (size, size)) as :func:`render`.
    For a plane's sample at continuous pixel xy of the size-px plane: alpha, blend, colour and
    flow are the upsampled fields at xy, the photo is read at xy / size + flow, and near the
    plane's edge the premultiplied sample is scaled by the share of its bilinear taps inside the
    plane (what the dense plane's transparent border gives); the back plane is clamped to its
    edge. So it is ``render(materialize(fields, photo, size), ...)`` except that the product of
    alpha and colour is taken at the sample point instead of interpolated between the dense
    texels: they differ by at most a quarter of (the change of alpha across a dense texel) x (the
    change of colour across it), and agree as ``size`` grows.
    """
    alpha = jnp.asarray(fields["alpha"], jnp.float32)
    blend = jnp.asarray(fields["blend"], jnp.float32)
    color = jnp.asarray(fields["color"], jnp.float32)
    flow = jnp.asarray(fields["flow"], jnp.float32)
    D, S = alpha.shape[0], alpha.shape[1]
    groups = (jnp.zeros((D,), jnp.int32) if plane_groups is None
              else jnp.asarray(plane_groups, jnp.int32))
    photo = fit_photo(photo, size)
    P = photo.shape[0]
    depths = jnp.asarray(depths, jnp.float32)
    K = jnp.asarray(K, jnp.float32)
    K_src = K * jnp.array([[size / S], [size / S], [1.0]], jnp.float32)
    K_tgt = K_src if K_tgt is None else jnp.asarray(K_tgt, jnp.float32)
    tgt_from_src = jnp.asarray(tgt_from_src, jnp.float32)
    h, w = (size, size) if hw is None else hw
    Hs = homographies(depths, K_src, tgt_from_src, K_tgt)
    R, t = tgt_from_src[:3, :3], tgt_from_src[:3, 3]
    n_t = R[:, 2]
    d_t = depths + jnp.dot(n_t, t)
    denom = (pixel_grid(h, w) @ jnp.linalg.inv(K_tgt).T) @ n_t
    denom = jnp.where(jnp.abs(denom) < _EPS, _EPS, denom)
    n = jnp.float32(size)

    def field_at(field, u):  # (S,S,C) at fractions u (...,2) of the side, edge-clamped
        return bilinear_zero(field, jnp.clip(u * S, 0.5, S - 0.5))

    def step(carry, xs):
        rgb_acc, a_acc, d_acc = carry
        H_i, a_i, b_i, g, i = xs
        st = source_xy(H_i, h, w) - 0.5  # dense texel coordinates
        st = jnp.where(i == 0, jnp.clip(st, 0.0, n - 1.0), st)
        outside = jnp.any((st < -1.0) | (st >= n), axis=-1)
        share = jnp.prod(jnp.clip(jnp.minimum(st + 1.0, n - st), 0.0, 1.0), axis=-1)
        u = (jnp.clip(st, 0.0, n - 1.0) + 0.5) / n
        a = field_at(a_i[..., None], u)[..., 0] * share * ~outside
        b = field_at(b_i[..., None], u)[..., 0]
        c = field_at(color, u)
        p, v = sample_photo(photo, (u + field_at(jnp.take(flow, g, axis=0), u)) * P)
        bv = (b * v)[..., None]
        rgb = bv * p + (1.0 - bv) * c
        z = d_t[i] / denom
        a = a * (z > 0)
        keep = 1.0 - a
        return (rgb_acc * keep[..., None] + rgb * a[..., None], a_acc * keep + a,
                d_acc * keep + a * z), None

    init = (jnp.zeros((h, w, 3)), jnp.zeros((h, w)), jnp.zeros((h, w)))
    (rgb, a, dsum), _ = lax.scan(step, init, (Hs, alpha, blend, groups, jnp.arange(D)))
    return RenderOut(rgb, a, dsum / jnp.maximum(a, _EPS))
