#version 330
// Unit camera-space normal as colour ((n+1)/2), turned toward the camera (double sided),
// and full coverage in alpha.
in vec3 v_normal_cam;
in vec3 v_pos_cam;
out vec4 frag;
void main() {
    vec3 n = normalize(v_normal_cam);
    if (dot(n, v_pos_cam) > 0.0) n = -n;  // face the camera (winding independent)
    frag = vec4(0.5 * n + 0.5, 1.0);
}
