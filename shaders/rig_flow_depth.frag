#version 330
// Camera-space z (metres) of the nearest surface and its rig part; cleared to 0 (= nothing).
in float v_z;
flat in float v_part;
out vec2 frag_z_part;
void main() { frag_z_part = vec2(v_z, v_part); }
