#version 330
// Show the renderer's framebuffer in the viewer's window (viewers/mpi_viewer.py).
// u_image holds image row 0 in texture row 0, so t is flipped to put that row at the top.
// Modes: 0 mono (one view), 1 side-by-side stereo (left|right packed, shown as is),
// 2 red-cyan anaglyph (left|right packed: red from the left eye, green and blue from the right).
in vec2 v_uv;
uniform sampler2D u_image;   // premultiplied RGB + alpha (composited over black)
uniform int u_mode;
out vec4 frag;

void main() {
    vec2 st = vec2(v_uv.x, 1.0 - v_uv.y);
    if (u_mode == 2) {
        vec3 left = texture(u_image, vec2(0.5 * st.x, st.y)).rgb;
        vec3 right = texture(u_image, vec2(0.5 + 0.5 * st.x, st.y)).rgb;
        // luminance per eye keeps the anaglyph free of retinal rivalry from saturated colours
        const vec3 luma = vec3(0.299, 0.587, 0.114);
        frag = vec4(dot(left, luma), dot(right, luma), dot(right, luma), 1.0);
    } else {
        frag = vec4(texture(u_image, st).rgb, 1.0);
    }
}
