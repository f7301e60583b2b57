"""The GL splat path: instanced Gaussian quads, depth-sorted on the CPU, blended back to front.

Each frame runs two GL passes. A preprocess pass draws one point per splat in sorted order and
captures, with transform feedback, the projected centre, conic, extent, colour (SH evaluated for
the current camera) and depth: the same formulas as ``render.rasterize`` (gsplat 1.5). The draw
pass then renders one quad per splat, instanced from that buffer, with premultiplied alpha.

Sorting is by view depth z, which for a fixed scene depends only on the camera's forward axis
(moving the camera adds the same amount to every splat's z), so the numpy argsort is redone
only when the forward axis turned by more than ``resort_angle_deg`` or the splats changed.
"""

from __future__ import annotations

import numpy as np

from render.gl._shaders import build_program
from scenes.errors import ShapeError
from scenes.splats import Splats

__all__ = ["GLSplatLayer"]

_TEX_WIDTH = 4096  # texels per row of the per-splat data textures
_TF_FLOATS = 12  # centre 2, conic 3, radius 2, colour 4, depth 1


def _rows(count: int) -> int:
    return max(1, -(-count // _TEX_WIDTH))


def _pad(data: np.ndarray, texels: int) -> np.ndarray:  # [M, 4] -> [rows * W, 4]
    out = np.zeros((_rows(texels) * _TEX_WIDTH, 4), np.float32)
    out[: len(data)] = data
    return out


class GLSplatLayer:
    """GPU-side copy of a :class:`Splats` set and the passes that draw it into the bound framebuffer."""

    def __init__(self, ctx, *, resort_angle_deg: float = 0.5) -> None:
        self.ctx = ctx
        self.resort_angle_deg = resort_angle_deg  # re-sort once the forward axis turned this much
        self._pre = build_program(
            ctx,
            "splat_preprocess.vert",
            varyings=("out_center", "out_conic", "out_radius", "out_color", "out_depth"),
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

    # ------------------------------------------------------------------ data
    def set_splats(self, splats: Splats | None) -> None:
        """Upload ``splats`` (replacing the previous set); ``None`` or an empty set draws nothing."""
        self._release_data()
        if splats is None or len(splats) == 0:
            self.count = 0
            return
        n = len(splats)
        self.count = n
        self.sh_degree = splats.sh_degree
        self._means = splats.means.copy()
        self._opacities = splats.opacities.astype(np.float32)
        self._tex["mean_opacity"] = self._texture(np.concatenate([splats.means, self._opacities[:, None]], 1))
        self._tex["quat"] = self._texture(splats.unit_quats.astype(np.float32))
        self._tex["scale"] = self._texture(np.concatenate([splats.scales, np.zeros((n, 1), np.float32)], 1))
        sh = splats.sh.reshape(n, -1)
        stride = -(-sh.shape[1] // 4)
        sh = np.concatenate([sh, np.zeros((n, 4 * stride - sh.shape[1]), np.float32)], 1)
        self._sh_stride = stride
        self._tex["sh"] = self._texture(sh.reshape(n * stride, 4))
        self._index = self.ctx.buffer(reserve=4 * n)
        self._tf = self.ctx.buffer(reserve=4 * _TF_FLOATS * n)
        self._pre_vao = self.ctx.vertex_array(self._pre, [(self._index, "u", "in_index")])
        self._draw_vao = self.ctx.vertex_array(
            self._draw,
            [
                (self._quad, "2f", "in_corner"),
                (self._tf, "2f 3f 2f 4f 1f/i", "in_center", "in_conic", "in_radius", "in_color", "in_depth"),
            ],
        )
        self._sorted_forward = None

    def update(
        self,
        means: np.ndarray | None = None,  # [N, 3] new world positions
        quats: np.ndarray | None = None,  # [N, 4] new rotations, wxyz
    ) -> None:
        """Replace the positions and/or rotations of all N splats (after physics moved objects)."""
        if means is not None:
            means = np.asarray(means, np.float32)
            if means.shape != (self.count, 3) or not np.isfinite(means).all():
                raise ShapeError(f"update: means must be finite [{self.count}, 3], got shape {means.shape}")
            data = np.concatenate([means, self._opacities[:, None]], 1)
            self._tex["mean_opacity"].write(_pad(data, self.count).tobytes())
            self._means = means.copy()
            self._sorted_forward = None
        if quats is not None:
            quats = np.asarray(quats, np.float32)
            if quats.shape != (self.count, 4) or not np.isfinite(quats).all():
                raise ShapeError(f"update: quats must be finite [{self.count}, 4] wxyz, got shape {quats.shape}")
            norms = np.linalg.norm(quats, axis=1, keepdims=True)
            if (norms == 0).any():
                raise ShapeError(f"update: {int((norms == 0).sum())} zero-length quaternion(s)")
            self._tex["quat"].write(_pad(quats / norms, self.count).tobytes())

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
        cos = float(np.dot(forward, self._sorted_forward) / np.linalg.norm(forward))
        return cos < np.cos(np.radians(self.resort_angle_deg))

    def sort(self, viewmat: np.ndarray, force: bool = False) -> bool:
        """Sort back to front for ``viewmat`` when needed (or ``force``); True when it sorted."""
        if self.count == 0 or not (force or self.needs_sort(viewmat)):
            return False
        forward = np.asarray(viewmat, np.float64)[2, :3]
        z = self._means @ forward.astype(np.float32)
        order = np.argsort(-z).astype(np.uint32)  # farthest first
        self._index.write(order.tobytes())
        self._sorted_forward = forward / np.linalg.norm(forward)
        self.sort_count += 1
        return True

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
    ) -> None:
        """Project and blend the splats into the currently bound framebuffer (depth test on, no depth writes)."""
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
        self._pre_vao.transform(self._tf, mode=moderngl.POINTS, vertices=self.count)

        self._draw["u_size"].value = (float(width), float(height))
        self._draw["u_depth_ab"].value = depth_ab
        ctx = self.ctx
        ctx.enable(moderngl.BLEND | moderngl.DEPTH_TEST)
        ctx.blend_func = (moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA)
        ctx.blend_equation = moderngl.FUNC_ADD
        ctx.depth_func = "<"
        ctx.depth_mask = False
        try:
            self._draw_vao.render(mode=moderngl.TRIANGLE_STRIP, vertices=4, instances=self.count)
        finally:
            ctx.depth_mask = True
            ctx.disable(moderngl.BLEND)

    # ------------------------------------------------------------------ lifetime
    def _release_data(self) -> None:
        for obj in (*self._tex.values(), self._index, self._tf, self._pre_vao, self._draw_vao):
            if obj is not None:
                obj.release()
        self._tex = {}
        self._index = self._tf = self._pre_vao = self._draw_vao = None

    def release(self) -> None:
        self._release_data()
        for obj in (self._pre, self._draw, self._quad):
            obj.release()


def _moderngl():
    from scenes._deps import require

    return require("moderngl", "GL rendering")
