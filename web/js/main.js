// The mpitalk headset page: loads the bundle (scene.json, photo.jpg, fields.mp4, the shader),
// draws frame 0 at once, and offers playback, a desktop orbit / stereo preview and WebXR.
//
// URL parameters: ?frame=N (show frame N), ?ui=0 (no controls: a square canvas showing the
// frame from its own camera, for screenshots and tests), ?size=PX (that canvas's side).
//
// Test hook (documented in README): window.mpitalk
//   .ready                       a Promise, resolved once the first frame is drawn, rejected with
//                                the on-page error message if the bundle cannot be shown
//   .renderAt(frame, viewFromFrame, K = null, size = null) -> Promise<ImageData>
//                                frame `frame` rendered from the pose viewFromFrame (4x4, nested
//                                rows or 16 numbers row-major, metres, OpenCV axes, relative to
//                                the frame's camera) with intrinsics K (3x3 pixels; default: the
//                                capture camera's scaled to `size`), into a size x size image
//                                (default: the canvas's side); rows from the top, RGBA8
//   .timeStereo(n = 10, size = 1024) -> Promise<ms>   mean time of n playback frames at two
//                                size x size eyes (benchmark: bench/bench_web.py)
//   .scene                       scene.json
//   .error                       the error message shown, or null
import { asMat3, asMat4, identity4, mul4, orbitPose, translation } from './linalg.js';
import { MPIRenderer } from './renderer.js';
import { startVR, vrSupported } from './xr.js';

const params = new URLSearchParams(location.search);
const showUi = params.get('ui') !== '0';
const IPD_M = 0.063;
const HEAD_DEPTH_M = 0.6;  // the capture camera's distance to the head: the orbit pivot

let resolveReady, rejectReady;
const api = {
  ready: new Promise((res, rej) => { resolveReady = res; rejectReady = rej; }),
  scene: null,
  error: null,
  renderAt: () => Promise.reject(new Error(api.error || 'the bundle is still loading')),
};
api.ready.catch(() => {});  // the page shows the error; an unawaited rejection is not another
window.mpitalk = api;

function showError(message) {
  if (api.error) return;
  api.error = message;
  const el = document.getElementById('error');
  el.textContent = `mpitalk: ${message}`;
  el.hidden = false;
  rejectReady(new Error(message));
}
window.addEventListener('error', (e) => showError(`page error: ${e.message}`));
window.addEventListener('unhandledrejection', (e) => showError(`page error: ${e.reason}`));

const REBUILD = 'rebuild the bundle with python -m mpitalk.web MPI_DIR --out SITE';

async function fetchOk(name, kind) {
  let res;
  try {
    res = await fetch(name);
  } catch (e) {
    throw new Error(`cannot load ${name} (${e.message}); ${REBUILD}`);
  }
  if (!res.ok) throw new Error(`${name} is missing (HTTP ${res.status}); ${REBUILD}`);
  try {
    return await res[kind]();
  } catch (e) {
    throw new Error(`${name} is damaged (${e.message}); ${REBUILD}`);
  }
}

function checkScene(s) {
  const bad = (what) => { throw new Error(`scene.json is damaged (${what}); ${REBUILD}`); };
  if (s.format !== 'mpitalk-web') bad('not an mpitalk web bundle');
  if (s.version !== 1) bad(`bundle version ${s.version}; this page reads version 1`);
  const D = s.num_planes, T = s.num_frames;
  if (!(D > 0) || s.depths?.length !== D || s.plane_groups?.length !== D ||
      s.plane_footprints?.length !== D) bad('plane layout');
  if (!(T > 0) || s.frame_from_mpi?.length !== T) bad('frame poses');
  if (!(s.fps > 0) || !s.atlas || !(s.atlas.tile > 0)) bad('fps or atlas');
  asMat3(s.K);
  s.frame_from_mpi.forEach((m) => asMat4(m));
}

// The fields video, from an in-memory copy: seeking needs no HTTP range requests then, so any
// static server works.
async function loadVideo(scene) {
  const blob = await fetchOk(scene.video, 'blob');
  const video = document.createElement('video');
  video.playsInline = true;
  video.preload = 'auto';
  video.muted = !scene.audio;
  await new Promise((resolve, reject) => {
    video.addEventListener('loadeddata', resolve, { once: true });
    video.addEventListener('error', () => reject(new Error(
      `${scene.video} cannot be decoded (${video.error?.message || 'bad video'}); ${REBUILD}`)),
      { once: true });
    video.src = URL.createObjectURL(blob);
  });
  if (video.videoWidth !== scene.atlas.width || video.videoHeight !== scene.atlas.height)
    throw new Error(`${scene.video} is ${video.videoWidth}x${video.videoHeight}, scene.json says ` +
                    `${scene.atlas.width}x${scene.atlas.height}; ${REBUILD}`);
  return video;
}

async function main() {
  const scene = await fetchOk('scene.json', 'json');
  checkScene(scene);
  api.scene = scene;
  const [vert, frag, unpack, photoBlob] = await Promise.all([
    fetchOk('glsl/mpi.vert', 'text'), fetchOk('glsl/mpi.frag', 'text'),
    fetchOk('glsl/unpack.frag', 'text'), fetchOk(scene.photo, 'blob')]);
  const bitmap = async (blob, name) => {
    try {
      return await createImageBitmap(blob, { colorSpaceConversion: 'none',
                                             premultiplyAlpha: 'none' });
    } catch (e) {
      throw new Error(`${name} is damaged (${e.message}); ${REBUILD}`);
    }
  };
  const photo = await bitmap(photoBlob, scene.photo);
  // the world backdrop (optional): the room that stays still while the head moves
  const backdrop = scene.backdrop
    ? await bitmap(await fetchOk(scene.backdrop.file, 'blob'), scene.backdrop.file) : null;
  const video = await loadVideo(scene);

  const canvas = document.getElementById('view');
  const gl = canvas.getContext('webgl2', { alpha: false, antialias: false,
                                           preserveDrawingBuffer: true, xrCompatible: true });
  if (!gl) throw new Error('this browser has no WebGL2');
  const renderer = new MPIRenderer(gl, scene, photo, { vert, frag, unpack }, backdrop);
  const T = scene.num_frames;
  const clampFrame = (f) => Math.min(T - 1, Math.max(0, Math.round(f)));

  // -- the video as a frame source: seek, then upload ------------------------------------------
  let seekChain = Promise.resolve();
  const seek = (frame) => {
    seekChain = seekChain.then(async () => {
      frame = clampFrame(frame);
      if (renderer.frame === frame && video.paused) return;
      video.pause();
      const t = (frame + 0.5) / scene.fps;  // the middle of the frame's display interval
      if (Math.abs(video.currentTime - t) > 1e-6) {
        // 'seeked' can come before the new picture is ready to copy into a texture; the video
        // frame callback comes when it is presented (a fallback timer, should it never come)
        await new Promise((resolve) => {
          let seeked = false, shown = !('requestVideoFrameCallback' in video);
          const done = () => { if (seeked && shown) resolve(); };
          if (!shown) video.requestVideoFrameCallback(() => { shown = true; done(); });
          video.addEventListener('seeked', () => {
            seeked = true;
            done();
            setTimeout(() => { shown = true; done(); }, 1000);
          }, { once: true });
          video.currentTime = t;
        });
      }
      renderer.upload(video, frame);
    });
    return seekChain;
  };
  const playingFrame = () => clampFrame(Math.floor(video.currentTime * scene.fps + 1e-3));

  // -- desktop view state ----------------------------------------------------------------------
  const view = { yaw: 0, pitch: 0, zoom: 1, mode: 'mono' };  // mono | sbs | anaglyph
  const fit = () => {
    const dpr = Math.min(window.devicePixelRatio || 1, 2);
    if (!showUi) {
      const side = Number(params.get('size')) ||
        Math.floor(Math.min(innerWidth, innerHeight) * dpr);
      canvas.width = canvas.height = side;
      canvas.style.width = canvas.style.height = `${side / dpr}px`;
    } else {
      canvas.width = Math.floor(innerWidth * dpr);
      canvas.height = Math.floor(innerHeight * dpr);
    }
  };
  const desktopViews = () => {
    const W = canvas.width, H = canvas.height;
    const center = orbitPose(view.yaw, view.pitch, [0, 0, HEAD_DEPTH_M]);
    const zoomK = (K) => [K[0] * view.zoom, 0, K[2], 0, K[4] * view.zoom, K[5], 0, 0, 1];
    if (view.mode === 'mono') return [{ viewFromFrame: center, K: zoomK(renderer.defaultK(W, H)),
                                        viewport: [0, 0, W, H] }];
    // parallel eyes at -+IPD/2, principal points shifted so the head is at zero disparity
    // (gl.stereo_views' convergence): comfortable on a screen
    const w = view.mode === 'sbs' ? Math.floor(W / 2) : W;
    const K = zoomK(renderer.defaultK(w, H));
    const shift = K[0] * IPD_M / (2 * HEAD_DEPTH_M);
    return [[IPD_M / 2, -1, 0], [-IPD_M / 2, 1, 1]].map(([tx, sign, i]) => ({
      viewFromFrame: mul4(translation(tx, 0, 0), center),
      K: [K[0], 0, K[2] + sign * shift, 0, K[4], K[5], 0, 0, 1],
      viewport: view.mode === 'sbs' ? [i * w, 0, w, H] : [0, 0, W, H],
      colorMask: view.mode === 'anaglyph' ? (i === 0 ? [true, false, false] : [false, true, true])
                                          : null,
    }));
  };
  let inVR = false;
  const draw = () => {
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.clearColor(0, 0, 0, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    renderer.draw(showUi ? desktopViews()
                         : [{ viewFromFrame: identity4(), K: renderer.defaultK(canvas.width),
                              viewport: [0, 0, canvas.width, canvas.width] }]);
    const label = document.getElementById('frame');
    if (label) label.textContent = `${renderer.frame + 1} / ${T}`;
  };
  // While playing, the atlas follows the video. requestVideoFrameCallback says which frame was
  // presented (its mediaTime is the frame's timestamp, k / fps), so fields and pose agree; where
  // it does not fire (a browser without it, or one that pauses it in an immersive session) the
  // frame shown is taken from currentTime, which can be one frame off the decoded picture.
  let presented = { frame: -1, at: -Infinity };
  if ('requestVideoFrameCallback' in video) {
    const onVideoFrame = (now, meta) => {
      presented = { frame: clampFrame(meta.mediaTime * scene.fps), at: performance.now() };
      video.requestVideoFrameCallback(onVideoFrame);
    };
    video.requestVideoFrameCallback(onVideoFrame);
  }
  const prepareFrame = () => {
    if (video.paused || video.seeking) return;
    const fresh = performance.now() - presented.at < 2000 / scene.fps;
    const frame = fresh ? presented.frame : playingFrame();
    if (frame !== renderer.frame || !fresh) renderer.upload(video, frame);
  };
  const loop = () => {
    if (inVR) return;
    prepareFrame();
    draw();
    if (!video.paused) requestAnimationFrame(loop);
  };
  const redraw = () => { if (video.paused && !inVR) requestAnimationFrame(draw); };
  const togglePlay = () => {
    if (video.paused) {
      if (video.ended || renderer.frame >= T - 1) video.currentTime = 0;
      video.play().then(() => requestAnimationFrame(loop), (e) => showError(`cannot play: ${e}`));
    } else {
      video.pause();
      seek(playingFrame()).then(redraw);
    }
    const b = document.getElementById('play');
    if (b) b.textContent = video.paused ? 'Pause' : 'Play';
  };
  video.addEventListener('pause', () => {
    const b = document.getElementById('play');
    if (b) b.textContent = 'Play';
  });
  video.addEventListener('play', () => {
    const b = document.getElementById('play');
    if (b) b.textContent = 'Pause';
  });

  // -- test hook ---------------------------------------------------------------------------------
  let fbo = null, fboSize = 0;
  api.renderAt = async (frame, viewFromFrame, K = null, size = null) => {
    const side = size || canvas.width;
    const pose = asMat4(viewFromFrame);
    await seek(frame);
    if (fboSize !== side) {
      if (fbo) gl.deleteFramebuffer(fbo);
      fbo = gl.createFramebuffer();
      gl.bindFramebuffer(gl.FRAMEBUFFER, fbo);
      const rb = gl.createRenderbuffer();
      gl.bindRenderbuffer(gl.RENDERBUFFER, rb);
      gl.renderbufferStorage(gl.RENDERBUFFER, gl.RGBA8, side, side);
      gl.framebufferRenderbuffer(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.RENDERBUFFER, rb);
      fboSize = side;
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, fbo);
    renderer.draw([{ viewFromFrame: pose, K: K ? asMat3(K) : renderer.defaultK(side),
                     viewport: [0, 0, side, side] }]);
    const px = new Uint8Array(side * side * 4);
    gl.readPixels(0, 0, side, side, gl.RGBA, gl.UNSIGNED_BYTE, px);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    const out = new ImageData(side, side);  // GL rows start at the bottom: flip
    for (let y = 0; y < side; y++)
      out.data.set(px.subarray((side - 1 - y) * side * 4, (side - y) * side * 4), y * side * 4);
    return out;
  };

  // Benchmark hook: `n` frames of playback work at two eyes of size x size (the atlas uploaded
  // from the video, both eyes drawn into an offscreen framebuffer, one pixel read back to wait
  // for the GPU); resolves to the mean milliseconds per frame.
  api.timeStereo = async (n = 10, size = 1024) => {
    await seek(0);
    const fb = gl.createFramebuffer(), rb = gl.createRenderbuffer();
    gl.bindRenderbuffer(gl.RENDERBUFFER, rb);
    gl.renderbufferStorage(gl.RENDERBUFFER, gl.RGBA8, 2 * size, size);
    gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
    gl.framebufferRenderbuffer(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.RENDERBUFFER, rb);
    const K = renderer.defaultK(size);
    const eyes = [IPD_M / 2, -IPD_M / 2].map((tx, i) => ({
      viewFromFrame: translation(tx, 0, 0), K, viewport: [i * size, 0, size, size] }));
    const px = new Uint8Array(4);
    const frame = () => {
      renderer.upload(video, renderer.frame);
      renderer.draw(eyes);
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
    };
    frame();  // warm-up: shader compilation, texture allocation
    const t0 = performance.now();
    for (let i = 0; i < n; i++) frame();
    const ms = (performance.now() - t0) / n;
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.deleteFramebuffer(fb);
    gl.deleteRenderbuffer(rb);
    return ms;
  };

  // -- first frame, without a gesture ----------------------------------------------------------
  fit();
  await seek(Number(params.get('frame')) || 0);
  draw();
  resolveReady();
  if (!showUi) return;

  // -- desktop controls --------------------------------------------------------------------------
  document.getElementById('ui').hidden = false;
  window.addEventListener('resize', () => { fit(); redraw(); });
  const step = (d) => { seek(renderer.frame + d).then(redraw); };
  document.getElementById('play').onclick = togglePlay;
  document.getElementById('prev').onclick = () => step(-1);
  document.getElementById('next').onclick = () => step(1);
  document.getElementById('mode').onchange = (e) => { view.mode = e.target.value; redraw(); };
  document.getElementById('recentre').onclick = () => {
    Object.assign(view, { yaw: 0, pitch: 0, zoom: 1 });
    redraw();
  };
  window.addEventListener('keydown', (e) => {
    if (e.key === ' ') { e.preventDefault(); togglePlay(); }
    if (e.key === 'ArrowLeft') step(-1);
    if (e.key === 'ArrowRight') step(1);
  });
  let drag = null;
  canvas.addEventListener('pointerdown', (e) => {
    drag = [e.clientX, e.clientY, view.yaw, view.pitch];
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener('pointerup', () => { drag = null; });
  canvas.addEventListener('pointermove', (e) => {
    if (!drag) return;
    const lim = Math.PI / 4;  // the MPI holds what the camera saw: keep to +-45 degrees
    view.yaw = Math.max(-lim, Math.min(lim, drag[2] + (e.clientX - drag[0]) * 0.005));
    view.pitch = Math.max(-lim, Math.min(lim, drag[3] - (e.clientY - drag[1]) * 0.005));
    redraw();
  });
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    view.zoom = Math.max(0.5, Math.min(4, view.zoom * Math.exp(-e.deltaY * 0.001)));
    redraw();
  }, { passive: false });

  if (await vrSupported()) {
    const button = document.getElementById('vr');
    button.hidden = false;
    button.onclick = async () => {
      try {
        inVR = true;
        await startVR({ gl, renderer, prepareFrame, togglePlay,
                        onEnd: () => {  // back on the desktop, paused where it was
                          inVR = false;
                          if (!video.paused) togglePlay();
                          fit();
                          redraw();
                        } });
      } catch (e) {
        inVR = false;
        showError(`cannot enter VR (${e.message})`);
      }
    };
  }
}

main().catch((e) => showError(e.message || String(e)));
