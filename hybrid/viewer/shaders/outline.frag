#version 330 core
// Selection outline: pixels outside the mask with a covered pixel within u_radius get u_color.

uniform sampler2D u_mask;  // same size as the viewport, same orientation
uniform ivec2 u_origin;    // viewport origin in the target framebuffer
uniform int u_radius;      // outline width in pixels
uniform vec4 u_color;      // outline colour and opacity

out vec4 f_color;

void main() {
    ivec2 p = ivec2(gl_FragCoord.xy) - u_origin;
    ivec2 size = textureSize(u_mask, 0);
    if (texelFetch(u_mask, p, 0).r > 0.5) discard;
    int r2 = u_radius * u_radius;
    for (int dy = -u_radius; dy <= u_radius; ++dy) {
        for (int dx = -u_radius; dx <= u_radius; ++dx) {
            if (dx * dx + dy * dy > r2) continue;
            ivec2 q = clamp(p + ivec2(dx, dy), ivec2(0), size - 1);
            if (texelFetch(u_mask, q, 0).r > 0.5) {
                f_color = u_color;
                return;
            }
        }
    }
    discard;
}
