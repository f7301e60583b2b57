#version 330 core
// Splats casting shadows: one quad per splat (instanced) in the light's orthographic view, covering
// the ellipse where opacity * exp(-sigma) >= u_alpha_cut; the fragment shader cuts it to that ellipse.

uniform sampler2D u_mean_opacity;  // [N] texels: mean xyz (world), opacity
uniform sampler2D u_quat;          // [N] texels: unit quaternion wxyz
uniform sampler2D u_scale;         // [N] texels: scale xyz (standard deviations)
uniform int u_tex_width;
uniform mat4 u_light_vp;           // world -> light clip (orthographic: affine)
uniform float u_alpha_cut;         // a splat blocks the light where its alpha reaches this

in vec2 in_corner;                 // per vertex: (+-1, +-1)

out vec2 v_offset;                 // light-NDC offset from the splat's centre
flat out vec3 v_conic;             // inverse 2D covariance in light NDC (xx, xy, yy)
flat out float v_opacity;

ivec2 texel(int i) { return ivec2(i % u_tex_width, i / u_tex_width); }

void main() {
    int idx = gl_InstanceID;
    vec4 mo = texelFetch(u_mean_opacity, texel(idx), 0);
    v_offset = vec2(0.0);
    v_conic = vec3(0.0);
    v_opacity = mo.w;
    if (mo.w <= u_alpha_cut) {
        gl_Position = vec4(2.0, 2.0, 2.0, 1.0);  // can never block: no fragments
        return;
    }
    vec4 q = texelFetch(u_quat, texel(idx), 0);  // w x y z
    vec3 s = texelFetch(u_scale, texel(idx), 0).xyz;
    float w = q.x, x = q.y, y = q.z, z = q.w;
    mat3 M = mat3(
        vec3(1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y)) * s.x,
        vec3(2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x)) * s.y,
        vec3(2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y)) * s.z);
    vec3 ax = vec3(u_light_vp[0][0], u_light_vp[1][0], u_light_vp[2][0]);  // row 0 of the light matrix
    vec3 ay = vec3(u_light_vp[0][1], u_light_vp[1][1], u_light_vp[2][1]);  // row 1
    vec3 mx = transpose(M) * ax;
    vec3 my = transpose(M) * ay;
    float a = dot(mx, mx), b = dot(mx, my), c = dot(my, my);  // 2D covariance, light NDC units
    float det = a * c - b * b;
    vec4 clip = u_light_vp * vec4(mo.xyz, 1.0);
    if (det <= 1e-20) {
        gl_Position = vec4(2.0, 2.0, 2.0, 1.0);
        return;
    }
    float extend = sqrt(2.0 * log(mo.w / u_alpha_cut));
    float mid = 0.5 * (a + c);
    float disc = sqrt(max(0.25 * (a - c) * (a - c) + b * b, 0.0));
    float l1 = mid + disc;
    float l2 = max(mid - disc, 1e-20);
    vec2 e1 = abs(b) > 1e-12 * l1 ? normalize(vec2(b, l1 - a)) : (a >= c ? vec2(1.0, 0.0) : vec2(0.0, 1.0));
    vec2 offset = extend * (in_corner.x * sqrt(l1) * e1 + in_corner.y * sqrt(l2) * vec2(-e1.y, e1.x));
    gl_Position = vec4(clip.xy / clip.w + offset, clip.z / clip.w, 1.0);
    v_offset = offset;
    v_conic = vec3(c / det, -b / det, a / det);
}
