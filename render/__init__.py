"""Rendering: Gaussian splat rasterization (:func:`rasterize`) and the ModernGL compositor (:mod:`render.gl`).

``rasterize`` runs on gsplat (CUDA tensors), our numba cpu backend (CPU tensors) or the exact
pure-PyTorch reference; neither gsplat nor numba is imported until a backend needs it.
"""

from render._common import RasterOptions, RasterResult
from render.rasterize import BACKEND_ENV, BACKENDS, available_backends, rasterize
from render.sh import eval_sh, sh_basis, sh_to_color

__all__ = [
    "rasterize",
    "RasterResult",
    "RasterOptions",
    "available_backends",
    "BACKENDS",
    "BACKEND_ENV",
    "eval_sh",
    "sh_basis",
    "sh_to_color",
]

# The ModernGL compositor (render.gl): importing it does not import moderngl; a context or renderer does.
from render import gl  # noqa: E402

__all__ = [*__all__, "gl"]
