// Small matrix helpers. Matrices are row-major arrays (4x4: 16 numbers, 3x3: 9), acting on
// column vectors, named by direction as in mpitalk: tgt_from_src maps source points into the
// target frame. (WebXR's matrices are column-major Float32Arrays: see fromColumnMajor.)

export function identity4() {
  return [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
}

export function mul4(a, b) {
  const out = new Array(16).fill(0);
  for (let i = 0; i < 4; i++)
    for (let j = 0; j < 4; j++)
      for (let k = 0; k < 4; k++) out[4 * i + j] += a[4 * i + k] * b[4 * k + j];
  return out;
}

// Inverse of a rigid transform [R | t]: [R^T | -R^T t].
export function invertRigid(m) {
  const out = identity4();
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) out[4 * i + j] = m[4 * j + i];
    out[4 * i + 3] = -(m[i] * m[3] + m[4 + i] * m[7] + m[8 + i] * m[11]);
  }
  return out;
}

export function fromColumnMajor(a) {
  const out = new Array(16);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) out[4 * i + j] = a[4 * j + i];
  return out;
}

export function translation(x, y, z) {
  return [1, 0, 0, x, 0, 1, 0, y, 0, 0, 1, z, 0, 0, 0, 1];
}

// Right-handed rotations about the y and x axes (as mpitalk.camera.rot_y / rot_x).
export function rotY(a) {
  const c = Math.cos(a), s = Math.sin(a);
  return [c, 0, s, 0, 0, 1, 0, 0, -s, 0, c, 0, 0, 0, 0, 1];
}

export function rotX(a) {
  const c = Math.cos(a), s = Math.sin(a);
  return [1, 0, 0, 0, 0, c, -s, 0, 0, s, c, 0, 0, 0, 0, 1];
}

// tgt_from_src of a camera orbited by R = Ry(yaw) Rx(pitch) about a pivot in the source frame
// (mpitalk.camera.orbit_pose): x_tgt = R^T (x_src - pivot) + pivot.
export function orbitPose(yaw, pitch, pivot) {
  const R = mul4(rotY(yaw), rotX(pitch));
  const Rt = invertRigid(R);
  return mul4(translation(...pivot), mul4(Rt, translation(-pivot[0], -pivot[1], -pivot[2])));
}

export function inv3(m) {
  const [a, b, c, d, e, f, g, h, i] = m;
  const A = e * i - f * h, B = -(d * i - f * g), C = d * h - e * g;
  const det = a * A + b * B + c * C;
  return [A / det, -(b * i - c * h) / det, (b * f - c * e) / det,
          B / det, (a * i - c * g) / det, -(a * f - c * d) / det,
          C / det, -(a * h - b * g) / det, (a * e - b * d) / det];
}

export function mul3(a, b) {
  const out = new Array(9).fill(0);
  for (let i = 0; i < 3; i++)
    for (let j = 0; j < 3; j++)
      for (let k = 0; k < 3; k++) out[3 * i + j] += a[3 * i + k] * b[3 * k + j];
  return out;
}

// A 4x4 from nested rows ([[...],[...],[...],[...]]) or 16 numbers, row-major.
export function asMat4(m) {
  const flat = Array.isArray(m[0]) ? m.flat() : Array.from(m);
  if (flat.length !== 16 || !flat.every(Number.isFinite))
    throw new Error('a pose must be 4x4 finite numbers (row-major)');
  return flat;
}

export function asMat3(m) {
  const flat = Array.isArray(m[0]) ? m.flat() : Array.from(m);
  if (flat.length !== 9 || !flat.every(Number.isFinite))
    throw new Error('intrinsics must be 3x3 finite numbers (row-major)');
  return flat;
}
