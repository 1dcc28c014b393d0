// WebXR: an immersive-vr session that renders every eye from its tracked pose.
//
// The capture camera (the frame's camera, 0.6 m from the head) is placed where the viewer's head
// is when the session starts or is recentred, levelled and facing the same way, so the avatar
// appears at arm's length as it was filmed and moving the head gives real parallax.
// Controls: select (trigger, or a pinch) plays / pauses; squeeze (grip) recentres.
import { fromColumnMajor, invertRigid, mul4 } from './linalg.js';

// OpenCV camera axes (x right, y down, z forward) <-> WebXR's (x right, y up, z backward).
const CV_FROM_GL = [1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1];

// Intrinsics (pixels of a viewport w x h, rows from the top) of a WebXR projection matrix
// (column-major): x_ndc = P00 x/z - P02 and y_ndc = -P11 y/z - P12 in OpenCV eye coordinates.
export function intrinsicsFromProjection(P, w, h) {
  return [w / 2 * P[0], 0, w / 2 * (1 - P[8]),
          0, h / 2 * P[5], h / 2 * (1 + P[9]), 0, 0, 1];
}

// world_from_frame (GL axes) of a viewer pose: its position, its heading in the horizontal plane.
function levelled(viewerMatrix) {
  const m = fromColumnMajor(viewerMatrix);
  let hx = -m[2], hz = -m[10];  // the viewer's forward (-z) direction, flattened
  const n = Math.hypot(hx, hz) || 1;
  hx /= n; hz /= n;
  // axes: z = -heading, y = up, x = y cross z
  return [-hz, 0, -hx, m[3], 0, 1, 0, m[7], hx, 0, -hz, m[11], 0, 0, 0, 1];
}

export async function vrSupported() {
  try {
    return !!navigator.xr && await navigator.xr.isSessionSupported('immersive-vr');
  } catch {
    return false;
  }
}

// Run one immersive session. app: {gl, renderer, prepareFrame() (uploads the playing frame),
// togglePlay(), onEnd()}.
export async function startVR(app) {
  const session = await navigator.xr.requestSession('immersive-vr');
  const gl = app.gl;
  await gl.makeXRCompatible();
  // ?xrscale=F renders the eyes at F times the headset's recommended resolution (each pixel's
  // cost is a walk through the planes: a slow headset can trade sharpness for frame rate)
  const scale = Number(new URLSearchParams(location.search).get('xrscale')) || 1;
  session.updateRenderState({ baseLayer: new XRWebGLLayer(session, gl,
                                                          { framebufferScaleFactor: scale }) });
  const space = await session.requestReferenceSpace('local');
  let worldFromFrameGl = null;  // set from the first pose, and on recentre
  session.addEventListener('select', () => app.togglePlay());
  session.addEventListener('squeeze', () => { worldFromFrameGl = null; });
  session.addEventListener('end', () => app.onEnd());

  const onFrame = (time, xrFrame) => {
    session.requestAnimationFrame(onFrame);
    const pose = xrFrame.getViewerPose(space);
    if (!pose) return;
    if (worldFromFrameGl === null) worldFromFrameGl = levelled(pose.transform.matrix);
    // frame_cv -> frame_gl -> world -> eye_gl -> eye_cv
    const worldFromFrameCv = mul4(worldFromFrameGl, CV_FROM_GL);  // CV_FROM_GL is its own inverse
    app.prepareFrame();
    const layer = session.renderState.baseLayer;
    gl.bindFramebuffer(gl.FRAMEBUFFER, layer.framebuffer);
    const views = pose.views.map((view) => {
      const vp = layer.getViewport(view);
      const eyeGlFromWorld = invertRigid(fromColumnMajor(view.transform.matrix));
      return {
        viewFromFrame: mul4(CV_FROM_GL, mul4(eyeGlFromWorld, worldFromFrameCv)),
        K: intrinsicsFromProjection(view.projectionMatrix, vp.width, vp.height),
        viewport: [vp.x, vp.y, vp.width, vp.height],
      };
    });
    app.renderer.draw(views);
  };
  session.requestAnimationFrame(onFrame);
  return session;
}
