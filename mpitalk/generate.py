"""Identity image + expression track -> MPI sequence (the model's half of the main job).

Follows IM-Portrait's generation scheme: frames are generated in clips (batches); every frame of
a clip after the first is conditioned on one earlier generated frame ("first-frame
conditioning"), so long videos go clip by clip with bounded memory; one noise seed is shared by
all frames, which keeps the sampler's trajectory, and so the output, temporally stable. Which
earlier frame (``PREV_MODES``): ``"anchor"`` (default) the last frame of the first clip, for every
later clip, so errors cannot build up; ``"chain"`` the previous clip's last frame (errors can
carry over from clip to clip); ``"none"`` no frame at all. On 36-frame synthetic tracks the three
measured the same (``scripts/eval_drift.py``, README): the model leans little on that frame.
The model makes each frame's MPI either directly in the frame's camera (``space="target"``)
or, the default, in the identity image's camera (``space="reference"``, the other half of
training's random camera space), and :func:`generate_frames` yields it with the pose
``frame_from_mpi`` that takes that camera to the frame's: every view of the frame (the frame
itself, the stereo eyes, an orbit) is rendered from that MPI directly. Measured: reference space
holds up under head rotation where target space breaks into specks beyond about 5 degrees from
the photo's pose; and rendering the side views straight from the reference-camera MPI, rather
than from it moved into the frame's camera (:func:`generate_mpis`, ``mpi.reproject``: exact at
the frame's view only), is worth about 1 dB at +-10 degrees (README, model status).

The sequence is streamed: frames are yielded (and written by ``mpi_io.save`` /
``mpi_io.save_factored``) one at a time, whatever the track's length. :func:`generate_fields`
yields each reference-space MPI as its fields (the factored MPI, ``mpi.materialize``), which the
main job stores with the photo at full resolution (``mpi_io`` version 3).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import jax
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from mpitalk import UserError, backdrop, camera, controls, flow_fill, mpi, mpi_io, surface
from mpitalk import paint as mpitalk_paint  # the module; ``paint`` is generation's argument
from mpitalk.choices import (  # shared with the job options (no JAX there)
    GEOMETRIES,
    PAINTS,
    PREV_MODES,
    PRIOR_FILLS,
    SPACES,
)

# Portrait framing matched to the training data: in synthetic identity images (K = 1.5 S focal,
# head at 0.6 m) the image side is 2.0 forehead-to-chin heights and the face centre sits 0.06
# face heights below the image centre (MediaPipe landmarks on 12 held-out identities).
CROP_FACE_HEIGHTS = 2.0
CROP_SHIFT_DOWN = -0.06

# Head rotations beyond these are clamped: an MPI made for one view cannot show much more.
MAX_YAW_RAD = np.radians(25.0)
MAX_PITCH_RAD = np.radians(20.0)
# The head depths a photo-camera MPI is shown at (:func:`shown_pose`): farther only shrinks it;
# nearer than 0.4 m would magnify planes made for a head at 0.6 m by more than 1.5x.
SHOWN_DEPTH_M = (0.4, 1.2)
HOLD_FREE_GROW = 2  # texels round the face where hold_sides lets the outline change


_reproject = jax.jit(mpi.reproject)
_render = jax.jit(mpi.render)


def reference_pose(identity_info: dict[str, np.ndarray] | None) -> np.ndarray:
    """The identity image's head pose (6,) as the model takes it: read by MediaPipe, or the
    default frontal pose when unknown (as ``model.build_conditioning`` assumes)."""
    if identity_info is None:
        return camera.default_head_pose().astype(np.float32)
    return np.asarray(identity_info["identity_expression"][52:], np.float32)


@dataclass
class Timings:
    """Seconds per stage, for report.json."""

    stages: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + seconds


def mpi_geometry(config) -> tuple[np.ndarray, np.ndarray]:
    """(depths (D,), K (3,3)) of the MPIs a model with ``config`` produces (numpy)."""
    from mpitalk.model import mpi_geometry as model_geometry

    depths, K = model_geometry(config)
    return np.asarray(depths, np.float32), np.asarray(K, np.float32)


def prepare_identity(image: np.ndarray | str, size: int, *, crop: bool = True,
                     info: dict | None = None) -> np.ndarray:
    """The identity image as (size,size,3) float32 in [0,1]: face-cropped and roll-aligned with
    ``face.crop_portrait`` unless ``crop`` is False (then centre-cropped to a square). The crop
    window does not depend on ``size`` (the face's landmarks fix it), so the model's S-px input
    and the full-resolution photo of a factored MPI come from one call each with their sizes.
    ``info`` (optional dict) receives the crop's facts, ``side_px`` the window's side in the
    image's own pixels (what resolution the photo really holds) and, when cropped,
    ``blendshapes``: the face's reading on the whole image (:func:`photo_expression`'s, from
    the crop's own detection)."""
    from PIL import Image

    from mpitalk import face

    if crop:  # given the path, the crop names the file in its errors ("no face found")
        source = image if isinstance(image, str) else np.asarray(image)
        out, crop_info = face.crop_portrait(source, size, face_heights=CROP_FACE_HEIGHTS,
                                            shift_down=CROP_SHIFT_DOWN)
        if info is not None:
            info.update({"faces_found": crop_info.num_faces, "roll_deg": crop_info.roll_deg,
                         "padded": crop_info.padded, "side_px": crop_info.side_px,
                         "blendshapes": np.asarray(crop_info.blendshapes, np.float32)})
    else:
        img = face.load_image(image) if isinstance(image, str) else np.asarray(image)
        h, w = img.shape[:2]
        s = min(h, w)
        sq = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        out = np.asarray(Image.fromarray(sq).resize((size, size), Image.LANCZOS))
        if info is not None:
            info["side_px"] = float(s)
    return np.asarray(out, dtype=np.float32)[..., :3] / 255.0


def identity_conditions(identity: np.ndarray, K: np.ndarray, align: bool = False,
                        values: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
    """What the model may know about the identity image: its blendshapes and head pose read by
    MediaPipe (rotation; the sideways position from the landmarks, ``face.head_offset``; the
    default depth), and the rig's condition render of them. None when no face is found
    (``--no-crop`` on a non-face image): the model then assumes a neutral frontal pose.
    ``align`` (for a model with a flow branch): also ``prior_align``, the 2-D correspondence
    between the photo's face and the rig's at that expression and pose
    (``prior_align.fit``), which moves the rig's prior flow onto the photo's features; absent
    when MediaPipe cannot read the rig's render. ``chin_px`` (2,): the chin landmark (pixels of
    the S-px image), where :mod:`mpitalk.body` puts the neck cut. ``values`` (52,):
    blendshapes to take for the photo instead of MediaPipe's reading (the evaluation's
    ``relative_true_expression``: a synthetic identity's own, where MediaPipe misreads cartoon
    brows); the pose is still read."""
    from mpitalk import face, rig

    S = identity.shape[0]
    img8 = np.round(np.clip(identity, 0, 1) * 255).astype(np.uint8)
    faces = face.detect_faces(img8, max_faces=1)
    if not faces:
        return None
    pose = camera.default_head_pose()
    pose[:3] = faces[0].pose[:3]
    pose[3:5] = face.head_offset(faces[0], K)  # sideways position from the landmarks
    pose = drivable_pose(pose[None])[0]
    values = np.clip(faces[0].blendshapes if values is None else values, 0, 1).astype(np.float32)
    render = rig.render_condition(values, pose, K, S).astype(np.float32) / 255.0
    info = {"identity_cond": render,
            "identity_expression": np.concatenate([values, pose]).astype(np.float32),
            "chin_px": faces[0].landmarks_px[face.CHIN].astype(np.float32)}  # mpitalk.body
    if align:
        from mpitalk import prior_align

        alignment = prior_align.photo_alignment(faces[0].landmarks_px, values, pose, K, S)
        if alignment is not None:
            info["prior_align"] = alignment
    return info


def photo_expression(image: np.ndarray | str) -> np.ndarray | None:
    """The photo's blendshapes (52,) float32 as MediaPipe reads them on the **whole image**, the
    way a driving track's frames are read (``controls.load``, ``footage.track_video``), for the
    largest face (the one ``face.crop_portrait`` crops); None when no face is found. The model
    is told the photo's expression and the rig moves the face by the track's difference from
    it, so both sides must be read alike: on the S-px crop MediaPipe reads the same face
    otherwise (``data/identity.png``: browDownLeft 0.02 on the 128-px crop, 0.09 on the image;
    over the real validation clips' identity frames the brows 0.19 lower), and the rig then
    lowers the brows of every frame by the difference (README, "The photo's expression read as
    the track's")."""
    from mpitalk import face

    faces = face.detect_faces(image, max_faces=5)  # largest first, as the crop takes it
    return np.asarray(faces[0].blendshapes, np.float32) if faces else None


MODEL_INFO = ("identity_cond", "identity_expression")  # what of identity_conditions the model reads


def drivable_pose(pose: np.ndarray) -> np.ndarray:
    """Clamp a track's head poses (T,6) to what an MPI can show: yaw/pitch limited, the head
    centre kept near the default position."""
    pose = np.array(pose, dtype=np.float32, copy=True)
    pose[:, 0] = np.clip(pose[:, 0], -MAX_YAW_RAD, MAX_YAW_RAD)
    pose[:, 1] = np.clip(pose[:, 1], -MAX_PITCH_RAD, MAX_PITCH_RAD)
    pose[:, 3:5] = np.clip(pose[:, 3:5], -0.05, 0.05)
    pose[:, 5] = np.clip(pose[:, 5], 0.5, 0.75)
    return pose


def shown_pose(pose: np.ndarray) -> np.ndarray:
    """The head poses (T,6) an MPI made in the photo's camera is rendered at: as
    :func:`drivable_pose` (what the model is conditioned on), but with the depth only kept in
    ``SHOWN_DEPTH_M``: a head moving away is shown moving away (an MPI moved farther off is only
    smaller), not stopped at the conditions' 0.75 m."""
    out = drivable_pose(pose)
    out[:, 5] = np.clip(np.asarray(pose, np.float32)[:, 5], *SHOWN_DEPTH_M)
    return out


def relative_to_identity(track: controls.Track,
                         identity_info: dict[str, np.ndarray] | None) -> controls.Track:
    """The track's head motion applied to the photo's pose: each frame's yaw, pitch and roll and
    its sideways position (tx, ty) is the photo's (read by MediaPipe) plus the frame's difference
    from the track's median, so the track's typical pose (whatever angle and place it was filmed
    or exported at) shows the head as the photo does, and the track's motion moves it from
    there. Angles add (a small-angle composition: exact for one axis at a time). Positions are
    taken at the photo's scale: with ``s`` = the photo's depth / the track's median depth, the
    depth is ``s`` times the track's and the sideways differences are ``s`` times theirs (a
    driver filmed at 0.8 m who moves 8 cm away moves the avatar 6 cm away from its 0.6 m: the
    same image motion; a track whose median depth is not in front of the camera, > 5 cm, keeps
    its positions). Without identity info the track is unchanged."""
    if identity_info is None:
        return track
    pose = np.array(track.pose, dtype=np.float32, copy=True)
    photo = np.asarray(identity_info["identity_expression"][52:58], np.float32)
    median = np.median(pose, axis=0)
    s = photo[5] / median[5] if median[5] > 0.05 else np.float32(1.0)
    pose[:, :3] += photo[:3] - median[:3]
    pose[:, 3:5] = photo[3:5] + (pose[:, 3:5] - median[3:5]) * s
    pose[:, 5] *= s
    return controls.Track(values=track.values, pose=pose, fps=track.fps, names=track.names)


def motion_from_photo(track: controls.Track, photo_pose: np.ndarray,
                      identity_info: dict[str, np.ndarray] | None) -> controls.Track:
    """A track whose head poses were tracked in the photo's own footage (``photo_pose`` (6,):
    the photo's pose there, e.g. a clip's identity frame) as poses about the pose the model is
    told for the photo (:func:`reference_pose`) that move the head across the image exactly as
    the footage's did. A photo fixes its scene only up to scale and the model puts the head at
    its own depth, so frame t's motion from the photo ``M_t = head_motion(pose_t, photo_pose)``
    has its translation scaled by ``s = tz_model / tz_photo`` (the same scene s times larger:
    the same images) and is applied to the model's pose: ``cam_from_head(new_t) = M_t^s @
    cam_from_head(reference)``, so ``head_motion(new_t, reference)`` is ``M_t^s``. (Adding the
    pose differences instead moves a head at 0.6 m by what a head at 0.42 m moved.)"""
    photo_pose = np.asarray(photo_pose, np.float32)
    ref = reference_pose(identity_info)
    motion = np.array(camera.head_motion(np.asarray(track.pose, np.float32), photo_pose),
                      np.float64)
    motion[:, :3, 3] *= float(ref[5]) / float(photo_pose[5])
    moved = motion @ np.asarray(camera.head_pose_matrix(ref), np.float64)
    pose = camera.head_pose_from_matrix(moved).astype(np.float32)
    return controls.Track(values=track.values, pose=pose, fps=track.fps, names=track.names)


def frame_conditions(track: controls.Track, size: int, K: np.ndarray,
                     start: int, stop: int) -> dict[str, np.ndarray]:
    """Per-frame conditions for frames [start, stop): the rig's condition render and the
    52+6 expression/pose vector."""
    from mpitalk import rig

    pose = drivable_pose(track.pose[start:stop])
    values = np.clip(track.values[start:stop], 0.0, 1.0).astype(np.float32)
    renders = np.stack([rig.render_condition(values[i], pose[i], K, size)
                        for i in range(stop - start)]).astype(np.float32) / 255.0
    return {"cond_render": renders,
            "expression": np.concatenate([values, pose], axis=1).astype(np.float32)}


def prior_conditions(expression: np.ndarray, identity_info: dict[str, np.ndarray] | None,
                     K: np.ndarray, size: int, reference: bool = True) -> dict[str, np.ndarray]:
    """The rig's prior flow for frames of ``expression`` (n,58) (blendshapes + the drivable
    head pose, as :func:`frame_conditions` gives them): ``prior_flow`` (n,S,S,2) crop units
    and ``prior_valid`` (n,S,S), backward from the MPI's camera (the photo's when
    ``reference``, with the frame's expression at the photo's pose; else the frame's) into
    the photo at its expression and pose (``identity_info``; None: neutral at the default
    pose, as the model then assumes). What a model with a flow branch reads (issue 20). With
    the identity's ``prior_align`` (:func:`identity_conditions`), the reference camera's prior is
    moved onto the photo's face (``prior_align.align_flow``); the frame's camera keeps the rig's."""
    from mpitalk import prior_align

    pose_ref = reference_pose(identity_info)
    values_ref = (np.zeros(52, np.float32) if identity_info is None
                  else np.asarray(identity_info["identity_expression"][:52], np.float32))
    expression = np.asarray(expression, np.float32)
    target_pose = np.broadcast_to(pose_ref, (len(expression), 6)) if reference \
        else expression[:, 52:]
    alignment = identity_info.get("prior_align") if reference and identity_info else None
    flow, valid = prior_align.prior_flow(values_ref, pose_ref, expression[:, :52], target_pose,
                                         K, size, alignment)
    return {"prior_flow": flow, "prior_valid": valid.astype(np.float32)}


def generate_frames(model, config, identity: np.ndarray, track: controls.Track, *,
                    seed: int = 0, steps: int = 8, sampler: str = "euler", batch_size: int = 4,
                    progress: bool = False, timings: Timings | None = None,
                    identity_info: dict[str, np.ndarray] | None = None,
                    prev_mode: str = "anchor", space: str = "reference",
                    geometry: str = "surface", paint: str = "holes",
                    prior_fill: str = "outside", hold_sides: bool = True
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(rgba, frame_from_mpi)`` per track frame: the MPI (D,H,W,4) float32 in the camera
    the model made it in (``space``), and the pose (4,4) that maps that camera into the frame's
    (the head's motion from the identity image for ``"reference"``, the identity matrix for
    ``"target"``). Rendering ``rgba`` at ``view_from_frame @ frame_from_mpi`` shows the frame
    from any view near it, with no resampling in between (what ``mpi_io`` stores).

    identity: (S,S,3) float in [0,1] with S = ``config.image_size``. Frames are sampled in clips
    of ``batch_size``; later clips are conditioned on an earlier frame (``prev_mode``); the
    initial noise comes from one PRNG key shared by all frames. ``identity_info``: the
    identity's ``identity_cond`` and ``identity_expression`` (see :func:`identity_conditions`),
    or None. ``prev_mode``: which earlier frame later clips are conditioned on (``PREV_MODES``).
    ``space``: the camera the model makes each MPI in (``SPACES``; see the module docstring).
    ``geometry``: ``"surface"`` re-lays each MPI's planes as one opaque surface per pixel
    (``mpitalk.surface``: the same image from the camera it was made in, no smear when the head
    turns), ``"layers"`` keeps the model's soft planes (``GEOMETRIES``). ``paint``:
    ``"holes"`` shows the photo wherever the rig's prior can copy it and the model's painted
    colour only in the prior's holes (``mpitalk.paint``; flow models in the photo's camera),
    ``"model"`` the model's own blend (``PAINTS``). ``prior_fill``: ``"outside"`` carries
    the rig prior's flow past the face so that the flow's base does not fold at its outline
    (``mpitalk.flow_fill``; photo's camera only), ``"none"`` keeps it zero there, as training
    has it (``PRIOR_FILLS``). ``hold_sides``: off the face, each frame's pixels keep the
    person or room side of the room split that the first frame made with an earlier frame to
    condition on gave them (``surface.hold_sides``; photo's camera, flow models).
    """
    from mpitalk.model import sample_mpi

    relay = surface.surface_rgba if geometry == "surface" else None
    yield from _generate(sample_mpi, lambda rgba: rgba, relay, model, config, identity, track,
                         seed=seed, steps=steps, sampler=sampler, batch_size=batch_size,
                         progress=progress, timings=timings, identity_info=identity_info,
                         prev_mode=prev_mode, space=space, geometry=geometry, paint=paint,
                         prior_fill=prior_fill, hold_sides=hold_sides)


def generate_fields(model, config, identity: np.ndarray, track: controls.Track, *,
                    geometry: str = "surface",
                    **kw) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Yield ``(fields, frame_from_mpi)`` per track frame: the factored MPI of each frame
    (``alpha``, ``blend`` (D,S,S), ``color`` (S,S,3), ``flow`` (G,S,S,2) float32; see
    ``mpi.materialize``), made in the identity photo's camera, and its pose in the frame. The
    same sampling as :func:`generate_frames` (same arguments; ``space`` must be
    ``"reference"``): ``mpi.materialize(fields, identity, S)`` is its rgba; with the photo at a
    higher resolution (the same crop window, ``prepare_identity(image, P)``) the copied pixels
    are that sharp (``mpi_io.save_factored`` stores this). ``geometry="surface"`` (the default)
    re-lays the fields with ``surface.surface_fields``."""
    from mpitalk.model import sample_fields

    if kw.get("space", "reference") != "reference":
        raise ValueError("factored MPIs are made in the photo's camera (space='reference'); "
                         "target-space generation writes dense MPIs (generate_frames)")
    S = config.image_size
    ident = np.asarray(identity, np.float32)

    groups = model.heads.plane_groups  # as the fields are stored (mpi_io.save_factored)

    def to_dense(fields):  # the batch's dense MPIs at S (for the earlier-frame condition)
        return np.stack([np.asarray(mpi_io.materialize_jit()(f, ident, S, groups))
                         for f in fields])

    relay = (None if geometry == "layers"
             else lambda fields: surface.surface_fields(fields, groups))
    yield from _generate(sample_fields, to_dense, relay, model, config, identity, track,
                         geometry=geometry, **kw)



def _generate(sample, to_dense, relay, model, config, identity: np.ndarray,
              track: controls.Track, *, seed: int = 0, steps: int = 8, sampler: str = "euler",
              batch_size: int = 4, progress: bool = False, timings: Timings | None = None,
              identity_info: dict[str, np.ndarray] | None = None,
              prev_mode: str = "anchor", space: str = "reference", geometry: str = "surface",
              paint: str = "holes", prior_fill: str = "outside", hold_sides: bool = True):
    """The clip loop of :func:`generate_frames` / :func:`generate_fields`: ``sample`` is
    ``sample_mpi`` or ``sample_fields``, ``to_dense`` turns a list of its per-frame outputs
    into their (n,D,S,S,4) dense MPIs, ``relay`` (or None) re-lays each output as ``geometry``
    says before it is yielded (the earlier frame later clips are conditioned on is rendered from
    the planes before re-laying: soft layers, as in training; ``paint`` already applied)."""
    S = config.image_size
    if identity.shape != (S, S, 3):
        raise ValueError(f"identity must be ({S},{S},3), got {identity.shape}")
    if prev_mode not in PREV_MODES:
        raise ValueError(f"prev_mode must be one of {PREV_MODES}, got {prev_mode!r}")
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    if paint not in PAINTS:
        raise ValueError(f"paint must be one of {PAINTS}, got {paint!r}")
    if prior_fill not in PRIOR_FILLS:
        raise ValueError(f"prior_fill must be one of {PRIOR_FILLS}, got {prior_fill!r}")
    if len(track) == 0:
        raise UserError("the expression track has no frames; give a longer track")
    depths, K = mpi_geometry(config)
    key = jax.random.PRNGKey(seed)  # the same key for every clip: shared noise across frames
    prev = np.zeros((S, S, 3), np.float32)
    has_prev = 0.0
    anchor = None  # the planes ``hold_sides`` holds later frames' person and room sides to,
    # with their side of the room split
    timings = timings if timings is not None else Timings()
    bar = tqdm(total=len(track), desc="generate", unit="frame", disable=not progress)
    for start in range(0, len(track), batch_size):
        stop = min(start + batch_size, len(track))
        n = stop - start
        t0 = time.perf_counter()
        cond = frame_conditions(track, S, K, start, stop)
        cond["prev_frame"] = np.broadcast_to(prev, (n, S, S, 3)).astype(np.float32)
        cond["has_prev"] = np.full((n,), has_prev, np.float32)
        if identity_info is not None:
            for k in MODEL_INFO:
                v = identity_info[k]
                cond[k] = np.broadcast_to(v, (n,) + v.shape).astype(np.float32)
        cond["camera_space"] = np.full((n,), float(space == "reference"), np.float32)
        if getattr(config, "flow_bound", 0.0) > 0:  # a warp-and-paint model reads the rig prior
            cond.update(prior_conditions(cond["expression"], identity_info, K, S,
                                         reference=space == "reference"))
            if paint == "holes" and space == "reference":  # the photo outside the prior's holes
                cond["copy_mask"] = mpitalk_paint.copy_mask(cond["prior_valid"])
            if prior_fill == "outside" and space == "reference":  # no fold at the face's edge
                cond["prior_base_flow"] = flow_fill.extend(cond["prior_flow"],
                                                           cond["prior_valid"], fill=False)
        t1 = time.perf_counter()
        ident = np.broadcast_to(identity, (n, S, S, 3)).astype(np.float32)
        out = sample(model, config, ident, cond, key, steps=steps, sampler=sampler)
        # one frame per entry: rgba (D,S,S,4) or a fields dict
        if isinstance(out, dict):
            out = {k: np.asarray(v) for k, v in out.items()}
            items = [{k: v[i] for k, v in out.items()} for i in range(n)]
        else:
            items = list(np.asarray(out))
        if space == "reference":
            frame_from_mpi = camera.head_motion(shown_pose(track.pose[start:stop]),
                                                reference_pose(identity_info)).astype(np.float32)
        else:
            frame_from_mpi = np.broadcast_to(np.eye(4, dtype=np.float32), (n, 4, 4))
        t2 = time.perf_counter()
        timings.add("conditions_s", t1 - t0)
        timings.add("sampling_s", t2 - t1)
        if prev_mode == "chain" or (prev_mode == "anchor" and start == 0):
            # the clip's last frame, seen from its own camera
            last = _render(to_dense(items[-1:])[0], depths, K, frame_from_mpi[-1]).rgb
            prev = np.clip(np.asarray(last), 0.0, 1.0)
            has_prev = 1.0
        t3 = time.perf_counter()
        if hold_sides and space == "reference" and "prior_valid" in cond \
                and cond["has_prev"][0] > 0:
            items, anchor = _hold_sides(items, anchor, cond["prior_valid"], depths)
        if relay is not None:
            items = [relay(item) for item in items]
        timings.add("relay_s", time.perf_counter() - t3)
        yield from zip(items, frame_from_mpi, strict=True)
        bar.update(n)
    bar.close()


def _hold_sides(items: list, anchor: tuple[np.ndarray, np.ndarray] | None,
                prior_valid: np.ndarray, depths: np.ndarray
                ) -> tuple[list, tuple[np.ndarray, np.ndarray]]:
    """``items`` (fields dicts or dense rgba (D,S,S,4)) with each one's alphas held to the
    ``anchor``'s person and room sides off the face (``surface.hold_sides``; the face: the
    prior's valid region and its holes, grown by HOLD_FREE_GROW texels, where the expression
    changes the outline). ``anchor``: its alphas and their ``surface.nearer_than``; None: the
    first item is it. Returns (items, anchor)."""
    split = surface.split_plane(depths, backdrop.SPLIT_M)
    out = []
    for item, valid in zip(items, prior_valid, strict=True):
        alpha = item["alpha"] if isinstance(item, dict) else item[..., 3]
        if anchor is None:
            anchor = (np.array(alpha, copy=True), surface.nearer_than(alpha, split))
        face = valid > 0.5
        free = ndimage.binary_dilation(face | mpitalk_paint.holes(face, 0),
                                       iterations=HOLD_FREE_GROW)
        held = surface.hold_sides(alpha, *anchor, free, split)
        out.append({**item, "alpha": held} if isinstance(item, dict)
                   else np.concatenate([item[..., :3], held[..., None]], -1))
    return out, anchor


def generate_mpis(model, config, identity: np.ndarray, track: controls.Track,
                  **kw) -> Iterator[np.ndarray]:
    """Yield one MPI (D,H,W,4) float32 per track frame, moved into the frame's own camera by
    ``mpi.reproject`` (exact at the frame's view; away from it each warped plane lies flat on
    the plane nearest its depth, which costs the side views: README, model status). Arguments
    as :func:`generate_frames`, which keeps each MPI in the camera it was made in."""
    depths, K = mpi_geometry(config)
    for rgba, frame_from_mpi in generate_frames(model, config, identity, track, **kw):
        if np.array_equal(frame_from_mpi, np.eye(4)):  # made in the frame's camera already
            yield rgba
        else:
            yield np.asarray(_reproject(rgba, depths, K, frame_from_mpi))
