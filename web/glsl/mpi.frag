#version 300 es
// A factored MPI rendered into one view: mpi.materialize + mpi.render (mpitalk/mpi.py) in one
// pass. The page inserts "#define NUM_PLANES D", "#define FLOW_GROUPS G" (0 = no flow stored),
// "#define FIRST_PLANE k" and "#define BACKDROP b" after the #version line: with a world
// backdrop (b = 1, mpitalk/backdrop.py) the planes below k are left out and the backdrop, an
// opaque plane at depths[0] fixed in the frame's camera, is drawn behind the rest at the view's
// pose alone (mpi.over of the two renders); without one (b = 0, k = 0) every plane is drawn.
//
// For each pixel of the view, the ray from the view's centre is intersected with every plane
// z = d_i of the MPI's camera (front to back, so the loop can stop once the pixel is opaque).
// The hit point's normalized MPI coordinates uv (fractions of the side, x right, y down) give:
//   a = alpha_i(uv), b = blend_i(uv), c = color(uv), f = flow_g(uv)   bilinear, edge-clamped
//   p = photo(uv + f) (bilinear, edge-clamped), v = 1 if uv + f is inside the photo, else 0
//   rgb_i = b v p + (1 - b v) c
// composited with the over operator. As in mpi.render: a hit behind the view is dropped, the
// back plane (i = 0) is clamped to its edge (the backdrop continues past the MPI's field of
// view), the other planes are transparent outside it. The output is composited over black.
precision highp float;
precision highp int;

// The frame's fields, repacked from the atlas video by glsl/unpack.frag (S x S texels, sampled
// with LINEAR + CLAMP_TO_EDGE: bilinear, texel centres at +0.5, edge-clamped = materialize's
// upsampling): layer i = (alpha_i, blend_i, flow x, flow y of plane i's group), colour = rgb.
uniform highp sampler2DArray u_fields;
uniform sampler2D u_color;
uniform sampler2D u_photo;     // (P,P) sRGB
uniform float u_flow_range;    // a stored v in [0,1] means the offset (2 v - 1) flow_range
uniform float u_depths[NUM_PLANES];  // back to front, metres
uniform vec4 u_footprint[NUM_PLANES];  // x0, y0, x1, y1 (uv): plane i's alpha is 0 outside
uniform vec4 u_Kn;             // the MPI's intrinsics over S: fx/S, fy/S, cx/S, cy/S
uniform float u_back_clamp;    // the back plane's uv is clamped to [u_back_clamp, 1 - it]
uniform vec3 u_origin;         // the view's centre in the MPI's camera
uniform mat3 u_ray;            // ray direction in the MPI's camera = u_ray * (x, y, 1): the
                               // view's rotation times K_view^-1 (unit z in the view)
uniform vec4 u_viewport;       // x, y (from the bottom), w, h of this view in the framebuffer
#if BACKDROP
uniform sampler2D u_backdrop;  // (B,B) sRGB, LINEAR + CLAMP_TO_EDGE
uniform float u_backdrop_clamp;  // its uv is clamped to [u_backdrop_clamp, 1 - it]
uniform vec3 u_world_origin;   // the view's centre in the frame's camera
uniform mat3 u_world_ray;      // ray direction in the frame's camera, as u_ray
#endif

out vec4 frag;

void main() {
  // pixel coordinates in the view, rows from the top, centres at +0.5 (OpenCV convention)
  vec2 px = vec2(gl_FragCoord.x - u_viewport.x, u_viewport.y + u_viewport.w - gl_FragCoord.y);
  vec3 r = u_ray * vec3(px, 1.0);
  vec3 acc = vec3(0.0);
  float trans = 1.0;
  for (int i = NUM_PLANES - 1; i >= FIRST_PLANE; --i) {
    float d = u_depths[i];
    float s = (d - u_origin.z) / r.z;  // the view's z of the hit (its ray has unit view z)
    if (!(s > 0.0)) continue;          // behind the view (or parallel to the plane)
    vec3 X = u_origin + s * r;         // on the plane: X.z == d
    vec2 uv = vec2(u_Kn.x * X.x / d + u_Kn.z, u_Kn.y * X.y / d + u_Kn.w);
    if (i == 0) {
      uv = clamp(uv, vec2(u_back_clamp), vec2(1.0 - u_back_clamp));
    } else if (any(lessThan(uv, u_footprint[i].xy)) || any(greaterThan(uv, u_footprint[i].zw))) {
      continue;  // outside the plane, or where its alpha is zero in every frame
    }
    vec4 f = texture(u_fields, vec3(uv, float(i)));
    float a = f.r;
    if (a < 1.0 / 1024.0) continue;  // most of a face MPI: nothing more to fetch
    float b = f.g;
    vec3 c = texture(u_color, uv).rgb;
    vec2 q = uv;
#if FLOW_GROUPS > 0
    q += (f.ba * 2.0 - 1.0) * u_flow_range;
#endif
    float v = (all(greaterThanEqual(q, vec2(0.0))) && all(lessThanEqual(q, vec2(1.0)))) ? 1.0 : 0.0;
    vec3 p = texture(u_photo, q).rgb;  // CLAMP_TO_EDGE + LINEAR: bilinear, edge-clamped
    float bv = b * v;
    acc += trans * a * (bv * p + (1.0 - bv) * c);
    trans *= 1.0 - a;
    if (trans < 1.0 / 1024.0) break;  // opaque: the planes behind cannot show
  }
#if BACKDROP
  vec3 rw = u_world_ray * vec3(px, 1.0);
  float d0 = u_depths[0];
  float sw = (d0 - u_world_origin.z) / rw.z;
  if (sw > 0.0 && trans >= 1.0 / 1024.0) {
    vec3 Xw = u_world_origin + sw * rw;
    vec2 uvw = clamp(vec2(u_Kn.x * Xw.x / d0 + u_Kn.z, u_Kn.y * Xw.y / d0 + u_Kn.w),
                     vec2(u_backdrop_clamp), vec2(1.0 - u_backdrop_clamp));
    acc += trans * texture(u_backdrop, uvw).rgb;
  }
#endif
  frag = vec4(acc, 1.0);
}
