"""Evaluation on real portraits driven by one expression track: no ground truth.

Scores each portrait's generated frames by identity (dlib distance between the cropped portrait
and each frame), expression following against the driving track (MediaPipe), the face-found
rate and flicker, and draws a contact sheet of frames and side views.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mpitalk import camera, metrics
from mpitalk.evaluate.generation import generate_clip
from mpitalk.evaluate.report import write_portrait_report
from mpitalk.evaluate.results import json_ready, mean_dicts, nest, write_json
from mpitalk.evaluate.scores import (
    expression_scores,
    extract,
    flicker_scores,
    identity_scores,
    render_frames,
)


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
                       space: str = "reference",
                       max_frames: int | None = None, crop: bool = True,
                       progress: bool = True, geometry: str = "surface",
                       paint: str = "holes", prior_fill: str = "outside") -> dict:
    """Run the model on real photos driven by one track; write metrics.json, report.html and
    contact_sheet.png to ``out``. Returns the metrics.json content. ``geometry``: how the
    model's planes are stored (``generate.GEOMETRIES``); ``paint``: where its painted colour
    shows (``generate.PAINTS``); ``prior_fill``: the rig prior's flow past the face
    (``generate.PRIOR_FILLS``)."""
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
        mpis, frame_from_mpi = generate_clip(model, config, identity, track, steps, seed,
                                             batch_size, space, geometry=geometry,
                                             paint=paint, prior_fill=prior_fill,
                                             photo_values=generate.photo_expression(str(path)))
        poses = np.stack([portrait_views(drive_pose[t]) @ frame_from_mpi[t]
                          for t in range(len(mpis))])
        rgb, _ = render_frames(mpis, depths, K, poses)  # (T,V,S,S,3)
        frames = metrics.to_uint8(rgb[:, 0])
        r = identity_scores(metrics.face_embedding(identity), frames)
        ext, mp_found = extract(frames, track.fps)
        r.update(expression_scores(ext, track.values, drive_pose, ""))
        r["expression.face_found"] = mp_found
        r.update(flicker_scores(rgb[:, 0], None, held))
        rows[name] = r
        sheets[name] = {"identity": identity, "frames": rgb[:, 0], "views": rgb[len(rgb) // 2],
                        "extracted": None if ext is None else ext.values}
    total = mean_dicts(list(rows.values()))
    result = json_ready({"mean": nest(total), "portraits": {k: nest(v) for k, v in rows.items()},
                         "controls": str(track_path), "frames": len(track), "steps": steps,
                         "space": space})
    write_json(out / "metrics.json", result)
    write_portrait_report(out, result, rows, total, sheets, track)
    return result
