#version 330
// Diffuse shading only (view independent, so every view of one instant agrees in colour):
// albedo * (hemispheric ambient + wrapped key light). Light directions are given in the head
// frame and fixed in the world, the same for all views of an instant.
uniform sampler2D albedo;
uniform vec3 light_dir;    // unit, head frame, pointing from the surface toward the light
uniform vec3 light_rgb;
uniform vec3 sky_rgb;      // ambient from above (-y in the world)
uniform vec3 ground_rgb;   // ambient from below
uniform vec3 up_dir;       // world up (-y of the target camera) in the head frame
uniform float lit;         // 1 = shaded, 0 = emit the albedo as is (backdrop photos)
uniform float foreground;  // written to alpha: 1 head/hair/body, 0 backdrop
in vec3 v_normal_head;
in vec2 v_uv;
in vec3 v_pos_cam;
in vec3 v_normal_cam;
layout(location = 0) out vec4 frag_rgba;
layout(location = 1) out float frag_z;
void main() {
    vec3 base = texture(albedo, v_uv).rgb;
    vec3 n = normalize(v_normal_head);
    // double sided: turn the normal toward the camera (independent of winding and of the
    // y flip in clip_from_cam, which makes gl_FrontFacing unreliable here)
    if (dot(v_normal_cam, v_pos_cam) > 0.0) n = -n;
    float up = 0.5 + 0.5 * dot(n, up_dir);
    vec3 amb = mix(ground_rgb, sky_rgb, up);
    float wrap = max((dot(n, light_dir) + 0.2) / 1.2, 0.0);
    vec3 shade = amb + light_rgb * wrap;
    vec3 rgb = mix(base, base * shade, lit);
    frag_rgba = vec4(clamp(rgb, 0.0, 1.0), foreground);
    frag_z = v_pos_cam.z;
}
