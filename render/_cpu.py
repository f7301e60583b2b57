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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from render._common import TILE_SIZE, RasterRequest, RasterResult, campos_of
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


def _prepare_numba_cache(source_dir: Path | None = None) -> Path | None:
    """Cache compiled kernels beside the source when writable, else under ~/.cache (sets NUMBA_CACHE_DIR).

    Returns the fallback directory when one was set up, None otherwise (numba then uses __pycache__).
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    here = (source_dir or Path(__file__).resolve().parent) / "__pycache__"
    try:
        here.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=here, prefix=".numba-probe"):
            return None
    except OSError:
        pass
    fallback = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hybrid" / "numba"
    fallback.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(fallback)
    if "numba" in sys.modules:  # config was read at import: set it directly too
        sys.modules["numba"].config.CACHE_DIR = str(fallback)
    return fallback


def _parallel(k, name: str, dtype, jobs: int, serial_name: str | None = None):
    """The prange kernel ``name`` for float32; float64 (gradcheck, tests) runs the serial body (``serial_name``,
    default ``_{name}_range``) over all ``jobs`` and skips compiling a second parallel version."""
    if dtype == np.float32:
        return getattr(k, name)
    serial = getattr(k, serial_name or f"_{name}_range")
    return lambda *args: serial(0, jobs, *args)


@contextmanager
def _dynamic_schedule(chunk: int = 1):
    """Hand prange iterations (tiles) to threads a few at a time: tile costs vary a lot across an image."""
    import numba

    old = numba.set_parallel_chunksize(chunk)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(old)


def _np(t: Tensor) -> np.ndarray:
    """A C-contiguous numpy view (or numpy copy) of a CPU tensor; numpy copies avoid torch's thread pool."""
    return np.ascontiguousarray(t.detach().numpy())


@dataclass(frozen=True)
class _ProjectConfig:
    width: int
    height: int
    eps2d: float
    near_plane: float
    far_plane: float
    radius_clip: float
    antialiased: bool


def _zeros(shape, dtype) -> Tensor:
    """A zero tensor from numpy's calloc (no torch thread pool wake-up on the hot path)."""
    return torch.from_numpy(np.zeros(shape, dtype))


def _empty(shape, dtype) -> Tensor:
    return torch.from_numpy(np.empty(shape, dtype))


_NP = {torch.float32: np.float32, torch.float64: np.float64}


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, cfg: _ProjectConfig, sink: list):
        k = kernels()
        c, n = viewmats.shape[0], means.shape[0]
        n_tx, n_ty = math.ceil(cfg.width / TILE_SIZE), math.ceil(cfg.height / TILE_SIZE)
        dt = _NP[means.dtype]
        means2d, conics = _zeros((c, n, 2), dt), _zeros((c, n, 3), dt)
        depths, opac = _zeros((c, n), dt), _zeros((c, n), dt)
        radii, rects = _zeros((c, n, 2), np.int32), _zeros((c, n, 4), np.int32)
        pk = np.empty((c, n, k.P_LEN), dt)
        _parallel(k, "project_fwd", dt, n)(
            _np(means), _np(quats), _np(scales), _np(opacities), _np(viewmats), _np(Ks), cfg.width, cfg.height,
            cfg.eps2d, cfg.near_plane, cfg.far_plane, cfg.radius_clip, cfg.antialiased, n_tx, n_ty,
            means2d.numpy(), conics.numpy(), depths.numpy(), opac.numpy(), radii.numpy(), rects.numpy(), pk,
        )  # fmt: skip
        ctx.save_for_backward(means, quats, scales, opacities, viewmats, Ks, radii)
        ctx.cfg = cfg
        ctx.mark_non_differentiable(radii, rects)
        sink.append(pk)  # the packed projection, handed to _Rasterize through _RasterMeta (see run)
        return means2d, conics, depths, opac, radii, rects

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, v_opac, _v_radii, _v_rects):
        means, quats, scales, opacities, viewmats, Ks, radii = ctx.saved_tensors
        cfg = ctx.cfg
        dt = _NP[means.dtype]
        c, n = viewmats.shape[0], means.shape[0]
        want_view = bool(ctx.needs_input_grad[4])
        v_means, v_quats, v_scales, v_opacities = _empty((n, 3), dt), _empty((n, 4), dt), _empty((n, 3), dt), _empty(
            (n,), dt)  # fmt: skip
        v_view = _zeros((c, n, 12) if want_view else (1, 1, 12), dt)
        _parallel(kernels(), "project_bwd", dt, n)(
            _np(means), _np(quats), _np(scales), _np(opacities), _np(viewmats), _np(Ks), cfg.width, cfg.height,
            cfg.eps2d, cfg.antialiased, radii.numpy(), _np(v_means2d), _np(v_conics), _np(v_depths), _np(v_opac),
            want_view, v_means.numpy(), v_quats.numpy(), v_scales.numpy(), v_opacities.numpy(), v_view.numpy(),
        )  # fmt: skip
        v_viewmats = None
        if want_view:
            total = v_view.numpy().sum(1)
            vv = np.zeros((c, 4, 4), dt)
            vv[:, :3, :3] = total[:, :9].reshape(c, 3, 3)
            vv[:, :3, 3] = total[:, 9:]
            v_viewmats = torch.from_numpy(vv)
        return v_means, v_quats, v_scales, v_opacities, v_viewmats, None, None, None


class _ShColors(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, sh, campos, radii, degree: int):
        out = _zeros((campos.shape[0], means.shape[0], 3), _NP[means.dtype])
        _parallel(kernels(), "sh_fwd_parallel", _NP[means.dtype], means.shape[0], "sh_fwd")(
            _np(means), _np(sh), _np(campos), degree, radii.numpy(), out.numpy()
        )
        ctx.save_for_backward(means, sh, campos, radii)
        ctx.degree = degree
        return out

    @staticmethod
    def backward(ctx, v_colors):
        means, sh, campos, radii = ctx.saved_tensors
        dt = _NP[means.dtype]
        v_sh = _zeros(tuple(sh.shape), dt)
        v_means = _empty((means.shape[0], 3), dt)
        v_campos = _zeros((campos.shape[0], means.shape[0], 3), dt)
        _parallel(kernels(), "sh_bwd_parallel", dt, means.shape[0], "sh_bwd")(
            _np(means), _np(sh), _np(campos), ctx.degree, radii.numpy(), _np(v_colors),
            v_sh.numpy(), v_means.numpy(), v_campos.numpy(),
        )  # fmt: skip
        return v_means, v_sh, torch.from_numpy(v_campos.numpy().sum(1)), None, None


@dataclass(frozen=True, eq=False)
class _RasterMeta:
    pk: np.ndarray  # [C, N, P_LEN] packed projection (from _Project)
    radii: Tensor  # [C, N, 2] int32
    rects: Tensor  # [C, N, 4] int32 tile rectangles (x0, y0, x1, y1), end exclusive
    width: int
    height: int
    want_depth: bool
    want_ids: bool
    depth_limit: Tensor | None  # [C, H, W]
    absgrad: bool


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opac, depths, backgrounds, meta: _RasterMeta):
        # colors [1 or C, N, F] (F = 0 when no RGB), backgrounds [C, F] or None; depths [C, N]
        k = kernels()
        pk = meta.pk
        c, n = pk.shape[:2]
        nf = colors.shape[2]
        assert nf in (0, 3), nf  # raster_fwd composites RGB or no colour (rasterize checks the colours)
        h, w = meta.height, meta.width
        n_tx, n_ty = math.ceil(w / TILE_SIZE), math.ceil(h / TILE_SIZE)
        radii = meta.radii.numpy()
        order = np.empty((c, n), np.int32)
        n_vis = np.zeros(c, np.int64)
        valid = (radii > 0).all(-1)
        for i in range(c):  # visible splats by camera z, stable (ties keep the splat order, as gsplat's sort)
            vis = np.flatnonzero(valid[i]).astype(np.int32)
            z = np.ascontiguousarray(pk[i, vis, k.P_Z])
            srt = k.radix_argsort(z.view(np.uint32)) if z.dtype == np.float32 else np.argsort(z, kind="stable")
            n_vis[i] = vis.size
            order[i, : vis.size] = vis[srt]
        offsets, ids = k.bin_tiles(meta.rects.numpy(), order, n_vis, n_tx, n_ty)
        dt = pk.dtype
        nd = 1 if meta.want_depth else 0
        out_rgb, out_depth, out_alpha = _empty((c, h, w, nf), dt), _empty((c, h, w, nd), dt), _empty((c, h, w, 1), dt)
        out_t, out_last = np.empty((c, h, w), dt), np.empty((c, h, w), np.int32)
        out_ids = _empty((c, h, w), np.int64)
        has_bg = backgrounds is not None
        bg = _np(backgrounds) if has_bg else np.zeros((c, nf), dt)
        limit = meta.depth_limit
        limit_np = _np(limit) if limit is not None else np.zeros((1, 1, 1), dt)
        with _dynamic_schedule():
            _parallel(k, "raster_fwd", pk.dtype, c * n_tx * n_ty)(
                pk, _np(colors), bg, has_bg, meta.want_depth, meta.want_ids, offsets, ids, limit_np, limit is not None,
                w, h, n_tx, n_ty, out_rgb.numpy(), out_depth.numpy(), out_alpha.numpy(), out_t, out_last,
                out_ids.numpy(),
            )  # fmt: skip
        ctx.save_for_backward(means2d, colors)
        ctx.state = (bg, has_bg, out_t, out_last, offsets, ids, n_tx, n_ty)
        ctx.meta = meta
        ctx.mark_non_differentiable(out_ids)
        ctx.set_materialize_grads(False)
        return out_rgb, out_depth, out_alpha, out_ids

    @staticmethod
    def backward(ctx, v_rgb, v_depth, v_alpha, _v_ids):  # unused outputs give None (materialize_grads off)
        means2d, colors = ctx.saved_tensors
        bg, has_bg, out_t, out_last, offsets, ids, n_tx, n_ty = ctx.state
        meta = ctx.meta
        k = kernels()
        pk = meta.pk
        c, n = pk.shape[:2]
        nf = colors.shape[2]
        h, w = meta.height, meta.width
        # gradients per tile-list entry (each written by its own tile: no atomics, no per-thread copies of
        # [C, N, G]), then summed per splat in a fixed order (deterministic)
        pair_grads = np.empty((ids.shape[0], k.G_RGB + nf), pk.dtype)
        v_bg_tiles = np.empty((c * n_tx * n_ty, nf), pk.dtype)
        v_rgb_np = _np(v_rgb) if v_rgb is not None else np.zeros((c, h, w, nf), pk.dtype)
        want_depth = meta.want_depth and v_depth is not None
        v_depth_np = _np(v_depth) if want_depth else np.zeros((1, 1, 1, 1), pk.dtype)
        v_alpha_np = _np(v_alpha) if v_alpha is not None else np.zeros((c, h, w, 1), pk.dtype)
        with _dynamic_schedule():
            _parallel(k, "raster_bwd", pk.dtype, c * n_tx * n_ty)(
                pk, _np(colors), bg, has_bg, want_depth, offsets, ids, w, h, n_tx, n_ty, out_t, out_last, v_rgb_np,
                v_depth_np, v_alpha_np, pair_grads, v_bg_tiles,
            )  # fmt: skip
        per = np.zeros((c, n, k.G_RGB + nf), pk.dtype)
        k.reduce_pairs(offsets, ids, n_tx * n_ty, pair_grads, per)

        def part(lo: int, hi: int) -> Tensor:  # contiguous numpy copies: autograd would clone strided views
            return torch.from_numpy(np.ascontiguousarray(per[..., lo:hi]))

        if meta.absgrad:
            means2d.absgrad = part(k.G_AX, k.G_AY + 1)
        v_colors = part(k.G_RGB, k.G_RGB + nf)
        if colors.shape[0] != c:  # colours shared by every camera
            v_colors = v_colors.sum(0, keepdim=True)
        v_bg = torch.from_numpy(v_bg_tiles.reshape(c, -1, nf).sum(1)) if has_bg else None
        return (
            part(k.G_MX, k.G_MY + 1), part(k.G_CA, k.G_CC + 1), v_colors, part(k.G_OP, k.G_OP + 1)[..., 0],
            part(k.G_Z, k.G_Z + 1)[..., 0], v_bg, None,
        )  # fmt: skip


def run(req: RasterRequest) -> RasterResult:
    cfg = _ProjectConfig(req.width, req.height, req.eps2d, req.near_plane, req.far_plane, req.radius_clip,
                         req.antialiased)  # fmt: skip
    sink: list = []
    means2d, conics, depths, opac, radii, rects = _Project.apply(
        req.means, req.quats, req.scales, req.opacities, req.viewmats, req.Ks, cfg, sink
    )
    (pk,) = sink
    if not req.wants_rgb:
        colors = req.means.new_zeros((1, req.means.shape[0], 0))
    elif req.sh_degree is None:
        colors = req.colors[None]
    else:
        colors = _ShColors.apply(req.means, req.colors, campos_of(req.viewmats), radii, req.sh_degree)
    bg = req.backgrounds if req.wants_rgb else None
    meta = _RasterMeta(pk, radii, rects, req.width, req.height, req.wants_depth, req.options.splat_ids,
                       req.depth_limit, req.options.absgrad)  # fmt: skip
    rgb, depth, alphas, ids = _Rasterize.apply(means2d, conics, colors, opac, depths, bg, meta)
    depth_out = None
    if req.wants_depth:
        depth_out = depth / alphas.clamp_min(1e-10) if req.render_mode.endswith("ED") else depth
    return RasterResult(
        colors=rgb if req.wants_rgb else None,
        alphas=alphas,
        depths=depth_out,
        means2d=means2d,
        radii=radii,
        splat_ids=ids if req.options.splat_ids else None,
        transmittance=1.0 - alphas if req.depth_limit is not None else None,
        backend="cpu",
    )
