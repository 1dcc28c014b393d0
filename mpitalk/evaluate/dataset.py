"""Evaluation on a synthetic split with ground truth (docs/dataset.md), model vs flat baseline.

For every clip the model generates an MPI per frame from the clip's identity image and
expression track; each MPI is rendered into the target camera and the four ground-truth side
views (yaw +-10 degrees, both stereo eyes) and compared with the ground truth: PSNR, SSIM, LPIPS
per view (PSNR also on each view's foreground alone, ``psnr_fg`` in details.json); the
alpha-weighted depth against the true depth on the foreground (mm) and a Chamfer
distance between the back-projected surfaces; expression accuracy, identity distance and
flicker relative to ground truth. The same for the **flat** baseline (the identity image on one
opaque plane at the head's depth in the reference camera, moved rigidly with the head) and,
where meaningful, for the ground truth itself.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from mpitalk import UserError, camera, metrics
from mpitalk.evaluate.generation import IDENTITY_INFO, generate_clip
from mpitalk.evaluate.report import write_dataset_report
from mpitalk.evaluate.results import aggregate, headline, json_ready, nest, write_json
from mpitalk.evaluate.scores import (
    SIDE_VIEWS,
    VIEWS,
    expression_scores,
    extract,
    flicker_scores,
    identity_scores,
    render_frames,
)


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
    return camera.head_motion(pose_t, identity_pose).astype(np.float32)


# --- one clip -------------------------------------------------------------------------------


def evaluate_clip(clip: dict[str, np.ndarray], fps: float, mpis: np.ndarray | None,
                  mpi_depths: np.ndarray | None, mpi_K: np.ndarray | None,
                  chamfer_every: int = 4, mpi_poses: np.ndarray | None = None
                  ) -> tuple[dict[str, dict[str, float]], dict]:
    """All metrics of one clip for the model (``mpis`` (T,D,S,S,4), each in the camera
    ``mpi_poses`` (T,4,4) ``frame_from_mpi`` places in the frame's, default the frame's own;
    None to skip), the flat baseline and the ground truth.

    Returns ({method: {dotted metric: value}}, images for the report).
    """
    T = len(clip["controls"])
    K = np.asarray(clip["K"], np.float32)
    gt_rgb = {v: metrics.to_float(clip[f"{v}_rgb"]) for v in VIEWS}  # (T,S,S,3)
    fg = clip["target_alpha"] > 127  # (T,S,S) foreground of the target view
    gt_depth = np.asarray(clip["target_depth"], np.float64)

    # render every method into every view: method -> (rgb (T,V,S,S,3), target depth (T,S,S))
    renders: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    view_poses = np.stack([clip_view_poses(clip, t) for t in range(T)])  # (T,V,4,4)
    flat_rgba, flat_depths = flat_mpi(clip["identity_rgb"], clip["identity_pose"])
    moved = np.stack([view_poses[t] @ tgt_from_ref(clip["pose"][t], clip["identity_pose"])
                      for t in range(T)])
    rgb, depth = render_frames([flat_rgba] * T, flat_depths, K, moved)
    renders["flat"] = (rgb, depth[:, 0])
    if mpis is not None:
        if mpi_poses is not None:  # view_from_target @ target_from_mpi
            view_poses = view_poses @ np.asarray(mpi_poses, np.float32)[:, None]
        rgb, depth = render_frames(mpis, mpi_depths, mpi_K, view_poses)
        renders["model"] = (rgb, depth[:, 0])

    gt_track, gt_found = extract(clip["target_rgb"], fps)
    gt_values = None if gt_track is None else gt_track.values
    id_ref = metrics.face_embedding(clip["identity_rgb"])
    held = metrics.held_pairs(clip["controls"], clip["pose"])
    gt_flicker = flicker_scores(gt_rgb["target"], fg, held)

    results: dict[str, dict[str, float]] = {}
    extracted: dict[str, np.ndarray | None] = {"ground_truth": gt_values}
    for method, (rgb, depth) in renders.items():
        r: dict[str, float] = {}
        for i, v in enumerate(VIEWS):
            r[f"views.{v}.psnr"] = float(np.mean(metrics.psnr(rgb[:, i], gt_rgb[v])))
            # the same on the view's foreground (head, hair, body: everything but the backdrop)
            r[f"views.{v}.psnr_fg"] = metrics.nanmean(np.atleast_1d(
                metrics.psnr(rgb[:, i], gt_rgb[v], mask=clip[f"{v}_alpha"] > 127)))
            r[f"views.{v}.ssim"] = float(np.mean(metrics.ssim(rgb[:, i], gt_rgb[v])))
            r[f"views.{v}.lpips"] = float(np.mean(metrics.lpips(rgb[:, i], gt_rgb[v])))
        r["geometry.depth_mae_mm"] = metrics.depth_mae_mm(depth, gt_depth, fg)
        r["geometry.chamfer_mm"] = metrics.nanmean(
            1000.0 * metrics.chamfer_distance(metrics.backproject(depth[t], K, fg[t]),
                                              metrics.backproject(gt_depth[t], K, fg[t]))
            for t in range(0, T, max(1, chamfer_every)))
        frames = metrics.to_uint8(rgb[:, 0])
        track, found = extract(frames, fps)
        extracted[method] = None if track is None else track.values
        r.update(expression_scores(track, gt_values,
                                   None if gt_track is None else gt_track.pose, ""))
        r.update(expression_scores(track, clip["controls"], clip["pose"], "_vs_controls"))
        r["expression.face_found"] = found
        r.update(identity_scores(id_ref, frames))
        for key, value in flicker_scores(rgb[:, 0], fg, held).items():
            r[key] = value
            r[f"{key}_ratio"] = value / gt_flicker[key] if gt_flicker[key] else math.nan
        results[method] = r

    g = expression_scores(gt_track, clip["controls"], clip["pose"], "_vs_controls")
    g["expression.face_found"] = gt_found
    g.update(identity_scores(id_ref, clip["target_rgb"]))
    g.update(gt_flicker)
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


# --- the split ------------------------------------------------------------------------------


def evaluate_dataset(data: str | Path, split: str, out: str | Path, *, model=None, config=None,
                     steps: int = 8, seed: int = 0, batch_size: int = 4,
                     space: str = "reference", max_clips: int | None = None,
                     max_frames: int | None = None,
                     chamfer_every: int = 4, checkpoint_name: str = "",
                     identity_info: str = "estimated", progress: bool = True,
                     geometry: str = "surface", paint: str = "holes",
                     prior_fill: str = "outside") -> dict:
    """Evaluate the model (None: baselines only) on a synthetic split; write ``out``/metrics.json,
    details.json and report.html. Returns the metrics.json content. ``identity_info``:
    ``estimated`` reads the identity image's head pose and expression with MediaPipe, as the
    main job does; ``relative`` the same, with the frames' head poses given as motion from the
    photo's (``generation.IDENTITY_INFO``); ``relative_true_expression`` as ``relative`` with
    the photo's true blendshapes; ``true`` gives the model the dataset's (as the flat baseline
    has them). ``geometry``: how the model's planes are stored (``generate.GEOMETRIES``);
    ``paint``: where its painted colour shows (``generate.PAINTS``); ``prior_fill``: the rig
    prior's flow past the face (``generate.PRIOR_FILLS``)."""
    from tqdm import tqdm

    from mpitalk import controls, synth

    if identity_info not in IDENTITY_INFO:
        raise UserError(f"identity_info must be one of {IDENTITY_INFO}, got {identity_info!r}")
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
        ident_id = synth.identity_of(ds.files[i])
        mpis = mpi_poses = None
        if model is not None:
            S = config.image_size
            if clip["target_rgb"].shape[1] != S:
                raise UserError(f"{ds.files[i]}: images are {clip['target_rgb'].shape[1]} px but "
                                f"the model makes {S} px; generate data with --size {S}")
            track = controls.Track(clip["controls"], clip["pose"], fps)
            true_info = synth.true_identity_info(clip) if identity_info == "true" else None
            relative = identity_info.startswith("relative")
            photo_pose = clip["identity_pose"] if relative else None
            photo_values = (clip["identity_controls"]
                            if identity_info == "relative_true_expression" else None)
            mpis, mpi_poses = generate_clip(model, config, metrics.to_float(clip["identity_rgb"]),
                                            track, steps, seed, batch_size, space, true_info,
                                            photo_pose, photo_values=photo_values,
                                            geometry=geometry, paint=paint,
                                            prior_fill=prior_fill)
        res, images = evaluate_clip(clip, fps, mpis, mpi_depths, mpi_K, chamfer_every,
                                    mpi_poses)
        frames_per_clip = len(clip["controls"])
        per_clip.append((ident_id, res))
        if ident_id not in strips:
            strips[ident_id] = images
    seconds = time.perf_counter() - t_start

    totals, per_identity = aggregate(per_clip)
    result = json_ready({**headline(totals.get("model", {})),
                         "baselines": {"flat": headline(totals["flat"])},
                         "per_identity": per_identity})
    write_json(out / "metrics.json", result)
    details = {"checkpoint": checkpoint_name, "data": str(data), "split": split,
               "clips": n, "frames_per_clip": frames_per_clip,
               "steps": steps, "seed": seed, "space": space, "geometry": geometry, "paint": paint,
               "prior_fill": prior_fill,
               "identity_info": identity_info,
               "seconds": seconds,
               "total": {m: nest(v) for m, v in totals.items()},
               "per_clip": [{"identity": k, **{m: nest(v) for m, v in r.items()}}
                            for k, r in per_clip]}
    write_json(out / "details.json", details)
    write_dataset_report(out / "report.html", details, totals, per_identity, strips)
    return result

