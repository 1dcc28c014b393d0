#version 330
// The rig's backward correspondence flow (rig.render_prior_flow): rasterise the rig at the
// TARGET expression and pose, carrying each vertex at the IDENTITY's expression and pose as the
// attribute. Vertices arrive in the head frame (metres, OpenCV axes).
uniform mat4 cam_from_head_tgt;  // target head pose
uniform mat4 cam_from_head_src;  // identity head pose (same camera)
uniform mat4 clip_from_cam;      // rig.gl_from_K
in vec3 in_pos_tgt;              // the vertex at the target expression
in vec3 in_pos_src;              // the same vertex at the identity's expression
in vec3 in_normal_src;           // its unit normal there (head frame, outward)
in float in_part;                // rig part: 0 head, 1 left eye, 2 right eye, 3 teeth
in float in_copyable;            // 0 for parts never copied from the photo (teeth)
// Camera-space position at the identity, interpolated perspective-correctly over the TARGET
// triangle: the same barycentric surface point on both posings; it is projected per fragment
// (projecting per vertex and interpolating pixels would bend straight correspondences).
out vec3 v_src_cam;
out vec3 v_src_normal_cam;
flat out float v_part;
flat out float v_copyable;
void main() {
    vec4 p_src = cam_from_head_src * vec4(in_pos_src, 1.0);
    v_src_cam = p_src.xyz;
    v_src_normal_cam = mat3(cam_from_head_src) * in_normal_src;
    v_part = in_part;
    v_copyable = in_copyable;
    gl_Position = clip_from_cam * (cam_from_head_tgt * vec4(in_pos_tgt, 1.0));
}
