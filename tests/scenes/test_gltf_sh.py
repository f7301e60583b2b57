"""SH rotation for the axis changes of the exports, checked against an independent SH basis (scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from scipy.special import sph_harm_y

from scenes import ShapeError, Splats
from scenes.export import AXES, quat_to_matrix, rotate_sh, sh_basis, sh_rotation_matrices, transform_splats


def scipy_basis(dirs: np.ndarray, degree: int) -> np.ndarray:
    """Real SH with the Condon-Shortley phase (the KHR_gaussian_splatting / 3DGS basis), from scipy's complex SH.

    sqrt(2) Im Y_l^|m| for m < 0, Y_l^0, sqrt(2) Re Y_l^m for m > 0 (scipy's Y_l^m carries the (-1)^m phase).
    """
    theta = np.arccos(np.clip(dirs[:, 2], -1, 1))  # polar
    phi = np.arctan2(dirs[:, 1], dirs[:, 0])  # azimuth
    cols = []
    for l in range(degree + 1):
        for m in range(-l, l + 1):
            y = sph_harm_y(l, abs(m), theta, phi)
            cols.append(np.sqrt(2) * y.imag if m < 0 else (y.real if m == 0 else np.sqrt(2) * y.real))
    return np.stack(cols, axis=1)


def unit_dirs(rng: np.random.Generator, m: int) -> np.ndarray:
    d = rng.normal(size=(m, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def test_basis_matches_scipy_and_spec_constants():
    d = unit_dirs(np.random.default_rng(0), 500)
    np.testing.assert_allclose(sh_basis(d, 3), scipy_basis(d, 3), atol=1e-12)
    # the spec's Appendix A: Y_1,-1 = -0.4886 y, Y_2,-2 = 1.0925 x y, Y_3,0 = 0.3732 z (2z^2 - 3x^2 - 3y^2)
    x, y, z = d.T
    B = sh_basis(d, 3)
    np.testing.assert_allclose(B[:, 1], -0.4886025119029199 * y, atol=1e-12)
    np.testing.assert_allclose(B[:, 4], 1.092548430592079 * x * y, atol=1e-12)
    np.testing.assert_allclose(B[:, 12], 0.3731763325901154 * z * (2 * z * z - 3 * x * x - 3 * y * y), atol=1e-12)


@pytest.mark.parametrize("name", ["y-up", "y-down", "random"])
def test_rotated_coefficients_evaluate_the_rotated_function(name):
    rng = np.random.default_rng(1)
    R = Rotation.random(random_state=2).as_matrix() if name == "random" else AXES[name]
    coeffs = rng.normal(size=(16,))
    rotated = np.concatenate(
        [coeffs[:1]] + [D @ coeffs[l * l : (l + 1) ** 2] for l, D in enumerate(sh_rotation_matrices(R, 3), start=1)]
    )
    d = unit_dirs(rng, 300)
    # f'(d) = f(R^T d): the colour a rotated splat shows in direction d is what it showed in R^T d before
    np.testing.assert_allclose(scipy_basis(d, 3) @ rotated, scipy_basis(d @ R, 3) @ coeffs, atol=1e-10)


def test_rotation_matrices_compose_and_are_orthogonal():
    R1 = Rotation.random(random_state=3).as_matrix()
    R2 = Rotation.random(random_state=4).as_matrix()
    for D1, D2, D12 in zip(
        sh_rotation_matrices(R1, 3), sh_rotation_matrices(R2, 3), sh_rotation_matrices(R1 @ R2, 3), strict=True
    ):
        np.testing.assert_allclose(D1 @ D2, D12, atol=1e-10)
        np.testing.assert_allclose(D1 @ D1.T, np.eye(len(D1)), atol=1e-10)


def test_rotate_sh_on_arrays_and_degree_zero_untouched():
    rng = np.random.default_rng(5)
    R = Rotation.random(random_state=6).as_matrix()
    sh = rng.normal(size=(7, 16, 3)).astype(np.float32)
    out = rotate_sh(sh, R)
    d = unit_dirs(rng, 50)
    for c in range(3):
        np.testing.assert_allclose(scipy_basis(d, 3) @ out[0, :, c], scipy_basis(d @ R, 3) @ sh[0, :, c], atol=1e-5)
    np.testing.assert_array_equal(out[:, 0], sh[:, 0])
    np.testing.assert_array_equal(rotate_sh(sh[:, :1], R), sh[:, :1])


def test_reflections_are_refused():
    with pytest.raises(ShapeError, match="proper rotation"):
        rotate_sh(np.zeros((1, 4, 3)), np.diag([1.0, 1.0, -1.0]))


def test_transform_splats_moves_covariances_and_view_dependent_colour():
    """A rotated splat seen from a rotated camera looks the same: covariance R S R^T, colour f(R^T d)."""
    rng = np.random.default_rng(7)
    s = Splats(
        rng.normal(size=(5, 3)),
        rng.normal(size=(5, 4)),
        rng.normal(-3, 0.5, (5, 3)),
        rng.normal(size=5),
        rng.normal(size=(5, 16, 3)),
    )
    R = Rotation.random(random_state=8).as_matrix()
    t = np.array([0.3, -1.0, 2.0])
    out = transform_splats(s, R, t)
    np.testing.assert_allclose(out.means, s.means @ R.T + t, atol=1e-5)

    def cov(x: Splats) -> np.ndarray:
        M = quat_to_matrix(x.quats) * np.exp(x.log_scales.astype(np.float64))[:, None, :]
        return M @ np.swapaxes(M, 1, 2)

    np.testing.assert_allclose(cov(out), R @ cov(s) @ R.T, atol=1e-6)
    cam = np.array([4.0, 1.0, -2.0])
    d_new = out.means[0] - cam
    d_old = (d_new / np.linalg.norm(d_new)) @ R  # R^T d
    np.testing.assert_allclose(
        scipy_basis(d_new[None] / np.linalg.norm(d_new), 3) @ out.sh[0],
        scipy_basis(d_old[None], 3) @ s.sh[0],
        atol=1e-5,
    )
