"""Evaluation on real footage: a split of real monocular clips (``python -m mpitalk.footage``,
the docs/dataset.md format with a head mask in ``target_alpha`` and no extra views).

Two tasks, each scored for the model and two baselines on the same frames (``METHODS``): the
**flat** baseline (the identity image on one opaque plane at the head's depth, moved rigidly
with the head: ``dataset.flat_mpi``) and the **identity image** itself, shown unchanged.

- *Self-reenactment*: each test clip's identity frame driven by the clip's own track (its own
  head motion, given as motion from the identity frame's tracked pose), the generated
  target-view frames compared with the real ones: PSNR, SSIM, LPIPS (whole frame, and the face
  box of the real frame resized to 128 px), dlib identity distance to the identity frame,
  expression agreement (MediaPipe on the generated frames against MediaPipe on the real ones:
  ``scores.expression_agreement``), MediaPipe's face-found rate and flicker on the head mask;
  and PSNR and LPIPS of the head alone (``psnr_head``; ``lpips_head``: the real frame's own
  background pasted around the generated head), since in video the background stays still
  while an MPI made in the identity's camera moves all of its planes with the head.
- *Cross-reenactment*: each test clip's identity frame and a photo (``data/identity.png``)
  driven by the other test clips' tracks and by a driving track (``data/default_track.csv``),
  through the main job's path (``generate.relative_to_identity``, default sampler steps) with
  the head held still (``pose_scale`` 0, so head motion cannot pass for expression): expression
  agreement against the driving track, identity distance to the photo, face-found rate and
  sharpness (``scores.sharpness``: the face box's Laplacian variance as a fraction of the
  photo's). With the head still the flat baseline is the photo on one plane seen from where it
  was made: the photo again, so it scores as the identity image does.

Means are over clips (self) and pairs (cross) of each one's mean over frames, over all of the
split and per source video (a person never seen in training, e.g. ``carphone_pristine``, apart
from one seen in other clips, e.g. ``cap13_edit2``); NaN is left out and written as null.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpitalk import UserError, metrics
from mpitalk.evaluate.dataset import flat_mpi, tgt_from_ref
from mpitalk.evaluate.generation import generate_clip
from mpitalk.evaluate.results import json_ready, mean_dicts, nest, write_json
from mpitalk.evaluate.scores import (
    blendshapes,
    crop_resized,
    expression_agreement,
    face_box,
    read_faces,
    render_frames,
    sharpness,
)

METHODS = ("model", "flat", "identity_image")
SELF_METRICS = ("psnr", "ssim", "lpips", "face_lpips", "psnr_head", "lpips_head",
                "identity_distance", "expr_corr",
                "amplitude", "face_found", "flicker")
CROSS_METRICS = ("expr_corr", "amplitude", "identity_distance", "identity_same", "face_found",
                 "sharpness")
DEFAULT_MAX_FRAMES = 40  # frames per clip / per driving track in a default run
DEFAULT_MAX_PAIRS = 24  # cross pairs in a default run: 2 drivers each for 12 identities
FACE_CROP_PX = 128  # face boxes are compared (LPIPS) and measured (sharpness) at this size


def split_parser(doc: str, max_frames: int = DEFAULT_MAX_FRAMES):
    """The argument parser every script that scores one real-footage split starts from
    (``scripts/eval_*``): ``--footage``, ``--split``, ``--checkpoint``, ``--max-frames`` and
    ``--out``; ``doc``'s first line is its description."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--footage", type=Path, required=True, help="real-footage dataset folder")
    p.add_argument("--split", default="val")
    p.add_argument("--checkpoint", default=None, help="default: the shipped one")
    p.add_argument("--max-frames", type=int, default=max_frames)
    p.add_argument("--out", type=Path, required=True, help="JSON to write")
    return p


@dataclass
class FootageClip:
    """One test clip: ``name`` (file stem), ``source`` (its video's stem), ``data`` (the NPZ's
    arrays, cut to the frames used) and its ``fps``."""

    name: str
    source: str
    data: dict[str, np.ndarray]
    fps: float

    @property
    def track(self):
        """The clip's own track (controls and tracked head pose in the crop's camera)."""
        from mpitalk import controls

        return controls.Track(self.data["controls"], self.data["pose"], self.fps)


@dataclass
class Photo:
    """An identity image of the cross-reenactment: (S,S,3) float ``image``, its ``source``,
    its tracked head ``pose`` (6,) (None for a photo: then MediaPipe's estimate) and its
    blendshapes ``values`` (52,) read on the whole image, as the drivers' tracks were read (a
    clip's identity frame: the dataset's ``identity_controls``; a photo:
    ``generate.photo_expression``; None: read on the crop)."""

    name: str
    source: str
    image: np.ndarray
    pose: np.ndarray | None
    values: np.ndarray | None = None


# --- reading the split ----------------------------------------------------------------------


def clip_source(manifest: dict, rel_path: str) -> str:
    """The stem of the video a clip was cut from: the manifest's ``clips[rel_path]["video"]``
    (``python -m mpitalk.footage``), else the clip file's stem up to its last ``-``."""
    info = manifest.get("clips", {})
    entry = info.get(rel_path) if isinstance(info, dict) else None
    if entry is None and isinstance(info, list):
        entry = next((c for c in info if c.get("path") == rel_path), None)
    if isinstance(entry, dict) and entry.get("video"):
        return Path(str(entry["video"])).stem
    stem = Path(rel_path).stem
    return stem.rsplit("-", 1)[0] if "-" in stem else stem


def load_clips(data: str | Path, split: str, size: int, max_clips: int | None = None,
               max_frames: int | None = None) -> list[FootageClip]:
    """The clips of ``split``, each cut to its first ``max_frames`` frames; images must be
    ``size`` px (the model's)."""
    from mpitalk import controls, synth

    ds = synth.ClipDataset(data, split, hide_ground_truth=False)
    if len(ds) == 0:
        raise UserError(f"{data}: split {split!r} has no clips")
    fps = float(ds.manifest.get("fps", controls.DEFAULT_FPS))
    n = len(ds) if max_clips is None else min(max_clips, len(ds))
    clips = []
    for i in range(n):
        path = ds.files[i]
        try:
            clip = ds[i]
        except (OSError, KeyError, ValueError) as e:
            raise UserError(f"{path}: cannot read the clip ({e})") from None
        need = ("identity_rgb", "identity_pose", "K", "controls", "pose", "target_rgb")
        missing = [k for k in need if k not in clip]
        if missing:
            raise UserError(f"{path}: no {', '.join(missing)}; rebuild the footage dataset with "
                            "python -m mpitalk.footage")
        if clip["target_rgb"].shape[1] != size:
            raise UserError(f"{path}: images are {clip['target_rgb'].shape[1]} px but the model "
                            f"makes {size} px; build the footage with the model's size")
        T = len(clip["controls"])
        if max_frames is not None and max_frames < T:
            clip = {k: (v[:max_frames] if v.ndim and v.shape[0] == T
                        and not k.startswith("identity_") and k != "K" else v)
                    for k, v in clip.items()}
        rel = str(path.relative_to(ds.root))
        clips.append(FootageClip(path.stem, clip_source(ds.manifest, rel), clip, fps))
    return clips


# --- scoring helpers ------------------------------------------------------------------------


def over_backdrop(mpis: np.ndarray, identity: np.ndarray, depths: np.ndarray, K: np.ndarray,
                  frame_from_mpi: np.ndarray, values: np.ndarray | None = None,
                  photo_values: np.ndarray | None = None, fill="navier-stokes"
                  ) -> np.ndarray:
    """Frames (T,S,S,3) of MPIs (T,D,S,S,4) made in the photo's camera as the main job shows
    them (``mpitalk.backdrop``, ``GLRenderer.set_backdrop``): each frame's head planes at its
    pose over one world backdrop, estimated from the first frame's head planes over
    ``identity`` (S,S,3), at the frame camera's own pose. With the frames' blendshapes
    ``values`` (T,52) the head planes end at the neck and the body stays with the room, as the
    job's ``--body world`` stores them (``body.cut_at_neck``), the photo's blendshapes being
    ``photo_values`` (52,) (read on the whole image, as the job reads them; None: MediaPipe's
    reading of ``identity``). ``fill``: how the backdrop's hole is filled
    (``backdrop.estimate``'s ``fill``)."""
    from mpitalk import backdrop, body, generate, mpi

    k = backdrop.back_planes(depths)
    fade = None
    if values is not None:  # the job's own cut, on the frames' alphas
        cut, fade = body.cut_at_neck((({"alpha": m[..., 3]}, None) for m in mpis), depths, K,
                                     generate.identity_conditions(identity, K,
                                                                  values=photo_values), values)
        if fade is not None:
            mpis = np.array(mpis, np.float32, copy=True)
            mpis[..., 3] = np.stack([f["alpha"] for f, _ in cut])
    room, room_depth = backdrop.backdrop_mpi(
        backdrop.estimate(identity, backdrop.head_cover(mpis[0][..., 3], k), keep_photo=fade,
                          fill=fill),
        float(depths[0]))
    room_out = _render_one(room, room_depth, K, np.eye(4, dtype=np.float32))
    out = []
    for m, pose in zip(mpis, frame_from_mpi, strict=True):
        head = np.concatenate([m[..., :3], backdrop.without_back(m[..., 3], k)[..., None]], -1)
        out.append(np.clip(np.asarray(mpi.over(_render_one(head, depths, K, pose),
                                               room_out).rgb), 0.0, 1.0))
    return np.stack(out)


def _render_one(rgba, depths, K, pose):
    """``mpi.render`` of an MPI to one pose (4,4), through the evaluation's compiled renderer."""
    from mpitalk import mpi
    from mpitalk.evaluate.scores import _render_fn

    out = _render_fn()(np.asarray(rgba, np.float32), np.asarray(depths, np.float32),
                       np.asarray(K, np.float32), np.asarray(pose, np.float32)[None])
    return mpi.RenderOut(*(np.asarray(x)[0] for x in out))


@dataclass
class ClipFields:
    """A clip's frames sampled as factored fields (:func:`sample_fields`): the photo ``identity``
    (S,S,3) float, the ``real`` frames (T,S,S,3) float, the model's ``fields`` (one dict a frame,
    its soft layers), each frame's ``frame_from_mpi`` (T,4,4) and the rig
    prior's validity ``prior_valid`` (T,S,S), which :mod:`mpitalk.paint` reads."""

    identity: np.ndarray
    real: np.ndarray
    fields: list[dict[str, np.ndarray]]
    frame_from_mpi: np.ndarray
    prior_valid: np.ndarray


def sample_fields(model, config, clip: FootageClip, steps: int = 4, batch_size: int = 4,
                  paint: str = "holes", prior_fill: str = "outside",
                  hold_sides: bool = True, read_on_crop: bool = False) -> ClipFields:
    """A clip's self-reenactment sampled once as fields, as the main job samples them (the
    clip's own head motion from its identity frame, ``generate.motion_from_photo``; ``paint``
    as its ``--paint``), but kept as the model's soft layers (``geometry="layers"``), so that
    the ways of storing and showing them can be compared on the same samples
    (``scripts/eval_*``): ``surface.surface_fields`` of each is what the job stores. With
    ``paint="model"`` the blend is the model's everywhere; setting it to the copy where
    ``paint.copy_mask(prior_valid)`` says so gives the job's ``--paint holes`` fields for the
    first ``batch_size`` frames only (later ones are conditioned on a frame of the first batch
    as it was painted). ``prior_fill`` as the job's ``--prior-fill``; ``hold_sides`` as
    ``generate.generate_frames``'s. The identity frame's expression is the dataset's reading
    of the whole frame (``identity_controls``), as the clip's track was read and as the job
    reads its photo (``generate.photo_expression``); ``read_on_crop``: MediaPipe's reading of
    the S-px crop instead (what generation did before session 10)."""
    from mpitalk import generate

    S = config.image_size
    _, K = generate.mpi_geometry(config)
    ident = metrics.to_float(clip.data["identity_rgb"])
    info = generate.identity_conditions(
        ident, K, align=config.flow_bound > 0,
        values=None if read_on_crop else clip.data["identity_controls"])
    track = generate.motion_from_photo(clip.track, clip.data["identity_pose"], info)
    frames = list(generate.generate_fields(model, config, ident, track, steps=steps,
                                           batch_size=batch_size, identity_info=info,
                                           geometry="layers", paint=paint,
                                           prior_fill=prior_fill, hold_sides=hold_sides))
    cond = generate.frame_conditions(track, S, K, 0, len(track))
    valid = generate.prior_conditions(cond["expression"], info, K, S)["prior_valid"]
    return ClipFields(ident, metrics.to_float(clip.data["target_rgb"]), [f for f, _ in frames],
                      np.stack([pose for _, pose in frames]), valid)


def identity_distances(reference: np.ndarray | None, frames: np.ndarray) -> np.ndarray:
    """dlib distance (T,) of each frame (T,H,W,3) uint8 to ``reference`` (NaN: no face),
    computing each distinct frame once (a baseline repeats one image)."""
    seen: dict[bytes, float] = {}
    out = np.empty(len(frames), np.float64)
    for t, f in enumerate(frames):
        key = f.tobytes()
        if key not in seen:
            seen[key] = metrics.embedding_distance(reference, metrics.face_embedding(f))
        out[t] = seen[key]
    return out


def _expression(driver: np.ndarray | None, frames: np.ndarray
                ) -> tuple[dict[str, float], np.ndarray]:
    """expr_corr, amplitude, expr_channels and face_found of frames (T,H,W,3) read by MediaPipe
    frame by frame (``scores.read_faces``) against ``driver`` (T,52) (None: not scored); and
    the blendshapes read (T,52), NaN where no face."""
    values, found = blendshapes(read_faces(frames))
    r = {"expr_corr": math.nan, "amplitude": math.nan, "expr_channels": 0.0,
         "face_found": found}
    if driver is not None:
        corr, amp, n = expression_agreement(driver, values)
        r.update(expr_corr=corr, amplitude=amp, expr_channels=float(n))
    return r, values


def _spread(n: int, k: int) -> np.ndarray:
    """Up to k indices spread evenly over range(n)."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


# --- self-reenactment -----------------------------------------------------------------------


def self_clip(clip: FootageClip, model_rgb: np.ndarray | None, K: np.ndarray
              ) -> tuple[dict[str, dict[str, float]], dict]:
    """Self-reenactment scores of one clip: ({method: {metric: value}} with a ``real`` entry
    for the real frames' own identity distance, face-found rate and flicker; images and tracks
    for the report). ``model_rgb``: the model's target-view frames (T,S,S,3) float, or None."""
    c = clip.data
    T = len(c["controls"])
    real = metrics.to_float(c["target_rgb"])
    identity = metrics.to_float(c["identity_rgb"])
    mask = c["target_alpha"] if "target_alpha" in c else None  # the head mask of real footage
    rgba, depths = flat_mpi(c["identity_rgb"], c["identity_pose"])
    moved = np.stack([tgt_from_ref(c["pose"][t], c["identity_pose"])[None] for t in range(T)])
    frames = {"flat": render_frames([rgba] * T, depths, K, moved)[0][:, 0],
              "identity_image": np.broadcast_to(identity, real.shape)}
    if model_rgb is not None:
        frames = {"model": model_rgb, **frames}

    # MediaPipe on the real frames: their face boxes, and the expression to follow
    faces = read_faces(real)
    boxes = [face_box(f, real.shape[1:3]) for f in faces]
    with_box = [t for t in range(T) if boxes[t] is not None]
    real_faces = np.stack([crop_resized(real[t], boxes[t], FACE_CROP_PX) for t in with_box]
                          ) if with_box else None
    driver_values, real_found = blendshapes(faces)
    id_ref = metrics.face_embedding(c["identity_rgb"])
    real8 = metrics.to_uint8(real)
    tracks = {"real": driver_values}
    res: dict[str, dict[str, float]] = {}
    for method, rgb in frames.items():
        rgb = np.ascontiguousarray(rgb)
        f8 = metrics.to_uint8(rgb)
        r = {"psnr": float(np.mean(metrics.psnr(rgb, real))),
             "ssim": float(np.mean(metrics.ssim(rgb, real))),
             "lpips": float(np.mean(metrics.lpips(rgb, real))),
             "face_lpips": math.nan, "psnr_head": math.nan, "lpips_head": math.nan}
        if mask is not None:  # the head alone (the real background stays still, an MPI's moves)
            head = mask > 127
            r["psnr_head"] = metrics.nanmean(np.atleast_1d(metrics.psnr(rgb, real, mask=head)))
            # LPIPS with the real background pasted around the generated head: the same context
            r["lpips_head"] = float(np.mean(metrics.lpips(np.where(head[..., None], rgb, real),
                                                          real)))
        if real_faces is not None:
            gen_faces = np.stack([crop_resized(rgb[t], boxes[t], FACE_CROP_PX) for t in with_box])
            r["face_lpips"] = float(np.mean(metrics.lpips(gen_faces, real_faces)))
        d = identity_distances(id_ref, f8)
        r["identity_distance"] = metrics.nanmean(d)
        r["identity_face_found"] = float(np.mean(np.isfinite(d))) if id_ref is not None \
            else math.nan
        expr, tracks[method] = _expression(driver_values, f8)
        r.update(expr)
        r["flicker"] = metrics.flicker(rgb, mask)
        res[method] = r
    d = identity_distances(id_ref, real8)
    res["real"] = {"identity_distance": metrics.nanmean(d),
                   "face_found": real_found, "flicker": metrics.flicker(real, mask)}
    picks = _spread(T, 6)
    images = {"identity": identity, "picks": picks, "real": real[picks],
              **{m: np.asarray(f)[picks] for m, f in frames.items()}, "tracks": tracks}
    return res, images


# --- cross-reenactment ----------------------------------------------------------------------


def interleave_sources(sources: Sequence[str]) -> list[int]:
    """Indices of ``sources`` taking each distinct source in turn (first appearance order):
    ``[a, a, b, a, b]`` -> ``[0, 2, 1, 4, 3]``."""
    queues: dict[str, list[int]] = {}
    for i, s in enumerate(sources):
        queues.setdefault(s, []).append(i)
    out: list[int] = []
    while any(queues.values()):
        for q in queues.values():
            if q:
                out.append(q.pop(0))
    return out


def cross_pairs(num_photos: int, num_drivers: int, photo_clip: Sequence[int | None],
                max_pairs: int | None) -> list[tuple[int, int]]:
    """(photo, driver) index pairs, a photo never driven by its own clip (``photo_clip[i]``:
    the driver index of photo i's clip, or None). Ordered by rank so that a bounded run still
    covers every photo: rank 0 gives each photo its first driver (the last driver index, the
    driving track, comes first), rank 1 each its next, and so on; drivers rotate with the
    photo so that different photos meet different clips."""
    ranked: list[tuple[int, int, int]] = []
    for i in range(num_photos):
        order = [num_drivers - 1] + [(i + k) % (num_drivers - 1) for k in range(num_drivers - 1)]
        order = [j for j in dict.fromkeys(order) if j != photo_clip[i]]
        ranked += [(rank, i, j) for rank, j in enumerate(order)]
    pairs = [(i, j) for _, i, j in sorted(ranked)]
    return pairs if max_pairs is None else pairs[:max_pairs]


def photo_face(photo: Photo) -> tuple[tuple[int, int, int, int], np.ndarray | None]:
    """The photo's face box (the whole image when no face is found: sharpness is then measured
    over it) and its dlib embedding (None without a face): what every pair of the photo needs."""
    box = face_box(photo.image)
    if box is None:
        box = (0, 0, photo.image.shape[1], photo.image.shape[0])
    return box, metrics.face_embedding(photo.image)


def cross_pair(photo: Photo, frames: dict[str, np.ndarray], driver_values: np.ndarray,
               face: tuple | None = None) -> tuple[dict[str, dict[str, float]], dict]:
    """Cross-reenactment scores of one (photo, driving track) pair: ({method: {metric:
    value}}, report material). ``frames``: each method's frames (T,S,S,3) float; ``face``:
    :func:`photo_face` of the photo, if already known."""
    box, ref = face if face is not None else photo_face(photo)
    res: dict[str, dict[str, float]] = {}
    tracks = {"driver": driver_values}
    for method, rgb in frames.items():
        f8 = metrics.to_uint8(np.ascontiguousarray(rgb))
        r, tracks[method] = _expression(driver_values, f8)
        d = identity_distances(ref, f8)
        r["identity_distance"] = metrics.nanmean(d)
        # the share of frames dlib calls the photo's person (a frame without a face is not)
        same = np.where(np.isfinite(d), d, np.inf) < metrics.SAME_PERSON_DISTANCE
        r["identity_same"] = float(np.mean(same)) if ref is not None else math.nan
        r["identity_face_found"] = float(np.mean(np.isfinite(d))) if ref is not None \
            else math.nan
        r["sharpness"] = sharpness(rgb, photo.image, box, FACE_CROP_PX)
        res[method] = r
    picks = _spread(len(driver_values), 6)
    images = {"photo": photo.image, "picks": picks,
              **{m: np.asarray(f)[picks] for m, f in frames.items()}, "tracks": tracks}
    return res, images


# --- the split ------------------------------------------------------------------------------


def _means(rows: Sequence[dict], key: str, methods: Sequence[str]) -> dict:
    """{method: {metric: mean over rows}} of ``rows[i][key][method]``."""
    return {m: mean_dicts([r[key][m] for r in rows if m in r[key]]) for m in methods}


def pooled_expression(rows: Sequence[dict], driver: str, methods: Sequence[str]) -> dict:
    """Expression agreement over all frames of ``rows`` at once: each row's ``tracks``
    (driver and method blendshapes, (T,52), NaN rows where no face) centred on its own mean
    per channel, concatenated, then ``expression_agreement``: {method: {"expr_corr",
    "amplitude", "expr_channels"}}. One 12-frame clip rarely has a channel that moves 0.08;
    pooled, a source's clips have several. Centred first, so that a level that differs from
    row to row (another identity frame, another photo, read by MediaPipe) is not taken for
    motion: the identity image repeated still scores 0."""
    def centred(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if not np.isfinite(x).any():
            return x
        with np.errstate(invalid="ignore"):
            return x - np.nanmean(x, axis=0)

    out = {}
    for m in methods:
        pairs = [(centred(r["tracks"][driver]), centred(r["tracks"][m])) for r in rows
                 if r["tracks"].get(driver) is not None and r["tracks"].get(m) is not None]
        if not pairs:
            continue
        corr, amp, n = expression_agreement(np.concatenate([d for d, _ in pairs]),
                                            np.concatenate([v for _, v in pairs]))
        out[m] = {"expr_corr": corr, "amplitude": amp, "expr_channels": n}
    return out


def _pooled_by_source(rows: Sequence[dict], driver: str, methods: Sequence[str]) -> dict:
    groups: dict[str, list[dict]] = {"all": list(rows)}
    for r in rows:
        groups.setdefault(r["source"], []).append(r)
    return {s: pooled_expression(rs, driver, methods) for s, rs in groups.items()}


def _by_source(rows: Sequence[dict], methods: Sequence[str]) -> dict:
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(r["source"], []).append(r)
    return {s: {m: nest(v) for m, v in _means(rs, "scores", methods).items()}
            for s, rs in out.items()}


def _headline(totals: dict[str, dict[str, float]], names: Sequence[str]) -> dict:
    return {m: {k: v.get(k, math.nan) for k in names} for m, v in totals.items()}


def _write_atomic(path: Path, write) -> None:
    """``write(tmp_path)``, then rename over ``path``: a file is there whole or not at all."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def evaluate_footage(data: str | Path, split: str, out: str | Path, *, model=None, config=None,
                     steps: int = 4, seed: int = 0, batch_size: int = 4,
                     space: str = "reference", max_clips: int | None = None,
                     max_frames: int | None = DEFAULT_MAX_FRAMES,
                     max_pairs: int | None = DEFAULT_MAX_PAIRS,
                     photo: str | Path | None = None, driver_track: str | Path | None = None,
                     checkpoint_name: str = "", progress: bool = True,
                     size: int | None = None, backdrop: str = "world", body: str = "head",
                     geometry: str = "surface", paint: str = "holes",
                     prior_fill: str = "outside") -> dict:
    """Self- and cross-reenactment on a real-footage split (model None: baselines only); write
    ``out``/metrics.json, details.json and report.html. Returns the metrics.json content.

    ``photo``/``driver_track``: the extra identity image and driving track of the cross
    task (default ``data/identity.png`` and ``data/default_track.csv``). ``size``: the image
    size when there is no model (default: the clips'). ``backdrop``: ``"world"`` (the main
    job's default for MPIs made in the photo's camera, ``mpitalk.backdrop``: each frame's head
    planes over one still room, as real video has it) or ``"head"`` (each MPI rendered whole,
    the room moving with the head); ``body``: with the world backdrop, ``"head"`` (the job's
    default: the whole person moves with the head) or ``"world"`` (``mpitalk.body``: the head
    planes end at the neck, the body stays with the room). ``geometry``: how the model's
    planes are stored (``generate.GEOMETRIES``: the main job's default ``"surface"``, or the
    soft ``"layers"``);
    ``paint``: where its painted colour shows (``generate.PAINTS``, default ``"holes"``);
    ``prior_fill``: the rig prior's flow past the face (``generate.PRIOR_FILLS``)."""
    from tqdm import tqdm

    from mpitalk import controls, data_dir, generate
    from mpitalk.evaluate.report import write_footage_report

    photo = Path(photo) if photo is not None else data_dir() / "identity.png"
    driver_track = (Path(driver_track) if driver_track is not None
                    else data_dir() / "default_track.csv")
    for p, what in ((photo, "photo"), (driver_track, "driving track")):
        if not p.is_file():
            raise UserError(f"{p}: {what} not found; check the path")
    if model is not None:
        size = config.image_size
    if size is None:
        import json

        manifest = json.loads((Path(data) / "manifest.json").read_text())
        size = int(manifest["size"])
    clips = load_clips(data, split, size, max_clips, max_frames)
    K = np.asarray(clips[0].data["K"], np.float32)
    if model is not None:
        mpi_depths, mpi_K = generate.mpi_geometry(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    methods = [m for m in METHODS if model is not None or m != "model"]
    t_start, cpu_start = time.perf_counter(), time.process_time()
    load_start = list(os.getloadavg())

    def model_frames(identity, track, **kw) -> np.ndarray:
        """The model's frames (T,S,S,3) float: each MPI rendered at its frame's pose, over the
        world backdrop as the main job shows them (``backdrop``; reference space only)."""
        mpis, frame_from_mpi = generate_clip(model, config, identity, track, steps, seed,
                                             batch_size, space, geometry=geometry, paint=paint,
                                             prior_fill=prior_fill,
                                             **kw)
        if backdrop != "world" or space != "reference":
            return render_frames(mpis, mpi_depths, mpi_K, frame_from_mpi[:, None])[0][:, 0]
        return over_backdrop(mpis, identity, mpi_depths, mpi_K, frame_from_mpi,
                             values=track.values if body == "world" else None,
                             photo_values=kw.get("photo_values"))

    self_rows, self_images = [], {}
    for clip in tqdm(clips, desc="self-reenactment", unit="clip", disable=not progress):
        gen = None
        if model is not None:
            # the clip's own head motion, as motion from the identity frame's tracked pose
            gen = model_frames(metrics.to_float(clip.data["identity_rgb"]), clip.track,
                               photo_pose=clip.data["identity_pose"],
                               photo_values=clip.data["identity_controls"])
        scores, images = self_clip(clip, gen, K)
        self_rows.append({"clip": clip.name, "source": clip.source, "scores": scores,
                          "tracks": images["tracks"]})
        self_images.setdefault(clip.source, (clip.name, images))
    t_self = time.perf_counter() - t_start

    # the photo first, then the clips' identity frames taking the sources in turn, so that a
    # bounded run (max_pairs) still covers every source
    order = interleave_sources([c.source for c in clips])
    photos = [Photo(photo.name, photo.stem, generate.prepare_identity(str(photo), size), None,
                    generate.photo_expression(str(photo)))]
    photos += [Photo(clips[k].name, clips[k].source,
                     metrics.to_float(clips[k].data["identity_rgb"]),
                     clips[k].data["identity_pose"], clips[k].data["identity_controls"])
               for k in order]
    track = controls.load(str(driver_track))
    if max_frames is not None:
        track = controls.Track(track.values[:max_frames], track.pose[:max_frames], track.fps)
    drivers = [(c.name, c.track) for c in clips] + [(driver_track.name, track)]
    pairs = cross_pairs(len(photos), len(drivers), [None] + order, max_pairs)
    cross_rows, cross_images = [], {}
    per_photo: dict[int, tuple] = {}  # what depends on the photo alone, once per photo
    for i, j in tqdm(pairs, desc="cross-reenactment", unit="pair", disable=not progress):
        ph, (driver_name, drv) = photos[i], drivers[j]
        if i not in per_photo:
            # the flat plane at the head's depth, seen from where it was made: the head is still
            pose = (ph.pose if ph.pose is not None
                    else generate.reference_pose(generate.identity_conditions(ph.image, K)))
            rgba, depths = flat_mpi(ph.image, pose)
            eye = np.eye(4, dtype=np.float32)[None, None]
            per_photo[i] = (render_frames([rgba], depths, K, eye)[0][0, 0], photo_face(ph))
        flat, face = per_photo[i]
        frames = {"flat": np.broadcast_to(flat, (len(drv),) + flat.shape),
                  "identity_image": np.broadcast_to(ph.image, (len(drv),) + ph.image.shape)}
        if model is not None:
            # the main job's path with --pose-scale 0: the track's head held still, then put
            # at the photo's pose (generate.relative_to_identity)
            frames = {"model": model_frames(ph.image, drv.scaled(1.0, 0.0), relative=True,
                                            photo_values=ph.values),
                      **frames}
        scores, images = cross_pair(ph, frames, drv.values, face)
        if j < len(clips):  # the real frames whose expression is followed
            images["driver"] = metrics.to_float(clips[j].data["target_rgb"][images["picks"]])
        cross_rows.append({"photo": ph.name, "source": ph.source, "driver": driver_name,
                           "scores": scores, "tracks": images["tracks"]})
        # the report shows each source's first pair driven by a clip (its real frames too)
        if ph.source not in cross_images or (j < len(clips)
                                             and "driver" not in cross_images[ph.source][1]):
            cross_images[ph.source] = (f"{ph.name} driven by {driver_name}", images)
    seconds = time.perf_counter() - t_start

    self_tot = _means(self_rows, "scores", methods)
    real_tot = mean_dicts([r["scores"]["real"] for r in self_rows])
    cross_tot = _means(cross_rows, "scores", methods)
    manifest_sha = hashlib.sha256((Path(data) / "manifest.json").read_bytes()).hexdigest()
    run = {"checkpoint": checkpoint_name, "data": str(data), "split": split,
           "manifest_sha256": manifest_sha,
           "clips": len(clips), "frames_per_clip": [len(c.data["controls"]) for c in clips],
           "pairs": len(pairs), "cross_frames": [len(drivers[j][1]) for _, j in pairs],
           "steps": steps, "seed": seed, "space": space, "backdrop": backdrop, "body": body,
           "geometry": geometry, "paint": paint, "prior_fill": prior_fill,
           "photo": str(photo),
           "driver_track": str(driver_track), "self_seconds": t_self, "seconds": seconds,
           "cpu_seconds": time.process_time() - cpu_start,  # all threads: the work, unloaded
           # the machine's load while it ran: wall times on a shared machine depend on it
           "load_average_start": load_start, "load_average_end": list(os.getloadavg())}
    result = json_ready({
        "self_reenactment": _headline(self_tot, SELF_METRICS),
        "cross_reenactment": _headline(cross_tot, CROSS_METRICS),
        "reference": {"real_frames": real_tot},
        "by_source": {"self_reenactment": _by_source(self_rows, methods),
                      "cross_reenactment": _by_source(cross_rows, methods)},
        "expression_pooled": {
            "self_reenactment": _pooled_by_source(self_rows, "real", methods),
            "cross_reenactment": _pooled_by_source(cross_rows, "driver", methods)},
        "run": run})
    details = json_ready({**run, "total": {"self_reenactment": {m: nest(v) for m, v in
                                                                self_tot.items()},
                                           "cross_reenactment": {m: nest(v) for m, v in
                                                                 cross_tot.items()},
                                           "real_frames": real_tot},
                          "self_reenactment": [{**{k: r[k] for k in ("clip", "source")},
                                                **r["scores"]} for r in self_rows],
                          "cross_reenactment": [{**{k: r[k] for k in ("photo", "source",
                                                                      "driver")},
                                                 **r["scores"]} for r in cross_rows]})
    _write_atomic(out / "metrics.json", lambda p: write_json(p, result))
    _write_atomic(out / "details.json", lambda p: write_json(p, details))
    _write_atomic(out / "report.html", lambda p: write_footage_report(
        p, result, details, self_images, cross_images))
    return result
