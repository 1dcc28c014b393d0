#version 330
// Camera-space z (metres) of the nearest surface; the target is cleared to 0 (= nothing).
in float v_z;
out float frag_z;
void main() { frag_z = v_z; }
