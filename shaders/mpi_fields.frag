#version 330
// One texel of a dense MPI plane from the factored MPI (mpitalk.mpi.materialize, line by line):
// the fields (alpha, blend: per plane; colour: shared; flow: per plane group) upsampled
// bilinearly from S px with edge clamping (LINEAR + CLAMP_TO_EDGE textures at normalized
// coordinates are exactly that), and the photo sampled bilinearly (edge-clamped) at the texel's
// own position plus the flow, with a copy validity of 1 inside the photo and 0 outside:
//     rgb = b v photo + (1 - b v) colour,  a = alpha.
// Output straight alpha (what mpi.frag reads).

uniform sampler2DArray u_ab;      // (S, S, D) RG: alpha, blend (blend already times validity)
uniform sampler2D u_color;        // (S, S) RGB: the predicted colour
uniform sampler2DArray u_flow;    // (S, S, G) RG float: offset into the photo, photo sides
uniform sampler2D u_photo;        // (P, P) RGB: the photo (already reduced if P > size)
uniform float u_dense;            // dense plane size, pixels

flat in vec2 v_origin;
flat in float v_layer;
flat in float v_group;

out vec4 frag;

void main() {
    vec2 u = (gl_FragCoord.xy - v_origin) / u_dense;   // pixel centre, fractions of the side
    vec2 ab = texture(u_ab, vec3(u, v_layer)).rg;
    vec3 colour = texture(u_color, u).rgb;
    vec2 q = u + texture(u_flow, vec3(u, v_group)).rg;
    float v = all(greaterThanEqual(q, vec2(0.0))) && all(lessThanEqual(q, vec2(1.0))) ? 1.0 : 0.0;
    float bv = ab.g * v;
    frag = vec4(bv * texture(u_photo, q).rgb + (1.0 - bv) * colour, ab.r);
}
