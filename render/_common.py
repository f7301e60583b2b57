"""Types shared by the front door and the rasterization backends."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# gsplat 1.5 constants, shared by every backend.
TILE_SIZE = 16  # pixels per tile side
ALPHA_MAX = 0.999  # a splat's alpha is clamped to this
ALPHA_MIN = 1.0 / 255.0  # contributions with a smaller alpha are skipped
T_MIN = 1e-4  # a pixel stops when its transmittance would fall to this (exclusive)
EXTEND_MAX = 3.33  # bounding box half size in standard deviations (before the opacity-aware bound)


@dataclass(frozen=True)
class RasterOptions:
    """Rarely changed options of :func:`render.rasterize`."""

    absgrad: bool = False  # also accumulate |dL/dmeans2d| per pixel into result.means2d.absgrad (AbsGS); cpu, gsplat
    splat_ids: bool = True  # compute result.splat_ids (costs an extra pass on the gsplat backend)
    check_finite: bool = True  # count NaN/inf in the inputs and raise ShapeError (one device sync on CUDA)


@dataclass(frozen=True, eq=False)
class RasterResult:
    """What :func:`render.rasterize` returns; C cameras, N splats, an H x W image per camera.

    ``means2d`` is the tensor the colours were rasterized from: call ``result.means2d.retain_grad()``
    before ``backward()`` to read the screen-space gradients used for densification. Its rows (and
    the other per-splat outputs) are only meaningful where ``radii > 0``.
    """

    colors: Tensor | None  # [C, H, W, 3] composited colour (plus transmittance * background); None in "D"/"ED"
    alphas: Tensor  # [C, H, W, 1] accumulated opacity, 1 - final transmittance
    depths: Tensor | None  # [C, H, W, 1] accumulated ("D") or expected ("ED") camera z; None in "RGB"
    means2d: Tensor  # [C, N, 2] projected centres in pixels
    radii: Tensor  # [C, N, 2] int32 half sizes of the bounding boxes in pixels; 0 where culled
    splat_ids: Tensor | None  # [C, H, W] int64 splat with the largest alpha * T per pixel, -1 where none
    transmittance: Tensor | None  # [C, H, W, 1] transmittance left at the depth limit (only with depth_limit)
    backend: str  # the backend that produced this result


@dataclass(frozen=True, eq=False)
class RasterRequest:
    """Validated inputs handed to a backend (all tensors on one device, one floating dtype)."""

    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] wxyz, any non-zero length
    scales: Tensor  # [N, 3]
    opacities: Tensor  # [N]
    colors: Tensor  # [N, 3] colours, or [N, K, 3] SH coefficients when sh_degree is not None
    sh_degree: int | None
    viewmats: Tensor  # [C, 4, 4]
    Ks: Tensor  # [C, 3, 3]
    width: int
    height: int
    backgrounds: Tensor | None  # [C, 3]
    render_mode: str
    near_plane: float
    far_plane: float
    antialiased: bool
    eps2d: float
    radius_clip: float
    depth_limit: Tensor | None  # [C, H, W]
    options: RasterOptions

    @property
    def wants_rgb(self) -> bool:
        return "RGB" in self.render_mode

    @property
    def wants_depth(self) -> bool:
        return self.render_mode != "RGB"


def finish(
    req: RasterRequest,
    feats: Tensor,  # [C, H, W, F] accumulated features: RGB first, then depth when asked
    trans: Tensor,  # [C, H, W, 1] final transmittance
    means2d: Tensor,  # [C, N, 2]
    radii: Tensor,  # [C, N, 2]
    splat_ids: Tensor | None,  # [C, H, W]
    backend: str,
) -> RasterResult:
    """Add the background, normalise expected depth and package the result (shared by cpu and reference)."""
    alphas = 1.0 - trans
    colors = depths = None
    if req.wants_rgb:
        colors = feats[..., :3]
        if req.backgrounds is not None:
            colors = colors + trans * req.backgrounds[:, None, None, :]
    if req.wants_depth:
        depths = feats[..., -1:]
        if req.render_mode.endswith("ED"):
            depths = depths / alphas.clamp_min(1e-10)
    return RasterResult(
        colors=colors,
        alphas=alphas,
        depths=depths,
        means2d=means2d,
        radii=radii,
        splat_ids=splat_ids,
        transmittance=trans if req.depth_limit is not None else None,
        backend=backend,
    )


def campos_of(viewmats: Tensor) -> Tensor:  # [C, 4, 4] -> [C, 3]
    """Camera centres in world space, as gsplat computes them (differentiable)."""
    return torch.linalg.inv(viewmats)[:, :3, 3]
