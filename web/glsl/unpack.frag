#version 300 es
// Once per video frame: the atlas's grey tiles (see mpitalk/web.py) repacked into texels that the
// view shader reads with one filtered fetch each. Layer i of the fields array gets
// (alpha_i, blend_i, flow x, flow y of plane i's group); u_plane < 0 writes the colour texture.
// texelFetch: a copy of the decoded texels, no filtering (the view shader filters).
// The page inserts "#define FLOW_GROUPS G" after the #version line.
precision highp float;
precision highp int;

uniform sampler2D u_atlas;
uniform int u_tile;     // S
uniform int u_cols;     // tiles per atlas row
uniform ivec4 u_first;  // first tile of alpha, blend, colour, flow
uniform int u_plane;    // the layer being written, or -1 for the colour
uniform int u_group;    // plane u_plane's flow group
out vec4 frag;

float tile(int k) {
  ivec2 corner = ivec2(k % u_cols, k / u_cols) * u_tile;
  return texelFetch(u_atlas, corner + ivec2(gl_FragCoord.xy), 0).g;
}

void main() {
  if (u_plane < 0) {
    frag = vec4(tile(u_first.z), tile(u_first.z + 1), tile(u_first.z + 2), 1.0);
    return;
  }
  vec2 flow = vec2(0.5);  // zero offset
#if FLOW_GROUPS > 0
  flow = vec2(tile(u_first.w + 2 * u_group), tile(u_first.w + 2 * u_group + 1));
#endif
  frag = vec4(tile(u_first.x + u_plane), tile(u_first.y + u_plane), flow);
}
