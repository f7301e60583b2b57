#version 330 core
// Opaque meshes: world-space position and normal for lighting, light-space position for the shadow map.

uniform mat4 u_proj;      // OpenCV camera -> GL clip
uniform mat4 u_view;      // world -> camera
uniform mat4 u_model;     // mesh -> world
uniform mat3 u_normal_matrix;  // inverse transpose of the model's upper 3x3
uniform mat4 u_light_vp;  // world -> light clip (orthographic)

in vec3 in_position;
in vec3 in_normal;
in vec3 in_color;

out vec3 v_normal;
out vec3 v_color;
out vec4 v_light_clip;
out float v_view_z;

void main() {
    vec4 world = u_model * vec4(in_position, 1.0);
    vec4 cam = u_view * world;
    gl_Position = u_proj * cam;
    v_normal = u_normal_matrix * in_normal;
    v_color = in_color;
    v_light_clip = u_light_vp * world;
    v_view_z = cam.z;
}
