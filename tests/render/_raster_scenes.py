"""Scenes and comparison helpers shared by the rasterization tests (tests/render/test_raster*.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from render import rasterize

DIFF = ("means", "quats", "scales", "opacities", "colors", "viewmats", "backgrounds")


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera [4, 4] (OpenCV axes: x right, y down, z forward) looking from eye at target."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rot = np.stack([x, y, z])
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = -rot @ eye
    return m


def intrinsics(width: int, height: int, fov_x_deg: float = 60.0) -> np.ndarray:
    f = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])


def random_scene(
    n: int = 300,
    width: int = 64,
    height: int = 48,
    cameras: int = 2,
    sh_degree: int | None = None,
    dtype=torch.float32,
    seed: int = 0,
    backgrounds: bool = True,
) -> dict:
    """N random splats in front of C cameras looking at the origin from about 3 m; keyword args of rasterize."""
    g = np.random.default_rng(seed)
    means = g.normal(0, 0.6, (n, 3))
    quats = g.normal(0, 1, (n, 4))
    scales = np.exp(g.uniform(np.log(0.02), np.log(0.15), (n, 3)))
    opacities = g.uniform(0.05, 1.0, n)
    colors = g.uniform(0, 1, (n, 3)) if sh_degree is None else g.normal(0, 0.4, (n, (sh_degree + 1) ** 2, 3))
    views, ks = [], []
    for i in range(cameras):
        a = 2 * math.pi * i / max(cameras, 1) + 0.3
        eye = (3.0 * math.cos(a), 3.0 * math.sin(a), 0.8 + 0.3 * i)
        views.append(look_at(eye, (0.0, 0.0, 0.0)))
        ks.append(intrinsics(width, height, 55.0 + 5 * i))
    t = lambda a: torch.tensor(np.asarray(a), dtype=dtype)  # noqa: E731
    scene = {
        "means": t(means), "quats": t(quats), "scales": t(scales), "opacities": t(opacities), "colors": t(colors),
        "viewmats": t(np.stack(views)), "Ks": t(np.stack(ks)), "width": width, "height": height,
        "sh_degree": sh_degree,
    }  # fmt: skip
    if backgrounds:
        scene["backgrounds"] = t(g.uniform(0, 1, (cameras, 3)))
    return scene


def garden_subset(path: Path, n: int, seed: int = 0, scale: float = 1.0, sh_degree: int | None = None) -> dict:
    """A random subset of the real garden points with gsplat simple_trainer's initialisation.

    Scales are the root mean squared distance to the 3 nearest neighbours (of the subset), quats
    uniform random, opacities 0.1 -> here 0.5 so that compositing depth is exercised; the 3 real
    cameras, intrinsics scaled by ``scale``.
    """
    from scipy.spatial import cKDTree

    d = np.load(path)
    g = np.random.default_rng(seed)
    idx = g.choice(len(d["means3d"]), n, replace=False)
    pts = d["means3d"][idx].astype(np.float64)
    dist, _ = cKDTree(pts).query(pts, k=4)
    scales = np.sqrt((dist[:, 1:] ** 2).mean(-1))
    rgb = d["colors"][idx].astype(np.float64) / 255.0
    width, height = round(int(d["width"]) * scale), round(int(d["height"]) * scale)
    ks = d["Ks"].astype(np.float64).copy()
    ks[:, :2] *= scale
    if sh_degree is None:
        colors = rgb
    else:
        colors = g.normal(0, 0.2, (n, (sh_degree + 1) ** 2, 3))
        colors[:, 0] = (rgb - 0.5) / 0.28209479177387814
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return {
        "means": t(pts), "quats": t(g.uniform(0, 1, (n, 4))), "scales": t(np.repeat(scales[:, None], 3, 1)),
        "opacities": t(np.full(n, 0.5)), "colors": t(colors), "viewmats": t(d["viewmats"]), "Ks": t(ks),
        "width": width, "height": height, "sh_degree": sh_degree,
    }  # fmt: skip


def render(scene: dict, backend: str, grad: bool = False, **kw):
    """rasterize(scene) and, with grad, a fixed random linear loss backpropagated.

    Returns ``(result, grads)``; grads maps each differentiable input (and ``means2d``) to its gradient.
    """
    args = dict(scene)
    args.update(kw)
    leaves = {}
    if grad:
        for k in DIFF:
            if args.get(k) is not None:
                leaves[k] = args[k] = args[k].detach().clone().requires_grad_(True)
    pos = [
        args.pop(k) for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks", "width", "height")
    ]
    res = rasterize(*pos, backend=backend, **args)
    grads = {}
    if grad:
        res.means2d.retain_grad()
        g = torch.Generator().manual_seed(123)
        loss = 0.0
        for out in (res.colors, res.alphas, res.depths):
            if out is not None:
                loss = loss + (out * torch.rand(out.shape, generator=g, dtype=out.dtype).to(out.device)).sum()
        loss.backward()
        grads = {k: v.grad for k, v in leaves.items()}
        grads["means2d"] = res.means2d.grad
    return res, grads


def assert_close(name: str, got: torch.Tensor, want: torch.Tensor, rtol: float, atol_frac: float = 0.0) -> None:
    """max |got - want| <= rtol * max |want| + atol_frac (relative to the tensor's scale), with a clear message."""
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    scale = float(want.abs().max()) if want.numel() else 0.0
    err = float((got - want).abs().max()) if want.numel() else 0.0
    assert err <= rtol * scale + atol_frac, f"{name}: max error {err:.3e} > {rtol:.1e} x scale {scale:.3e}"
