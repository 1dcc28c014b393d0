#version 330
// Source pixel position of the surface point under this target pixel, and whether the identity
// shows that point: it faces the identity's camera, and the identity's own depth render
// (rig_flow_depth.*) saw the same rig part at that pixel, not in front of it. The part test
// catches thin layers a depth slack cannot: a closed eyelid lies ~1 mm over the eyeball.
uniform sampler2D src_depth;  // identity's (camera-space z, part) per pixel (RG32F); z 0 = none
uniform vec4 intrinsics;      // fx, fy, cx, cy of the shared camera (OpenCV, pixels)
uniform float depth_tol_m;    // fixed slack of the depth test (metres)
in vec3 v_src_cam;
in vec3 v_src_normal_cam;
flat in float v_part;
flat in float v_copyable;
out vec4 frag;                // (x_src, y_src, visible at the identity, coverage)
void main() {
    // continuous pixel coordinates: the image spans [0,W]x[0,H], pixel centres at +0.5
    vec2 xy = intrinsics.xy * v_src_cam.xy / v_src_cam.z + intrinsics.zw;
    ivec2 size = textureSize(src_depth, 0);
    ivec2 ij = ivec2(floor(xy));  // the identity pixel holding xy: at most 0.71 px from its centre
    float visible = 0.0;
    if (v_copyable > 0.5 && v_src_cam.z > 0.0 && all(greaterThanEqual(ij, ivec2(0)))
        && all(lessThan(ij, size))) {
        vec2 seen = texelFetch(src_depth, ij, 0).rg;  // (z, part)
        float facing = -dot(normalize(v_src_normal_cam), normalize(v_src_cam));
        // over that 0.71 px a visible surface's depth drifts by up to footprint * tan(angle)
        float footprint_m = v_src_cam.z / intrinsics.x;
        float tan_a = sqrt(max(1.0 - facing * facing, 0.0)) / max(facing, 0.1);
        float tol = depth_tol_m + footprint_m * tan_a;
        if (facing > 0.0 && seen.x > 0.0 && abs(seen.y - v_part) < 0.5
            && v_src_cam.z <= seen.x + tol) visible = 1.0;
    }
    frag = vec4(xy, visible, 1.0);
}
