#version 330 core
// Depth-only pass from the light.

uniform mat4 u_light_vp;  // world -> light clip (orthographic)
uniform mat4 u_model;     // mesh -> world

in vec3 in_position;

void main() {
    gl_Position = u_light_vp * u_model * vec4(in_position, 1.0);
}
