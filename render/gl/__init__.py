"""The ModernGL compositor: splats (GL quads or a rasterized image) with lit, shadowed meshes.

Importing this package does not import moderngl; it is imported when a context or renderer is made.
Headless use::

    from render.gl import create_context, Renderer
    ctx = create_context("egl")
    with Renderer(ctx, 1280, 720) as r:
        r.set_splats(scene.splats)
        r.light = scene.light
        frame = r.render_frame(camera.viewmat, camera.K)   # Frame: color [H, W, 3], alpha, mesh_depth
"""

from render.gl.camera import camera_center, gl_projection, intrinsics_from_fov, look_at, orbit_viewmats
from render.gl.context import check_gl_error, create_context
from render.gl.meshes import Mesh, box_mesh, load_mesh, plane_mesh
from render.gl.renderer import SPLAT_PATHS, Frame, Renderer, RenderSettings
from render.gl.splat_layer import GLSplatLayer

__all__ = [
    "create_context",
    "check_gl_error",
    "Renderer",
    "RenderSettings",
    "Frame",
    "SPLAT_PATHS",
    "GLSplatLayer",
    "Mesh",
    "load_mesh",
    "box_mesh",
    "plane_mesh",
    "look_at",
    "orbit_viewmats",
    "intrinsics_from_fov",
    "gl_projection",
    "camera_center",
]
