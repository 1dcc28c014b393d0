"""Synthetic multi-view talking-head dataset with ground truth (format: docs/dataset.md).

Each identity is the ARKit face rig (``rig.py``) with a random smooth head-shape deformation, a
procedural albedo baked into the rig's UV atlas (skin tone, lips, brows, stubble/makeup, eye
colour), a procedural hair shell (several styles and colours), a neck/shoulders proxy, random
lighting and a backdrop plane at head-frame z = +0.5 m textured with a crop of a real photograph
(``skimage.data``) or a procedural pattern. Motion mixes random windows of the rig's captured
performance (speed changes, mirroring) with random blendshape combinations, plus head pose.

Per frame five cameras are rendered with one GL context: the target view and the extra views
``yaw_plus10``, ``yaw_minus10`` (``camera.orbit_pose`` about the head centre), ``left_eye``,
``right_eye`` (``camera.stereo_eyes``), each with RGB, alpha and metric z-depth, 2x supersampled.
Shading is diffuse only, so every view of one instant agrees in colour (a test reprojects pixels
through the depth maps to check it). Every random choice derives from ``--seed``, identity and
clip numbers, and NPZs are written with fixed zip timestamps: same arguments, same bytes.

Modules: ``identity`` (one person's random parameters and albedo), ``meshes`` (hair, glasses,
neck/shoulders), ``scene`` (the GL renderer and the dataset's cameras), ``motion`` (controls and
head pose per clip), ``writer`` (clips, NPZs, splits, manifest; the CLI), ``reader``
(``ClipDataset``).

CLI: ``python -m mpitalk.synth --out DIR --identities N --clips-per-identity M --frames T
--size S --seed K [--preview]``.
"""

from mpitalk.synth.identity import ATLAS_PX, HAIR_STYLES, Identity, deform, make_identity
from mpitalk.synth.meshes import welded_normals
from mpitalk.synth.motion import FPS, make_motion
from mpitalk.synth.reader import ClipDataset, identity_of, true_identity_info
from mpitalk.synth.scene import (
    BACKDROP_Z_M,
    SUPERSAMPLE,
    VIEWS,
    SceneRenderer,
    intrinsics,
    view_poses,
)
from mpitalk.synth.writer import (
    FAR_M,
    FORMAT_VERSION,
    NEAR_M,
    clip_name,
    generate,
    main,
    render_clip,
    split_identities,
    write_npz,
)

__all__ = [
    "ATLAS_PX",
    "BACKDROP_Z_M",
    "FAR_M",
    "FORMAT_VERSION",
    "FPS",
    "HAIR_STYLES",
    "NEAR_M",
    "SUPERSAMPLE",
    "VIEWS",
    "ClipDataset",
    "Identity",
    "SceneRenderer",
    "clip_name",
    "deform",
    "generate",
    "identity_of",
    "intrinsics",
    "main",
    "make_identity",
    "make_motion",
    "render_clip",
    "split_identities",
    "true_identity_info",
    "view_poses",
    "welded_normals",
    "write_npz",
]
