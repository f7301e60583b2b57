#version 330 core
// Lambert + ambient under one directional light, with a 3x3 PCF shadow map lookup.
// colour = albedo * (ambient + light_colour * intensity * max(n . l, 0) * visibility)

uniform vec3 u_light_dir;       // unit vector from the scene towards the light, world
uniform vec3 u_light_radiance;  // light colour * intensity
uniform vec3 u_ambient;
uniform bool u_lit;             // false: draw the colour unshaded (wireframes, gizmos)
uniform bool u_shadows;
uniform float u_shadow_bias;    // light-space depth bias (NDC/2 units)
uniform sampler2DShadow u_shadow_map;

in vec3 v_normal;
in vec3 v_color;
in vec4 v_light_clip;
in float v_view_z;

layout(location = 0) out vec4 f_color;
layout(location = 1) out float f_view_z;

float visibility(float ndotl) {
    if (!u_shadows) return 1.0;
    vec3 p = v_light_clip.xyz / v_light_clip.w * 0.5 + 0.5;
    if (p.x < 0.0 || p.x > 1.0 || p.y < 0.0 || p.y > 1.0 || p.z > 1.0) return 1.0;
    float bias = u_shadow_bias * (1.0 + 2.0 * sqrt(max(1.0 - ndotl * ndotl, 0.0)) / max(ndotl, 0.05));
    float ref = p.z - bias;
    vec2 texel = 1.0 / vec2(textureSize(u_shadow_map, 0));
    float sum = 0.0;
    for (int i = -1; i <= 1; ++i)
        for (int j = -1; j <= 1; ++j)
            sum += texture(u_shadow_map, vec3(p.xy + vec2(i, j) * texel, ref));
    return sum / 9.0;
}

void main() {
    vec3 color = v_color;
    if (u_lit) {
        vec3 n = normalize(v_normal);
        float ndotl = max(dot(n, u_light_dir), 0.0);
        float vis = ndotl > 0.0 ? visibility(ndotl) : 1.0;
        color = v_color * (u_ambient + u_light_radiance * ndotl * vis);
    }
    f_color = vec4(color, 1.0);
    f_view_z = v_view_z;
}
