#version 330 core
// Composites a rasterized splat image (premultiplied colour, alpha, expected depth) over the
// mesh layer. With u_depth_test the image's expected depth is written as the fragment depth
// and the depth test against the meshes decides per pixel; without it the image was already
// limited to the mesh depth (rasterize(depth_limit=...)) and is blended everywhere.

uniform sampler2D u_color;   // premultiplied rgb, alpha; row 0 = image top
uniform sampler2D u_depth;   // expected view depth (0 where alpha is 0)
uniform bool u_depth_test;
uniform vec2 u_depth_ab;     // NDC depth = a + b / z

in vec2 v_uv;

layout(location = 0) out vec4 f_color;

void main() {
    vec4 c = texture(u_color, v_uv);
    if (c.a <= 0.0) discard;
    if (u_depth_test) {
        float z = texture(u_depth, v_uv).r;
        float ndc = z > 0.0 ? min(u_depth_ab.x + u_depth_ab.y / z, 0.999999) : -1.0;
        gl_FragDepth = ndc * 0.5 + 0.5;
    } else {
        gl_FragDepth = 0.0;
    }
    f_color = c;
}
