"""The CPU splat layer: splats composited by numba on the CPU, for software GL (Mesa llvmpipe).

llvmpipe pays a few microseconds per primitive however small (vertex work, triangle setup and binning,
4x4-pixel shading blocks), so 100k instanced quads cost 0.3-1 s a frame on two cores whatever the
resolution. This layer skips GL for the splats: ``render._cpu_kernels.project_fwd`` and ``sh_fwd``
(the cpu rasterization backend's own projection and SH, so the maths is ``render.rasterize``'s),
a depth sort, then a front-to-back compositing kernel over bands of rows that stops at the mesh depth
(:mod:`render.gl._cpu_splat_kernels`). The renderer uploads the image as a texture and blends it
over the meshes. The image can be made at a lower internal resolution than the output
(``RenderSettings.splat_scale``) and is then upscaled bilinearly when composited.
"""

from __future__ import annotations

import math
import os

import numpy as np

from render.gl.splat_layer import checked_pose_update
from scenes.errors import ShapeError
from scenes.splats import Splats

__all__ = ["CPUSplatLayer"]

_BAND = 8  # image rows per parallel work item


def _kernels():
    # numba's OpenMP threads spin between parallel regions unless told not to; on a 2-core machine that
    # spinning starves llvmpipe's threads (the project's commands set the same, docs/design.md)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from render._cpu import kernels  # sets up the numba cache directory before importing numba

    kernels()
    from render.gl import _cpu_splat_kernels

    return _cpu_splat_kernels


def rest_frame_points(
    means: np.ndarray,  # [N, 3]
    campos: np.ndarray,  # [3]
    body_of_splat: np.ndarray,  # [N] int, -1 for none
    rotations: np.ndarray,  # [B, 3, 3]
) -> np.ndarray:  # [N, 3] float32
    """Points whose direction from ``campos`` is each splat's view direction in its body's rest frame.

    ``campos + R[body]^T (mean - campos)``: SH evaluated towards them give the colour of the rotated
    SH towards the real splat (``physics.SplatRig.colors``' convention), without rotating coefficients.
    """
    f32 = np.float32
    out = np.empty((len(means), 3), f32)
    _kernels().rest_frame_points(
        np.ascontiguousarray(means, f32),
        np.ascontiguousarray(campos, f32),
        np.ascontiguousarray(body_of_splat, np.int64),
        np.ascontiguousarray(rotations, f32),
        out,
    )
    return out


class CPUSplatLayer:
    """A CPU copy of a :class:`Splats` set and the kernels that composite it into an RGBA image."""

    def __init__(self) -> None:
        self.count = 0
        self.sh_degree = 0
        self._means = self._quats = self._scales = self._opacities = self._sh = None
        self.shade: np.ndarray | None = None  # [N, 3] per-splat colour factor (shadows), None for 1
        self.body_of_splat: np.ndarray | None = None  # [N] body of each splat (-1 none) for SH in rest frames
        self.rotations: np.ndarray | None = None  # [B, 3, 3] each body's rotation since rest
        self.last_visible = 0  # splats drawn in the last image (for stats)

    def set_splats(self, splats: Splats | None) -> None:
        if splats is None or len(splats) == 0:
            self.count = 0
            return
        f32 = np.float32
        self.count = len(splats)
        self.sh_degree = splats.sh_degree
        self._means = np.ascontiguousarray(splats.means, f32)
        self._quats = np.ascontiguousarray(splats.unit_quats, f32)
        self._scales = np.ascontiguousarray(splats.scales, f32)
        self._opacities = np.ascontiguousarray(splats.opacities, f32)
        self._sh = np.ascontiguousarray(splats.sh, f32)

    def update(self, means: np.ndarray | None = None, quats: np.ndarray | None = None) -> None:
        """Replace the positions and/or rotations (wxyz) of all N splats."""
        means, quats = checked_pose_update(means, quats, self.count)
        if means is not None:
            self._means = np.ascontiguousarray(means)
        if quats is not None:
            self._quats = np.ascontiguousarray(quats)

    def render(
        self,
        viewmat: np.ndarray,  # [4, 4] world-to-camera, OpenCV
        K: np.ndarray,  # [3, 3] for width x height
        width: int,
        height: int,
        limit: np.ndarray | None = None,  # [H, W] view depth of the meshes (inf where none), row 0 = top
        *,
        near: float = 0.01,
        far: float = 1e10,
        eps2d: float = 0.3,
    ) -> np.ndarray:  # [H, W, 4] float32: premultiplied rgb, alpha; row 0 = top
        """Composite the splats front to back, each pixel stopping at ``limit``."""
        out = np.zeros((height, width, 4), np.float32)
        if self.count == 0:
            self.last_visible = 0
            return out
        if limit is None:
            limit = np.full((height, width), np.inf, np.float32)
        elif limit.shape != (height, width):
            raise ShapeError(f"CPUSplatLayer.render: limit must be [{height}, {width}], got {limit.shape}")
        ck = _kernels()
        from render._cpu import kernels

        pk_mod = kernels()
        n = self.count
        f32 = np.float32
        viewmats = np.ascontiguousarray(np.asarray(viewmat, np.float64)[None], f32)
        Ks = np.ascontiguousarray(np.asarray(K, np.float64)[None], f32)
        means2d, conics = np.zeros((1, n, 2), f32), np.zeros((1, n, 3), f32)
        depths, opac = np.zeros((1, n), f32), np.zeros((1, n), f32)
        radii, rects = np.zeros((1, n, 2), np.int32), np.zeros((1, n, 4), np.int32)
        pk = np.empty((1, n, pk_mod.P_LEN), f32)
        tile = pk_mod.TILE
        pk_mod.project_fwd(
            self._means, self._quats, self._scales, self._opacities, viewmats, Ks, width, height, eps2d, near, far,
            0.0, False, math.ceil(width / tile), math.ceil(height / tile),
            means2d, conics, depths, opac, radii, rects, pk,
        )  # fmt: skip
        colors = np.zeros((1, n, 3), f32)
        campos = (-viewmats[0, :3, :3].T @ viewmats[0, :3, 3])[None].astype(f32)
        sh_points = self._means
        if self.body_of_splat is not None and self.sh_degree > 0:
            sh_points = rest_frame_points(self._means, campos[0], self.body_of_splat, self.rotations)
        ck.sh_colors(sh_points, self._sh, campos, self.sh_degree, radii, colors)
        colors = colors[0]
        if self.shade is not None:
            colors *= self.shade
        visible = np.flatnonzero(radii[0, :, 0] > 0).astype(np.int32)
        self.last_visible = len(visible)
        # front to back, ties by index: positive float32 depths sort like their bit patterns
        order = visible[pk_mod.radix_argsort(np.ascontiguousarray(depths[0, visible]).view(np.uint32))]
        packed = ck.pack(order, means2d[0], conics[0], opac[0], depths[0], colors, radii[0])
        starts, items = ck.bin_bands(packed, height, _BAND)
        ck.composite(starts, items, packed, np.ascontiguousarray(limit, f32), _BAND, out)
        return out
