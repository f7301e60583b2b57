#version 330 core
// Gaussian footprint, alpha as gsplat's rasterizer computes it, premultiplied output.

in vec2 v_offset;
flat in vec3 v_conic;
flat in vec4 v_color;

layout(location = 0) out vec4 f_color;

void main() {
    float dx = v_offset.x, dy = v_offset.y;
    float sigma = 0.5 * (v_conic.x * dx * dx + v_conic.z * dy * dy) + v_conic.y * dx * dy;
    if (sigma < 0.0) discard;
    float alpha = min(0.999, v_color.a * exp(-sigma));
    if (alpha < 1.0 / 255.0) discard;
    f_color = vec4(v_color.rgb * alpha, alpha);
}
