"""The GL splat path: instanced Gaussian quads, depth-sorted on the CPU, blended back to front.

Each frame runs two GL passes. A preprocess pass draws one point per splat in sorted order and
captures, with transform feedback, the projected centre, conic, extent, colour (SH evaluated for
the current camera) and depth: the same formulas as ``render.rasterize`` (gsplat 1.5). The draw
pass then renders one quad per splat, instanced from that buffer, with premultiplied alpha.

Sorting is by view depth z, which for a fixed scene depends only on the camera's forward axis
(moving the camera adds the same amount to every splat's z), so it is redone only when the
forward axis turned or the splats changed. ``sort="cpu"`` sorts with numpy (argsort of N floats),
uploads the order, and waits until the view turned by more than ``resort_angle_deg``;
``sort="gpu"`` runs a bitonic sort in GL 4.3 compute shaders, leaving the order in the same buffer
without a round trip, on every turn of the view.

The preprocess pass also darkens splats in mesh shadows (``shadow``, ``shaders/splat_shadow.glsl``)
and, after :meth:`GLSplatLayer.set_rotations`, evaluates each moved object's SH with the view
direction in its rest frame (a body index per splat in the scale texture's w, rotations in a texture).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from render.gl._shaders import build_program, shader_source
from scenes.errors import BackendError, ShapeError
from scenes.splats import Splats

__all__ = ["GLSplatLayer", "SORT_MODES", "SplatShadow", "is_software_renderer"]

SORT_MODES = ("auto", "cpu", "gpu")
_SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "lavapipe", "software")
_SORT_GROUP = 256  # local size of the sort compute shaders


@dataclass(frozen=True, eq=False)
class SplatShadow:
    """What the splat passes need to darken splats in mesh shadows."""

    texture: object  # the renderer's depth texture (compare mode on) of the shadow map
    light_vp: np.ndarray  # [4, 4] world -> light clip
    bias: float  # light-space depth bias
    ambient: np.ndarray  # [3]
    radiance: np.ndarray  # [3] light colour * intensity


def checked_pose_update(means, quats, count: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """New splat positions [N, 3] and rotations [N, 4] wxyz (either may be None) as float32, checked for shape
    and finiteness, the rotations normalised; a clear :class:`ShapeError` otherwise."""
    if means is not None:
        means = np.asarray(means, np.float32)
        if means.shape != (count, 3) or not np.isfinite(means).all():
            raise ShapeError(f"update: means must be finite [{count}, 3], got shape {means.shape}")
    if quats is not None:
        quats = np.asarray(quats, np.float32)
        if quats.shape != (count, 4) or not np.isfinite(quats).all():
            raise ShapeError(f"update: quats must be finite [{count}, 4] wxyz, got shape {quats.shape}")
        norms = np.linalg.norm(quats, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ShapeError(f"update: {int((norms == 0).sum())} zero-length quaternion(s)")
        quats = quats / norms
    return means, quats


def is_software_renderer(ctx) -> bool:
    """True for a CPU GL implementation (Mesa llvmpipe, softpipe, ...)."""
    name = ctx.info.get("GL_RENDERER", "").lower()
    return any(s in name for s in _SOFTWARE_RENDERERS)


def resolve_sort_mode(ctx, requested: str) -> str:
    """``"cpu"`` or ``"gpu"`` for a requested mode; ``"auto"`` sorts on the GPU unless it is a CPU renderer."""
    if requested not in SORT_MODES:
        raise BackendError(f"sort must be one of {SORT_MODES}, got {requested!r}")
    if requested == "gpu" and ctx.version_code < 430:
        raise BackendError(
            f"sort='gpu' needs OpenGL 4.3 compute shaders; this context ({ctx.info.get('GL_RENDERER')}) has "
            f"{ctx.version_code // 100}.{ctx.version_code % 100 // 10}; use sort='cpu'"
        )
    if requested == "auto":
        return "gpu" if ctx.version_code >= 430 and not is_software_renderer(ctx) else "cpu"
    return requested


_TEX_WIDTH = 4096  # texels per row of the per-splat data textures
_TF_FLOATS = 14  # centre 2, conic 3, axes 4, colour 4, depth 1


def _rows(count: int) -> int:
    return max(1, -(-count // _TEX_WIDTH))


def _pad(data: np.ndarray, texels: int) -> np.ndarray:  # [M, 4] -> [rows * W, 4]
    out = np.zeros((_rows(texels) * _TEX_WIDTH, 4), np.float32)
    out[: len(data)] = data
    return out


class GLSplatLayer:
    """GPU-side copy of a :class:`Splats` set and the passes that draw it into the bound framebuffer."""

    def __init__(self, ctx, *, resort_angle_deg: float = 0.5, sort: str = "auto") -> None:
        self.ctx = ctx
        self.resort_angle_deg = resort_angle_deg  # re-sort once the forward axis turned this much
        self.sort_mode = resolve_sort_mode(ctx, sort)  # "cpu" or "gpu"
        self._keys = None
        self._padded = 0
        if self.sort_mode == "gpu":
            try:
                self._sort_keys = ctx.compute_shader(shader_source("sort_keys.comp"))
                self._sort_step = ctx.compute_shader(shader_source("sort_bitonic.comp"))
            except Exception as exc:  # noqa: BLE001 - moderngl raises a bare Error with the driver log
                raise BackendError(f"GPU sort: compute shaders failed to build ({exc}); use sort='cpu'") from exc
        self._pre = build_program(
            ctx,
            "splat_preprocess.vert",
            varyings=("out_center", "out_conic", "out_axes", "out_color", "out_depth"),
        )
        self._draw = build_program(ctx, "splat.vert", "splat.frag")
        self._quad = ctx.buffer(np.array([-1, -1, 1, -1, -1, 1, 1, 1], np.float32).tobytes())
        self._tex: dict[str, object] = {}
        self._index = None
        self._tf = None
        self._pre_vao = None
        self._draw_vao = None
        self.count = 0
        self.sh_degree = 0
        self._means = np.zeros((0, 3), np.float32)
        self._opacities = np.zeros((0,), np.float32)
        self._sh_stride = 1
        self._sorted_forward = None  # forward axis of the last sort
        self.sort_count = 0  # number of sorts done (for tests and stats)
        self._scales = np.zeros((0, 3), np.float32)
        self._body = None  # [N] int32 body of each splat (-1 none), or None: SH in the world frame
        self._rot_tex = None
        self._cast = None  # (program, vertex array) of draw_shadow_casters, built on first use

    # ------------------------------------------------------------------ data
    def set_splats(self, splats: Splats | None) -> None:
        """Upload ``splats`` (replacing the previous set); ``None`` or an empty set draws nothing."""
        self._release_data()
        if splats is None or len(splats) == 0:
            self.count = 0
            return
        n = len(splats)
        stride = -(-3 * splats.sh.shape[1] // 4)
        max_rows = int(self.ctx.info.get("GL_MAX_TEXTURE_SIZE", 16384))
        if _rows(n * stride) > max_rows:
            raise ShapeError(
                f"set_splats: {n} splats with SH degree {splats.sh_degree} need {_rows(n * stride)} texture rows, "
                f"this GL allows {max_rows}; lower the SH degree (Splats.with_sh_degree) or the splat count"
            )
        self.count = n
        self.sh_degree = splats.sh_degree
        self._means = splats.means.copy()
        self._opacities = splats.opacities.astype(np.float32)
        self._tex["mean_opacity"] = self._texture(np.concatenate([splats.means, self._opacities[:, None]], 1))
        self._tex["quat"] = self._texture(splats.unit_quats.astype(np.float32))
        self._scales = np.asarray(splats.scales, np.float32)
        self._body = None
        self._tex["scale"] = self._texture(np.concatenate([self._scales, np.zeros((n, 1), np.float32)], 1))
        sh = splats.sh.reshape(n, -1)
        sh = np.concatenate([sh, np.zeros((n, 4 * stride - sh.shape[1]), np.float32)], 1)
        self._sh_stride = stride
        self._tex["sh"] = self._texture(sh.reshape(n * stride, 4))
        if self.sort_mode == "gpu":
            self._padded = 1 << max(0, (n - 1).bit_length())
            self._index = self.ctx.buffer(reserve=4 * self._padded)
            self._keys = self.ctx.buffer(reserve=4 * self._padded)
        else:
            self._index = self.ctx.buffer(reserve=4 * n)
        self._tf = self.ctx.buffer(reserve=4 * _TF_FLOATS * n)
        self._pre_vao = self.ctx.vertex_array(self._pre, [(self._index, "u", "in_index")])
        self._draw_vao = self.ctx.vertex_array(
            self._draw,
            [
                (self._quad, "2f", "in_corner"),
                (self._tf, "2f 3f 4f 4f 1f/i", "in_center", "in_conic", "in_axes", "in_color", "in_depth"),
            ],
        )
        self._sorted_forward = None

    def update(
        self,
        means: np.ndarray | None = None,  # [N, 3] new world positions
        quats: np.ndarray | None = None,  # [N, 4] new rotations, wxyz
    ) -> None:
        """Replace the positions and/or rotations of all N splats (after physics moved objects)."""
        means, quats = checked_pose_update(means, quats, self.count)
        if means is not None:
            data = np.concatenate([means, self._opacities[:, None]], 1)
            self._tex["mean_opacity"].write(_pad(data, self.count).tobytes())
            self._means = means.copy()
            self._sorted_forward = None
        if quats is not None:
            self._tex["quat"].write(_pad(quats, self.count).tobytes())

    def set_rotations(
        self,
        body_of_splat: np.ndarray | None,  # [N] int: body of each splat, -1 for none; None clears
        rotations: np.ndarray | None = None,  # [B, 3, 3] each body's rotation since rest
    ) -> None:
        """View-dependent colour of moved objects: SH evaluated at ``R[body]^T d`` (see SplatRig.colors)."""
        if body_of_splat is None:
            if self._body is not None and self.count:
                rest = np.concatenate([self._scales, np.zeros((self.count, 1), np.float32)], 1)
                self._tex["scale"].write(_pad(rest, self.count).tobytes())
            self._body = None
            return
        body = np.asarray(body_of_splat, np.int64)
        rot = np.asarray(rotations, np.float32)
        if body.shape != (self.count,):
            raise ShapeError(f"set_rotations: body_of_splat must be [{self.count}], got shape {body.shape}")
        if rot.ndim != 3 or rot.shape[1:] != (3, 3) or not np.isfinite(rot).all():
            raise ShapeError(f"set_rotations: rotations must be finite [B, 3, 3], got shape {rot.shape}")
        if body.size and (body.min() < -1 or body.max() >= len(rot)):
            raise ShapeError(f"set_rotations: body indices must lie in -1..{len(rot) - 1}")
        if self._body is None or not np.array_equal(body, self._body):
            w = (body + 1).astype(np.float32)[:, None]
            self._tex["scale"].write(_pad(np.concatenate([self._scales, w], 1), self.count).tobytes())
            self._body = body.astype(np.int32)
        rows = np.concatenate([rot.reshape(-1, 3), np.zeros((3 * len(rot), 1), np.float32)], 1)
        if len(rows) == 0:
            rows = np.zeros((1, 4), np.float32)
        if self._rot_tex is None or self._rot_tex.size != (_TEX_WIDTH, _rows(len(rows))):
            if self._rot_tex is not None:
                self._rot_tex.release()
            self._rot_tex = self._texture(rows)
        else:
            self._rot_tex.write(_pad(rows, len(rows)).tobytes())

    def _texture(self, data: np.ndarray):
        tex = self.ctx.texture((_TEX_WIDTH, _rows(len(data))), 4, _pad(data, len(data)).tobytes(), dtype="f4")
        moderngl = _moderngl()
        tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
        return tex

    # ------------------------------------------------------------------ sorting
    def needs_sort(self, viewmat: np.ndarray) -> bool:
        if self._sorted_forward is None:
            return True
        forward = np.asarray(viewmat, np.float64)[2, :3]
        if self.sort_mode == "gpu":  # cheap there: re-sort on any turn, so the order is always exact
            return not np.array_equal(forward / np.linalg.norm(forward), self._sorted_forward)
        cos = float(np.dot(forward, self._sorted_forward) / np.linalg.norm(forward))
        return cos < np.cos(np.radians(self.resort_angle_deg))

    def sort(self, viewmat: np.ndarray, force: bool = False) -> bool:
        """Sort back to front for ``viewmat`` when needed (or ``force``); True when it sorted."""
        if self.count == 0 or not (force or self.needs_sort(viewmat)):
            return False
        forward = np.asarray(viewmat, np.float64)[2, :3]
        if self.sort_mode == "gpu":
            self._gpu_sort(forward)
        else:
            z = self._means @ forward.astype(np.float32)
            order = np.argsort(-z).astype(np.uint32)  # farthest first
            self._index.write(order.tobytes())
        self._sorted_forward = forward / np.linalg.norm(forward)
        self.sort_count += 1
        return True

    def _gpu_sort(self, forward: np.ndarray) -> None:
        moderngl = _moderngl()
        ctx = self.ctx
        p = self._padded
        groups = -(-p // _SORT_GROUP)
        self._keys.bind_to_storage_buffer(0)
        self._index.bind_to_storage_buffer(1)
        self._tex["mean_opacity"].use(0)
        keys = self._sort_keys
        keys["u_mean_opacity"].value = 0
        keys["u_tex_width"].value = _TEX_WIDTH
        keys["u_count"].value = self.count
        keys["u_padded"].value = p
        keys["u_forward"].value = tuple(float(v) for v in forward)
        keys.run(groups)
        step = self._sort_step
        step["u_padded"].value = p
        k = 2
        while k <= p:
            j = k // 2
            while j >= 1:
                ctx.memory_barrier(moderngl.SHADER_STORAGE_BARRIER_BIT)
                step["u_k"].value = k
                step["u_j"].value = j
                step.run(groups)
                j //= 2
            k *= 2
        ctx.memory_barrier(moderngl.SHADER_STORAGE_BARRIER_BIT | moderngl.VERTEX_ATTRIB_ARRAY_BARRIER_BIT)

    def sorted_order(self) -> np.ndarray:  # [N] uint32
        """The current back-to-front order (splat indices, farthest first), read back from the GPU."""
        if self.count == 0:
            return np.zeros(0, np.uint32)
        return np.frombuffer(self._index.read(size=4 * self.count), np.uint32).copy()

    # ------------------------------------------------------------------ drawing
    def draw(
        self,
        viewmat: np.ndarray,  # [4, 4] world-to-camera, OpenCV
        K: np.ndarray,  # [3, 3]
        width: int,
        height: int,
        depth_ab: tuple[float, float],  # NDC depth = a + b / z, shared with the mesh projection
        *,
        near: float = 0.01,
        far: float = 1e10,
        eps2d: float = 0.3,
        shadow: SplatShadow | None = None,
    ) -> None:
        """Project and blend the splats into the currently bound framebuffer (depth test on, no depth writes).

        With ``shadow`` the splats are darkened where the shadow map says the light is blocked.
        """
        if self.count == 0:
            return
        moderngl = _moderngl()
        self.sort(viewmat)
        viewmat = np.asarray(viewmat, np.float64)
        K = np.asarray(K, np.float64)
        pre = self._pre
        for unit, name in enumerate(("mean_opacity", "quat", "scale", "sh")):
            self._tex[name].use(unit)
            pre[f"u_{name}"].value = unit
        pre["u_tex_width"].value = _TEX_WIDTH
        pre["u_sh_degree"].value = self.sh_degree
        pre["u_sh_stride"].value = self._sh_stride
        pre["u_view"].write(viewmat.T.astype(np.float32).tobytes())
        pre["u_campos"].value = tuple(-viewmat[:3, :3].T @ viewmat[:3, 3])
        pre["u_intrinsics"].value = (K[0, 0], K[1, 1], K[0, 2], K[1, 2])
        pre["u_size"].value = (float(width), float(height))
        pre["u_near"].value = near
        pre["u_far"].value = far
        pre["u_eps2d"].value = eps2d
        pre["u_rotations"].value = self._body is not None and self._rot_tex is not None
        if self._rot_tex is not None:
            self._rot_tex.use(5)
            pre["u_rot"].value = 5
        pre["u_shadows"].value = shadow is not None
        if shadow is not None:
            shadow.texture.use(4)
            pre["u_shadow_map"].value = 4
            pre["u_light_vp"].write(np.ascontiguousarray(shadow.light_vp.T, np.float32).tobytes())
            pre["u_shadow_bias"].value = shadow.bias
            pre["u_ambient"].value = tuple(float(v) for v in shadow.ambient)
            pre["u_light_radiance"].value = tuple(float(v) for v in shadow.radiance)
        self._pre_vao.transform(self._tf, mode=moderngl.POINTS, vertices=self.count)

        self._draw["u_size"].value = (float(width), float(height))
        self._draw["u_depth_ab"].value = depth_ab
        ctx = self.ctx
        ctx.enable(moderngl.BLEND | moderngl.DEPTH_TEST)
        ctx.blend_func = (moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA)
        ctx.blend_equation = moderngl.FUNC_ADD
        ctx.depth_func = "<"
        fbo = ctx.fbo  # moderngl keeps the depth write mask on the framebuffer (Context has no depth_mask)
        fbo.depth_mask = False
        try:
            self._draw_vao.render(mode=moderngl.TRIANGLE_STRIP, vertices=4, instances=self.count)
        finally:
            fbo.depth_mask = True
            ctx.disable(moderngl.BLEND)

    def draw_shadow_casters(self, light_vp: np.ndarray, alpha_cut: float = 0.5) -> None:
        """Write the splats' depth into the bound shadow map where each one's alpha reaches ``alpha_cut``."""
        if self.count == 0:
            return
        moderngl = _moderngl()
        if self._cast is None:
            prog = build_program(self.ctx, "splat_cast.vert", "splat_cast.frag")
            self._cast = (prog, self.ctx.vertex_array(prog, [(self._quad, "2f", "in_corner")]))
        prog, vao = self._cast
        for unit, name in enumerate(("mean_opacity", "quat", "scale")):
            self._tex[name].use(unit)
            prog[f"u_{name}"].value = unit
        prog["u_tex_width"].value = _TEX_WIDTH
        prog["u_light_vp"].write(np.ascontiguousarray(np.asarray(light_vp, np.float64).T, np.float32).tobytes())
        prog["u_alpha_cut"].value = float(alpha_cut)
        vao.render(mode=moderngl.TRIANGLE_STRIP, vertices=4, instances=self.count)

    # ------------------------------------------------------------------ lifetime
    def _release_data(self) -> None:
        for obj in (
            *self._tex.values(),
            self._index,
            self._keys,
            self._tf,
            self._pre_vao,
            self._draw_vao,
            self._rot_tex,
        ):
            if obj is not None:
                obj.release()
        self._tex = {}
        self._rot_tex = None
        self._body = None
        self._index = self._keys = self._tf = self._pre_vao = self._draw_vao = None

    def release(self) -> None:
        self._release_data()
        for obj in (self._pre, self._draw, self._quad, *(self._cast or ())):
            obj.release()
        if self.sort_mode == "gpu":
            self._sort_keys.release()
            self._sort_step.release()


def _moderngl():
    from scenes._deps import require

    return require("moderngl", "GL rendering")
