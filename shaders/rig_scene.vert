#version 330
// Synthetic-data scene render: every object arrives in the head frame (metres, OpenCV axes).
uniform mat4 cam_from_head;  // this view's camera from the head frame
uniform mat4 clip_from_cam;  // rig.gl_from_K
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
out vec3 v_normal_head;
out vec2 v_uv;
out vec3 v_pos_cam;
out vec3 v_normal_cam;
void main() {
    vec4 p_cam = cam_from_head * vec4(in_pos, 1.0);
    v_normal_head = in_normal;
    v_uv = in_uv;
    v_pos_cam = p_cam.xyz;
    v_normal_cam = mat3(cam_from_head) * in_normal;
    gl_Position = clip_from_cam * p_cam;
}
