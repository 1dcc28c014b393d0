// The WebGL2 renderer of a factored MPI bundle: the atlas video frame and the photo as textures,
// and one draw per view of glsl/mpi.frag (which does mpi.materialize + mpi.render).
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
  // gl: a WebGL2 context; scene: scene.json; photo: an ImageBitmap; sources: {vert, frag}.
  constructor(gl, scene, photo, sources) {
    this.gl = gl;
    this.scene = scene;
    const defines = { NUM_PLANES: scene.num_planes, FLOW_GROUPS: scene.atlas.flow_groups };
    const prog = gl.createProgram();
    gl.attachShader(prog, compile(gl, gl.VERTEX_SHADER, sources.vert, 'glsl/mpi.vert'));
    gl.attachShader(prog, compile(gl, gl.FRAGMENT_SHADER, withDefines(sources.frag, defines),
                                  'glsl/mpi.frag'));
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS))
      throw new Error(`the MPI shader does not link: ${gl.getProgramInfoLog(prog)}`);
    this.prog = prog;
    this.vao = gl.createVertexArray();  // no attributes: the vertex shader uses gl_VertexID
    const u = (name) => gl.getUniformLocation(prog, name);
    this.u = Object.fromEntries(['u_origin', 'u_ray', 'u_viewport'].map((n) => [n, u(n)]));

    // pixels as stored: no colour management, no premultiplication, rows from the top
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    this.photoTex = texture(gl);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, photo);
    this.atlasTex = texture(gl);
    const a = scene.atlas;
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, a.width, a.height, 0, gl.RGBA, gl.UNSIGNED_BYTE,
                  null);

    gl.useProgram(prog);
    gl.uniform1i(u('u_atlas'), 0);
    gl.uniform1i(u('u_photo'), 1);
    gl.uniform2f(u('u_atlas_size'), a.width, a.height);
    gl.uniform1f(u('u_tile'), a.tile);
    gl.uniform1i(u('u_cols'), a.cols);
    gl.uniform4i(u('u_first'), a.first.alpha, a.first.blend, a.first.color, a.first.flow);
    gl.uniform1f(u('u_flow_range'), scene.flow_range);
    gl.uniform1fv(u('u_depths'), new Float32Array(scene.depths));
    if (a.flow_groups > 0) gl.uniform1iv(u('u_groups'), new Int32Array(scene.plane_groups));
    const K = asMat3(scene.K), S = scene.size;
    gl.uniform4f(u('u_Kn'), K[0] / S, K[4] / S, K[2] / S, K[5] / S);
    // mpi.render of the dense MPI at the photo's size clamps the back plane to its texel centres
    gl.uniform1f(u('u_back_clamp'), 0.5 / scene.photo_size);
    this.frameFromMpi = scene.frame_from_mpi.map((m) => m.flat());
    this.frame = -1;  // the frame whose fields are in the atlas texture
  }

  // The atlas texture from a video element showing frame `frame`.
  upload(video, frame) {
    const gl = this.gl;
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.atlasTex);
    gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, gl.RGBA, gl.UNSIGNED_BYTE, video);
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
    gl.bindTexture(gl.TEXTURE_2D, this.atlasTex);
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, this.photoTex);
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
      gl.drawArrays(gl.TRIANGLES, 0, 3);
    }
    gl.colorMask(true, true, true, true);
    gl.disable(gl.SCISSOR_TEST);
  }
}
