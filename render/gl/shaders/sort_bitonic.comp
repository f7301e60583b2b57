#version 430 core
// GPU depth sort, step 2: one compare-exchange pass (k, j) of a bitonic sorting network; after all
// passes the keys are in descending order (farthest splat first) and values holds the splat indices.

layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer Keys { float keys[]; };
layout(std430, binding = 1) buffer Values { uint values[]; };

uniform uint u_k;       // size of the bitonic sequences being merged
uniform uint u_j;       // compare distance
uniform uint u_padded;  // number of entries (a power of two)

void main() {
    uint i = gl_GlobalInvocationID.x;
    uint l = i ^ u_j;
    if (i >= u_padded || l <= i) return;
    float ki = keys[i];
    float kl = keys[l];
    bool descending = (i & u_k) == 0u;
    if (descending ? (ki < kl) : (ki > kl)) {
        keys[i] = kl;
        keys[l] = ki;
        uint v = values[i];
        values[i] = values[l];
        values[l] = v;
    }
}
