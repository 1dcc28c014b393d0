// The WebGL2 renderer of a factored MPI bundle: each video frame of the atlas is uploaded and
// repacked into per-plane field textures (glsl/unpack.frag); each view is one draw of
// glsl/mpi.frag (which does mpi.materialize + mpi.render).
import { asMat3, invertRigid, inv3, mul3, mul4 } from './linalg.js';

function compile(gl, type, source, name) {
  const sh = gl.createShader(type);
  gl.shaderSource(sh, source);
  gl.compileShader(sh);
  if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS))
    throw new Error(`${name} does not compile: ${gl.getShaderInfoLog(sh)}`);
  return sh;
}

// "#define" lines inserted after the #version line.
function withDefines(source, defines) {
  const nl = source.indexOf('\n');
  const lines = Object.entries(defines).map(([k, v]) => `#define ${k} ${v}\n`).join('');
  return source.slice(0, nl + 1) + lines + source.slice(nl + 1);
}

function texture(gl) {
  const tex = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, tex);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  return tex;
}

export class MPIRenderer {
  // gl: a WebGL2 context; scene: scene.json; photo: an ImageBitmap; sources: {vert, frag};
  // backdrop: an ImageBitmap of scene.backdrop (the world backdrop), or null.
  constructor(gl, scene, photo, sources, backdrop = null) {
    this.gl = gl;
    this.scene = scene;
    const a = scene.atlas, D = scene.num_planes, S = a.tile;
    // with a world backdrop, each frame's first back_planes planes are left out and the
    // backdrop is drawn behind the rest, at the view's pose alone (mpitalk/backdrop.py)
    const back = backdrop && scene.backdrop ? scene.backdrop.back_planes : 0;
    const defines = { NUM_PLANES: D, FLOW_GROUPS: a.flow_groups, FIRST_PLANE: back,
                      BACKDROP: back > 0 ? 1 : 0 };
    const link = (frag, name) => {
      const prog = gl.createProgram();
      gl.attachShader(prog, compile(gl, gl.VERTEX_SHADER, sources.vert, 'glsl/mpi.vert'));
      gl.attachShader(prog, compile(gl, gl.FRAGMENT_SHADER, withDefines(frag, defines), name));
      gl.linkProgram(prog);
      if (!gl.getProgramParameter(prog, gl.LINK_STATUS))
        throw new Error(`${name} does not link: ${gl.getProgramInfoLog(prog)}`);
      return prog;
    };
    const prog = link(sources.frag, 'glsl/mpi.frag');
    this.prog = prog;
    this.unpackProg = link(sources.unpack, 'glsl/unpack.frag');
    this.vao = gl.createVertexArray();  // no attributes: the vertex shader uses gl_VertexID
    const u = (name) => gl.getUniformLocation(prog, name);
    this.u = Object.fromEntries(['u_origin', 'u_ray', 'u_viewport', 'u_world_origin',
                                 'u_world_ray'].map((n) => [n, u(n)]));

    // pixels as stored: no colour management, no premultiplication, rows from the top
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    this.photoTex = texture(gl);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, photo);
    this.backdropTex = null;
    if (back > 0) {
      this.backdropTex = texture(gl);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, backdrop);
    }
    this.atlasTex = texture(gl);  // the video frame as decoded (grey tiles)
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, a.width, a.height, 0, gl.RGBA, gl.UNSIGNED_BYTE,
                  null);
    this.colorTex = texture(gl);  // repacked by glsl/unpack.frag, one layer per plane
    gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGBA8, S, S);
    this.fieldsTex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D_ARRAY, this.fieldsTex);
    for (const [k, v] of [[gl.TEXTURE_MIN_FILTER, gl.LINEAR], [gl.TEXTURE_MAG_FILTER, gl.LINEAR],
                          [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE],
                          [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]])
      gl.texParameteri(gl.TEXTURE_2D_ARRAY, k, v);
    gl.texStorage3D(gl.TEXTURE_2D_ARRAY, 1, gl.RGBA8, S, S, D);
    this.unpackFbo = gl.createFramebuffer();
    gl.useProgram(this.unpackProg);
    const uu = (name) => gl.getUniformLocation(this.unpackProg, name);
    gl.uniform1i(uu('u_atlas'), 0);
    gl.uniform1i(uu('u_tile'), S);
    gl.uniform1i(uu('u_cols'), a.cols);
    gl.uniform4i(uu('u_first'), a.first.alpha, a.first.blend, a.first.color, a.first.flow);
    this.uPlane = uu('u_plane');
    this.uGroup = uu('u_group');

    gl.useProgram(prog);
    gl.uniform1i(u('u_fields'), 0);
    gl.uniform1i(u('u_color'), 2);
    gl.uniform1i(u('u_photo'), 1);
    gl.uniform1f(u('u_flow_range'), scene.flow_range);
    gl.uniform1fv(u('u_depths'), new Float32Array(scene.depths));
    gl.uniform4fv(u('u_footprint'), new Float32Array(scene.plane_footprints.flat()));
    const K = asMat3(scene.K);
    gl.uniform4f(u('u_Kn'), K[0] / S, K[4] / S, K[2] / S, K[5] / S);
    // mpi.render of the dense MPI at the photo's size clamps the back plane to its texel centres
    gl.uniform1f(u('u_back_clamp'), 0.5 / scene.photo_size);
    if (back > 0) {  // an opaque plane at the far depth, clamped to its texel centres too
      gl.uniform1i(u('u_backdrop'), 3);
      gl.uniform1f(u('u_backdrop_clamp'), 0.5 / scene.backdrop.size);
    }
    this.frameFromMpi = scene.frame_from_mpi.map((m) => m.flat());
    this.frame = -1;  // the frame whose fields are in the atlas texture
  }

  // The fields of the frame a video element shows (`frame`): the decoded atlas uploaded, then
  // repacked (glsl/unpack.frag) into the fields array and the colour texture, one small draw per
  // plane. Restores the framebuffer binding.
  upload(video, frame) {
    const gl = this.gl, S = this.scene.atlas.tile;
    const bound = gl.getParameter(gl.FRAMEBUFFER_BINDING);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.atlasTex);
    gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, gl.RGBA, gl.UNSIGNED_BYTE, video);
    gl.useProgram(this.unpackProg);
    gl.bindVertexArray(this.vao);
    gl.disable(gl.SCISSOR_TEST);
    gl.disable(gl.BLEND);
    gl.colorMask(true, true, true, true);
    gl.viewport(0, 0, S, S);
    gl.bindFramebuffer(gl.FRAMEBUFFER, this.unpackFbo);
    for (let i = -1; i < this.scene.num_planes; i++) {
      if (i < 0) {
        gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D,
                                this.colorTex, 0);
      } else {
        gl.framebufferTextureLayer(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, this.fieldsTex, 0, i);
        gl.uniform1i(this.uGroup, this.scene.plane_groups[i]);
      }
      gl.uniform1i(this.uPlane, i);
      gl.drawArrays(gl.TRIANGLES, 0, 3);
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, bound);
    this.frame = frame;
  }

  // The default intrinsics of a square view of `size` pixels: the capture camera's.
  defaultK(width, height = width) {
    const K = asMat3(this.scene.K), s = Math.min(width, height) / this.scene.size;
    return [K[0] * s, 0, width / 2 + (K[2] - this.scene.size / 2) * s,
            0, K[4] * s, height / 2 + (K[5] - this.scene.size / 2) * s, 0, 0, 1];
  }

  // Draw the current frame into the bound framebuffer, one view at a time. Each view:
  // {viewFromFrame: 16 numbers row-major, K: 9 numbers (pixels of this view), viewport: [x, y, w,
  // h] (y from the bottom), colorMask: optional [r, g, b]}.
  draw(views) {
    const gl = this.gl;
    gl.useProgram(this.prog);
    gl.bindVertexArray(this.vao);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D_ARRAY, this.fieldsTex);
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, this.photoTex);
    gl.activeTexture(gl.TEXTURE2);
    gl.bindTexture(gl.TEXTURE_2D, this.colorTex);
    if (this.backdropTex) {
      gl.activeTexture(gl.TEXTURE3);
      gl.bindTexture(gl.TEXTURE_2D, this.backdropTex);
    }
    gl.disable(gl.DEPTH_TEST);
    gl.disable(gl.BLEND);
    gl.enable(gl.SCISSOR_TEST);
    const frameFromMpi = this.frameFromMpi[Math.max(this.frame, 0)];
    for (const view of views) {
      const mpiFromView = invertRigid(mul4(view.viewFromFrame, frameFromMpi));
      const R = [0, 1, 2, 4, 5, 6, 8, 9, 10].map((k) => mpiFromView[k]);
      const ray = mul3(R, inv3(view.K));
      const [x, y, w, h] = view.viewport;
      gl.viewport(x, y, w, h);
      gl.scissor(x, y, w, h);
      const m = view.colorMask || [true, true, true];
      gl.colorMask(m[0], m[1], m[2], true);
      gl.uniform3f(this.u.u_origin, mpiFromView[3], mpiFromView[7], mpiFromView[11]);
      gl.uniformMatrix3fv(this.u.u_ray, true, new Float32Array(ray));
      gl.uniform4f(this.u.u_viewport, x, y, w, h);
      if (this.backdropTex) {  // the backdrop is fixed in the frame's camera: the view's pose
        const frameFromView = invertRigid(view.viewFromFrame);
        const Rw = [0, 1, 2, 4, 5, 6, 8, 9, 10].map((k) => frameFromView[k]);
        gl.uniform3f(this.u.u_world_origin, frameFromView[3], frameFromView[7],
                     frameFromView[11]);
        gl.uniformMatrix3fv(this.u.u_world_ray, true, new Float32Array(mul3(Rw, inv3(view.K))));
      }
      gl.drawArrays(gl.TRIANGLES, 0, 3);
    }
    gl.colorMask(true, true, true, true);
    gl.disable(gl.SCISSOR_TEST);
  }
}
