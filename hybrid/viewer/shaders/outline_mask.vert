#version 330 core
// The selected object's collider, projected like the scene: only its coverage is kept.

uniform mat4 u_mvp;  // model -> GL clip (the scene camera's projection, row 0 at the top)

in vec3 in_position;

void main() {
    gl_Position = u_mvp * vec4(in_position, 1.0);
}
