#version 330
// Materialize a factored MPI into the plane atlas (the GL twin of mpitalk.mpi.materialize):
// one quad per rectangle of a plane that may hold something (instanced; see gl.py,
// GLRenderer.set_fields), drawn into that plane's cell of the atlas, inside its one-texel
// transparent border, which is never drawn. The fragment shader (mpi_fields.frag) evaluates the
// dense plane at each texel.

in ivec4 in_rect;        // x0, y0, x1, y1 (exclusive) in dense plane pixels
in ivec2 in_plane;       // plane index, its flow group

uniform vec2 u_fb;       // atlas size, texels
uniform int u_cols;      // cells per atlas row
uniform ivec2 u_cell;    // cell size: (size + 2, size + 2)

flat out vec2 v_origin;  // atlas position of the plane's texel (0, 0) corner
flat out float v_layer;
flat out float v_group;

void main() {
    vec2 corner = vec2(gl_VertexID & 1, gl_VertexID >> 1);        // triangle strip 0..3
    int i = in_plane.x;
    v_origin = vec2(ivec2(i % u_cols, i / u_cols) * u_cell + 1);
    vec2 px = v_origin + mix(vec2(in_rect.xy), vec2(in_rect.zw), corner);
    gl_Position = vec4(2.0 * px / u_fb - 1.0, 0.0, 1.0);
    v_layer = float(i);
    v_group = float(in_plane.y);
}
