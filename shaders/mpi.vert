#version 330
// One point of TILE px per target tile wholly inside the view (u_points), or one screen-aligned
// quad per run of target tiles along a tile row that share their plane mask, clamped to the
// view (instanced), covering those pixels of a view. Per instance: the run's first tile column,
// its row, its length in tiles (1 for a point), and which planes may show there (see gl.py,
// GLRenderer.tile_mask); the fragment shader (mpi.frag) walks only those planes.
//
// Defines (from gl.program): TILE (tile size, pixels), MAX_PLANES; SINGLE_PLANE for the
// variant drawing tiles that exactly one plane reaches: that plane's index and constants are
// found here, once per vertex, instead of per fragment.

in ivec3 in_tile;        // first tile column, tile row (0 = image row 0), run length
in uvec4 in_mask;        // bit (i % 32) of word i / 32: plane i may show in this tile

uniform vec2 u_origin;   // lower-left corner of this view in the framebuffer, pixels
uniform vec2 u_view;     // view size (w, h), pixels
uniform vec2 u_fb;       // framebuffer size, pixels
uniform bool u_points;   // drawn as points (one vertex per tile), else as quads (4 per run)

#ifdef SINGLE_PLANE
uniform float u_disp[MAX_PLANES];
uniform float u_c[MAX_PLANES];
flat out float v_layer;  // the plane's texture layer
flat out float v_disp;   // its 1 / d
flat out float v_c;      // its d + b.z
#else
flat out uvec4 v_mask;
#endif

void main() {
    vec2 corner = vec2(gl_VertexID & 1, gl_VertexID >> 1);        // triangle strip 0..3
    vec2 px = min((vec2(in_tile.xy) + corner * vec2(in_tile.z, 1)) * float(TILE), u_view)
              + u_origin;
    if (u_points) px = (vec2(in_tile.xy) + 0.5) * float(TILE) + u_origin;  // the tile's centre
    gl_Position = vec4(2.0 * px / u_fb - 1.0, 0.0, 1.0);
    gl_PointSize = float(TILE);  // a square of TILE px round the centre: exactly the tile
#ifdef SINGLE_PLANE
    int i = 0;
    for (int word = 0; word < MAX_PLANES / 32; ++word) {
        uint bits = in_mask[word];
        // the one set bit: its index is the exponent of the (exact) float of 2^k
        if (bits != 0u) {
            int k = (bits >> 16u) != 0u ? 16 : 0;
            i = 32 * word + k + int(floatBitsToUint(float(bits >> uint(k))) >> 23u) - 127;
        }
    }
    v_layer = float(i);
    v_disp = u_disp[i];
    v_c = u_c[i];
#else
    v_mask = in_mask;
#endif
}
