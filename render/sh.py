"""Real spherical harmonics (degrees 0-3) as 3DGS, gsplat and the Inria PLY use them.

The basis is the real SH basis with the Condon-Shortley phase kept (so ``Y_1^{-1} = -C1 y``),
ordered ``m = -l .. l`` within each degree. A splat's view-dependent colour is
``max(sum_k Y_k(d) sh_k + 0.5, 0)`` with ``d`` the unit direction from the camera centre to
the splat (3DGS convention; the DC term alone gives ``C0 * sh_0 + 0.5``).

This module is the pure-PyTorch definition (autograd gives the gradients); the cpu backend
has a compiled copy with a hand-written backward, tested against this one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scenes.errors import ShapeError
from scenes.splats import SH_C0, SH_C1, SH_C2, SH_C3, sh_basis_terms

__all__ = ["SH_C0", "SH_C1", "SH_C2", "SH_C3", "MAX_SH_DEGREE", "sh_basis", "eval_sh", "sh_to_color"]

MAX_SH_DEGREE = 3


def sh_basis(degree: int, dirs: Tensor) -> Tensor:  # dirs [..., 3] -> [..., (degree + 1) ** 2]
    """The real SH basis at ``dirs`` (normalised here; a zero vector gives NaN beyond degree 0)."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ShapeError(f"sh_degree: expected 0..{MAX_SH_DEGREE}, got {degree}")
    out = [torch.full_like(dirs[..., 0], SH_C0)]
    if degree == 0:
        return torch.stack(out, -1)
    d = dirs / torch.linalg.vector_norm(dirs, dim=-1, keepdim=True)
    out += sh_basis_terms(*d.unbind(-1), degree)
    return torch.stack(out, -1)


def eval_sh(
    degree: int,
    dirs: Tensor,  # [..., 3] view directions (any length > 0)
    coeffs: Tensor,  # [..., K, D] with K >= (degree + 1) ** 2; extra coefficients are ignored
) -> Tensor:  # [..., D]
    """``sum_k Y_k(dirs) coeffs[..., k, :]`` over the first ``(degree + 1) ** 2`` coefficients."""
    k = (degree + 1) ** 2
    if coeffs.shape[-2] < k:
        raise ShapeError(f"coeffs: SH degree {degree} needs {k} coefficients, got shape {tuple(coeffs.shape)}")
    basis = sh_basis(degree, dirs)  # [..., k]
    return (basis[..., :, None] * coeffs[..., :k, :]).sum(-2)


def sh_to_color(
    degree: int,
    dirs: Tensor,  # [..., 3]
    coeffs: Tensor,  # [..., K, 3]
) -> Tensor:  # [..., 3]
    """The 3DGS colour ``max(eval_sh + 0.5, 0)`` as the rasterizers use it."""
    return torch.clamp_min(eval_sh(degree, dirs, coeffs) + 0.5, 0.0)
