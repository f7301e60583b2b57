#version 330 core
// Depth only: keep the fragments where the splat's alpha reaches the cut.

uniform float u_alpha_cut;

in vec2 v_offset;
flat in vec3 v_conic;
flat in float v_opacity;

void main() {
    float dx = v_offset.x, dy = v_offset.y;
    float sigma = 0.5 * (v_conic.x * dx * dx + v_conic.z * dy * dy) + v_conic.y * dx * dy;
    if (v_opacity * exp(-sigma) < u_alpha_cut) discard;
}
