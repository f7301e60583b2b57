#version 330 core
// An image stretched over the viewport (uploaded bottom row first, as GL textures go).

uniform sampler2D u_image;
uniform ivec2 u_origin;  // viewport origin in the target framebuffer
uniform vec2 u_size;     // viewport size

out vec4 f_color;

void main() {
    vec2 uv = (gl_FragCoord.xy - vec2(u_origin)) / u_size;
    f_color = vec4(texture(u_image, uv).rgb, 1.0);  // uploaded bottom row first
}
