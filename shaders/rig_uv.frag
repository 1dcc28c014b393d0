#version 330
in vec4 v_attr;
out vec4 frag;
void main() { frag = v_attr; }
