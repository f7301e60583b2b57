#version 330 core
// Copies the renderer's float colour to a display framebuffer, clamped to [0, 1].

uniform sampler2D u_color;  // row 0 = image top
uniform bool u_flip;        // true: u_color is stored bottom-up (a GL framebuffer)

in vec2 v_uv;

out vec4 f_color;

void main() {
    vec2 uv = u_flip ? vec2(v_uv.x, 1.0 - v_uv.y) : v_uv;
    vec4 c = texture(u_color, uv);
    f_color = vec4(clamp(c.rgb, 0.0, 1.0), 1.0);
}
