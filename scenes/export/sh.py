"""Real spherical harmonics (3DGS / ``KHR_gaussian_splatting`` basis) and their exact rotation.

The basis is the one 3D Gaussian Splatting, gsplat and the ``KHR_gaussian_splatting`` extension
(Appendix A) use: real SH with the Condon-Shortley phase, coefficients of a degree ordered from
``m = -l`` to ``m = l``. A colour is ``0.5 + sum_k sh[k] * Y_k(d)`` with ``d`` the unit direction
from the camera to the splat.

Rotating a splat by ``R`` changes its colour function to ``f'(d) = f(R^T d)``. Each degree ``l``
is closed under rotation, so ``f'`` is again a degree-``l`` expansion whose coefficients are a
``(2l+1) x (2l+1)`` matrix times the old ones (the real Wigner-D matrix). We obtain that matrix by
evaluating the basis at a fixed set of well-spread directions and solving the least-squares
system ``Y(d_i) D = Y(R^T d_i)``: the system is consistent, so the solution is exact up to
floating point (residual ~1e-15), whatever the rotation.
"""

from __future__ import annotations

import numpy as np

from scenes.errors import ShapeError
from scenes.splats import SH_C0, sh_basis_terms, sh_degree_from_coeffs

__all__ = ["sh_basis", "sh_rotation_matrices", "rotate_sh", "check_rotation"]


def sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:
    """[M, (degree+1)^2] real SH basis values at unit directions ``dirs`` [M, 3] (3DGS ordering, float64)."""
    d = np.asarray(dirs, np.float64)
    if d.ndim != 2 or d.shape[1] != 3:
        raise ShapeError(f"sh_basis: dirs must have shape [M, 3], got {d.shape}")
    if degree not in (0, 1, 2, 3):
        raise ShapeError(f"sh_basis: degree must be 0..3, got {degree}")
    cols = [np.full(len(d), SH_C0)] + sh_basis_terms(d[:, 0], d[:, 1], d[:, 2], degree)
    return np.stack(cols, axis=1)


def _fibonacci_sphere(m: int) -> np.ndarray:
    i = np.arange(m, dtype=np.float64) + 0.5
    z = 1.0 - 2.0 * i / m
    r = np.sqrt(1.0 - z * z)
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


_SAMPLES = _fibonacci_sphere(64)  # far more than the 7 functions of degree 3: a well-conditioned fit


def check_rotation(R: np.ndarray) -> np.ndarray:
    """``R`` as float64 after checking that it is a proper 3x3 rotation; raises :class:`ShapeError` otherwise."""
    R = np.asarray(R, np.float64)
    if R.shape != (3, 3) or not np.all(np.isfinite(R)):
        raise ShapeError(f"rotation: expected a finite 3x3 matrix, got shape {R.shape}")
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0:
        raise ShapeError(
            f"rotation: expected a proper rotation (R R^T = I, det +1), got det {np.linalg.det(R):.6f}; "
            "reflections cannot be applied to SH coefficients"
        )
    return R


def sh_rotation_matrices(R: np.ndarray, degree: int) -> list[np.ndarray]:
    """Per-degree matrices ``D_l`` [2l+1, 2l+1] (l = 1..degree) with ``sh'_l = D_l @ sh_l`` for a rotation ``R``.

    Degree 0 is invariant and not listed.
    """
    R = check_rotation(R)
    A = sh_basis(_SAMPLES, degree)
    B = sh_basis(_SAMPLES @ R, degree)  # rows are (R^T d_i)^T
    out = []
    for l in range(1, degree + 1):
        s = slice(l * l, (l + 1) * (l + 1))
        D, *_ = np.linalg.lstsq(A[:, s], B[:, s], rcond=None)
        out.append(D)
    return out


def rotate_sh(sh: np.ndarray, R: np.ndarray) -> np.ndarray:
    """SH coefficients [N, K, 3] of splats rotated by ``R`` (K = 1, 4, 9 or 16); float32 out."""
    sh = np.asarray(sh)
    if sh.ndim != 3 or sh.shape[2] != 3:
        raise ShapeError(f"rotate_sh: sh must have shape [N, K, 3], got {sh.shape}")
    degree = sh_degree_from_coeffs(sh.shape[1])
    out = np.array(sh, dtype=np.float32, copy=True)
    for l, D in enumerate(sh_rotation_matrices(R, degree), start=1):
        s = slice(l * l, (l + 1) * (l + 1))
        out[:, s, :] = np.einsum("ij,njc->nic", D, sh[:, s, :].astype(np.float64)).astype(np.float32)
    return out
