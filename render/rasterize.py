"""The one front door for Gaussian splat rasterization: :func:`rasterize`.

Conventions follow gsplat 1.5 ``rasterization()``: OpenCV cameras (world-to-camera ``viewmats``,
pinhole ``Ks``), wxyz quaternions (normalised here), post-activation scales and opacities,
colours ``[N, 3]`` or SH coefficients ``[N, K, 3]``. Backends:

- ``"gsplat"``: gsplat 1.5 CUDA kernels, for CUDA tensors;
- ``"cpu"``: our numba kernels (tile-based, hand-written backward), for CPU tensors;
- ``"reference"``: a small exact pure-PyTorch implementation (autograd), any device; slow.

Pick one with ``backend=`` or the ``HYBRID_RASTER_BACKEND`` environment variable; otherwise the
best available for the tensors' device is used and logged. Nothing falls back silently.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from render._common import RasterOptions, RasterRequest, RasterResult
from render.sh import MAX_SH_DEGREE
from scenes.errors import BackendError, ShapeError

__all__ = ["rasterize", "available_backends", "BACKENDS", "BACKEND_ENV"]

log = logging.getLogger(__name__)

BACKENDS = ("gsplat", "cpu", "reference")
BACKEND_ENV = "HYBRID_RASTER_BACKEND"
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
RASTERIZE_MODES = ("classic", "antialiased")
_logged: set[str] = set()


@functools.cache
def available_backends() -> tuple[str, ...]:
    """The backends that can run in this process, best first (``"reference"`` always can)."""
    names = []
    if importlib.util.find_spec("gsplat") is not None and torch.cuda.is_available():
        names.append("gsplat")
    if importlib.util.find_spec("numba") is not None:
        names.append("cpu")
    names.append("reference")
    return tuple(names)


def rasterize(
    means: Tensor,  # [N, 3] world positions
    quats: Tensor,  # [N, 4] wxyz rotations (normalised here)
    scales: Tensor,  # [N, 3] standard deviations (post-activation)
    opacities: Tensor,  # [N] opacities in [0, 1] (post-activation)
    colors: Tensor,  # [N, 3] colours, or [N, K, 3] SH coefficients (K = 1, 4, 9 or 16)
    viewmats: Tensor,  # [C, 4, 4] world-to-camera, OpenCV axes
    Ks: Tensor,  # [C, 3, 3] pinhole intrinsics
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,  # [C, 3]
    render_mode: Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"] = "RGB",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    depth_limit: Tensor | None = None,  # [C, H, W] camera z where an opaque surface stops accumulation
    backend: str | None = None,
    options: RasterOptions | None = None,
) -> RasterResult:
    """Rasterize N Gaussian splats into C images; differentiable in the splats and the camera poses.

    ``colors`` holds SH coefficients when it is 3-D; ``sh_degree`` then selects how many bands are
    used (all of them when None). ``render_mode`` "D" gives the accumulated camera z, "ED" the
    expected z (divided by alpha). ``eps2d`` is added to the projected covariance (the minimum
    splat size); ``"antialiased"`` scales opacities by the matching compensation (Mip-Splatting).
    Splats whose bounding box is at most ``radius_clip`` pixels are skipped.

    ``depth_limit`` stops accumulation, per pixel, at splats whose camera z is at or behind the
    limit (an opaque mesh drawn there), and ``result.transmittance`` reports what is left to see
    it (cpu and reference backends). Gradients flow to means, quats, scales, opacities,
    colours/SH, backgrounds and viewmats (not Ks).
    """
    options = options or RasterOptions()
    req = _validate(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, backgrounds,
        render_mode, near_plane, far_plane, rasterize_mode, eps2d, radius_clip, depth_limit, options,
    )  # fmt: skip
    name = _select_backend(backend, means.device)
    if name == "gsplat" and req.depth_limit is not None:
        raise BackendError(
            "depth_limit: the gsplat backend does not support a per-pixel depth limit; "
            "use backend='cpu' (CPU tensors) or backend='reference'"
        )
    if name == "reference" and options.absgrad:
        raise BackendError("options.absgrad: the reference backend cannot accumulate |dL/dmeans2d| per pixel; "
                           "use backend='cpu' or 'gsplat'")  # fmt: skip
    if _is_empty(req):
        return _empty_result(req, name)
    if name == "cpu":
        from render import _cpu

        return _cpu.run(req)
    if name == "gsplat":
        from render import _gsplat

        return _gsplat.run(req)
    from render import _reference

    return _reference.run(req)


# --------------------------------------------------------------------------------------- backends
def _select_backend(requested: str | None, device: torch.device) -> str:
    source = "backend"
    if requested is None:
        env = os.environ.get(BACKEND_ENV, "").strip()
        if env:
            requested, source = env, f"the environment variable {BACKEND_ENV}"
    available = available_backends()
    if requested is not None:
        if requested not in BACKENDS:
            raise BackendError(f"{source}: must be one of {', '.join(BACKENDS)}; got {requested!r}")
        if requested not in available:
            raise BackendError(
                f"{source}: the rasterization backend {requested!r} is not available here; available: "
                f"{', '.join(available)}" + _why_unavailable(requested)
            )
        if requested == "cpu" and device.type != "cpu":
            raise BackendError(f"{source}='cpu' needs CPU tensors, got tensors on {device}; move them with .cpu()")
        if requested == "gsplat" and device.type != "cuda":
            raise BackendError(f"{source}='gsplat' needs CUDA tensors, got tensors on {device}; move them with .cuda()")
        return requested
    if device.type == "cuda":
        if "gsplat" not in available:
            raise BackendError(
                f"no fast rasterization backend for CUDA tensors: gsplat is not installed (available: "
                f"{', '.join(available)}); install it with: pip install gsplat==1.5.3, or pass "
                "backend='reference' (slow), or move the tensors to the CPU"
            )
        name = "gsplat"
    elif device.type == "cpu" and "cpu" in available:
        name = "cpu"
    else:
        name = "reference"
    if name not in _logged:
        _logged.add(name)
        level = logging.WARNING if name == "reference" else logging.INFO
        log.log(level, "render.rasterize: using the %r backend for %s tensors (available: %s)", name, device.type,
                ", ".join(available))  # fmt: skip
    return name


def _why_unavailable(name: str) -> str:
    if name == "gsplat":
        if importlib.util.find_spec("gsplat") is None:
            return " (gsplat is not installed: pip install gsplat==1.5.3)"
        return " (no CUDA device is visible to torch)"
    if name == "cpu":
        return " (numba is not installed: pip install numba)"
    return ""


# --------------------------------------------------------------------------------------- validation
def _validate(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, backgrounds,
    render_mode, near_plane, far_plane, rasterize_mode, eps2d, radius_clip, depth_limit, options,
) -> RasterRequest:  # fmt: skip
    named = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "colors": colors,
             "viewmats": viewmats, "Ks": Ks}  # fmt: skip
    for name, t in named.items():
        if not isinstance(t, Tensor):
            raise ShapeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if means.dtype not in (torch.float32, torch.float64):
        raise ShapeError(f"means: expected float32 or float64, got {means.dtype}")
    for name, t in named.items():
        if t.dtype != means.dtype or t.device != means.device:
            raise ShapeError(
                f"{name}: expected dtype {means.dtype} on {means.device} like means, got {t.dtype} on {t.device}; "
                "convert all inputs to one floating dtype and device"
            )
    if means.ndim != 2 or means.shape[1] != 3:
        raise ShapeError(f"means: expected shape [N, 3], got {tuple(means.shape)}")
    n = means.shape[0]
    _expect("quats", quats, (n, 4), "[N, 4]")
    _expect("scales", scales, (n, 3), "[N, 3]")
    _expect("opacities", opacities, (n,), "[N]")
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4):
        raise ShapeError(f"viewmats: expected shape [C, 4, 4], got {tuple(viewmats.shape)}")
    c = viewmats.shape[0]
    _expect("Ks", Ks, (c, 3, 3), "[C, 3, 3] (one per viewmat)")
    if colors.ndim == 2:
        if sh_degree is not None:
            raise ShapeError(
                f"colors: sh_degree={sh_degree} needs SH coefficients [N, K, 3], got {tuple(colors.shape)}"
            )
        _expect("colors", colors, (n, 3), "[N, 3] (or SH [N, K, 3])")
    elif colors.ndim == 3:
        if colors.shape[0] != n or colors.shape[2] != 3:
            raise ShapeError(f"colors: expected SH coefficients [N={n}, K, 3], got {tuple(colors.shape)}")
        k = colors.shape[1]
        if sh_degree is None:
            degrees = [d for d in range(MAX_SH_DEGREE + 1) if (d + 1) ** 2 == k]
            if not degrees:
                raise ShapeError(f"colors: {k} SH coefficients per channel is not 1, 4, 9 or 16; pass sh_degree")
            sh_degree = degrees[0]
        if not isinstance(sh_degree, int) or not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise ShapeError(f"sh_degree: expected an int in 0..{MAX_SH_DEGREE}, got {sh_degree!r}")
        if (sh_degree + 1) ** 2 > k:
            raise ShapeError(f"colors: sh_degree={sh_degree} needs {(sh_degree + 1) ** 2} coefficients, got {k}")
    else:
        raise ShapeError(f"colors: expected [N, 3] colours or [N, K, 3] SH coefficients, got {tuple(colors.shape)}")
    width, height = _size("width", width), _size("height", height)
    if backgrounds is not None:
        if (
            not isinstance(backgrounds, Tensor)
            or backgrounds.dtype != means.dtype
            or backgrounds.device != means.device
        ):
            raise ShapeError(f"backgrounds: expected a {means.dtype} tensor on {means.device}, got {backgrounds!r:.80}")
        _expect("backgrounds", backgrounds, (c, 3), "[C, 3]")
    if depth_limit is not None:
        if (
            not isinstance(depth_limit, Tensor)
            or depth_limit.dtype != means.dtype
            or depth_limit.device != means.device
        ):
            raise ShapeError(f"depth_limit: expected a {means.dtype} tensor on {means.device}, got {depth_limit!r:.80}")
        _expect("depth_limit", depth_limit, (c, height, width), "[C, H, W]")
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode: must be one of {', '.join(RENDER_MODES)}; got {render_mode!r}")
    if rasterize_mode not in RASTERIZE_MODES:
        raise ValueError(f"rasterize_mode: must be one of {', '.join(RASTERIZE_MODES)}; got {rasterize_mode!r}")
    near_plane, far_plane = float(near_plane), float(far_plane)
    if not 0.0 < near_plane < far_plane:
        raise ValueError(f"near_plane, far_plane: need 0 < near_plane < far_plane, got {near_plane}, {far_plane}")
    eps2d, radius_clip = float(eps2d), float(radius_clip)
    if not eps2d >= 0.0:
        raise ValueError(f"eps2d: must be >= 0, got {eps2d}")
    if not isinstance(options, RasterOptions):
        raise TypeError(f"options: expected a RasterOptions, got {type(options).__name__}")
    if options.check_finite:
        _check_finite(named, backgrounds, depth_limit)
    return RasterRequest(
        means=means, quats=quats, scales=scales, opacities=opacities, colors=colors, sh_degree=sh_degree,
        viewmats=viewmats, Ks=Ks, width=width, height=height, backgrounds=backgrounds, render_mode=render_mode,
        near_plane=near_plane, far_plane=far_plane, antialiased=rasterize_mode == "antialiased", eps2d=eps2d,
        radius_clip=radius_clip, depth_limit=depth_limit, options=options,
    )  # fmt: skip


def _expect(name: str, t: Tensor, shape: tuple, spec: str) -> None:
    if tuple(t.shape) != shape:
        raise ShapeError(f"{name}: expected shape {spec} = {shape}, got {tuple(t.shape)}")


def _size(name: str, value) -> int:
    try:
        ok = int(value) == value and int(value) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(value, bool):
        raise ValueError(f"{name}: expected a non-negative integer number of pixels, got {value!r}")
    return int(value)


def _check_finite(named: dict[str, Tensor], backgrounds: Tensor | None, depth_limit: Tensor | None) -> None:
    """Raise ShapeError naming the first field with NaN/inf (one device sync when all is well)."""
    checks = {name: t for name, t in named.items()}
    if backgrounds is not None:
        checks["backgrounds"] = backgrounds
    quats = named["quats"].detach()
    if quats.device.type == "cpu":  # numpy: no torch thread-pool wake-ups on the CPU hot path
        values = [int(np.count_nonzero(~np.isfinite(t.detach().numpy()))) for t in checks.values()]
        values.append(int(np.count_nonzero(~np.any(quats.numpy() != 0, axis=-1))))
        if depth_limit is not None:
            values.append(int(np.count_nonzero(np.isnan(depth_limit.detach().numpy()))))
    else:
        counts = [(~torch.isfinite(t.detach())).sum() for t in checks.values()]
        counts.append((~(quats != 0).any(-1)).sum())
        if depth_limit is not None:
            counts.append(torch.isnan(depth_limit.detach()).sum())
        values = torch.stack(counts).tolist()
    for (name, t), bad in zip(checks.items(), values[: len(checks)], strict=False):
        if bad:
            rows = (~torch.isfinite(t.detach())).reshape(t.shape[0], -1).any(-1).nonzero()[:, 0]
            what = "splat(s)" if name not in ("viewmats", "Ks", "backgrounds") else "camera(s)"
            raise ShapeError(
                f"{name}: {bad} non-finite value(s) (NaN/inf) in {rows.numel()} {what}, first at index "
                f"{int(rows[0])}; remove or repair them before rasterizing"
            )
    if values[len(checks)]:
        first = int((~(quats != 0).any(-1)).nonzero()[0, 0])
        raise ShapeError(f"quats: {values[len(checks)]} zero-length quaternion(s), first at index {first}; "
                         "a rotation needs a non-zero wxyz quaternion")  # fmt: skip
    if depth_limit is not None and values[-1]:
        raise ShapeError(f"depth_limit: {values[-1]} NaN value(s); use +inf where nothing limits the depth")


# --------------------------------------------------------------------------------------- empty inputs
def _is_empty(req: RasterRequest) -> bool:
    return req.means.shape[0] == 0 or req.viewmats.shape[0] == 0 or req.width == 0 or req.height == 0


def _empty_result(req: RasterRequest, backend: str) -> RasterResult:
    """No splat or no pixel: the background (or zeros), alpha 0, no ids; gradients still reach backgrounds."""
    c, n, h, w = req.viewmats.shape[0], req.means.shape[0], req.height, req.width
    ref = req.means
    trans = ref.new_ones((c, h, w, 1))
    colors = depths = None
    if req.wants_rgb:
        colors = ref.new_zeros((c, h, w, 3))
        if req.backgrounds is not None:
            colors = colors + trans * req.backgrounds[:, None, None, :]
    if req.wants_depth:
        depths = ref.new_zeros((c, h, w, 1))
    means2d = ref.new_zeros((c, n, 2))
    if ref.requires_grad:  # keep the training pattern result.means2d.retain_grad() working
        means2d = means2d + 0.0 * ref.sum()
    return RasterResult(
        colors=colors,
        alphas=1.0 - trans,
        depths=depths,
        means2d=means2d,
        radii=torch.zeros((c, n, 2), dtype=torch.int32, device=ref.device),
        splat_ids=torch.full((c, h, w), -1, dtype=torch.int64, device=ref.device) if req.options.splat_ids else None,
        transmittance=trans if req.depth_limit is not None else None,
        backend=backend,
    )
