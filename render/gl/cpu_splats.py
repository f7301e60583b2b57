"""The CPU splat layer: splats composited by numba on the CPU, for software GL (Mesa llvmpipe).

llvmpipe pays a few microseconds per primitive however small (vertex work, triangle setup and binning,
4x4-pixel shading blocks), so 100k instanced quads cost 0.3-1 s a frame on two cores whatever the
resolution. This layer skips GL for the splats (:mod:`render.gl._cpu_splat_kernels`): the cpu
rasterization backend's projection and SH, bit for bit (so the maths is ``render.rasterize``'s), 8 splats
a vector; a depth sort; then a front-to-back compositing kernel over bands of rows, 8 pixels a vector,
that stops at the mesh depth. At full size the renderer has the kernel blend the splats over the frame
(the background, or the meshes read back) and writes the result to the colour texture: llvmpipe's
textured full-screen blend of a 1280x720 float image costs more than the whole CPU blend. The image can
also be made at a lower internal resolution than the output (``RenderSettings.splat_scale``); it is then
upscaled bilinearly by the GL composite.
"""

from __future__ import annotations

import os

import numpy as np

from scenes.errors import ShapeError
from scenes.splats import Splats

__all__ = ["CPUSplatLayer", "over_framebuffer"]

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


def over_framebuffer(
    rgba: np.ndarray,  # [H, W, 4] premultiplied rgb, alpha; row 0 = top
    under: np.ndarray | None,  # [H, W, 4] the framebuffer's colour, row 0 = bottom; None: all ``background``
    background: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
) -> np.ndarray:  # [H, W, 4] float32, row 0 = bottom
    """``rgba`` blended over a framebuffer on the CPU, as the renderer's GL composite would (premultiplied
    "over", pixels of alpha 0 untouched), ready to be written to it: at full size this is much cheaper
    than a textured full-screen draw on llvmpipe."""
    f32 = np.float32
    height, width = rgba.shape[:2]
    if under is None or len(under) == 0:
        under = np.empty((0, 0, 4), f32)
    elif under.shape != (height, width, 4):
        raise ShapeError(f"over_framebuffer: under must be [{height}, {width}, 4], got {under.shape}")
    out = np.empty((height, width, 4), f32)
    _kernels().over(np.ascontiguousarray(rgba, f32), np.ascontiguousarray(under, f32), np.asarray(background, f32), out)
    return out


class CPUSplatLayer:
    """A CPU copy of a :class:`Splats` set and the kernels that composite it into an RGBA image."""

    def __init__(self) -> None:
        self.count = 0
        self.sh_degree = 0
        self._means = self._quats = self._scales = self._opacities = None
        self._coefs: np.ndarray | None = None  # [(K * 3) * n_pad] SH coefficients, planes (sh_colors' layout)
        self._consts: np.ndarray | None = None  # [6 * n_pad] per-splat projection constants (splat_constants)
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
        n, k = splats.sh.shape[:2]
        n_pad = -(-n // 8) * 8
        coefs = np.zeros((k * 3, n_pad), f32)
        coefs[:, :n] = np.asarray(splats.sh, f32).reshape(n, k * 3).T
        self._coefs = coefs.reshape(-1)
        self._consts = _kernels().splat_constants(self._scales, self._opacities, n_pad)

    def update(self, means: np.ndarray | None = None, quats: np.ndarray | None = None) -> None:
        """Replace the positions [N, 3] and/or rotations [N, 4] (wxyz, any length but 0) of all N splats.

        The checks of :func:`render.gl.splat_layer.checked_pose_update` in one compiled pass; the rotations are
        kept as given (the projection normalises them, as ``render.rasterize`` does).
        """
        f32, n = np.float32, self.count
        if means is not None:
            means = np.ascontiguousarray(means, f32)
            if means.shape != (n, 3):
                raise ShapeError(f"update: means must be finite [{n}, 3], got shape {means.shape}")
        if quats is not None:
            quats = np.ascontiguousarray(quats, f32)
            if quats.shape != (n, 4):
                raise ShapeError(f"update: quats must be finite [{n}, 4] wxyz, got shape {quats.shape}")
        bad, zero = _kernels().bad_poses(
            np.empty((0, 3), f32) if means is None else means, np.empty((0, 4), f32) if quats is None else quats
        )
        if bad:
            raise ShapeError(f"update: means and quats must be finite, got {bad} NaN or inf value(s)")
        if zero:
            raise ShapeError(f"update: {zero} zero-length quaternion(s)")
        if means is not None:
            self._means = means
        if quats is not None:
            self._quats = quats

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
        background: tuple[float, float, float, float] | None = None,
        under: np.ndarray | None = None,  # [H, W, 4] with ``background``: the framebuffer's colour, row 0 = bottom
    ) -> np.ndarray:  # [H, W, 4] float32
        """Composite the splats front to back, each pixel stopping at ``limit``: premultiplied rgb and alpha,
        row 0 = top; or, with ``background``, the colour of a framebuffer holding ``under`` (None:
        ``background`` everywhere) after blending them over it (:func:`over_framebuffer`), row 0 = bottom."""
        f32 = np.float32
        if background is None:
            if under is not None:
                raise ShapeError("CPUSplatLayer.render: under needs a background")
            background = np.empty(0, f32)
        else:
            background = np.asarray(background, f32)
            if background.shape != (4,):
                raise ShapeError(f"CPUSplatLayer.render: background must be 4 floats, got shape {background.shape}")
        if under is None:
            under = np.empty((0, 0, 4), f32)
        elif under.shape != (height, width, 4):
            raise ShapeError(f"CPUSplatLayer.render: under must be [{height}, {width}, 4], got {under.shape}")
        if self.count == 0:
            self.last_visible = 0
            rgba = np.zeros((height, width, 4), f32)
            return rgba if len(background) == 0 else over_framebuffer(rgba, under, background)
        if limit is None:
            limit = np.empty((0, 0), f32)  # none anywhere
        elif limit.shape != (height, width):
            raise ShapeError(f"CPUSplatLayer.render: limit must be [{height}, {width}], got {limit.shape}")
        ck = _kernels()
        import numba

        from render._cpu import kernels

        n = self.count
        n_pad = len(self._consts) // 6
        viewmat = np.ascontiguousarray(viewmat, f32)
        cam = ck.camera_constants(viewmat, np.ascontiguousarray(K, f32), width, height, eps2d, near, far, 0.0)
        rec, depth, visible = np.empty((n_pad, ck.PACK), f32), np.empty(n_pad, f32), np.empty(n_pad, np.int8)
        ck.project(self._means, self._quats, self._consts, cam, rec, depth, visible)
        campos = (-viewmat[:3, :3].T @ viewmat[:3, 3]).astype(f32)
        rotated = self.body_of_splat is not None and self.sh_degree > 0
        body = np.ascontiguousarray(self.body_of_splat if rotated else np.empty(0), np.int64)
        rotations = np.ascontiguousarray(self.rotations if rotated else np.empty((0, 3, 3)), f32)
        shade = np.empty((0, 3), f32) if self.shade is None else np.ascontiguousarray(self.shade, f32)
        ck.sh_colors(self._means, campos, body, rotations, rotated, self.sh_degree, self._coefs, shade, rec)
        visible = np.flatnonzero(visible[:n]).astype(np.int32)
        self.last_visible = len(visible)
        # front to back, ties by index: positive float32 depths sort like their bit patterns
        order = visible[kernels().radix_argsort(depth[visible].view(np.uint32))]
        packed, bands = ck.pack(order, rec, height, _BAND)
        starts, items = ck.bin_bands(bands, -(-height // _BAND))
        out = np.empty((height, width, 4), f32)
        busiest_first = np.argsort(starts[:-1] - starts[1:], kind="stable")
        threads = numba.get_num_threads()
        ck.composite(
            starts, items, packed, np.ascontiguousarray(limit, f32), _BAND, busiest_first, threads,
            np.ascontiguousarray(under, f32), background, out,
        )  # fmt: skip
        return out
