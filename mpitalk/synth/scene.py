"""The GL scene renderer (face, hair, body, glasses, backdrop; diffuse lighting, 2x
supersampled RGB, alpha and z-depth) and the dataset's cameras: one K, four extra views."""

from __future__ import annotations

import moderngl
import numpy as np

from mpitalk import camera, gl, rig
from mpitalk.synth.identity import Identity, deform
from mpitalk.synth.meshes import _body_mesh, _glasses_mesh, _hair_mesh, welded_normals

VIEWS = ("yaw_plus10", "yaw_minus10", "left_eye", "right_eye")
BACKDROP_Z_M = 0.5  # backdrop plane, head frame
SUPERSAMPLE = 2  # render at 2S x 2S, box-filter down to S x S


def intrinsics(size: int) -> np.ndarray:
    """The one K of every camera in the dataset (docs/dataset.md): focal 1.5 * S."""
    return camera.intrinsics(1.5 * size, size, size)


def view_poses(pose6: np.ndarray) -> dict[str, np.ndarray]:
    """{view: (4,4) view_from_target} for the extra ground-truth views of one frame."""
    pivot = np.asarray(pose6[3:6], np.float32)
    left, right = camera.stereo_eyes(camera.DEFAULT_IPD_M)
    return {
        "yaw_plus10": camera.orbit_pose(np.radians(10.0), 0.0, pivot),
        "yaw_minus10": camera.orbit_pose(np.radians(-10.0), 0.0, pivot),
        "left_eye": left,
        "right_eye": right,
    }


class _Object:
    """One mesh on the GPU: a vertex buffer (pos, normal, uv), index buffer, texture."""

    def __init__(
        self,
        r: SceneRenderer,
        n_vertices: int,
        triangles: np.ndarray,
        texture: np.ndarray | None,
        foreground: float,
        lit: float,
    ):
        ctx = r.ctx
        self.vbo = ctx.buffer(reserve=max(n_vertices, 1) * 32)
        self.ibo = ctx.buffer(np.ascontiguousarray(triangles, np.int32).tobytes())
        self.vao = ctx.vertex_array(
            r.prog, [(self.vbo, "3f 3f 2f", "in_pos", "in_normal", "in_uv")], index_buffer=self.ibo
        )
        self.tex = None
        if texture is not None:
            self.tex = ctx.texture(texture.shape[1::-1], 3, np.ascontiguousarray(texture).tobytes())
            self.tex.build_mipmaps()
            self.tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
            self.tex.repeat_x = self.tex.repeat_y = False
        self.foreground, self.lit = foreground, lit

    def write(self, v: np.ndarray, n: np.ndarray, uv: np.ndarray) -> None:
        self.vbo.write(np.concatenate([v, n, uv], 1).astype(np.float32).tobytes())

    def release(self) -> None:
        for o in (self.vao, self.vbo, self.ibo, self.tex):
            if o is not None:
                o.release()


class SceneRenderer:
    """Renders one identity's scene from several cameras; GL objects reused across frames."""

    def __init__(self, size: int, supersample: int = SUPERSAMPLE):
        self.ctx = gl.context()
        self.size, self.ss = size, supersample
        px = size * supersample
        self.prog = gl.program(self.ctx, "rig_scene.vert", "rig_scene.frag")
        self.prog["albedo"].value = 0
        self.fbo = self.ctx.framebuffer(
            color_attachments=[
                self.ctx.texture((px, px), 4),
                self.ctx.texture((px, px), 1, dtype="f4"),
            ],
            depth_attachment=self.ctx.depth_renderbuffer((px, px)),
        )
        K = intrinsics(size)
        self.K = K
        self.clip_from_cam = rig.gl_from_K(
            camera.scale_intrinsics(K, supersample), px, px, 0.05, 5.0
        )
        r = rig.load()
        self.parts = ("head", "eye_left", "eye_right", "teeth")
        tris, base, self.offsets = [], 0, []
        for name in self.parts:
            v, t = (r.neutral, r.triangles) if name == "head" else getattr(r, name)[:2]
            tris.append(t + base)
            self.offsets.append(base)
            base += len(v)
        self.face_tris = np.concatenate(tris).astype(np.int32)
        # The file maps the two eyes to two atlas islands, the right one overlapping skin; both
        # eyes have the same vertex order, so both use the left eye's island (baked as "eye").
        self.face_uv = np.concatenate([r.uv, r.eye_left[2], r.eye_left[2], r.teeth[2]])
        self.n_face = base
        self.objects: dict[str, _Object] = {}
        self.ident: Identity | None = None

    def set_identity(self, ident: Identity) -> None:
        """Upload the identity's textures and static meshes (hair, body, backdrop)."""
        for o in self.objects.values():
            o.release()
        self.objects = {}
        self.ident = ident
        r = rig.load()
        head_v = deform(ident, r.neutral)
        head_n = welded_normals(head_v)
        self.objects["face"] = _Object(self, self.n_face, self.face_tris, ident.albedo, 1.0, 1.0)
        hv, ht, huv, hn = _hair_mesh(ident, head_v, head_n)
        o = _Object(self, len(hv), ht, ident.hair_albedo, 1.0, 1.0)
        o.write(hv, hn, huv)
        self.objects["hair"] = o
        width = float(ident.scale[0])
        nv, nn, nt, sv, sn, st = _body_mesh(ident, width)
        skin_tex = np.broadcast_to((ident.skin_rgb * 0.92 * 255).astype(np.uint8), (4, 4, 3))
        o = _Object(self, len(nv), nt, skin_tex, 1.0, 1.0)
        o.write(nv, nn, np.full((len(nv), 2), 0.5, np.float32))
        self.objects["neck"] = o
        o = _Object(self, len(sv), st, ident.cloth, 1.0, 1.0)
        suv = np.stack([sv[:, 0] * 2 + 0.5, sv[:, 1] * 3], 1) % 1.0
        o.write(sv, sn, suv)
        self.objects["body"] = o
        if ident.glasses is not None:
            gv, gn, gt = _glasses_mesh(ident)
            tex = np.broadcast_to((ident.glasses * 255).astype(np.uint8), (4, 4, 3))
            o = _Object(self, len(gv), gt, tex, 1.0, 1.0)
            o.write(gv, gn, np.full((len(gv), 2), 0.5, np.float32))
            self.objects["glasses"] = o
        # backdrop: a 3 m square at head-frame z = +0.5, facing the camera
        h = 1.5
        bv = np.array(
            [
                [-h, -h, BACKDROP_Z_M],
                [h, -h, BACKDROP_Z_M],
                [-h, h, BACKDROP_Z_M],
                [h, h, BACKDROP_Z_M],
            ],
            np.float32,
        )
        buv = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float32)
        o = _Object(self, 4, np.array([[0, 1, 2], [2, 1, 3]]), ident.backdrop, 0.0, 0.0)
        o.write(bv, np.tile([[0, 0, -1.0]], (4, 1)).astype(np.float32), buv)
        self.objects["backdrop"] = o

    def set_expression(self, weights: np.ndarray) -> None:
        """Pose and deform the face for one instant and upload it (once for all views)."""
        ident = self.ident
        meshes = rig.posed_meshes(weights)
        r = rig.load()
        vs = []
        for k, name in enumerate(self.parts):
            v = meshes[name][0]
            if name.startswith("eye"):
                # eyes move rigidly with the deformed socket: translate and scale about the centre
                c = r.eye_centers[k - 1]
                v = (v - c) * ident.scale.mean() + deform(ident, c[None])[0]
            else:
                v = deform(ident, v)
            vs.append(v)
        v = np.concatenate(vs)
        n = rig.vertex_normals(v, self.face_tris)
        n[: len(r.neutral)] = welded_normals(v[: len(r.neutral)])
        self.objects["face"].write(v, n, self.face_uv)

    def render(
        self, cam_from_head: np.ndarray, light_cam_from_head: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB (S,S,3) uint8, alpha (S,S) uint8, z-depth (S,S) float32 from one camera.
        ``light_cam_from_head``: the world (target camera) pose that fixes the lighting."""
        ident = self.ident
        ctx = self.ctx
        self.fbo.use()
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE)
        p = self.prog
        p["cam_from_head"].write(np.ascontiguousarray(cam_from_head.T, np.float32).tobytes())
        p["clip_from_cam"].write(np.ascontiguousarray(self.clip_from_cam.T).tobytes())
        R = light_cam_from_head[:3, :3]
        p["light_dir"].value = tuple(float(c) for c in R.T @ ident.light_dir_cam)
        p["up_dir"].value = tuple(float(c) for c in R.T @ np.array([0.0, -1.0, 0.0]))
        p["light_rgb"].value = tuple(float(c) for c in ident.light_rgb)
        p["sky_rgb"].value = tuple(float(c) for c in ident.sky_rgb)
        p["ground_rgb"].value = tuple(float(c) for c in ident.ground_rgb)
        for o in self.objects.values():
            o.tex.use(0)
            p["foreground"].value = o.foreground
            p["lit"].value = o.lit
            o.vao.render(moderngl.TRIANGLES)
        px, s = self.size * self.ss, self.ss
        rgba = np.frombuffer(self.fbo.read(components=4, attachment=0), np.uint8).reshape(px, px, 4)
        z = np.frombuffer(
            self.fbo.read(components=1, attachment=1, dtype="f4"), np.float32
        ).reshape(px, px)
        acc = np.zeros((self.size, self.size, 4), np.uint16)
        zmin = z[::s, ::s].copy()
        for di in range(s):
            for dj in range(s):
                acc += rgba[di::s, dj::s]
                np.minimum(zmin, z[di::s, dj::s], out=zmin)  # nearest surface under the pixel
        out = ((acc + (s * s) // 2) // (s * s)).astype(np.uint8)
        return out[..., :3].copy(), out[..., 3].copy(), zmin
