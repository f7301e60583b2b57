"""Shared pieces of the GL tests: the EGL context fixture, artefact saving, a numpy splat reference.

Test modules import ``ctx_fixture`` and ``gl_context_fixture``; they register the fixtures ``ctx`` (the
session's EGL context, GL error state checked around each test) and ``gl_context``.

The numpy reference follows gsplat 1.5 ``rasterization()`` (pinhole, no antialiasing) formula by
formula, independently of the GLSL, for tiny scenes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from scenes.errors import BackendError, MissingDependencyError

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("HYBRID_ARTIFACTS", ROOT / "artifacts")) / "render_gl"

SH_BASIS_C = (0.2820947917738781, 0.48860251190292)


@pytest.fixture(scope="session", name="gl_context")
def gl_context_fixture():
    """One headless EGL context for the session; skips the test where none can be made."""
    from render.gl import create_context

    try:
        ctx = create_context("egl")
    except (BackendError, MissingDependencyError) as exc:
        pytest.skip(f"no EGL GL context: {exc}")
    yield ctx
    ctx.release()


@pytest.fixture(name="ctx")
def ctx_fixture(gl_context):
    """The session context, with the GL error state checked before and after the test."""
    assert gl_context.error == "GL_NO_ERROR", "a previous test left a GL error"
    yield gl_context
    err = gl_context.error
    assert err == "GL_NO_ERROR", f"GL error after the test: {err}"


def save_artifact(name: str, image: np.ndarray) -> Path:
    """Save an [H, W, 3] float (0..1) or uint8 image as ``artifacts/render_gl/<name>.png``."""
    from PIL import Image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    path = ARTIFACTS / f"{name}.png"
    Image.fromarray(image).save(path)
    return path


def floor_pixels(viewmat, K, width: int, height: int, half_x: float, half_y: float, nx: int, ny: int):
    """World points of an ``nx`` x ``ny`` grid on z = 0 over [-half_x, half_x] x [-half_y, half_y] that land in
    the image, as ``(points [P, 3], u [P], v [P], view depth [P])`` with integer pixel ``u, v``."""
    gx, gy = np.meshgrid(np.linspace(-half_x, half_x, nx), np.linspace(-half_y, half_y, ny))
    pts = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    cam = pts @ viewmat[:3, :3].T + viewmat[:3, 3]
    u = (K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]).astype(int)
    v = (K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]).astype(int)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return pts[inside], u[inside], v[inside], cam[inside, 2]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1] (clamped)."""
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def _quat_to_rot(q: np.ndarray) -> np.ndarray:  # [N, 4] wxyz -> [N, 3, 3]
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def _sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:  # [N, 3] unit -> [N, (degree+1)^2]
    x, y, z = dirs.T
    out = [np.full_like(x, 0.2820947917738781)]
    if degree >= 1:
        out += [-0.48860251190292 * y, 0.48860251190292 * z, -0.48860251190292 * x]
    if degree >= 2:
        out += [
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.31539156525252005 * (2 * z * z - x * x - y * y),
            -1.0925484305920792 * x * z,
            0.5462742152960396 * (x * x - y * y),
        ]
    if degree >= 3:
        out += [
            -0.5900435899266435 * y * (3 * x * x - y * y),
            2.890611442640554 * x * y * z,
            -0.4570457994644658 * y * (4 * z * z - x * x - y * y),
            0.3731763325901154 * z * (2 * z * z - 3 * x * x - 3 * y * y),
            -0.4570457994644658 * x * (4 * z * z - x * x - y * y),
            1.445305721320277 * z * (x * x - y * y),
            -0.5900435899266435 * x * (x * x - 3 * y * y),
        ]
    return np.stack(out, -1)


def reference_render(
    means, quats, scales, opacities, sh, viewmat, K, width, height, background=(0.0, 0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Colour [H, W, 3] and alpha [H, W] of the splats, float64, gsplat 1.5 formulas (tiny scenes only)."""
    means = np.asarray(means, np.float64)
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    mc = means @ R.T + t
    z = mc[:, 2]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    M = _quat_to_rot(np.asarray(quats, np.float64)) * np.asarray(scales, np.float64)[:, None, :]
    cov = R @ (M @ M.transpose(0, 2, 1)) @ R.T
    tanx, tany = 0.5 * width / fx, 0.5 * height / fy
    limx_pos, limx_neg = (width - cx) / fx + 0.3 * tanx, cx / fx + 0.3 * tanx
    limy_pos, limy_neg = (height - cy) / fy + 0.3 * tany, cy / fy + 0.3 * tany
    tx = z * np.minimum(limx_pos, np.maximum(-limx_neg, mc[:, 0] / z))
    ty = z * np.minimum(limy_pos, np.maximum(-limy_neg, mc[:, 1] / z))
    J = np.zeros((len(z), 2, 3))
    J[:, 0, 0] = fx / z
    J[:, 0, 2] = -fx * tx / z**2
    J[:, 1, 1] = fy / z
    J[:, 1, 2] = -fy * ty / z**2
    cov2 = J @ cov @ J.transpose(0, 2, 1) + 0.3 * np.eye(2)
    det = cov2[:, 0, 0] * cov2[:, 1, 1] - cov2[:, 0, 1] ** 2
    conic = np.stack([cov2[:, 1, 1] / det, -cov2[:, 0, 1] / det, cov2[:, 0, 0] / det], -1)
    mean2 = np.stack([fx * mc[:, 0] / z + cx, fy * mc[:, 1] / z + cy], -1)
    campos = -R.T @ t
    dirs = means - campos
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    degree = int(round(np.sqrt(sh.shape[1]))) - 1
    colors = np.maximum(np.einsum("nk,nkc->nc", _sh_basis(dirs, degree), sh) + 0.5, 0.0)
    keep = (z > 0.01) & (opacities >= 1 / 255) & (det > 0)
    ys, xs = np.mgrid[0:height, 0:width]
    px, py = xs + 0.5, ys + 0.5
    T = np.ones((height, width))
    C = np.zeros((height, width, 3))
    done = np.zeros((height, width), bool)
    for i in np.argsort(z, kind="stable"):
        if not keep[i]:
            continue
        dx, dy = mean2[i, 0] - px, mean2[i, 1] - py
        sigma = 0.5 * (conic[i, 0] * dx * dx + conic[i, 2] * dy * dy) + conic[i, 1] * dx * dy
        alpha = np.minimum(0.999, opacities[i] * np.exp(-sigma))
        use = (sigma >= 0) & (alpha >= 1 / 255) & ~done
        next_T = T * (1 - alpha)
        stop = use & (next_T <= 1e-4)
        done |= stop
        use &= ~stop
        C[use] += colors[i] * (alpha[use] * T[use])[:, None]
        T = np.where(use, next_T, T)
    C += T[..., None] * np.asarray(background, np.float64)
    return C, 1 - T
