#version 330
// Bake an attribute into the texture atlas: rasterise triangles at their UVs.
in vec2 in_uv;
in vec4 in_attr;
out vec4 v_attr;
void main() {
    v_attr = in_attr;
    gl_Position = vec4(2.0 * in_uv - 1.0, 0.0, 1.0);  // uv v down = texture row order
}
