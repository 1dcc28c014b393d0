"""Evaluation: how good, how 3D-consistent, how stable — against baselines and ground truth.

Two modes of ``python -m mpitalk.evaluate``:

1. **Synthetic test set** (``--data DIR --split test``; docs/dataset.md): for every clip the model
   generates an MPI per frame from the clip's identity image and expression track; each MPI is
   rendered into the target camera and the four ground-truth side views (yaw +-10 degrees, both
   stereo eyes) and compared with the ground truth: PSNR, SSIM, LPIPS per view; the
   alpha-weighted depth against the true depth on the foreground (mm) and a Chamfer distance
   between the back-projected surfaces (open3d); expression accuracy (MediaPipe blendshapes and
   head pose read from generated vs ground-truth frames; correlation of jawOpen and eyeBlink over
   time; face-found fraction); flicker relative to ground truth; dlib identity distance. The
   same for the **flat** baseline (the identity image on one opaque plane at the head's depth in
   the reference camera, moved rigidly with the head) and, where meaningful, for the ground
   truth itself. Writes ``metrics.json`` (the headline keys, test-set means, plus
   ``per_identity``), ``details.json`` (every metric for every method) and a self-contained
   ``report.html``.
2. **Real portraits** (``--portraits IMG... --controls TRACK``): no ground truth; identity
   distance, expression following against the driving track, face-found rate, flicker and a
   contact sheet.

Means are over clips (each clip's value is its mean over frames); NaN (no face found, nothing
to measure) is left out of a mean and written as ``null``.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import re
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mpitalk import UserError, camera, metrics

VIEWS = ("target", "yaw_plus10", "yaw_minus10", "left_eye", "right_eye")
SIDE_VIEWS = VIEWS[1:]
IMAGE_METRICS = ("psnr", "ssim", "lpips")
METHODS = ("model", "flat", "ground_truth")
BLINK = ("eyeBlinkLeft", "eyeBlinkRight")
_NO_FACE = re.compile(r"no face in (\d+) of (\d+) frame")


# --- small helpers --------------------------------------------------------------------------


def nest(flat: dict[str, float]) -> dict:
    """{"a.b.c": x} -> {"a": {"b": {"c": x}}}."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def json_ready(obj):
    """NaN/inf -> None, numpy scalars -> Python, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def mean_dicts(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key-wise NaN-ignoring mean of flat metric dicts."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: metrics.nanmean(r.get(k, math.nan) for r in rows) for k in keys}


def headline(flat: dict[str, float]) -> dict:
    """The headline keys of metrics.json from one method's flat metrics."""
    keys = [f"views.{v}.{m}" for v in VIEWS for m in IMAGE_METRICS]
    keys += ["geometry.depth_mae_mm", "expression.mae", "identity.distance"]
    return nest({k: flat.get(k, math.nan) for k in keys})


def _render_fn():
    """jit(mpi.render_many) (rgba, depths, K, poses (V,4,4)) -> RenderOut, built once."""
    import jax

    from mpitalk import mpi

    global _RENDER
    if _RENDER is None:
        _RENDER = jax.jit(mpi.render_many)
    return _RENDER


_RENDER = None


def render_views(rgba: np.ndarray, depths: np.ndarray, K: np.ndarray, poses: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """An MPI (D,H,W,4) rendered to poses (V,4,4): (rgb (V,H,W,3) over black, depth (V,H,W))."""
    out = _render_fn()(np.asarray(rgba, np.float32), np.asarray(depths, np.float32),
                       np.asarray(K, np.float32), np.asarray(poses, np.float32))
    return np.clip(np.asarray(out.rgb), 0.0, 1.0), np.asarray(out.depth)


def flat_mpi(identity_rgb: np.ndarray, identity_pose: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """The flat baseline: the identity image as one opaque plane at the head's depth ``tz`` in
    the reference camera: (rgba (1,S,S,4), depths (1,))."""
    rgb = metrics.to_float(identity_rgb)
    rgba = np.concatenate([rgb, np.ones(rgb.shape[:2] + (1,), np.float32)], -1)[None]
    return rgba, np.array([float(identity_pose[5])], np.float32)


def clip_view_poses(clip: dict[str, np.ndarray], t: int) -> np.ndarray:
    """(V,4,4) ``view_from_target`` of frame t, in ``VIEWS`` order (target = identity)."""
    return np.stack([np.eye(4, dtype=np.float32)] +
                    [clip[f"{v}_from_target"][t] for v in SIDE_VIEWS]).astype(np.float32)


def tgt_from_ref(pose_t: np.ndarray, identity_pose: np.ndarray) -> np.ndarray:
    """The rigid motion of the head (and backdrop) from the identity image to frame t."""
    return (camera.head_pose_matrix(pose_t) @
            camera.invert_pose(camera.head_pose_matrix(identity_pose))).astype(np.float32)


def extract(frames: np.ndarray, fps: float):
    """(Track or None, MediaPipe face-found fraction) for frames (T,H,W,3) uint8."""
    from mpitalk import face

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            track = face.extract_track(np.asarray(frames, np.uint8), fps=fps)
        except UserError:
            return None, 0.0
    found = 1.0
    for w in caught:
        m = _NO_FACE.search(str(w.message))
        if m:
            found = 1.0 - int(m.group(1)) / int(m.group(2))
    return track, found


def expression_scores(track, reference_values: np.ndarray | None,
                      reference_pose: np.ndarray | None, suffix: str) -> dict[str, float]:
    """MAE of the 52 blendshapes, head-rotation error (deg) and jawOpen/eyeBlink correlation of
    an extracted ``track`` against reference values (T,52) and poses (T,6)."""
    from mpitalk.controls import ARKIT_NAMES

    keys = ("mae", "pose_error_deg", "jaw_open_corr", "eye_blink_corr")
    if track is None or reference_values is None:
        return {f"expression.{k}{suffix}": math.nan for k in keys}
    v, ref = track.values.astype(np.float64), np.asarray(reference_values, np.float64)
    jaw = ARKIT_NAMES.index("jawOpen")
    blink = [ARKIT_NAMES.index(n) for n in BLINK]
    out = {"mae": float(np.abs(v - ref).mean()),
           "pose_error_deg": math.nan,
           "jaw_open_corr": metrics.pearson(v[:, jaw], ref[:, jaw]),
           "eye_blink_corr": metrics.pearson(v[:, blink].mean(1), ref[:, blink].mean(1))}
    if reference_pose is not None:
        d = np.abs(track.pose[:, :3].astype(np.float64) - np.asarray(reference_pose)[:, :3])
        out["pose_error_deg"] = float(np.degrees(np.minimum(d, 2 * np.pi - d)).mean())
    return {f"expression.{k}{suffix}": val for k, val in out.items()}


def _chamfer_frames(T: int, every: int) -> range:
    return range(0, T, max(1, every))


# --- one clip -------------------------------------------------------------------------------


def evaluate_clip(clip: dict[str, np.ndarray], fps: float, mpis: np.ndarray | None,
                  mpi_depths: np.ndarray | None, mpi_K: np.ndarray | None,
                  chamfer_every: int = 4) -> tuple[dict[str, dict[str, float]], dict]:
    """All metrics of one clip for the model (``mpis`` (T,D,S,S,4) in each frame's target
    camera; None to skip), the flat baseline and the ground truth.

    Returns ({method: {dotted metric: value}}, images for the report).
    """
    T = len(clip["controls"])
    K = np.asarray(clip["K"], np.float32)
    gt_rgb = {v: metrics.to_float(clip[f"{v}_rgb"]) for v in VIEWS}  # (T,S,S,3)
    fg = clip["target_alpha"] > 127  # (T,S,S) foreground of the target view
    gt_depth = np.asarray(clip["target_depth"], np.float64)

    # render every method into every view
    renders: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # method -> (rgb (T,V,S,S,3), depth)
    flat_rgba, flat_depths = flat_mpi(clip["identity_rgb"], clip["identity_pose"])
    flat = [render_views(flat_rgba, flat_depths, K,
                         clip_view_poses(clip, t) @ tgt_from_ref(clip["pose"][t],
                                                                 clip["identity_pose"]))
            for t in range(T)]
    renders["flat"] = (np.stack([f[0] for f in flat]), np.stack([f[1][0] for f in flat]))
    if mpis is not None:
        out = [render_views(mpis[t], mpi_depths, mpi_K, clip_view_poses(clip, t))
               for t in range(T)]
        renders["model"] = (np.stack([o[0] for o in out]), np.stack([o[1][0] for o in out]))

    gt_track, gt_found = extract(clip["target_rgb"], fps)
    id_ref = metrics.face_embedding(clip["identity_rgb"])
    held = metrics.held_pairs(clip["controls"], clip["pose"])
    gt_flicker = metrics.flicker(gt_rgb["target"], fg)
    gt_flicker_held = metrics.flicker(gt_rgb["target"], fg, held) if held.any() else math.nan

    results: dict[str, dict[str, float]] = {}
    extracted: dict[str, np.ndarray | None] = {
        "ground_truth": None if gt_track is None else gt_track.values}
    for method, (rgb, depth) in renders.items():
        r: dict[str, float] = {}
        for i, v in enumerate(VIEWS):
            r[f"views.{v}.psnr"] = float(np.mean(metrics.psnr(rgb[:, i], gt_rgb[v])))
            r[f"views.{v}.ssim"] = float(np.mean(metrics.ssim(rgb[:, i], gt_rgb[v])))
            r[f"views.{v}.lpips"] = float(np.mean(metrics.lpips(rgb[:, i], gt_rgb[v])))
        r["geometry.depth_mae_mm"] = metrics.depth_mae_mm(depth, gt_depth, fg)
        r["geometry.chamfer_mm"] = metrics.nanmean(
            1000.0 * metrics.chamfer_distance(metrics.backproject(depth[t], K, fg[t]),
                                              metrics.backproject(gt_depth[t], K, fg[t]))
            for t in _chamfer_frames(T, chamfer_every))
        frames = metrics.to_uint8(rgb[:, 0])
        track, found = extract(frames, fps)
        extracted[method] = None if track is None else track.values
        r.update(expression_scores(track, None if gt_track is None else gt_track.values,
                                   None if gt_track is None else gt_track.pose, ""))
        r.update(expression_scores(track, clip["controls"], clip["pose"], "_vs_controls"))
        r["expression.face_found"] = found
        d, id_found = metrics.identity_distances(id_ref, frames)
        r["identity.distance"] = metrics.nanmean(d)
        r["identity.face_found"] = id_found
        r["temporal.flicker"] = metrics.flicker(rgb[:, 0], fg)
        r["temporal.flicker_ratio"] = r["temporal.flicker"] / gt_flicker if gt_flicker else math.nan
        fh = metrics.flicker(rgb[:, 0], fg, held) if held.any() else math.nan
        r["temporal.flicker_held"] = fh
        r["temporal.flicker_held_ratio"] = fh / gt_flicker_held if gt_flicker_held else math.nan
        results[method] = r

    g: dict[str, float] = {}
    g.update(expression_scores(gt_track, clip["controls"], clip["pose"], "_vs_controls"))
    g["expression.face_found"] = gt_found
    d, id_found = metrics.identity_distances(id_ref, clip["target_rgb"])
    g["identity.distance"] = metrics.nanmean(d)
    g["identity.face_found"] = id_found
    g["temporal.flicker"] = gt_flicker
    g["temporal.flicker_held"] = gt_flicker_held
    g["temporal.held_pair_fraction"] = float(held.mean()) if len(held) else math.nan
    results["ground_truth"] = g

    t = T // 2
    images = {"identity": metrics.to_float(clip["identity_rgb"]),
              "gt": np.stack([gt_rgb[v][t] for v in VIEWS]), "gt_depth": gt_depth[t],
              "fg": fg[t], "flat": renders["flat"][0][t], "flat_depth": renders["flat"][1][t],
              "tracks": {"true": clip["controls"], **extracted}}
    if "model" in renders:
        images["model"] = renders["model"][0][t]
        images["model_depth"] = renders["model"][1][t]
    return results, images


# --- the model ------------------------------------------------------------------------------


def load_model(checkpoint: str | None):
    """(config, model) from ``checkpoint.load`` (None: the shipped checkpoint)."""
    try:
        from mpitalk import checkpoint as ckpt
    except ImportError as e:
        raise UserError(f"the model cannot be loaded ({e}); use --baselines-only") from None
    try:
        return ckpt.load(checkpoint)
    except FileNotFoundError as e:
        raise UserError(f"{checkpoint or 'the shipped checkpoint'}: not found ({e})") from None


def generate_clip(model, config, identity: np.ndarray, track, steps: int, seed: int,
                  batch_size: int) -> np.ndarray:
    """(T,D,S,S,4) MPIs for one identity (S,S,3) float and track, via ``generate``, exactly as
    the main job makes them: the identity's expression and pose are read from the identity image
    by MediaPipe (``generate.identity_conditions``), never taken from ground truth."""
    from mpitalk import generate

    _, K = generate.mpi_geometry(config)
    info = generate.identity_conditions(identity, K)
    return np.stack(list(generate.generate_mpis(model, config, identity, track, seed=seed,
                                                steps=steps, batch_size=batch_size,
                                                identity_info=info)))


# --- the synthetic test set -----------------------------------------------------------------


def evaluate_dataset(data: str | Path, split: str, out: str | Path, *, model=None, config=None,
                     steps: int = 8, seed: int = 0, batch_size: int = 4,
                     max_clips: int | None = None, max_frames: int | None = None,
                     chamfer_every: int = 4, checkpoint_name: str = "",
                     progress: bool = True) -> dict:
    """Evaluate the model (None: baselines only) on a synthetic split; write ``out``/metrics.json,
    details.json and report.html. Returns the metrics.json content."""
    from tqdm import tqdm

    from mpitalk import controls, synth

    ds = synth.ClipDataset(data, split, hide_ground_truth=False)
    if len(ds) == 0:
        raise UserError(f"{data}: split {split!r} has no clips")
    fps = float(ds.manifest.get("fps", controls.DEFAULT_FPS))
    n = len(ds) if max_clips is None else min(max_clips, len(ds))
    mpi_depths = mpi_K = None
    if model is not None:
        from mpitalk import generate

        mpi_depths, mpi_K = generate.mpi_geometry(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    per_clip: list[tuple[str, dict]] = []
    strips: dict[str, dict] = {}
    t_start = time.perf_counter()
    for i in tqdm(range(n), desc="evaluate", unit="clip", disable=not progress):
        try:
            clip = ds[i]
        except (OSError, KeyError, ValueError) as e:
            raise UserError(f"{ds.files[i]}: cannot read the clip ({e})") from None
        missing = [f"{v}_rgb" for v in VIEWS if f"{v}_rgb" not in clip]
        if missing:
            raise UserError(f"{ds.files[i]}: no ground-truth {', '.join(missing)}; evaluation "
                            "needs the extra views of docs/dataset.md")
        if max_frames is not None:
            clip = {k: (v[:max_frames] if v.ndim and v.shape[0] == len(clip["controls"])
                        and not k.startswith("identity_") and k != "K" else v)
                    for k, v in clip.items()}
        ident_id = _identity_of(ds.files[i])
        mpis = None
        if model is not None:
            S = config.image_size
            if clip["target_rgb"].shape[1] != S:
                raise UserError(f"{ds.files[i]}: images are {clip['target_rgb'].shape[1]} px but "
                                f"the model makes {S} px; generate data with --size {S}")
            track = controls.Track(clip["controls"], clip["pose"], fps)
            mpis = generate_clip(model, config, metrics.to_float(clip["identity_rgb"]), track,
                                 steps, seed, batch_size)
        res, images = evaluate_clip(clip, fps, mpis, mpi_depths, mpi_K, chamfer_every)
        frames_per_clip = len(clip["controls"])
        per_clip.append((ident_id, res))
        if ident_id not in strips:
            strips[ident_id] = images
    seconds = time.perf_counter() - t_start

    methods = [m for m in METHODS if any(m in r for _, r in per_clip)]
    totals = {m: mean_dicts([r[m] for _, r in per_clip if m in r]) for m in methods}
    by_identity: dict[str, list[dict]] = defaultdict(list)
    for ident_id, r in per_clip:
        by_identity[ident_id].append(r)
    per_identity = {k: {m: nest(mean_dicts([r[m] for r in rows if m in r])) for m in methods}
                    for k, rows in by_identity.items()}

    model_flat = totals.get("model", {})
    result = {**headline(model_flat),
              "baselines": {"flat": headline(totals["flat"])},
              "per_identity": per_identity}
    result = json_ready(result)
    (out / "metrics.json").write_text(json.dumps(result, indent=1) + "\n")
    details = {"checkpoint": checkpoint_name, "data": str(data), "split": split,
               "clips": n, "frames_per_clip": frames_per_clip,
               "steps": steps, "seed": seed, "seconds": seconds,
               "total": {m: nest(v) for m, v in totals.items()},
               "per_clip": [{"identity": k, **{m: nest(v) for m, v in r.items()}}
                            for k, r in per_clip]}
    (out / "details.json").write_text(json.dumps(json_ready(details), indent=1) + "\n")
    write_dataset_report(out / "report.html", details, totals, per_identity, strips)
    return result


def _identity_of(path: Path) -> str:
    """The identity id of a clip file ``clip-IIII-CC.npz`` (else the file name)."""
    m = re.match(r"clip-(\d+)-\d+", path.stem)
    return m.group(1) if m else path.stem


# --- real portraits -------------------------------------------------------------------------


def portrait_views(pose: np.ndarray) -> np.ndarray:
    """(V,4,4) ``view_from_target`` for a frame of head pose (6,), ``VIEWS`` order: the yaw
    views orbit the head centre, as in the synthetic data."""
    pivot = np.asarray(pose[3:6], np.float32)
    left, right = camera.stereo_eyes(camera.DEFAULT_IPD_M)
    return np.stack([np.eye(4, dtype=np.float32),
                     camera.orbit_pose(np.float32(np.radians(10.0)), np.float32(0.0), pivot),
                     camera.orbit_pose(np.float32(np.radians(-10.0)), np.float32(0.0), pivot),
                     left, right]).astype(np.float32)


def evaluate_portraits(portraits: Sequence[str], track_path: str, out: str | Path, *, model,
                       config, steps: int = 8, seed: int = 0, batch_size: int = 4,
                       max_frames: int | None = None, crop: bool = True,
                       progress: bool = True) -> dict:
    """Run the model on real photos driven by one track; write metrics.json, report.html and
    contact_sheet.png to ``out``. Returns the metrics.json content."""
    from tqdm import tqdm

    from mpitalk import controls, generate

    track = controls.load(track_path)
    if max_frames is not None:
        track = controls.Track(track.values[:max_frames], track.pose[:max_frames], track.fps)
    drive_pose = generate.drivable_pose(track.pose)
    held = metrics.held_pairs(track.values, drive_pose)
    depths, K = generate.mpi_geometry(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, float]] = {}
    sheets: dict[str, dict] = {}
    for path in tqdm(portraits, desc="portraits", unit="portrait", disable=not progress):
        name = Path(path).stem
        identity = generate.prepare_identity(str(path), config.image_size, crop=crop)
        mpis = generate_clip(model, config, identity, track, steps, seed, batch_size)
        views = [render_views(mpis[t], depths, K, portrait_views(drive_pose[t]))[0]
                 for t in range(len(mpis))]
        rgb = np.stack(views)  # (T,V,S,S,3)
        frames = metrics.to_uint8(rgb[:, 0])
        r: dict[str, float] = {}
        d, found = metrics.identity_distances(metrics.face_embedding(identity), frames)
        r["identity.distance"] = metrics.nanmean(d)
        r["identity.face_found"] = found
        ext, mp_found = extract(frames, track.fps)
        r.update(expression_scores(ext, track.values, drive_pose, ""))
        r["expression.face_found"] = mp_found
        r["temporal.flicker"] = metrics.flicker(rgb[:, 0])
        r["temporal.flicker_held"] = (metrics.flicker(rgb[:, 0], pairs=held) if held.any()
                                      else math.nan)
        rows[name] = r
        sheets[name] = {"identity": identity, "frames": rgb[:, 0], "views": rgb[len(rgb) // 2],
                        "extracted": None if ext is None else ext.values}
    total = mean_dicts(list(rows.values()))
    result = json_ready({"mean": nest(total), "portraits": {k: nest(v) for k, v in rows.items()},
                         "controls": str(track_path), "frames": len(track), "steps": steps})
    (out / "metrics.json").write_text(json.dumps(result, indent=1) + "\n")
    write_portrait_report(out, result, rows, total, sheets, track)
    return result


# --- the HTML report ------------------------------------------------------------------------

# (dotted metric, label, better: "high" / "low" / "" for neutral)
REPORT_ROWS: tuple[tuple[str, str, str], ...] = tuple(
    (f"views.{v}.{m}", f"{v} {m.upper()}", "high" if m != "lpips" else "low")
    for v in VIEWS for m in IMAGE_METRICS) + (
    ("geometry.depth_mae_mm", "depth MAE on the foreground (mm)", "low"),
    ("geometry.chamfer_mm", "Chamfer distance of visible surfaces (mm)", "low"),
    ("expression.mae", "blendshape MAE vs ground-truth frames", "low"),
    ("expression.pose_error_deg", "head rotation error vs ground-truth frames (deg)", "low"),
    ("expression.jaw_open_corr", "jawOpen correlation vs ground-truth frames", "high"),
    ("expression.eye_blink_corr", "eyeBlink correlation vs ground-truth frames", "high"),
    ("expression.mae_vs_controls", "blendshape MAE vs the true controls", "low"),
    ("expression.pose_error_deg_vs_controls", "head rotation error vs the true pose (deg)", "low"),
    ("expression.jaw_open_corr_vs_controls", "jawOpen correlation vs the true controls", "high"),
    ("expression.eye_blink_corr_vs_controls", "eyeBlink correlation vs the true controls",
     "high"),
    ("expression.face_found", "MediaPipe face-found fraction", "high"),
    ("identity.distance", "dlib identity distance to the identity image (< 0.6 same)", "low"),
    ("identity.face_found", "dlib face-found fraction", "high"),
    ("temporal.flicker", "flicker, all frame pairs (mean abs diff)", ""),
    ("temporal.flicker_ratio", "flicker relative to ground truth, all pairs", ""),
    ("temporal.flicker_held", "flicker on held expressions", ""),
    ("temporal.flicker_held_ratio", "flicker on held expressions relative to ground truth", ""),
)

_CSS = """body{font-family:sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#eee}
img{image-rendering:pixelated;max-width:100%}.note{color:#555;font-size:90%}"""


def _png_b64(image: np.ndarray) -> str:
    """A data: URI of an image (H,W,3) float [0,1] or uint8 as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(metrics.to_uint8(image)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fig_b64(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "&ndash;"
    if isinstance(x, float) and math.isinf(x):
        return "&infin;"
    return f"{x:.4g}"


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td class='n'>{_num(c)}</td>" if not isinstance(c, str) else f"<td>{html.escape(c)}</td>"
        for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def colorize_depth(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(H,W,3) float turbo colours of a depth map, near = red, far = blue, over [lo, hi] m."""
    import matplotlib

    x = np.clip((np.asarray(depth, np.float64) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return matplotlib.colormaps["turbo"](1.0 - x)[..., :3]


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(metrics.to_uint8(tile))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, 6 * len(text) + 4, 11], fill=(0, 0, 0))
    draw.text((2, 0), text, fill=(255, 255, 255))
    return np.asarray(im)


def _tile(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(metrics.to_uint8(image))
    return np.asarray(im.resize((size, size), Image.NEAREST if im.width < size else Image.LANCZOS))


def grid(rows: Sequence[Sequence[tuple[np.ndarray | None, str]]], size: int = 128) -> np.ndarray:
    """A labelled image grid (uint8): rows of (image or None for blank, label) tiles."""
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * size, cols * size, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, (image, text) in enumerate(row):
            if image is not None:
                out[i * size:(i + 1) * size, j * size:(j + 1) * size] = _label(
                    _tile(image, size), text)
    return out


def identity_strip(images: dict) -> np.ndarray:
    """identity / ground truth / generated / flat rows over the five views and the depth map."""
    fg = images["fg"]
    gt_d = images["gt_depth"]
    lo = float(gt_d[fg].min()) - 0.02 if fg.any() else 0.45
    hi = float(gt_d[fg].max()) + 0.05 if fg.any() else 0.8
    names = ("target", "yaw +10", "yaw -10", "left eye", "right eye")
    rows = [[(images["identity"], "identity")] +
            [(im, f"GT {n}") for im, n in zip(images["gt"], names, strict=True)] +
            [(colorize_depth(gt_d, lo, hi), "GT depth")]]
    for key, label in (("model", "gen"), ("flat", "flat")):
        if key in images:
            rows.append([(None, "")] +
                        [(im, f"{label} {n}") for im, n in zip(images[key], names, strict=True)] +
                        [(colorize_depth(images[f"{key}_depth"], lo, hi), f"{label} depth")])
    return grid(rows)


def _view_plot(totals: dict[str, dict[str, float]]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    x = np.arange(len(VIEWS))
    methods = [m for m in ("model", "flat") if m in totals]
    for ax, m in zip(axes, IMAGE_METRICS, strict=True):
        for k, method in enumerate(methods):
            vals = [totals[method].get(f"views.{v}.{m}", math.nan) for v in VIEWS]
            ax.bar(x + (k - (len(methods) - 1) / 2) * 0.38, vals, 0.38, label=method)
        ax.set_xticks(x, VIEWS, rotation=20)
        ax.set_title(m.upper() + (" (lower is better)" if m == "lpips" else " (higher is better)"))
    axes[0].legend(loc="lower left", framealpha=0.9)
    return fig


def _track_plot(tracks_by_id: dict[str, dict], channel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mpitalk.controls import ARKIT_NAMES

    ids = list(tracks_by_id)[:4]
    fig, axes = plt.subplots(1, max(1, len(ids)), figsize=(3.6 * max(1, len(ids)), 2.8),
                             squeeze=False)
    cols = ([ARKIT_NAMES.index(channel)] if channel in ARKIT_NAMES
            else [ARKIT_NAMES.index(n) for n in BLINK])
    for ax, ident in zip(axes[0], ids, strict=False):
        for name, values in tracks_by_id[ident].items():
            if values is not None:
                ax.plot(np.asarray(values)[:, cols].mean(1), label=name,
                        ls="--" if name == "true" else "-")
        ax.set_title(f"identity {ident}: {channel}")
        ax.set_xlabel("frame")
        ax.set_ylim(-0.05, 1.05)
    axes[0][0].legend(fontsize=7)
    return fig


def write_dataset_report(path: Path, details: dict, totals: dict[str, dict[str, float]],
                         per_identity: dict, strips: dict[str, dict]) -> None:
    """The self-contained HTML report of a synthetic-set evaluation."""
    methods = [m for m in METHODS if m in totals]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>mpitalk evaluation"
             f"</title><style>{_CSS}</style></head><body><h1>mpitalk evaluation</h1>",
             "<p>" + html.escape(
                 f"checkpoint {details['checkpoint']} · data {details['data']} · split "
                 f"{details['split']} · {details['clips']} clips × {details['frames_per_clip']} "
                 f"frames · {details['steps']} sampler steps · seed {details['seed']} · "
                 f"{details['seconds']:.0f} s") + "</p>",
             "<p class='note'>Test-set means over clips. <b>model</b>: generated MPIs rendered "
             "to each view; <b>flat</b>: the identity image on one opaque plane at the head "
             "depth, moved rigidly with the head; <b>ground_truth</b>: the true frames, where "
             "meaningful. Expression metrics read MediaPipe blendshapes/pose from the rendered "
             "target frames. Flicker on the target view's foreground; held = frame pairs whose "
             "controls and pose barely change. &ndash; = not applicable or no face found.</p>",
             "<h2>Summary</h2>",
             _table(["metric", "better"] + methods,
                    [[label, better] + [totals[m].get(key, math.nan) for m in methods]
                     for key, label, better in REPORT_ROWS
                     if any(key in totals[m] for m in methods)]),
             f"<img src='{_fig_b64(_view_plot(totals))}'>"]
    parts.append("<h2>Per identity</h2>")
    cols = [("views.target.psnr", "target PSNR"), ("views.yaw_plus10.psnr", "yaw+10 PSNR"),
            ("views.target.lpips", "target LPIPS"), ("geometry.depth_mae_mm", "depth MAE mm"),
            ("expression.mae", "expr MAE"), ("identity.distance", "id dist")]

    def get(d: dict, key: str):
        for k in key.split("."):
            if not isinstance(d, dict) or k not in d:
                return math.nan
            d = d[k]
        return d

    shown = [m for m in ("model", "flat") if m in methods]
    parts.append(_table(["identity"] + [f"{m}: {c}" for m in shown for _, c in cols],
                        [[k] + [get(v.get(m, {}), key) for m in shown for key, _ in cols]
                         for k, v in per_identity.items()]))
    tracks = {k: v["tracks"] for k, v in strips.items()}
    parts.append(f"<img src='{_fig_b64(_track_plot(tracks, 'jawOpen'))}'>")
    parts.append(f"<img src='{_fig_b64(_track_plot(tracks, 'eyeBlink'))}'>")
    parts.append("<p class='note'>jawOpen / eyeBlink over time in each identity's first clip: "
                 "the true controls (dashed) and what MediaPipe reads from each method's "
                 "frames.</p>")
    for ident, images in strips.items():
        parts.append(f"<h3>identity {html.escape(ident)}</h3>"
                     f"<img src='{_png_b64(identity_strip(images))}'>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts))


def contact_sheet(sheets: dict[str, dict], num_frames: int = 6) -> np.ndarray:
    """Per portrait a row: the identity, ``num_frames`` frames spread over the track, and the
    middle frame from yaw +-10 degrees and both eyes."""
    rows = []
    for name, s in sheets.items():
        T = len(s["frames"])
        idx = np.unique(np.linspace(0, T - 1, min(num_frames, T)).round().astype(int))
        rows.append([(s["identity"], name[:18])] + [(s["frames"][t], f"frame {t}") for t in idx]
                    + [(im, n) for im, n in zip(s["views"][1:], ("yaw +10", "yaw -10", "left",
                                                                  "right"), strict=True)])
    return grid(rows)


def write_portrait_report(out: Path, result: dict, rows: dict[str, dict[str, float]],
                          total: dict[str, float], sheets: dict[str, dict], track) -> None:
    """contact_sheet.png and the self-contained report.html of a real-portrait evaluation."""
    from PIL import Image

    sheet = contact_sheet(sheets)
    Image.fromarray(sheet).save(out / "contact_sheet.png")
    keys = [("identity.distance", "identity distance (< 0.6 same)"),
            ("identity.face_found", "dlib face found"),
            ("expression.mae", "blendshape MAE vs track"),
            ("expression.pose_error_deg", "rotation error vs track (deg)"),
            ("expression.jaw_open_corr", "jawOpen corr"),
            ("expression.eye_blink_corr", "eyeBlink corr"),
            ("expression.face_found", "MediaPipe face found"),
            ("temporal.flicker", "flicker"), ("temporal.flicker_held", "flicker (held)")]
    tracks = {name: {"track": track.values, "generated": s["extracted"]}
              for name, s in sheets.items()}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>mpitalk portraits"
             f"</title><style>{_CSS}</style></head><body><h1>mpitalk on real portraits</h1>",
             "<p>" + html.escape(f"track {result['controls']} · {result['frames']} frames · "
                                 f"{result['steps']} sampler steps") + "</p>",
             "<p class='note'>No ground truth: identity is the dlib distance between the "
             "cropped portrait and each generated frame; expression following compares what "
             "MediaPipe reads from the generated frames with the driving track.</p>",
             _table(["portrait"] + [c for _, c in keys],
                    [[n] + [r.get(k, math.nan) for k, _ in keys] for n, r in rows.items()] +
                    [["mean"] + [total.get(k, math.nan) for k, _ in keys]]),
             f"<img src='{_fig_b64(_track_plot(tracks, 'jawOpen'))}'>",
             f"<h2>Contact sheet</h2><img src='{_png_b64(sheet)}'>", "</body></html>"]
    (out / "report.html").write_text("\n".join(parts))


# --- CLI ------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mpitalk.evaluate",
                                description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=None,
                   help="model checkpoint (default: the shipped demo checkpoint)")
    p.add_argument("--data", type=Path, help="synthetic dataset folder (docs/dataset.md)")
    p.add_argument("--split", default="test", help="split of --data to evaluate")
    p.add_argument("--out", type=Path, default=Path("eval-out"), help="output folder")
    p.add_argument("--max-clips", type=int, default=None, help="evaluate only the first N clips")
    p.add_argument("--max-frames", type=int, default=None,
                   help="use only the first N frames of each clip / of the track")
    p.add_argument("--steps", type=int, default=8, help="sampler steps")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--batch-size", type=int, default=4, help="frames generated together")
    p.add_argument("--chamfer-every", type=int, default=4,
                   help="Chamfer distance on every N-th frame (point clouds are slow)")
    p.add_argument("--baselines-only", action="store_true",
                   help="no model: evaluate the flat baseline and the ground truth only")
    p.add_argument("--portraits", nargs="+", default=None, metavar="IMG",
                   help="real portrait photos (no ground truth); needs --controls")
    p.add_argument("--controls", default=None, metavar="TRACK",
                   help="expression track driving --portraits (.csv/.json/.npz)")
    p.add_argument("--no-crop", action="store_true",
                   help="use the portraits as they are instead of face-cropping them")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4g}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    for name in ("max_clips", "max_frames", "steps", "batch_size", "chamfer_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    progress = not args.quiet
    if args.portraits:
        if not args.controls:
            raise UserError("--portraits needs --controls TRACK (the driving expression track)")
        if not Path(args.controls).is_file():
            raise UserError(f"{args.controls}: no such track file")
        for p in args.portraits:
            if not Path(p).is_file():
                raise UserError(f"{p}: no such image file")
        config, model = load_model(args.checkpoint)
        result = evaluate_portraits(args.portraits, args.controls, args.out, model=model,
                                    config=config, steps=args.steps, seed=args.seed,
                                    batch_size=args.batch_size, max_frames=args.max_frames,
                                    crop=not args.no_crop, progress=progress)
        m = result["mean"]
        print(f"identity distance {_fmt(m['identity']['distance'])}, expression MAE "
              f"{_fmt(m['expression']['mae'])}, face found {_fmt(m['expression']['face_found'])}"
              f", flicker {_fmt(m['temporal']['flicker'])}")
        print(f"wrote {args.out / 'metrics.json'}, {args.out / 'report.html'}, "
              f"{args.out / 'contact_sheet.png'}")
        return 0
    if args.data is None:
        raise UserError("give --data DIR (a synthetic dataset) or --portraits IMG... --controls "
                        "TRACK")
    if not (args.data / "manifest.json").is_file():
        raise UserError(f"{args.data}: no manifest.json; generate data with "
                        f"python -m mpitalk.synth --out {args.data}")
    model = config = None
    if not args.baselines_only:
        config, model = load_model(args.checkpoint)
    result = evaluate_dataset(args.data, args.split, args.out, model=model, config=config,
                              steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                              max_clips=args.max_clips, max_frames=args.max_frames,
                              chamfer_every=args.chamfer_every,
                              checkpoint_name=str(args.checkpoint or "shipped"),
                              progress=progress)
    print(summary_table(result))
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'report.html'}")
    return 0


def summary_table(result: dict) -> str:
    """The headline metrics as a text table (model vs flat baseline)."""
    flat = result["baselines"]["flat"]
    lines = [f"{'metric':<28}{'model':>10}{'flat':>10}"]

    def row(label: str, get: Callable[[dict], float | None]) -> None:
        lines.append(f"{label:<28}{_fmt(get(result)):>10}{_fmt(get(flat)):>10}")

    for v in VIEWS:
        for m in IMAGE_METRICS:
            row(f"{v}.{m}", lambda d, v=v, m=m: d["views"][v][m])
    row("geometry.depth_mae_mm", lambda d: d["geometry"]["depth_mae_mm"])
    row("expression.mae", lambda d: d["expression"]["mae"])
    row("identity.distance", lambda d: d["identity"]["distance"])
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
