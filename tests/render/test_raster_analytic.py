"""Analytic cases with known answers, on every CPU-runnable backend."""

from __future__ import annotations

import math

import pytest
import torch

from render import available_backends, rasterize

BACKENDS = [b for b in ("cpu", "reference") if b in available_backends()]
W, H, F = 41, 31, 50.0  # odd sizes: the principal point below sits on a pixel centre
CX, CY = 20.5, 15.5


def _camera(dtype=torch.float32):
    k = torch.tensor([[F, 0.0, CX], [0.0, F, CY], [0.0, 0.0, 1.0]], dtype=dtype)[None]
    return torch.eye(4, dtype=dtype)[None], k


def _splats(rows, dtype=torch.float32):
    """rows of (x, y, z, isotropic scale, opacity, r, g, b) -> rasterize's first five arguments."""
    t = torch.tensor(rows, dtype=dtype)
    n = len(rows)
    quats = torch.zeros((n, 4), dtype=dtype)
    quats[:, 0] = 1.0
    return t[:, :3], quats, t[:, 3:4].repeat(1, 3), t[:, 4], t[:, 5:8]


def _pixel_grid(dtype=torch.float32):
    ys, xs = torch.meshgrid(torch.arange(H, dtype=dtype) + 0.5, torch.arange(W, dtype=dtype) + 0.5, indexing="ij")
    return xs, ys


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["classic", "antialiased"])
def test_one_isotropic_splat_is_the_known_gaussian(backend, mode):
    z, s, o = 4.0, 0.12, 0.8
    color = (0.2, 0.6, 0.9)
    viewmats, ks = _camera()
    res = rasterize(*_splats([(0.0, 0.0, z, s, o, *color)]), viewmats, ks, W, H, backend=backend,
                    rasterize_mode=mode, render_mode="RGB+D")  # fmt: skip
    var0 = (F * s / z) ** 2  # projected variance in pixels^2 on the optical axis
    var = var0 + 0.3  # eps2d dilation
    peak = o * (var0 / var if mode == "antialiased" else 1.0)  # antialiasing: o * sqrt(det / det_blur)
    xs, ys = _pixel_grid()
    r2 = (xs - CX) ** 2 + (ys - CY) ** 2
    alpha = peak * torch.exp(-0.5 * r2 / var)
    alpha = torch.where(alpha >= 1 / 255, alpha, 0.0)
    got = res.alphas[0, ..., 0]
    assert got[15, 20] == pytest.approx(peak, rel=1e-5), "peak alpha = opacity (times the AA compensation)"
    assert torch.allclose(got, alpha, atol=2e-6), f"max error {float((got - alpha).abs().max()):.2e}"
    assert torch.allclose(res.colors[0], alpha[..., None] * torch.tensor(color), atol=2e-6)
    assert torch.allclose(res.depths[0, ..., 0], alpha * z, atol=1e-5)
    extend = min(3.33, math.sqrt(2 * math.log(255 * peak)))
    r = math.ceil(extend * math.sqrt(var))
    assert res.radii[0, 0].tolist() == [r, r], "opacity-aware bounding box"
    assert res.means2d[0, 0].tolist() == pytest.approx([CX, CY])
    assert (res.splat_ids[0] == torch.where(alpha > 0, 0, -1)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_splats_behind_or_beside_the_camera_contribute_nothing(backend):
    viewmats, ks = _camera()
    rows = [
        (0.0, 0.0, -3.0, 0.5, 0.9, 1, 0, 0),  # behind the camera
        (0.0, 0.0, 0.005, 0.5, 0.9, 1, 0, 0),  # in front of the near plane (0.01)
        (40.0, 0.0, 3.0, 0.1, 0.9, 1, 0, 0),  # far outside the frustum, to the right
        (0.0, -30.0, 3.0, 0.1, 0.9, 1, 0, 0),  # above
        (0.0, 0.0, 3.0, 0.1, 0.002, 1, 0, 0),  # opacity below 1/255
    ]
    res = rasterize(*_splats(rows), viewmats, ks, W, H, backend=backend)
    assert (res.radii == 0).all()
    assert (res.alphas == 0).all() and (res.colors == 0).all()
    assert (res.splat_ids == -1).all()
    far = rasterize(*_splats([(0.0, 0.0, 30.0, 0.5, 0.9, 1, 0, 0)]), viewmats, ks, W, H, backend=backend,
                    far_plane=20.0)  # fmt: skip
    assert (far.alphas == 0).all(), "beyond the far plane"


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_splats_composite_in_depth_order(backend):
    viewmats, ks = _camera()
    front = (0.0, 0.0, 2.0, 0.05, 0.6, 1.0, 0.0, 0.0)
    back = (0.0, 0.0, 5.0, 0.125, 0.7, 0.0, 0.0, 1.0)  # same projected size as the front one
    bg = torch.tensor([[0.1, 0.2, 0.3]])
    a = rasterize(*_splats([front, back]), viewmats, ks, W, H, backend=backend, backgrounds=bg, render_mode="RGB+ED")
    b = rasterize(*_splats([back, front]), viewmats, ks, W, H, backend=backend, backgrounds=bg, render_mode="RGB+ED")
    assert torch.allclose(a.colors, b.colors, atol=1e-7), "the order of the inputs does not matter, depth does"
    o1, o2 = 0.6, 0.7
    want = o1 * torch.tensor([1.0, 0, 0]) + (1 - o1) * o2 * torch.tensor([0, 0, 1.0]) + (1 - o1) * (1 - o2) * bg[0]
    assert torch.allclose(a.colors[0, 15, 20], want, atol=1e-6)
    assert a.alphas[0, 15, 20, 0] == pytest.approx(1 - (1 - o1) * (1 - o2), abs=1e-6)
    ed = (o1 * 2.0 + (1 - o1) * o2 * 5.0) / (1 - (1 - o1) * (1 - o2))
    assert a.depths[0, 15, 20, 0] == pytest.approx(ed, rel=1e-5)
    assert a.splat_ids[0, 15, 20] == 0 and b.splat_ids[0, 15, 20] == 1, "the front splat dominates"


@pytest.mark.parametrize("backend", BACKENDS)
def test_pixel_stops_when_transmittance_would_fall_to_1e_4(backend):
    viewmats, ks = _camera()
    rows = [(0.0, 0.0, 2.0 + i, 0.06 * (2.0 + i), 1.0, float(i == 0), float(i == 1), 0.0) for i in range(4)]
    res = rasterize(*_splats(rows), viewmats, ks, W, H, backend=backend)
    # alpha clamps to 0.999: T = 1e-3 after the first splat; the second would leave 1e-6 <= 1e-4, so it is skipped
    assert res.alphas[0, 15, 20, 0] == pytest.approx(0.999, abs=1e-6)
    assert torch.allclose(res.colors[0, 15, 20], torch.tensor([0.999, 0.0, 0.0]), atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_depth_limit_stops_at_the_mesh(backend):
    viewmats, ks = _camera()
    front = (0.0, 0.0, 2.0, 0.05, 0.6, 1.0, 0.0, 0.0)
    back = (0.0, 0.0, 5.0, 0.125, 0.7, 0.0, 0.0, 1.0)
    limit = torch.full((1, H, W), 3.0)
    limit[:, :, :20] = float("inf")  # left half: no mesh
    res = rasterize(*_splats([front, back]), viewmats, ks, W, H, backend=backend, depth_limit=limit)
    free = rasterize(*_splats([front, back]), viewmats, ks, W, H, backend=backend)
    assert res.transmittance[0, 15, 20, 0] == pytest.approx(1 - 0.6, abs=1e-6), "only the front splat"
    assert torch.allclose(res.colors[0, 15, 20], torch.tensor([0.6, 0.0, 0.0]), atol=1e-6)
    assert torch.allclose(res.colors[:, :, :20], free.colors[:, :, :20]), "unlimited pixels are unchanged"
    assert free.transmittance is None
