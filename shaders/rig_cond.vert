#version 330
// Condition render of the face rig: camera-space normals. Vertices arrive in the head frame.
uniform mat4 cam_from_head;  // head pose (OpenCV camera axes)
uniform mat4 clip_from_cam;  // rig.gl_from_K: OpenCV intrinsics -> GL clip space
in vec3 in_pos;
in vec3 in_normal;
out vec3 v_normal_cam;
out vec3 v_pos_cam;
void main() {
    vec4 p_cam = cam_from_head * vec4(in_pos, 1.0);
    v_normal_cam = mat3(cam_from_head) * in_normal;
    v_pos_cam = p_cam.xyz;
    gl_Position = clip_from_cam * p_cam;
}
