#version 330 core
// Shadow factor of each splat centre, captured with transform feedback (the CPU splat path's shadows).

#include "splat_shadow.glsl"

in vec3 in_position;  // splat centre, world
out vec3 out_factor;  // colour factor, 1 where lit

void main() {
    out_factor = shadow_factor(in_position);
}
