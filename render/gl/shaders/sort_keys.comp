#version 430 core
// GPU depth sort, step 1: key = view depth up to a constant (forward . mean), value = splat index.
// Entries past the splat count get -inf keys so that a descending sort leaves them at the end.

layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer Keys { float keys[]; };
layout(std430, binding = 1) buffer Values { uint values[]; };

uniform sampler2D u_mean_opacity;  // [N] texels: mean xyz (world), opacity
uniform int u_tex_width;
uniform int u_count;               // N
uniform int u_padded;              // N rounded up to a power of two
uniform vec3 u_forward;            // third row of the view rotation

void main() {
    int i = int(gl_GlobalInvocationID.x);
    if (i >= u_padded) return;
    if (i < u_count) {
        vec3 m = texelFetch(u_mean_opacity, ivec2(i % u_tex_width, i / u_tex_width), 0).xyz;
        keys[i] = dot(u_forward, m);
    } else {
        keys[i] = uintBitsToFloat(0xff800000u);  // -inf
    }
    values[i] = uint(i);
}
