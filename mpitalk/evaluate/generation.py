"""The model under evaluation: loading a checkpoint, and generating a clip's MPIs exactly as the
main job makes them."""

from __future__ import annotations

import numpy as np

from mpitalk import UserError


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


# what the model is told about the identity image (``--identity-info``):
# "estimated": its expression and head pose read by MediaPipe, as the main job does, with each
#   frame's true (absolute) head pose: an error in the photo's estimated pose shows as a wrong
#   head motion;
# "relative": the same estimate, with each frame's pose given as the head's true motion from the
#   photo added to the photo's estimated pose, as the main job applies a track
#   (``generate.relative_to_identity``): only the motion has to be known, not the photo's pose;
# "relative_true_expression": as "relative", but the photo's blendshapes are the dataset's own
#   (its pose still estimated): the track's blendshapes are the dataset's too, while MediaPipe
#   reads a synthetic head's brows raised (browInnerUp 0.74 where the truth is 0.08 on
#   synth_ft test), which the rig prior turns into a spurious brow motion;
# "true": the dataset's own (as the flat baseline has them).
IDENTITY_INFO = ("estimated", "relative", "relative_true_expression", "true")


def generate_clip(model, config, identity: np.ndarray, track, steps: int, seed: int,
                  batch_size: int, space: str = "reference",
                  true_info: dict[str, np.ndarray] | None = None,
                  photo_pose: np.ndarray | None = None, relative: bool = False,
                  photo_values: np.ndarray | None = None, geometry: str = "surface",
                  paint: str = "holes", prior_fill: str = "outside"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(mpis (T,D,S,S,4), frame_from_mpi (T,4,4))`` for one identity (S,S,3) float and track,
    via ``generate.generate_frames``, exactly as the main job makes and stores them (each MPI
    in the camera it was made in, with its pose in the frame's camera): the identity's
    expression and pose are read from the identity image by MediaPipe
    (``generate.identity_conditions``), unless ``true_info`` gives them (the
    dataset's ``identity_cond`` and ``identity_expression``: what the flat baseline knows).
    ``space``: the camera the model makes the MPIs in (``generate.SPACES``). ``photo_pose``:
    the identity image's true pose (6,); given, the track's poses are taken as motion from it
    and moved onto the pose the model is told for the photo ("relative" in ``IDENTITY_INFO``).
    ``relative``: instead, the track's motion about its own median is applied to the photo's
    estimated pose (``generate.relative_to_identity``: the main job's default ``pose_mode``, for
    a track filmed elsewhere). ``photo_values``: blendshapes (52,) to take for
    the identity image instead of MediaPipe's reading of the crop (its pose is still read): a
    synthetic identity's true ones, or a real one's read on the whole image as the track's
    frames were (``generate.photo_expression``, as the main job reads its photo).
    ``geometry``: how the planes are stored (``generate.GEOMETRIES``; the main job's
    default ``"surface"``); ``paint``: where the painted colour shows (``generate.PAINTS``;
    the main job's default ``"holes"``); ``prior_fill``: the rig prior's flow past the face
    (``generate.PRIOR_FILLS``)."""
    from mpitalk import generate

    _, K = generate.mpi_geometry(config)
    info = true_info if true_info is not None else generate.identity_conditions(
        identity, K, align=config.flow_bound > 0, values=photo_values)
    if photo_pose is not None:
        track = generate.motion_from_photo(track, photo_pose, info)
    elif relative:
        track = generate.relative_to_identity(track, info)
    frames = list(generate.generate_frames(model, config, identity, track, seed=seed,
                                           steps=steps, batch_size=batch_size,
                                           identity_info=info, space=space,
                                           geometry=geometry, paint=paint,
                                           prior_fill=prior_fill))
    return np.stack([m for m, _ in frames]), np.stack([p for _, p in frames])
