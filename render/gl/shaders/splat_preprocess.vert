#version 330 core
// Per-splat projection (one vertex per splat, captured with transform feedback in sorted order).
// Mirrors gsplat 1.5 fully_fused_projection + spherical_harmonics, pinhole camera, no antialiasing:
// EWA with the clamped perspective Jacobian, eps2d on the 2D covariance diagonal, and the
// opacity-aware extent min(3.33, sqrt(2 ln(255 opacity))).

uniform sampler2D u_mean_opacity;  // [N] texels: mean xyz (world), opacity
uniform sampler2D u_quat;          // [N] texels: unit quaternion wxyz
uniform sampler2D u_scale;         // [N] texels: scale xyz (standard deviations), w = 1 + body index (0: none)
uniform sampler2D u_rot;           // [3 B] texels: rows of each body's rotation since rest (xyz)
uniform bool u_rotations;          // evaluate SH with the view direction in each splat's body rest frame
uniform sampler2D u_sh;            // [N * u_sh_stride] texels: SH coefficients, 3 K floats per splat
uniform int u_tex_width;           // texels per row of every data texture
uniform int u_sh_degree;           // 0..3: SH degree; -1: u_sh holds the RGB colour directly
uniform int u_sh_stride;           // texels per splat in u_sh
uniform mat4 u_view;               // world -> camera (OpenCV)
uniform vec3 u_campos;             // camera centre, world
uniform vec4 u_intrinsics;         // fx fy cx cy
uniform vec2 u_size;               // image width, height
uniform float u_near;              // splats nearer than this are dropped (gsplat near_plane)
uniform float u_far;               // and farther than this
uniform float u_eps2d;             // added to the 2D covariance diagonal (0.3)
#include "splat_shadow.glsl"

in uint in_index;

out vec2 out_center;   // pixel coordinates of the projected mean
out vec3 out_conic;    // inverse 2D covariance (xx, xy, yy)
out vec4 out_axes;     // the ellipse's half axes in pixels (major xy, minor zw); 0 for a culled splat
out vec4 out_color;    // rgb, opacity
out float out_depth;   // view depth z

const float ALPHA_THRESHOLD = 1.0 / 255.0;

ivec2 texel(int i) { return ivec2(i % u_tex_width, i / u_tex_width); }

vec3 eval_sh(int idx, vec3 dir) {
    float c[48];
    int base = idx * u_sh_stride;
    for (int t = 0; t < u_sh_stride; ++t) {
        vec4 v = texelFetch(u_sh, texel(base + t), 0);
        c[4 * t] = v.x; c[4 * t + 1] = v.y; c[4 * t + 2] = v.z; c[4 * t + 3] = v.w;
    }
    if (u_sh_degree < 0) return vec3(c[0], c[1], c[2]);
    // Real SH basis as gsplat evaluates it (Sloan, JCGT 2013)
    vec3 r = 0.2820947917738781 * vec3(c[0], c[1], c[2]);
    if (u_sh_degree >= 1) {
        float x = dir.x, y = dir.y, z = dir.z;
        float a = -0.48860251190292;
        r += a * y * vec3(c[3], c[4], c[5]);
        r += -a * z * vec3(c[6], c[7], c[8]);
        r += a * x * vec3(c[9], c[10], c[11]);
        if (u_sh_degree >= 2) {
            float z2 = z * z;
            float tB = -1.092548430592079 * z;
            float tA = 0.5462742152960395;
            float c1 = x * x - y * y;
            float s1 = 2.0 * x * y;
            r += (tA * s1) * vec3(c[12], c[13], c[14]);
            r += (tB * y) * vec3(c[15], c[16], c[17]);
            r += (0.9461746957575601 * z2 - 0.3153915652525201) * vec3(c[18], c[19], c[20]);
            r += (tB * x) * vec3(c[21], c[22], c[23]);
            r += (tA * c1) * vec3(c[24], c[25], c[26]);
            if (u_sh_degree >= 3) {
                float tC = -2.285228997322329 * z2 + 0.4570457994644658;
                float tB3 = 1.445305721320277 * z;
                float tA3 = -0.5900435899266435;
                float c2 = x * c1 - y * s1;
                float s2 = x * s1 + y * c1;
                r += (tA3 * s2) * vec3(c[27], c[28], c[29]);
                r += (tB3 * s1) * vec3(c[30], c[31], c[32]);
                r += (tC * y) * vec3(c[33], c[34], c[35]);
                r += (z * (1.865881662950577 * z2 - 1.119528997770346)) * vec3(c[36], c[37], c[38]);
                r += (tC * x) * vec3(c[39], c[40], c[41]);
                r += (tB3 * c1) * vec3(c[42], c[43], c[44]);
                r += (tA3 * c2) * vec3(c[45], c[46], c[47]);
            }
        }
    }
    return max(r + 0.5, vec3(0.0));
}

void cull() {
    out_center = vec2(0.0);
    out_conic = vec3(0.0);
    out_axes = vec4(0.0);
    out_color = vec4(0.0);
    out_depth = -1.0;
}

void main() {
    int idx = int(in_index);
    vec4 mo = texelFetch(u_mean_opacity, texel(idx), 0);
    vec3 mean = mo.xyz;
    float opacity = mo.w;
    vec3 mc = (u_view * vec4(mean, 1.0)).xyz;
    if (mc.z < u_near || mc.z > u_far || opacity < ALPHA_THRESHOLD) { cull(); return; }

    vec4 q = texelFetch(u_quat, texel(idx), 0);  // w x y z
    vec4 sv = texelFetch(u_scale, texel(idx), 0);
    vec3 s = sv.xyz;
    float w = q.x, x = q.y, y = q.z, z = q.w;
    // columns of the rotation matrix, scaled by the standard deviations
    mat3 M = mat3(
        vec3(1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y)) * s.x,
        vec3(2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x)) * s.y,
        vec3(2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y)) * s.z);
    mat3 Rv = mat3(u_view);
    mat3 T = Rv * M;
    mat3 cov = T * transpose(T);  // camera-space 3D covariance

    float fx = u_intrinsics.x, fy = u_intrinsics.y, cx = u_intrinsics.z, cy = u_intrinsics.w;
    float tan_fovx = 0.5 * u_size.x / fx;
    float tan_fovy = 0.5 * u_size.y / fy;
    float lim_x_pos = (u_size.x - cx) / fx + 0.3 * tan_fovx;
    float lim_x_neg = cx / fx + 0.3 * tan_fovx;
    float lim_y_pos = (u_size.y - cy) / fy + 0.3 * tan_fovy;
    float lim_y_neg = cy / fy + 0.3 * tan_fovy;
    float rz = 1.0 / mc.z;
    float rz2 = rz * rz;
    float tx = mc.z * min(lim_x_pos, max(-lim_x_neg, mc.x * rz));
    float ty = mc.z * min(lim_y_pos, max(-lim_y_neg, mc.y * rz));
    vec3 j0 = vec3(fx * rz, 0.0, -fx * tx * rz2);
    vec3 j1 = vec3(0.0, fy * rz, -fy * ty * rz2);
    vec3 cj0 = cov * j0;
    vec3 cj1 = cov * j1;
    float a = dot(j0, cj0) + u_eps2d;
    float b = dot(j0, cj1);
    float c = dot(j1, cj1) + u_eps2d;
    float det = a * c - b * b;
    if (det <= 0.0) { cull(); return; }

    float extend = min(3.33, sqrt(2.0 * log(opacity / ALPHA_THRESHOLD)));
    out_center = vec2(fx * mc.x * rz + cx, fy * mc.y * rz + cy);
    out_conic = vec3(c / det, -b / det, a / det);
    // half axes of the ellipse where alpha falls to 1/255: the quad is the ellipse's oriented bounding box
    float mid = 0.5 * (a + c);
    float disc = sqrt(max(0.25 * (a - c) * (a - c) + b * b, 0.0));
    float l1 = mid + disc;
    float l2 = max(mid - disc, 1e-12);
    vec2 e1 = abs(b) > 1e-12 * l1 ? normalize(vec2(b, l1 - a)) : (a >= c ? vec2(1.0, 0.0) : vec2(0.0, 1.0));
    out_axes = extend * vec4(sqrt(l1) * e1, sqrt(l2) * vec2(-e1.y, e1.x));
    vec3 dir = normalize(mean - u_campos);
    int body = int(sv.w) - 1;
    if (u_rotations && body >= 0) {  // R^T d: mat3 of R's rows as columns is R^T
        dir = mat3(texelFetch(u_rot, texel(3 * body), 0).xyz, texelFetch(u_rot, texel(3 * body + 1), 0).xyz,
                   texelFetch(u_rot, texel(3 * body + 2), 0).xyz) * dir;
    }
    out_color = vec4(eval_sh(idx, dir) * shadow_factor(mean), opacity);
    out_depth = mc.z;
}
