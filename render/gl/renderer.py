"""The compositor: opaque meshes lit by a directional light with a shadow map, then the splats.

A :class:`Renderer` owns an offscreen float framebuffer of its size and the GPU copies of the
scene content (one splat set, any number of meshes with their poses, the light). Each
:meth:`Renderer.render` draws one frame for a camera:

1. a depth-only shadow map of the shadow-casting meshes from the light (orthographic, fitted to
   the meshes' world bounds);
2. the meshes with depth, Lambert + ambient shading and 3x3 PCF shadows, writing colour and
   view depth;
3. the splats depth-tested against the meshes and blended back to front (premultiplied alpha),
   either as GL quads (``splat_path="gl"``), as a ``render.rasterize`` image uploaded as a
   texture (``splat_path="raster"``), or as an image composited by numba on the CPU for software
   GL such as llvmpipe (``splat_path="cpu"``, :mod:`render.gl.cpu_splats`), optionally at a lower
   internal resolution (``splat_scale``, or ``splat_budget_ms`` to choose it each frame).
   Splats in a mesh's shadow lose the sun's share of their colour (shadow map looked up at each
   splat centre, every path); moved objects' SH are evaluated in their rest frames once
   :meth:`Renderer.set_splat_rotations` gave the rotations.

The result stays on the GPU: :meth:`Renderer.present` draws it to a window's framebuffer (the
viewer), :meth:`Renderer.read` copies it to numpy (scripts, tests, video).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from render.gl._shaders import build_program
from render.gl.camera import depth_coefficients, gl_projection
from render.gl.cpu_splats import CPUSplatLayer, over_framebuffer
from render.gl.meshes import Mesh, transform_bounds
from render.gl.splat_layer import GLSplatLayer, SplatShadow
from scenes._deps import require
from scenes.errors import BackendError, ShapeError
from scenes.scene import Light
from scenes.splats import Splats

__all__ = ["RenderSettings", "Renderer", "Frame", "SPLAT_PATHS"]

SPLAT_PATHS = ("gl", "raster", "cpu")
RASTER_OCCLUSION = ("auto", "limit", "depth_test")


@dataclass(frozen=True)
class RenderSettings:
    """How a :class:`Renderer` draws; fixed for its lifetime (make a new renderer to change it)."""

    splat_path: str = "gl"  # "gl": instanced GL quads; "raster": render.rasterize image composited as a texture;
    # "cpu": numba compositing on the CPU (render.gl.cpu_splats), the fast path on software GL (llvmpipe)
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # colour where nothing is drawn
    near: float = 0.01  # splats nearer than this are dropped (gsplat's near plane); GL near plane too
    far: float = 1000.0  # GL far plane for meshes, metres; splats beyond it are still drawn, behind everything
    eps2d: float = 0.3  # added to the projected 2D covariance diagonal, as render.rasterize does
    shadows: bool = True  # shadow map for the meshes
    shadow_map_size: int = 2048  # shadow map resolution, texels per side
    shadow_bias: float = 0.0015  # light-space depth bias (fraction of the light's depth range)
    splat_shadow_casting: bool = False  # gl path: splats also cast shadows (quads cut at alpha 0.5 in the
    # shadow map; costs one more splat draw, expensive on llvmpipe)
    resort_angle_deg: float = 0.5  # CPU sort: re-sort once the view direction turned this much (the GPU sort: any turn)
    sort: str = "auto"  # GL path depth sort: "cpu" (numpy), "gpu" (GL 4.3 compute), "auto" (gpu unless llvmpipe)
    raster_backend: str | None = None  # raster path: render.rasterize backend; None picks the best available
    raster_occlusion: str = "auto"  # raster path vs meshes: "limit" (depth_limit, exact), "depth_test" (expected
    # depth tested per pixel), "auto" (limit where the backend has it: cpu, reference; gsplat has not)
    splat_scale: float = 1.0  # cpu path: internal splat resolution / output resolution, in (0, 1]; upscaled bilinearly
    splat_budget_ms: float | None = None  # cpu path: choose splat_scale each frame to keep the splat layer in this time
    min_splat_scale: float = 0.25  # cpu path with a budget: the lowest scale it may choose

    def __post_init__(self) -> None:
        if self.splat_path not in SPLAT_PATHS:
            raise BackendError(f"RenderSettings.splat_path must be one of {SPLAT_PATHS}, got {self.splat_path!r}")
        if self.raster_occlusion not in RASTER_OCCLUSION:
            raise BackendError(
                f"RenderSettings.raster_occlusion must be one of {RASTER_OCCLUSION}, got {self.raster_occlusion!r}"
            )
        if not 0 < self.near < self.far:
            raise ShapeError(f"RenderSettings: need 0 < near < far, got near={self.near}, far={self.far}")
        if not 0 < self.min_splat_scale <= self.splat_scale <= 1:
            raise ShapeError(
                f"RenderSettings: need 0 < min_splat_scale <= splat_scale <= 1, got min_splat_scale="
                f"{self.min_splat_scale}, splat_scale={self.splat_scale}"
            )
        if self.splat_shadow_casting and self.splat_path != "gl":
            raise BackendError(
                f"RenderSettings.splat_shadow_casting needs splat_path='gl', got {self.splat_path!r}; "
                "turn it off for the other paths"
            )
        if self.splat_budget_ms is not None and not self.splat_budget_ms > 0:
            raise ShapeError(f"RenderSettings.splat_budget_ms must be > 0 ms or None, got {self.splat_budget_ms}")


@dataclass(frozen=True, eq=False)
class Frame:
    """One rendered frame read back to numpy; row 0 is the top of the image."""

    color: np.ndarray  # [H, W, 3] float32, background included (not clamped)
    alpha: np.ndarray  # [H, W] float32 coverage: 1 on meshes, accumulated splat opacity elsewhere
    mesh_depth: np.ndarray  # [H, W] float32 view depth (OpenCV z) of the nearest mesh; inf where none

    def to_uint8(self) -> np.ndarray:  # [H, W, 3]
        """The colour clamped to [0, 1] and rounded to 8 bits."""
        return (np.clip(self.color, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass
class _MeshEntry:
    mesh: Mesh
    model: np.ndarray  # [4, 4] mesh -> world
    vbo: object
    vao: object
    shadow_vao: object
    visible: bool = True


class Renderer:
    """Draws meshes and splats for a camera into an offscreen framebuffer of ``width`` x ``height``.

    ``ctx`` is a ModernGL context (:func:`render.gl.create_context` headless, or a GLFW window's).
    """

    def __init__(self, ctx, width: int, height: int, settings: RenderSettings | None = None) -> None:
        self.ctx = ctx
        self.settings = settings or RenderSettings()
        if ctx.version_code < 330:
            raise BackendError(f"Renderer needs OpenGL 3.3 or newer, the context has {ctx.version_code}")
        self._mesh_prog = build_program(ctx, "mesh.vert", "mesh.frag")
        self._shadow_prog = build_program(ctx, "shadow.vert", "shadow.frag")
        self._composite_prog = build_program(ctx, "fullscreen.vert", "raster_composite.frag")
        self._present_prog = build_program(ctx, "fullscreen.vert", "present.frag")
        self._fullscreen_vao = ctx.vertex_array(self._composite_prog, [])
        self._depth_nearest_prog = build_program(ctx, "fullscreen.vert", "depth_nearest.frag")
        self._depth_nearest_vao = ctx.vertex_array(self._depth_nearest_prog, [])
        self._depth_small = self._depth_small_fbo = None  # cpu path: mesh depth at the internal splat size
        self._shade_factors_key = self._shade_factors = None  # last per-splat shadow factors and their inputs
        self._present_vao = ctx.vertex_array(self._present_prog, [])
        self.splat_layer = GLSplatLayer(ctx, resort_angle_deg=self.settings.resort_angle_deg, sort=self.settings.sort)
        self.cpu_splats = CPUSplatLayer()  # used by splat_path="cpu"
        self.splat_scale = self.settings.splat_scale  # cpu path: current internal scale (budget-driven if set)
        self._still_key = None  # cpu path with a budget: what the last splat image depended on
        self._still_rgba = None  # ... and that image at full scale, once drawn
        self.splat_size = (0, 0)  # cpu path: internal splat resolution of the last frame
        self.splat_ms = 0.0  # cpu path: CPU time of the last splat image, ms
        self._shade_prog = None  # cpu path with shadows: per-splat shadow factors by transform feedback
        self._shade_key = None
        self._shade_objs: tuple = ()
        # bound while our framebuffers are released (binding back a deleted one is a GL error)
        self._home_fbo = ctx.screen if ctx.screen is not None else ctx.detect_framebuffer(0)
        self._splats: Splats | None = None
        self._splat_means: np.ndarray | None = None
        self._splat_quats: np.ndarray | None = None
        self._splat_version = 0  # bumped on every change, keys the raster path's tensor cache
        self._splat_body: np.ndarray | None = None  # set_splat_rotations: [N] body of each splat
        self._splat_rot: np.ndarray | None = None  # and [B, 3, 3] rotations since rest
        self._raster_cache_key = None
        self._raster_cache: dict = {}
        self._meshes: dict[int, _MeshEntry] = {}
        self._next_mesh = 0
        self.light = Light()
        size = self.settings.shadow_map_size
        self._shadow_tex = ctx.depth_texture((size, size))
        self._shadow_tex.compare_func = "<="
        self._shadow_tex.repeat_x = self._shadow_tex.repeat_y = False
        moderngl = require("moderngl", "GL rendering")
        self._shadow_tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self._shadow_fbo = ctx.framebuffer(depth_attachment=self._shadow_tex)
        self._raster_tex = None
        self._raster_depth_tex = None
        self.width = self.height = 0
        self._fbo = None
        self.resize(width, height)

    # ------------------------------------------------------------------ targets
    def resize(self, width: int, height: int) -> None:
        """Reallocate the offscreen framebuffer for a new size."""
        width, height = int(width), int(height)
        if width <= 0 or height <= 0:
            raise ShapeError(f"Renderer size: width and height must be positive, got {width}x{height}")
        if (width, height) == (self.width, self.height):
            return
        self._release_targets()
        self.width, self.height = width, height
        ctx = self.ctx
        # RGBA32F: exact enough to match render.rasterize, and on llvmpipe it blends faster than RGBA16F
        self._color = ctx.texture((width, height), 4, dtype="f4")
        self._view_z = ctx.texture((width, height), 1, dtype="f4")
        self._depth = ctx.depth_texture((width, height))
        self._fbo = ctx.framebuffer([self._color, self._view_z], self._depth)
        self._color_fbo = ctx.framebuffer([self._color], self._depth)
        self._view_z_fbo = ctx.framebuffer([self._view_z])

    # ------------------------------------------------------------------ content
    def set_splats(self, splats: Splats | None) -> None:
        """Replace the splat set (``None`` for none)."""
        self._splats = splats
        self._splat_version += 1
        self._splat_means = None if splats is None else splats.means
        self._splat_quats = None if splats is None else splats.unit_quats
        self._splat_body = self._splat_rot = None
        self.cpu_splats.body_of_splat = self.cpu_splats.rotations = None
        if self.settings.splat_path == "gl":
            self.splat_layer.set_splats(splats)
        elif self.settings.splat_path == "cpu":
            self.cpu_splats.set_splats(splats)

    def update_splats(
        self,
        means: np.ndarray | None = None,  # [N, 3] world positions of all splats
        quats: np.ndarray | None = None,  # [N, 4] wxyz rotations of all splats
    ) -> None:
        """Move the splats (e.g. after a physics step); scales, opacities and SH stay."""
        if self._splats is None:
            raise ShapeError("update_splats: no splats set; call set_splats first")
        n = len(self._splats)
        if means is not None:
            means = np.asarray(means, np.float32)
            if means.shape != (n, 3):
                raise ShapeError(f"update_splats: means must be [{n}, 3], got {means.shape}")
            self._splat_means = means
        if quats is not None:
            quats = np.asarray(quats, np.float32)
            if quats.shape != (n, 4):
                raise ShapeError(f"update_splats: quats must be [{n}, 4], got {quats.shape}")
            self._splat_quats = quats
        self._splat_version += 1
        if self.settings.splat_path == "gl":
            self.splat_layer.update(means, quats)
        elif self.settings.splat_path == "cpu":
            self.cpu_splats.update(means, quats)

    def set_splat_rotations(
        self,
        body_of_splat: np.ndarray | None,  # [N] int: the body (object) of each splat, -1 for none; None: clear
        rotations: np.ndarray | None = None,  # [B, 3, 3] each body's rotation since its rest pose
    ) -> None:
        """View-dependent colour of moved objects: splat i's SH, kept as captured at rest, are evaluated
        with the view direction rotated into its body's rest frame, ``R[body]^T d`` (the colour of the
        rotated SH, as ``physics.SplatRig.colors`` gives it). Call after :meth:`update_splats`."""
        if self._splats is None:
            raise ShapeError("set_splat_rotations: no splats set; call set_splats first")
        n = len(self._splats)
        if body_of_splat is None:
            self._splat_body = self._splat_rot = None
        else:
            body = np.asarray(body_of_splat, np.int64)
            rot = np.asarray(rotations, np.float64)
            if body.shape != (n,):
                raise ShapeError(f"set_splat_rotations: body_of_splat must be [{n}], got shape {body.shape}")
            if rot.ndim != 3 or rot.shape[1:] != (3, 3) or not np.isfinite(rot).all():
                raise ShapeError(f"set_splat_rotations: rotations must be finite [B, 3, 3], got shape {rot.shape}")
            if body.size and (body.min() < -1 or body.max() >= len(rot)):
                raise ShapeError(f"set_splat_rotations: body indices must lie in -1..{len(rot) - 1}")
            self._splat_body, self._splat_rot = body, rot
        if self.settings.splat_path == "gl":
            self.splat_layer.set_rotations(self._splat_body, self._splat_rot)
        elif self.settings.splat_path == "cpu":
            self.cpu_splats.body_of_splat, self.cpu_splats.rotations = self._splat_body, self._splat_rot

    def add_mesh(self, mesh: Mesh, model: np.ndarray | None = None) -> int:
        """Add an opaque mesh with pose ``model [4, 4]`` (mesh -> world, identity by default); returns its id."""
        data = mesh.triangle_soup()
        vbo = self.ctx.buffer(data.tobytes())
        vao = self.ctx.vertex_array(self._mesh_prog, [(vbo, "3f 3f 3f", "in_position", "in_normal", "in_color")])
        shadow_vao = self.ctx.vertex_array(self._shadow_prog, [(vbo, "3f 24x", "in_position")])
        mesh_id = self._next_mesh
        self._next_mesh += 1
        self._meshes[mesh_id] = _MeshEntry(mesh, np.eye(4), vbo, vao, shadow_vao)
        if model is not None:
            self.set_mesh_model(mesh_id, model)
        return mesh_id

    def set_mesh_model(self, mesh_id: int, model: np.ndarray) -> None:
        """Set the pose of a mesh: ``model [4, 4]`` maps mesh coordinates to world."""
        model = np.asarray(model, np.float64)
        if model.shape != (4, 4) or not np.isfinite(model).all():
            raise ShapeError(f"set_mesh_model: model must be a finite 4x4 matrix, got shape {model.shape}")
        self._entry(mesh_id).model = model

    def set_mesh_visible(self, mesh_id: int, visible: bool) -> None:
        self._entry(mesh_id).visible = bool(visible)

    def remove_mesh(self, mesh_id: int) -> None:
        entry = self._meshes.pop(mesh_id, None)
        if entry is None:
            raise ShapeError(f"remove_mesh: no mesh with id {mesh_id}; ids are {sorted(self._meshes)}")
        for obj in (entry.vao, entry.shadow_vao, entry.vbo):
            obj.release()

    def clear_meshes(self) -> None:
        for mesh_id in list(self._meshes):
            self.remove_mesh(mesh_id)

    def _entry(self, mesh_id: int) -> _MeshEntry:
        try:
            return self._meshes[mesh_id]
        except KeyError:
            raise ShapeError(f"no mesh with id {mesh_id}; ids are {sorted(self._meshes)}") from None

    # ------------------------------------------------------------------ drawing
    def render(
        self,
        viewmat: np.ndarray,  # [4, 4] world-to-camera, OpenCV
        K: np.ndarray,  # [3, 3] intrinsics for this renderer's width x height
    ) -> None:
        """Draw one frame into the offscreen framebuffer."""
        moderngl = require("moderngl", "GL rendering")
        viewmat = np.asarray(viewmat, np.float64)
        K = np.asarray(K, np.float64)
        if viewmat.shape != (4, 4) or not np.isfinite(viewmat).all():
            raise ShapeError(f"render: viewmat must be a finite 4x4 matrix, got shape {viewmat.shape}")
        if K.shape != (3, 3) or not np.isfinite(K).all():
            raise ShapeError(f"render: K must be a finite 3x3 matrix, got shape {K.shape}")
        s = self.settings
        ctx = self.ctx
        proj = gl_projection(K, self.width, self.height, s.near, s.far)
        depth_ab = depth_coefficients(s.near, s.far)
        visible = [e for e in self._meshes.values() if e.visible]

        light_vp = self._shadow_pass(visible) if s.shadows else None
        shadow = None
        if light_vp is not None:
            _, radiance, ambient = self._light_params()
            bias = 3.0 * s.shadow_bias  # the mesh shader's slope-scaled bias at n.l ~ 0.5
            shadow = SplatShadow(self._shadow_tex, light_vp, bias, ambient, radiance)

        self._fbo.use()
        ctx.viewport = (0, 0, self.width, self.height)
        ctx.disable(moderngl.BLEND | moderngl.CULL_FACE)
        self._color_fbo.clear(*s.background, 0.0, depth=1.0)
        self._view_z_fbo.clear(float("inf"), 0.0, 0.0, 0.0)
        self._fbo.use()
        if visible:
            self._mesh_pass(visible, viewmat, proj, light_vp)

        self._color_fbo.use()
        if s.splat_path == "gl":
            self.splat_layer.draw(
                viewmat, K, self.width, self.height, depth_ab, near=s.near, eps2d=s.eps2d, shadow=shadow
            )
        elif self._splats is not None and len(self._splats):
            if s.splat_path == "cpu":
                self.cpu_splats.shade = self._shadow_factors(shadow) if shadow is not None else None
                self._color_fbo.use()
                self._cpu_pass(viewmat, K, bool(visible))
            else:
                self._raster_pass(viewmat, K, depth_ab, bool(visible), shadow)

    def _light_params(self):
        light = self.light
        direction = np.asarray(light.direction, np.float64)
        direction = direction / np.linalg.norm(direction)
        radiance = np.asarray(light.color, np.float64) * float(light.intensity)
        return direction, radiance, np.asarray(light.ambient, np.float64)

    def _shadow_pass(self, visible: list[_MeshEntry]) -> np.ndarray | None:
        casters = [e for e in visible if e.mesh.cast_shadows and e.mesh.lit is not None]
        has_splats = self._splats is not None and len(self._splats) > 0
        splat_casters = has_splats and self.settings.splat_shadow_casting
        if not (casters or splat_casters) or not (has_splats or any(e.mesh.lit for e in visible)):
            return None
        moderngl = require("moderngl", "GL rendering")
        direction, _, _ = self._light_params()
        lo = np.full(3, np.inf)
        hi = np.full(3, -np.inf)
        for e in visible:  # receivers and casters together bound the light frustum
            a, b = transform_bounds(*e.mesh.bounds(), e.model)
            lo, hi = np.minimum(lo, a), np.maximum(hi, b)
        if splat_casters:  # the splats' centres, padded by their largest extent
            means = np.asarray(self._splat_means, np.float64)
            pad = 3.0 * float(np.max(self._splats.scales))
            lo, hi = np.minimum(lo, means.min(0) - pad), np.maximum(hi, means.max(0) + pad)
        light_vp = _light_matrix(direction, lo, hi)
        ctx = self.ctx
        self._shadow_fbo.use()
        size = self.settings.shadow_map_size
        ctx.viewport = (0, 0, size, size)
        self._shadow_fbo.clear(depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.depth_func = "<"
        ctx.polygon_offset = (1.5, 2.0)
        self._shadow_prog["u_light_vp"].write(_mat(light_vp))
        try:
            for e in casters:
                self._shadow_prog["u_model"].write(_mat(e.model))
                e.shadow_vao.render(moderngl.TRIANGLES)
            if splat_casters:
                self.splat_layer.draw_shadow_casters(light_vp)
        finally:
            ctx.polygon_offset = (0.0, 0.0)
        return light_vp

    def _mesh_pass(self, visible, viewmat, proj, light_vp) -> None:
        moderngl = require("moderngl", "GL rendering")
        ctx = self.ctx
        prog = self._mesh_prog
        direction, radiance, ambient = self._light_params()
        prog["u_proj"].write(_mat(proj))
        prog["u_view"].write(_mat(viewmat))
        prog["u_light_dir"].value = tuple(direction)
        prog["u_light_radiance"].value = tuple(radiance)
        prog["u_ambient"].value = tuple(ambient)
        prog["u_shadows"].value = light_vp is not None
        prog["u_light_vp"].write(_mat(light_vp if light_vp is not None else np.eye(4)))
        prog["u_shadow_bias"].value = self.settings.shadow_bias
        self._shadow_tex.use(0)
        prog["u_shadow_map"].value = 0
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.depth_func = "<"
        for e in visible:
            normal_matrix = np.linalg.inv(e.model[:3, :3]).T
            prog["u_model"].write(_mat(e.model))
            prog["u_normal_matrix"].write(np.ascontiguousarray(normal_matrix.T, np.float32).tobytes())
            prog["u_lit"].value = bool(e.mesh.lit)
            ctx.wireframe = bool(e.mesh.wireframe)
            try:
                e.vao.render(moderngl.TRIANGLES)
            finally:
                ctx.wireframe = False

    def raster_backend(self) -> str:
        """The ``render.rasterize`` backend the raster path uses (settings, else the best available)."""
        from render.rasterize import available_backends

        if self.settings.raster_backend is not None:
            return self.settings.raster_backend
        return available_backends()[0]

    def _raster_inputs(self, device: str) -> dict:
        import torch

        key = (device, self._splat_version)
        if self._raster_cache_key != key:
            splats = self._splats
            arrays = {
                "means": self._splat_means,
                "quats": self._splat_quats,
                "scales": splats.scales,
                "opacities": splats.opacities,
                "colors": splats.sh,
            }
            self._raster_cache = {
                k: torch.from_numpy(np.ascontiguousarray(v, np.float32)).to(device) for k, v in arrays.items()
            }
            self._raster_cache_key = key
        return self._raster_cache

    def _raster_pass(self, viewmat, K, depth_ab, has_meshes: bool, shadow: SplatShadow | None = None) -> None:
        import torch

        from render.rasterize import rasterize  # the other splat path; imported only when chosen

        s = self.settings
        backend = self.raster_backend()
        device = "cuda" if backend == "gsplat" else "cpu"
        kwargs = {}
        # the cpu and reference backends stop at the mesh depth exactly; gsplat has no depth limit, so
        # its expected depth is depth-tested per pixel against the meshes instead
        occlusion = s.raster_occlusion
        if occlusion == "auto":
            occlusion = "depth_test" if backend == "gsplat" else "limit"
        depth_test = has_meshes and occlusion == "depth_test"
        if has_meshes and not depth_test:
            kwargs["depth_limit"] = torch.from_numpy(self._read_view_z())[None].to(device)
        inputs = dict(self._raster_inputs(device))
        sh_degree = self._splats.sh_degree
        rotated = self._splat_body is not None and sh_degree > 0
        if shadow is not None or rotated:  # colours for this view: SH evaluated here (rest frames), shadowed
            from render.gl.cpu_splats import rest_frame_points
            from render.sh import sh_to_color

            campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
            points = np.asarray(self._splat_means, np.float32)
            if rotated:
                points = rest_frame_points(points, campos, self._splat_body, self._splat_rot)
            dirs = torch.from_numpy(points - campos.astype(np.float32)).to(device)
            color = sh_to_color(sh_degree, dirs, inputs["colors"])
            if shadow is not None:
                color = color * torch.from_numpy(self._shadow_factors(shadow).copy()).to(device)
            inputs["colors"] = color
            sh_degree = None
        result = rasterize(
            **inputs,
            viewmats=torch.from_numpy(viewmat.astype(np.float32))[None].to(device),
            Ks=torch.from_numpy(K.astype(np.float32))[None].to(device),
            width=self.width,
            height=self.height,
            sh_degree=sh_degree,
            render_mode="RGB+ED",
            near_plane=s.near,
            eps2d=s.eps2d,
            backend=backend,
            **kwargs,
        )
        color = result.colors[0].detach().float().cpu().numpy()
        alpha = result.alphas[0].detach().float().cpu().numpy()
        depth = result.depths[0].detach().float().cpu().numpy()
        rgba = np.ascontiguousarray(np.concatenate([color, alpha], axis=-1))
        self._composite_image(rgba, depth if depth_test else None, depth_ab)

    def _cpu_pass(self, viewmat, K, has_meshes: bool) -> None:
        s = self.settings
        scale = self.splat_scale
        refine = False
        if s.splat_budget_ms is not None:
            # Still-frame refinement: a frame identical in everything the splat image depends on (view, splats,
            # their rotations and shadows, the mesh depth) is redrawn once at full scale, then reused as is.
            cpu = self.cpu_splats
            meshes = self._mesh_state() if has_meshes else ()
            key = (viewmat.tobytes(), np.asarray(K).tobytes(), self.width, self.height, self._splat_version,
                   None if cpu.shade is None else self._shade_factors_key,
                   None if cpu.rotations is None else np.ascontiguousarray(cpu.rotations).tobytes(),
                   meshes)  # fmt: skip
            if key == self._still_key and self._still_rgba is not None:
                self._cpu_image(self._still_rgba, has_meshes)
                return
            refine = key == self._still_key and scale < 1.0
            self._still_key, self._still_rgba = key, None
            if refine:
                scale = 1.0
        w, h = max(1, round(self.width * scale)), max(1, round(self.height * scale))
        sx, sy = w / self.width, h / self.height
        K_low = np.diag([sx, sy, 1.0]) @ K  # pixel edges scale exactly: the same view at w x h
        limit = None
        if has_meshes:  # the mesh depth at each internal pixel's centre (nearest), sampled on the GPU
            limit = self._read_view_z() if (w, h) == (self.width, self.height) else self._read_view_z_at(w, h)
        t0 = time.perf_counter()
        if s.splat_budget_ms is None and (w, h) == (self.width, self.height):
            # blended into the frame on the CPU as it is composited, then written to it: llvmpipe's
            # textured full-screen blend of the image costs several times more
            under = self._frame_colour(has_meshes)
            frame = self.cpu_splats.render(
                viewmat, K_low, w, h, limit, near=s.near, eps2d=s.eps2d, background=(*s.background, 0.0), under=under
            )
            self.splat_ms = 1000 * (time.perf_counter() - t0)
            self.splat_size = (w, h)
            self._color.write(frame)
            return
        rgba = self.cpu_splats.render(viewmat, K_low, w, h, limit, near=s.near, eps2d=s.eps2d)
        if refine or (s.splat_budget_ms is not None and scale >= 1.0):
            self._still_rgba = rgba  # full scale: reused while nothing changes
        if refine:  # a still frame's full-scale redraw says nothing about the moving frame's budget
            self.splat_size = (w, h)
            self._cpu_image(rgba, has_meshes)
            return
        self.splat_ms = 1000 * (time.perf_counter() - t0)
        self.splat_size = (w, h)
        self._cpu_image(rgba, has_meshes)
        if s.splat_budget_ms is not None:  # next frame's scale: time ~ pixels, damped, in 1/32 steps
            step = float(np.clip(np.sqrt(s.splat_budget_ms / max(self.splat_ms, 1e-3)), 0.8, 1.25))
            target = float(np.clip(scale * step, s.min_splat_scale, 1.0))
            self.splat_scale = max(s.min_splat_scale, min(1.0, round(target * 32) / 32))

    def _cpu_image(self, rgba: np.ndarray, has_meshes: bool) -> None:
        """The cpu path's splat image over the frame: at full size blended on the CPU and written to the
        colour texture (llvmpipe's textured full-screen blend costs several times more), else upscaled
        by the GL composite."""
        if rgba.shape[:2] != (self.height, self.width):
            self._composite_image(rgba, None, None)
            return
        under = self._frame_colour(has_meshes)
        self._color.write(over_framebuffer(rgba, under, (*self.settings.background, 0.0)))

    def _frame_colour(self, has_meshes: bool) -> np.ndarray | None:  # [H, W, 4], row 0 = bottom
        """The colour texture before the splats: the meshes, or None where it holds the background alone."""
        if not has_meshes:
            return None
        return np.frombuffer(self._color.read(), np.float32).reshape(self.height, self.width, 4)

    def _shadow_factors(self, shadow: SplatShadow) -> np.ndarray:  # [N, 3] float32
        """Each splat centre's shadow factor (the GL path's formula), by a transform-feedback pass."""
        key = (self._splat_version, _mat(shadow.light_vp), float(shadow.bias), np.asarray(shadow.ambient).tobytes(),
               np.asarray(shadow.radiance).tobytes(), self._mesh_state())  # fmt: skip
        if key == self._shade_factors_key:  # nothing that shades the splats changed (e.g. only the camera moved)
            return self._shade_factors
        moderngl = require("moderngl", "GL rendering")
        ctx = self.ctx
        if self._shade_prog is None:
            self._shade_prog = build_program(ctx, "splat_shadow.vert", varyings=("out_factor",))
        n = len(self._splats)
        if self._shade_key != self._splat_version:
            for obj in self._shade_objs:
                obj.release()
            src = ctx.buffer(np.ascontiguousarray(self._splat_means, np.float32).tobytes())
            dst = ctx.buffer(reserve=12 * n)
            vao = ctx.vertex_array(self._shade_prog, [(src, "3f", "in_position")])
            self._shade_objs = (vao, src, dst)
            self._shade_key = self._splat_version
        vao, _, dst = self._shade_objs
        prog = self._shade_prog
        shadow.texture.use(0)
        prog["u_shadow_map"].value = 0
        prog["u_shadows"].value = True
        prog["u_light_vp"].write(_mat(shadow.light_vp))
        prog["u_shadow_bias"].value = shadow.bias
        prog["u_ambient"].value = tuple(float(v) for v in shadow.ambient)
        prog["u_light_radiance"].value = tuple(float(v) for v in shadow.radiance)
        vao.transform(dst, mode=moderngl.POINTS, vertices=n)
        self._shade_factors = np.frombuffer(dst.read(), np.float32).reshape(n, 3)
        self._shade_factors_key = key
        return self._shade_factors

    def _mesh_state(self) -> tuple:
        """What the meshes' depth and shadow map depend on: ids, visibility and poses."""
        return tuple((i, e.visible, e.model.tobytes()) for i, e in self._meshes.items())

    def _composite_image(self, rgba: np.ndarray, depth: np.ndarray | None, depth_ab) -> None:
        """Blend an [h, w, 4] premultiplied image (row 0 = top) over the frame, bilinearly scaled to it.

        With ``depth`` (expected view depth [h, w]) each pixel is depth-tested against the meshes;
        without, the image was already limited to the mesh depth and is blended everywhere.
        """
        moderngl = require("moderngl", "GL rendering")
        depth_test = depth is not None
        h, w = rgba.shape[:2]
        size = (w, h)
        if self._raster_tex is None or self._raster_tex.size != size:
            for tex in (self._raster_tex, self._raster_depth_tex):
                if tex is not None:
                    tex.release()
            self._raster_tex = self.ctx.texture(size, 4, dtype="f4")
            self._raster_depth_tex = self.ctx.texture(size, 1, dtype="f4")
            for tex in (self._raster_tex, self._raster_depth_tex):
                tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
                tex.repeat_x = tex.repeat_y = False
        scaled = size != (self.width, self.height)
        self._raster_tex.filter = (moderngl.LINEAR, moderngl.LINEAR) if scaled else (moderngl.NEAREST, moderngl.NEAREST)
        self._raster_tex.write(np.ascontiguousarray(rgba, np.float32).tobytes())
        if depth_test:
            self._raster_depth_tex.write(np.ascontiguousarray(depth, np.float32).tobytes())
        ctx = self.ctx
        prog = self._composite_prog
        self._raster_tex.use(0)
        self._raster_depth_tex.use(1)
        prog["u_color"].value = 0
        prog["u_depth"].value = 1
        prog["u_depth_test"].value = depth_test
        prog["u_depth_ab"].value = depth_ab if depth_ab is not None else (0.0, 1.0)
        ctx.enable(moderngl.BLEND)
        ctx.blend_func = (moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA)
        if depth_test:
            ctx.enable(moderngl.DEPTH_TEST)
        else:
            ctx.disable(moderngl.DEPTH_TEST)
        fbo = ctx.fbo  # moderngl keeps the depth write mask on the framebuffer (Context has no depth_mask)
        fbo.depth_mask = False
        try:
            self._fullscreen_vao.render(moderngl.TRIANGLES, vertices=3)
        finally:
            fbo.depth_mask = True
            ctx.disable(moderngl.BLEND)
            ctx.enable(moderngl.DEPTH_TEST)

    # ------------------------------------------------------------------ output
    def _read_view_z_at(self, w: int, h: int) -> np.ndarray:  # [h, w], row 0 = top
        """The mesh view depth at the centres of a w x h grid over the frame (nearest full-size pixel).

        Drawn into a w x h float target first, so only w x h values cross back from the GL (reading the
        full-size texture costs ~25 ms a frame at 1280x720 on llvmpipe)."""
        moderngl = require("moderngl", "GL rendering")
        ctx = self.ctx
        if self._depth_small is None or self._depth_small.size != (w, h):
            for obj in (self._depth_small_fbo, self._depth_small):
                if obj is not None:
                    obj.release()
            self._depth_small = ctx.texture((w, h), 1, dtype="f4")
            self._depth_small_fbo = ctx.framebuffer([self._depth_small])
        prog = self._depth_nearest_prog
        self._view_z.use(0)
        prog["u_view_z"].value = 0
        prog["u_full"].value = (self.width, self.height)
        prog["u_scale"].value = (w / self.width, h / self.height)
        prog["u_rows"].value = h
        previous = ctx.fbo
        self._depth_small_fbo.use()
        ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST)
        try:
            self._depth_nearest_vao.render(moderngl.TRIANGLES, vertices=3)
        finally:
            ctx.enable(moderngl.DEPTH_TEST)
            previous.use()
        raw = np.frombuffer(self._depth_small.read(), np.float32).reshape(h, w)
        return np.ascontiguousarray(raw[::-1])

    def _read_view_z(self) -> np.ndarray:  # [H, W], row 0 = top
        raw = np.frombuffer(self._view_z.read(), np.float32).reshape(self.height, self.width)
        return np.ascontiguousarray(raw[::-1])

    def read(self) -> Frame:
        """Copy the last frame to numpy."""
        rgba = np.frombuffer(self._color.read(), np.float32).reshape(self.height, self.width, 4)[::-1]
        return Frame(
            color=np.ascontiguousarray(rgba[..., :3]),
            alpha=np.ascontiguousarray(rgba[..., 3]),
            mesh_depth=self._read_view_z(),
        )

    def render_frame(self, viewmat: np.ndarray, K: np.ndarray) -> Frame:
        """:meth:`render` then :meth:`read`."""
        self.render(viewmat, K)
        return self.read()

    def present(self, framebuffer, viewport: tuple[int, int, int, int] | None = None) -> None:
        """Draw the last frame into ``framebuffer`` (e.g. ``ctx.screen`` of a window), clamped to [0, 1]."""
        moderngl = require("moderngl", "GL rendering")
        ctx = self.ctx
        framebuffer.use()
        ctx.viewport = viewport or (0, 0, *framebuffer.size)
        ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST)
        self._color.use(0)
        self._present_prog["u_color"].value = 0
        self._present_prog["u_flip"].value = True
        self._present_vao.render(moderngl.TRIANGLES, vertices=3)
        ctx.enable(moderngl.DEPTH_TEST)

    # ------------------------------------------------------------------ lifetime
    def _unbind(self, framebuffers) -> None:
        if any(self.ctx.fbo is fb for fb in framebuffers if fb is not None):
            self._home_fbo.use()

    def _release_targets(self) -> None:
        if self._fbo is None:
            return
        self._unbind((self._fbo, self._color_fbo, self._view_z_fbo))
        for obj in (self._fbo, self._color_fbo, self._view_z_fbo, self._color, self._view_z, self._depth):
            obj.release()
        self._fbo = None

    def release(self) -> None:
        """Free the GL objects (the context stays)."""
        self.clear_meshes()
        self._unbind((self._shadow_fbo, self._depth_small_fbo))
        self._release_targets()
        self.splat_layer.release()
        for obj in (*self._shade_objs, self._shade_prog):
            if obj is not None:
                obj.release()
        for obj in (
            self._fullscreen_vao,
            self._present_vao,
            self._mesh_prog,
            self._shadow_prog,
            self._composite_prog,
            self._present_prog,
            self._shadow_fbo,
            self._shadow_tex,
            self._raster_tex,
            self._raster_depth_tex,
            self._depth_nearest_vao,
            self._depth_nearest_prog,
            self._depth_small_fbo,
            self._depth_small,
        ):
            if obj is not None:
                obj.release()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _mat(m: np.ndarray) -> bytes:
    """A row-major numpy 4x4 as the column-major bytes GLSL expects."""
    return np.ascontiguousarray(np.asarray(m, np.float64).T, np.float32).tobytes()


def _light_matrix(direction: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """World -> light clip: an orthographic view along ``-direction`` enclosing the box ``lo..hi``."""
    z = -direction  # the light looks from the light towards the scene
    up = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.99 else np.array([0.0, 1.0, 0.0])
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    p = corners @ R.T
    pmin, pmax = p.min(0), p.max(0)
    pad = 1e-3 * max(float(np.max(pmax - pmin)), 1e-3)
    pmin, pmax = pmin - pad, pmax + pad
    scale = 2.0 / np.maximum(pmax - pmin, 1e-6)
    ortho = np.eye(4)
    ortho[:3, :3] = np.diag(scale) @ R
    ortho[:3, 3] = -scale * (pmin + pmax) / 2
    return ortho
