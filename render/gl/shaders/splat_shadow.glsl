// Mesh shadows on splats: the sun's share of each splat's colour is scaled by the shadow map's
// visibility at the splat's centre; a splat has no normal, so the sun counts as facing it.
uniform bool u_shadows;
uniform mat4 u_light_vp;           // world -> light clip (orthographic)
uniform sampler2DShadow u_shadow_map;
uniform float u_shadow_bias;       // light-space depth bias
uniform vec3 u_ambient;
uniform vec3 u_light_radiance;     // light colour * intensity

// One lookup: the shadow sampler's LINEAR filter already blends the 2x2 nearest comparisons
// (a per-splat value needs no wider PCF, and this runs once per splat in the vertex stage).
float shadow_visibility(vec3 p) {
    vec4 lc = u_light_vp * vec4(p, 1.0);
    vec3 q = lc.xyz / lc.w * 0.5 + 0.5;
    if (q.x < 0.0 || q.x > 1.0 || q.y < 0.0 || q.y > 1.0) return 1.0;
    float ref = min(q.z, 1.0) - u_shadow_bias;  // beyond every caster's far side: compared with the far plane
    return texture(u_shadow_map, vec3(q.xy, ref));
}

// (ambient + sun * visibility) / (ambient + sun), per channel: 1 where lit
vec3 shadow_factor(vec3 p) {
    if (!u_shadows) return vec3(1.0);
    float vis = shadow_visibility(p);
    vec3 full = u_ambient + u_light_radiance;
    return (u_ambient + u_light_radiance * vis) / max(full, vec3(1e-6));
}
