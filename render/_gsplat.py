"""The gsplat backend: gsplat 1.5 ``rasterization()`` on CUDA tensors, repackaged as a RasterResult.

``packed=False`` so that ``means2d`` is the dense [C, N, 2] tensor gsplat rasterizes from (its
``retain_grad()`` / ``absgrad`` pattern works unchanged). gsplat 1.5 has no dominant-splat map, so
``splat_ids`` is rebuilt from ``rasterize_to_indices_in_range`` (every contributing splat-pixel
pair, front to back) when asked; turn it off with ``RasterOptions(splat_ids=False)`` on hot paths.

A per-pixel depth limit is not available here. It could be added by giving gsplat's
``rasterize_to_pixels`` a per-pixel stop depth (one extra comparison before compositing in its
forward kernel, and the same ``last_ids`` bookkeeping in backward), or, without touching CUDA,
by moving splats behind the limit out of the tile lists per tile; neither is done yet.
"""

from __future__ import annotations

import torch
from torch import Tensor

from render._common import ALPHA_MAX, RasterRequest, RasterResult
from scenes._deps import require

__all__ = ["run"]


def run(req: RasterRequest) -> RasterResult:
    gsplat = require("gsplat", "CUDA rasterization (the 'gsplat' backend)")
    rgb = req.wants_rgb
    colors_out, alphas, meta = gsplat.rasterization(
        req.means, req.quats, req.scales, req.opacities, req.colors, req.viewmats, req.Ks, req.width, req.height,
        near_plane=req.near_plane, far_plane=req.far_plane, radius_clip=req.radius_clip, eps2d=req.eps2d,
        sh_degree=req.sh_degree, packed=False, backgrounds=req.backgrounds if rgb else None,
        render_mode=req.render_mode, absgrad=req.options.absgrad,
        rasterize_mode="antialiased" if req.antialiased else "classic",
    )  # fmt: skip
    ids = _splat_ids(meta, req.width, req.height) if req.options.splat_ids else None
    return RasterResult(
        colors=colors_out[..., :3] if rgb else None,
        alphas=alphas,
        depths=colors_out[..., -1:] if req.wants_depth else None,
        means2d=meta["means2d"],
        radii=meta["radii"],
        splat_ids=ids,
        transmittance=None,
        backend="gsplat",
    )


@torch.no_grad()
def _splat_ids(meta: dict, width: int, height: int) -> Tensor:  # -> [C, H, W] int64
    """Per pixel, the splat with the largest alpha * T (first one on ties), -1 where none."""
    from gsplat import rasterize_to_indices_in_range

    means2d, conics, opac = meta["means2d"], meta["conics"], meta["opacities"]  # [C, N, ...]
    ones = torch.ones((means2d.shape[0], height, width), device=means2d.device, dtype=means2d.dtype)
    gid, pix, cam = rasterize_to_indices_in_range(
        0, 1 << 30, ones, means2d, conics, opac, width, height, meta["tile_size"], meta["isect_offsets"],
        meta["flatten_ids"],
    )  # fmt: skip
    return dominant_splats(gid, pix, cam, means2d, conics, opac, width, height)


@torch.no_grad()
def dominant_splats(
    gid: Tensor,  # [M] splat of each contributing (splat, pixel) pair
    pix: Tensor,  # [M] pixel index y * W + x; pairs grouped by (camera, pixel), front to back within a pixel
    cam: Tensor,  # [M] camera
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    opac: Tensor,  # [C, N] opacities (times the antialiasing compensation)
    width: int,
    height: int,
) -> Tensor:  # [C, H, W] int64
    """The dominant-splat map from the contributing pairs (as gsplat's rasterize_to_indices_in_range lists them)."""
    c = means2d.shape[0]
    dev = means2d.device
    ids = torch.full((c * height * width,), -1, dtype=torch.int64, device=dev)
    if gid.numel() == 0:
        return ids.reshape(c, height, width)
    gid, pix, cam = gid.long(), pix.long(), cam.long()
    px = (pix % width).to(means2d.dtype) + 0.5
    py = torch.div(pix, width, rounding_mode="floor").to(means2d.dtype) + 0.5
    dx = means2d[cam, gid, 0] - px
    dy = means2d[cam, gid, 1] - py
    con = conics[cam, gid]
    sigma = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
    alpha = torch.clamp_max(opac[cam, gid] * torch.exp(-sigma), ALPHA_MAX).double()
    key = cam * (height * width) + pix
    log_keep = torch.log1p(-alpha)
    csum = torch.cumsum(log_keep, 0)
    _, counts = torch.unique_consecutive(key, return_counts=True)
    seg_start = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    before = torch.where(seg_start > 0, csum[(seg_start - 1).clamp_min(0)], torch.zeros_like(csum))
    weight = alpha * torch.exp(csum - log_keep - before)  # alpha * T before the splat
    best = torch.full((c * height * width,), -1.0, dtype=weight.dtype, device=dev)
    best.scatter_reduce_(0, key, weight, "amax")
    first = torch.full((c * height * width,), gid.numel(), dtype=torch.int64, device=dev)
    pos = torch.arange(gid.numel(), device=dev)
    top = weight == best[key]
    first.scatter_reduce_(0, key[top], pos[top], "amin")
    has = first < gid.numel()
    ids[has] = gid[first[has]]
    return ids.reshape(c, height, width)
