#version 330
// One triangle that covers the viewport (no vertex buffer: positions come from gl_VertexID).
// v_uv is (0,0) at the lower-left corner of the viewport and (1,1) at the upper-right.
out vec2 v_uv;
void main() {
    vec2 pos = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    v_uv = 0.5 * pos + 0.5;
    gl_Position = vec4(pos, 0.0, 1.0);
}
