#version 330 core
// One quad per splat (instanced): the oriented bounding box of the ellipse out to the opacity-aware extent.

uniform vec2 u_size;      // image width, height
uniform vec2 u_depth_ab;  // NDC depth = a + b / z

in vec2 in_corner;        // per vertex: (+-1, +-1)
in vec2 in_center;        // per instance, from the preprocess pass
in vec3 in_conic;
in vec4 in_axes;          // major half axis xy, minor half axis zw, pixels
in vec4 in_color;
in float in_depth;

out vec2 v_offset;        // pixel offset from the projected mean
flat out vec3 v_conic;
flat out vec4 v_color;

void main() {
    if (in_axes.x == 0.0 && in_axes.y == 0.0) {
        gl_Position = vec4(2.0, 2.0, 2.0, 1.0);  // outside the clip volume: no fragments
        v_offset = vec2(0.0);
        v_conic = vec3(0.0);
        v_color = vec4(0.0);
        return;
    }
    vec2 offset = in_corner.x * in_axes.xy + in_corner.y * in_axes.zw;
    vec2 px = in_center + offset;
    vec2 ndc = vec2(2.0 * px.x / u_size.x - 1.0, 1.0 - 2.0 * px.y / u_size.y);
    float z = in_depth;
    float ndc_z = min(u_depth_ab.x + u_depth_ab.y / z, 0.999999);  // beyond far: still drawn, behind everything
    gl_Position = vec4(ndc * z, ndc_z * z, z);
    v_offset = offset;
    v_conic = in_conic;
    v_color = in_color;
}
