#version 330
// The identity's own depth render for the visibility test of rig_flow.frag.
uniform mat4 cam_from_head;  // identity head pose
uniform mat4 clip_from_cam;  // rig.gl_from_K
in vec3 in_pos;              // head frame at the identity's expression
in float in_part;            // rig part: 0 head, 1 left eye, 2 right eye, 3 teeth
out float v_z;
flat out float v_part;
void main() {
    vec4 p_cam = cam_from_head * vec4(in_pos, 1.0);
    v_z = p_cam.z;
    v_part = in_part;
    gl_Position = clip_from_cam * p_cam;
}
