#version 330
// The identity's own depth render for the visibility test of rig_flow.frag.
uniform mat4 cam_from_head;  // identity head pose
uniform mat4 clip_from_cam;  // rig.gl_from_K
in vec3 in_pos;              // head frame at the identity's expression
out float v_z;
void main() {
    vec4 p_cam = cam_from_head * vec4(in_pos, 1.0);
    v_z = p_cam.z;
    gl_Position = clip_from_cam * p_cam;
}
