#version 330 core
// The mesh view depth at each internal (w x h) pixel's centre, taken from the full-size (W x H)
// view-depth texture by nearest sampling: the same pixels as the CPU indexing
// row = min(floor((j + 0.5) H / h), H - 1) (rows counted from the top), likewise for columns.

uniform sampler2D u_view_z;  // W x H, GL rows (bottom up)
uniform ivec2 u_full;        // (W, H)
uniform vec2 u_scale;        // (w / W, h / H)
uniform int u_rows;          // h

out float f_z;

void main() {
    int i = int(gl_FragCoord.x);                 // internal column
    int j = u_rows - 1 - int(gl_FragCoord.y);    // internal row from the top
    int c = min(int(floor((float(i) + 0.5) / u_scale.x)), u_full.x - 1);
    int r = min(int(floor((float(j) + 0.5) / u_scale.y)), u_full.y - 1);
    f_z = texelFetch(u_view_z, ivec2(c, u_full.y - 1 - r), 0).r;
}
