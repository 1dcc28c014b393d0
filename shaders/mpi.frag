#version 330
// Render a multiplane image into a target camera: the GL twin of mpitalk.mpi.render.
//
// One pass over the planes, front to back, per fragment. Framebuffer row r holds image row r
// (image row 0 is the first row read back), so gl_FragCoord.xy - u_origin is the target pixel
// centre (j + 0.5, i + 0.5) in the conventions of ARCHITECTURE.md.
//
// Plane i sits at z = d_i in the source camera. The target ray through pixel p is, in the
// source frame, X(s) = s a - b with a = R^T K_tgt^-1 (p, 1) and b = R^T t (tgt_from_src = [R|t]).
// It meets the plane at s_i = (d_i + b.z) / a.z, which is also the target-camera z of the hit
// (the ray's target z component is 1 per unit s). Divided by d_i, the hit is
//     X_i / d_i = w + (1/d_i) (b.z w - b)      with w = a / a.z,
// so the source pixel is linear in the plane's disparity: uv_i = uv_inf + (1/d_i) duv.
//
// Drawn as one point (a quad at the view's edge) per target tile (mpi.vert) carrying the tile's
// plane mask: bit (i % 32) of word i / 32 is set when plane i may put something in the tile
// (conservative, see gl.py).
// Tiles that no plane reaches are not drawn; tiles that one plane reaches use the SINGLE_PLANE
// variant, which samples that plane without a loop.
//
// Defines (from gl.program): MAX_PLANES (a multiple of 32, <= 128), SINGLE_PLANE (optional),
// FIELDS (optional: the planes of a factored MPI, evaluated from its fields; see below), FLOW
// (optional, with FIELDS: the MPI has a non-zero flow field).
//
// llvmpipe (Mesa's CPU rasteriser, this project's GL without a GPU) runs both sides of every
// branch for all pixels of a SIMD group, a uniform branch included: work that only some MPIs
// need is left out at compile time (FLOW), not skipped by an if.

#ifndef FIELDS
uniform sampler2D u_planes;        // the plane atlas: straight RGBA8, plane i (0 = farthest)
                                   // in cell (i % u_cols, i / u_cols) of u_cell texels, inside
                                   // a transparent one-texel border (see gl.py, PlaneAtlas)
uniform int u_cols;                // cells per atlas row
uniform ivec2 u_cell;              // cell size: (W + 2, H + 2)
#endif
uniform mat3 u_A;                  // R^T K_tgt^-1
uniform vec3 u_b;                  // R^T t
uniform mat2 u_Ks;                 // source intrinsics, focal/skew part
uniform vec2 u_Ks_c;               // source principal point
uniform ivec2 u_size;              // (W, H) of the source planes, without the border
uniform vec2 u_inv_size;           // 1 / u_size (a product is cheaper than a quotient)
uniform vec2 u_origin;             // lower-left corner of this view in the framebuffer, pixels
#ifdef SINGLE_PLANE
flat in float v_layer;
flat in float v_disp;
flat in float v_c;
#else
flat in uvec4 v_mask;
uniform float u_disp[MAX_PLANES];  // 1 / d_i
uniform float u_c[MAX_PLANES];     // d_i + b.z: target z of the hit = u_c[i] / a.z
#endif

out vec4 frag;

const float EPS = 1e-6;              // as mpitalk.mpi._EPS: |a.z| below it is clamped to +EPS
const float T_MIN = 1.0 / 1024.0;    // transmittance below which nothing visible is left

// Index of the highest set bit of a non-zero uint (findMSB needs GLSL 4.00): the exponent of
// a float holding a 16-bit half is exact.
int msb(uint x) {
    uint hi = x >> 16u;
    uint h = hi != 0u ? hi : (x & 0xFFFFu);
    int e = int(floatBitsToUint(float(h)) >> 23u) - 127;
    return hi != 0u ? e + 16 : e;
}

// Premultiplied colour and alpha of plane `layer` at source pixel uv, bilinear, zero outside
// the plane, except for the back plane (layer 0, the backdrop): its sample position is clamped
// to the texel centres, so it extends past its edges (as mpitalk.mpi.render). The planes are
// stored with straight alpha (so the upload needs no pass over the texels) inside a one-texel
// transparent border (texel (x, y) of the plane is texel (x + 1, y + 1) of its cell): the four
// taps are premultiplied here, then blended, and a sample whose taps all fall outside the
// bordered plane is zero without reading anything. q indexes the atlas.
#ifndef FIELDS
vec4 tap(ivec2 q) {
    vec4 c = texelFetch(u_planes, q, 0);
    return vec4(c.rgb * c.a, c.a);
}
#endif

#ifdef FIELDS
// A factored MPI (mpitalk.mpi.render_fields): plane `layer` is not stored; its premultiplied
// colour at source pixel uv (in pixels of a dense plane of u_size) is evaluated from the
// fields, upsampled by the texture units (LINEAR + CLAMP_TO_EDGE at normalized coordinates:
// bilinear with texel centres at +0.5, edge-clamped, as mpi.upsample_bilinear), and the photo
// sampled at the pixel's own position plus its group's flow (validity 0 outside the photo):
//     rgb = b v photo + (1 - b v) colour,  a = alpha.
// Near the plane's edge the result is scaled by the share of the bilinear taps a dense plane
// with a transparent border would have inside (so the edges fade as mpi.render's do); the back
// plane (layer 0) is clamped to its edge instead, as in the dense variant.
uniform sampler2DArray u_ab;       // (S, S, D) RG: alpha, blend (already times validity)
uniform sampler2D u_color;         // (S, S) RGB: the predicted colour
uniform sampler2D u_photo;         // the photo (reduced to u_size when larger)
#ifdef FLOW
uniform sampler2DArray u_flow;     // (S, S, G) RG float: offset into the photo, photo sides
uniform int u_group[MAX_PLANES];   // flow group of each plane
#endif

vec4 plane_sample(vec2 uv, int layer) {
    vec2 size = vec2(u_size);
    vec2 st = uv - 0.5;                          // texel centres at +0.5
    if (layer == 0) st = clamp(st, vec2(0.0), size - 1.0);
    // 0 once st is a texel or more outside the plane: no bounds test is needed. Nor an early
    // return where alpha is 0: llvmpipe would fetch the colour and the photo all the same
    // (measured: without both returns a real frame rendered in 0.95 of the time)
    vec2 inside = clamp(min(st + 1.0, size - st), 0.0, 1.0);
    vec2 u = (clamp(st, vec2(0.0), size - 1.0) + 0.5) * u_inv_size;
    vec2 ab = texture(u_ab, vec3(u, float(layer))).rg;
    float a = ab.r * inside.x * inside.y;
    vec3 colour = texture(u_color, u).rgb;
#ifdef FLOW  // (measured: with this fetch, skipped by a uniform if, a real frame took 1.4x)
    vec2 q = u + texture(u_flow, vec3(u, float(u_group[layer]))).rg;
    float v = all(greaterThanEqual(q, vec2(0.0))) && all(lessThanEqual(q, vec2(1.0))) ? 1.0
                                                                                        : 0.0;
    float bv = ab.g * v;
#else
    vec2 q = u;                                  // inside the photo: validity 1
    float bv = ab.g;
#endif
    vec3 rgb = bv * texture(u_photo, q).rgb + (1.0 - bv) * colour;
    return vec4(rgb * a, a);
}
#else
vec4 plane_sample(vec2 uv, int layer) {
    vec2 st = uv - 0.5;                          // texel centres at +0.5
    if (layer == 0) st = clamp(st, vec2(0.0), vec2(u_size - 1));
    if (any(lessThan(st, vec2(-1.0))) || any(greaterThanEqual(st, vec2(u_size)))) {
        return vec4(0.0);
    }
    vec2 f = fract(st);
    // into the bordered cell of the plane in the atlas
    ivec2 q = ivec2(floor(st)) + 1 + ivec2(layer % u_cols, layer / u_cols) * u_cell;
    return mix(mix(tap(q), tap(q + ivec2(1, 0)), f.x),
               mix(tap(q + ivec2(0, 1)), tap(q + ivec2(1, 1)), f.x), f.y);
}
#endif

void main() {
    vec2 p = gl_FragCoord.xy - u_origin;
    vec3 a = u_A * vec3(p, 1.0);
    float az = abs(a.z) < EPS ? EPS : a.z;
    vec2 w = a.xy / az;
    vec2 uv_inf = u_Ks * w + u_Ks_c;               // source pixel of the point at infinity
    vec2 duv = u_Ks * (u_b.z * w - u_b.xy);        // its change per unit disparity
    float front = sign(az);                         // hit in front of the target: c * front > 0

#ifdef SINGLE_PLANE
    frag = v_c * front > 0.0 ? plane_sample(uv_inf + v_disp * duv, int(v_layer)) : vec4(0.0);
#else
    vec3 rgb = vec3(0.0);
    float trans = 1.0;                              // transmittance of the planes in front
    for (int word = MAX_PLANES / 32 - 1; word >= 0; --word) {
        uint bits = v_mask[word];
        while (bits != 0u) {
            int k = msb(bits);
            bits ^= 1u << uint(k);
            int i = 32 * word + k;                  // planes front (high index) to back
            if (u_c[i] * front <= 0.0) continue;    // the hit is behind the target camera
            vec4 s = plane_sample(uv_inf + u_disp[i] * duv, i);
            rgb += trans * s.rgb;                   // front-to-back "under" = back-to-front over
            trans *= 1.0 - s.a;
            if (trans < T_MIN) { word = -1; break; }
        }
    }
    frag = vec4(rgb, 1.0 - trans);
#endif
}
