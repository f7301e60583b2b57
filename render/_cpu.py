"""The cpu backend: numba kernels (:mod:`render._cpu_kernels`) wrapped in torch autograd Functions.

Three Functions keep the graph the same shape as gsplat's: ``_Project`` (splats -> 2D means,
conics, depths, opacities), ``_ShColors`` (SH -> colours) and ``_Rasterize`` (2D splats -> images).
``means2d`` is an input of ``_Rasterize``, so ``result.means2d.retain_grad()`` gives the
screen-space gradients used for densification.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from render._common import TILE_SIZE, RasterRequest, RasterResult, campos_of, finish
from scenes._deps import require

__all__ = ["run", "kernels"]

_KERNELS = None


def kernels():
    """The compiled kernel module (imports numba and sets up the on-disk compile cache on first use)."""
    global _KERNELS
    if _KERNELS is None:
        _prepare_numba_cache()
        require("numba", "the cpu rasterization backend")
        from render import _cpu_kernels

        _KERNELS = _cpu_kernels
    return _KERNELS


def _prepare_numba_cache() -> None:
    """Cache compiled kernels beside the source when writable, else under ~/.cache (NUMBA_CACHE_DIR)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = Path(__file__).resolve().parent / "__pycache__"
    try:
        here.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=here, prefix=".numba-probe"):
            return
    except OSError:
        pass
    fallback = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hybrid" / "numba"
    fallback.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(fallback)
    if "numba" in sys.modules:  # config was read at import: set it directly too
        sys.modules["numba"].config.CACHE_DIR = str(fallback)


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


@dataclass(frozen=True)
class _ProjectConfig:
    width: int
    height: int
    eps2d: float
    near_plane: float
    far_plane: float
    radius_clip: float
    antialiased: bool


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, cfg: _ProjectConfig):
        k = kernels()
        c, n = viewmats.shape[0], means.shape[0]
        n_tx, n_ty = math.ceil(cfg.width / TILE_SIZE), math.ceil(cfg.height / TILE_SIZE)
        dt = means.dtype
        means2d = torch.zeros((c, n, 2), dtype=dt)
        conics = torch.zeros((c, n, 3), dtype=dt)
        depths = torch.zeros((c, n), dtype=dt)
        opac = torch.zeros((c, n), dtype=dt)
        radii = torch.zeros((c, n, 2), dtype=torch.int32)
        rects = torch.zeros((c, n, 4), dtype=torch.int32)
        k.project_fwd(
            _np(means), _np(quats), _np(scales), _np(opacities), _np(viewmats), _np(Ks), cfg.width, cfg.height,
            cfg.eps2d, cfg.near_plane, cfg.far_plane, cfg.radius_clip, cfg.antialiased, n_tx, n_ty,
            means2d.numpy(), conics.numpy(), depths.numpy(), opac.numpy(), radii.numpy(), rects.numpy(),
        )  # fmt: skip
        ctx.save_for_backward(means, quats, scales, opacities, viewmats, Ks, radii)
        ctx.cfg = cfg
        ctx.mark_non_differentiable(radii, rects)
        return means2d, conics, depths, opac, radii, rects

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, v_opac, _v_radii, _v_rects):
        means, quats, scales, opacities, viewmats, Ks, radii = ctx.saved_tensors
        cfg = ctx.cfg
        dt = means.dtype
        c, n = viewmats.shape[0], means.shape[0]
        want_view = bool(ctx.needs_input_grad[4])
        v_means = torch.zeros((n, 3), dtype=dt)
        v_quats = torch.zeros((n, 4), dtype=dt)
        v_scales = torch.zeros((n, 3), dtype=dt)
        v_opacities = torch.zeros((n,), dtype=dt)
        v_view = torch.zeros((c, n, 12) if want_view else (1, 1, 12), dtype=dt)
        kernels().project_bwd(
            _np(means), _np(quats), _np(scales), _np(opacities), _np(viewmats), _np(Ks), cfg.width, cfg.height,
            cfg.eps2d, cfg.antialiased, radii.numpy(), _np(v_means2d), _np(v_conics), _np(v_depths), _np(v_opac),
            want_view, v_means.numpy(), v_quats.numpy(), v_scales.numpy(), v_opacities.numpy(), v_view.numpy(),
        )  # fmt: skip
        v_viewmats = None
        if want_view:
            v_viewmats = torch.zeros((c, 4, 4), dtype=dt)
            total = v_view.sum(1)
            v_viewmats[:, :3, :3] = total[:, :9].reshape(c, 3, 3)
            v_viewmats[:, :3, 3] = total[:, 9:]
        return v_means, v_quats, v_scales, v_opacities, v_viewmats, None, None


class _ShColors(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, sh, campos, radii, degree: int):
        out = torch.zeros((campos.shape[0], means.shape[0], 3), dtype=means.dtype)
        kernels().sh_fwd(_np(means), _np(sh), _np(campos), degree, radii.numpy(), out.numpy())
        ctx.save_for_backward(means, sh, campos, radii)
        ctx.degree = degree
        return out

    @staticmethod
    def backward(ctx, v_colors):
        means, sh, campos, radii = ctx.saved_tensors
        v_sh = torch.zeros_like(sh, memory_format=torch.contiguous_format)
        v_means = torch.zeros_like(means, memory_format=torch.contiguous_format)
        v_campos = torch.zeros((campos.shape[0], means.shape[0], 3), dtype=means.dtype)
        kernels().sh_bwd(
            _np(means), _np(sh), _np(campos), ctx.degree, radii.numpy(), _np(v_colors),
            v_sh.numpy(), v_means.numpy(), v_campos.numpy(),
        )  # fmt: skip
        return v_means, v_sh, v_campos.sum(1), None, None


@dataclass(frozen=True, eq=False)
class _RasterMeta:
    radii: Tensor  # [C, N, 2] int32
    rects: Tensor  # [C, N, 4] int32 tile rectangles (x0, y0, x1, y1), end exclusive
    depths: Tensor  # [C, N] sort key
    width: int
    height: int
    depth_limit: Tensor | None  # [C, H, W]
    absgrad: bool


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, feats, opac, meta: _RasterMeta):
        k = kernels()
        c, n, nf = feats.shape
        h, w = meta.height, meta.width
        n_tx, n_ty = math.ceil(w / TILE_SIZE), math.ceil(h / TILE_SIZE)
        radii = meta.radii.numpy()
        depths = _np(meta.depths)
        order = np.zeros((c, n), np.int32)
        n_vis = np.zeros(c, np.int64)
        if depths.dtype == np.float32:
            k.depth_order32(depths, radii, order, n_vis)
        else:
            valid = (radii > 0).all(-1)
            for i in range(c):
                vis = np.flatnonzero(valid[i]).astype(np.int32)
                n_vis[i] = vis.size
                order[i, : vis.size] = vis[np.argsort(depths[i, vis], kind="stable")]
        offsets, ids, gm_start = k.bin_tiles(meta.rects.numpy(), order, n_vis, n_tx, n_ty)
        dt = means2d.dtype
        out_feat = torch.empty((c, h, w, nf), dtype=dt)
        out_t = torch.empty((c, h, w), dtype=dt)
        out_last = torch.empty((c, h, w), dtype=torch.int32)
        out_ids = torch.empty((c, h, w), dtype=torch.int64)
        limit = meta.depth_limit
        limit_np = _np(limit) if limit is not None else np.zeros((1, 1, 1), depths.dtype)
        pk = np.empty((c, n, k.P_LEN), depths.dtype)
        k.pack_splats(_np(means2d), _np(conics), _np(opac), depths, radii, pk)
        k.raster_fwd(
            pk, _np(feats), offsets, ids, limit_np, limit is not None, w, h, n_tx, n_ty,
            out_feat.numpy(), out_t.numpy(), out_last.numpy(), out_ids.numpy(),
        )  # fmt: skip
        ctx.save_for_backward(means2d, feats, out_t, out_last)
        ctx.bins = (pk, offsets, ids, gm_start, n_tx, n_ty)
        ctx.meta = meta
        ctx.mark_non_differentiable(out_ids)
        return out_feat, out_t[..., None], out_ids

    @staticmethod
    def backward(ctx, v_feat, v_t, _v_ids):
        means2d, feats, out_t, out_last = ctx.saved_tensors
        pk, offsets, ids, gm_start, n_tx, n_ty = ctx.bins
        meta = ctx.meta
        c, n, nf = feats.shape
        dt = means2d.dtype
        grads = np.zeros((ids.shape[0], 8 + nf), pk.dtype)
        k = kernels()
        k.raster_bwd(
            pk, _np(feats), meta.rects.numpy(), gm_start, offsets, ids, meta.width, meta.height, n_tx, n_ty,
            out_t.numpy(), out_last.numpy(), _np(v_feat), _np(v_t[..., 0]), grads,
        )  # fmt: skip
        per_splat = torch.empty((c, n, 8 + nf), dtype=dt)
        k.reduce_grads(grads, gm_start, meta.rects.numpy(), per_splat.numpy())
        if meta.absgrad:
            means2d.absgrad = per_splat[..., 6:8]
        return per_splat[..., 0:2], per_splat[..., 2:5], per_splat[..., 8:], per_splat[..., 5], None


def run(req: RasterRequest) -> RasterResult:
    cfg = _ProjectConfig(req.width, req.height, req.eps2d, req.near_plane, req.far_plane, req.radius_clip,
                         req.antialiased)  # fmt: skip
    means2d, conics, depths, opac, radii, rects = _Project.apply(
        req.means, req.quats, req.scales, req.opacities, req.viewmats, req.Ks, cfg
    )
    c = req.viewmats.shape[0]
    feats = []
    if req.wants_rgb:
        if req.sh_degree is None:
            feats.append(req.colors[None].expand(c, -1, -1))
        else:
            feats.append(_ShColors.apply(req.means, req.colors, campos_of(req.viewmats), radii, req.sh_degree))
    if req.wants_depth:
        feats.append(depths[..., None])
    feat = feats[0] if len(feats) == 1 else torch.cat(feats, -1)
    meta = _RasterMeta(radii, rects, depths.detach(), req.width, req.height, req.depth_limit, req.options.absgrad)
    img, trans, ids = _Rasterize.apply(means2d, conics, feat, opac, meta)
    return finish(req, img, trans, means2d, radii, ids if req.options.splat_ids else None, "cpu")
