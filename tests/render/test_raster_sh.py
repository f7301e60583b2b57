"""Spherical harmonics: our basis against scipy's, and view-dependent colours through every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from render import available_backends, eval_sh, rasterize, sh_basis
from scenes.errors import ShapeError

BACKENDS = [b for b in ("cpu", "reference") if b in available_backends()]


def _scipy_real_sh(degree: int, dirs: np.ndarray) -> np.ndarray:
    """Real SH from scipy's complex ones, Condon-Shortley phase kept, m = -l..l (the 3DGS basis)."""
    import scipy.special

    if hasattr(scipy.special, "sph_harm_y"):  # SciPy >= 1.15
        sph_harm_y = scipy.special.sph_harm_y
    else:  # older SciPy: sph_harm(m, n, azimuth, polar)
        sph_harm_y = lambda n, m, theta, phi: scipy.special.sph_harm(m, n, phi, theta)  # noqa: E731
    d = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
    theta = np.arccos(np.clip(d[:, 2], -1, 1))  # polar angle from +z
    phi = np.arctan2(d[:, 1], d[:, 0])  # azimuth from +x
    out = []
    for l in range(degree + 1):
        for m in range(-l, l + 1):
            y = sph_harm_y(l, abs(m), theta, phi)
            if m < 0:
                out.append(math.sqrt(2) * y.imag)
            elif m == 0:
                out.append(y.real)
            else:
                out.append(math.sqrt(2) * y.real)
    return np.stack(out, -1)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_basis_matches_scipy(degree):
    dirs = np.random.default_rng(degree).normal(size=(500, 3)) * 3.0  # any length: the basis normalises
    ours = sh_basis(degree, torch.from_numpy(dirs)).numpy()
    assert ours.shape == (500, (degree + 1) ** 2)
    np.testing.assert_allclose(ours, _scipy_real_sh(degree, dirs), atol=1e-12)


def test_eval_sh_uses_only_the_requested_bands():
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(20, 3, generator=g, dtype=torch.float64)
    coeffs = torch.randn(20, 16, 3, generator=g, dtype=torch.float64)
    low = eval_sh(1, dirs, coeffs)
    assert torch.allclose(low, eval_sh(1, dirs, coeffs[:, :4]))
    want = torch.from_numpy(_scipy_real_sh(1, dirs.numpy()))[..., None].mul(coeffs[:, :4]).sum(1)
    assert torch.allclose(low, want)
    with pytest.raises(ShapeError, match="SH degree 3 needs 16 coefficients"):
        eval_sh(3, dirs, coeffs[:, :9])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_view_dependent_colour_through_rasterize(backend, degree):
    """One opaque-ish splat seen from 3 cameras: the peak pixel shows max(Y(d) . sh + 0.5, 0) * opacity."""
    g = np.random.default_rng(10 + degree)
    sh = g.normal(0, 0.5, (1, 16, 3))
    mean = np.array([0.3, -0.2, 0.1])
    views, ks, dirs = [], [], []
    w = h = 21
    for i in range(3):
        eye = mean + 3.0 * np.array([math.cos(2.1 * i), math.sin(2.1 * i), 0.4 * i - 0.4])
        fwd = (mean - eye) / np.linalg.norm(mean - eye)
        x = np.cross(fwd, [0, 0, 1.0])
        x /= np.linalg.norm(x)
        rot = np.stack([x, np.cross(fwd, x), fwd])
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = rot, -rot @ eye
        views.append(m)
        ks.append([[20.0, 0, w / 2], [0, 20.0, h / 2], [0, 0, 1]])
        dirs.append(mean - eye)
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    o = 0.9
    res = rasterize(t(mean[None]), t([[1.0, 0, 0, 0]]), t([[0.2, 0.2, 0.2]]), t([o]), t(sh), t(views), t(ks), w, h,
                    sh_degree=degree, backend=backend)  # fmt: skip
    basis = _scipy_real_sh(degree, np.asarray(dirs))  # [3, K]
    colour = np.maximum(basis @ sh[0, : (degree + 1) ** 2] + 0.5, 0.0)  # [3 cameras, 3]
    got = res.colors[:, h // 2, w // 2].numpy()
    np.testing.assert_allclose(got, o * colour, atol=2e-6)
