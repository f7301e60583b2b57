"""gsplat (CUDA) against the cpu backend on the same inputs; skipped without CUDA and gsplat.

On the GPU machine: ``pip install gsplat==1.5.3`` then
``pytest tests/render/test_raster_gpu.py -q -s`` (``-s`` shows the max-error lines to record).
"""

from __future__ import annotations

import pytest
import torch

from render import RasterOptions, rasterize
from scenes.errors import BackendError
from tests.conftest import requires_cuda
from tests.render._raster_scenes import garden_subset, random_scene, render

pytestmark = [requires_cuda, pytest.mark.gpu]


@pytest.fixture(scope="module")
def gsplat():
    return pytest.importorskip("gsplat")


def _cuda(scene: dict) -> dict:
    return {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in scene.items()}


def _report(label: str, name: str, got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    scale = float(want.abs().max()) or 1.0
    max_rel = float((got - want).abs().max()) / scale
    l2_rel = float((got - want).norm() / (want.norm() + 1e-30))
    print(f"[gsplat vs cpu] {label} {name}: max |diff| / max |cpu| = {max_rel:.2e}, ||diff|| / ||cpu|| = {l2_rel:.2e}")
    return max_rel, l2_rel


def _compare(label: str, scene: dict, **kw) -> None:
    cpu, g_cpu = render(scene, "cpu", grad=True, **kw)
    gpu, g_gpu = render(_cuda(scene), "gsplat", grad=True, **kw)
    assert gpu.backend == "gsplat"
    same_radii = (gpu.radii.cpu() == cpu.radii).float().mean().item()
    print(f"[gsplat vs cpu] {label} radii equal for {same_radii:.5%} of (camera, splat)")
    assert same_radii > 0.999
    for name in ("colors", "alphas", "depths"):
        if getattr(cpu, name) is not None:
            max_rel, l2 = _report(label, name, getattr(gpu, name), getattr(cpu, name))
            assert max_rel < 2e-2 and l2 < 1e-3, name  # threshold flips (1/255, 1e-4) may move a few pixels
    same_ids = (gpu.splat_ids.cpu() == cpu.splat_ids).float().mean().item()
    print(f"[gsplat vs cpu] {label} splat_ids equal on {same_ids:.5%} of pixels")
    assert same_ids > 0.99
    for name, want in g_cpu.items():
        if want is None:
            continue
        assert g_gpu[name] is not None, f"gsplat gave no gradient for {name}"
        _, l2 = _report(label, f"d/d{name}", g_gpu[name], want)
        assert l2 < 5e-3, f"d/d{name}"


@pytest.mark.parametrize("mode", ["classic", "antialiased"])
def test_gsplat_matches_cpu_on_random_scene(gsplat, mode):
    scene = random_scene(n=3000, width=160, height=120, cameras=2, sh_degree=3, seed=1)
    _compare(f"random/{mode}", scene, render_mode="RGB+D", rasterize_mode=mode)


def test_gsplat_matches_cpu_on_garden(gsplat, shared_data):
    scene = garden_subset(shared_data / "gsplat" / "test_garden.npz", n=30_000, scale=1.0, sh_degree=1)
    _compare("garden", scene, render_mode="RGB+ED")


def test_wrapper_returns_what_gsplat_returns(gsplat):
    s = _cuda(random_scene(n=2000, width=128, height=96, cameras=2, sh_degree=2, seed=2))
    colors, alphas, meta = gsplat.rasterization(
        s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"], s["width"],
        s["height"], sh_degree=2, backgrounds=s["backgrounds"], packed=False,
    )  # fmt: skip
    res = rasterize(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"],
                    s["width"], s["height"], sh_degree=2, backgrounds=s["backgrounds"])  # fmt: skip
    assert res.backend == "gsplat", "CUDA tensors pick gsplat"
    assert torch.equal(res.colors, colors) and torch.equal(res.alphas, alphas)
    assert torch.equal(res.radii, meta["radii"]) and torch.equal(res.means2d, meta["means2d"])


def test_gsplat_absgrad_and_retain_grad(gsplat):
    s = _cuda(random_scene(n=1000, width=64, height=48, cameras=1, seed=3))
    means = s["means"].clone().requires_grad_(True)
    res = rasterize(means, s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"], 64, 48,
                    backend="gsplat", options=RasterOptions(absgrad=True))  # fmt: skip
    res.means2d.retain_grad()
    res.colors.sum().backward()
    assert res.means2d.grad.shape == (1, 1000, 2)
    assert (res.means2d.absgrad >= res.means2d.grad.abs() - 1e-6).all()


def test_gsplat_refuses_depth_limit(gsplat):
    s = _cuda(random_scene(n=10, width=16, height=12, cameras=1))
    with pytest.raises(BackendError, match="depth_limit: the gsplat backend does not support"):
        render(s, "gsplat", depth_limit=torch.ones((1, 12, 16), device="cuda"))


def test_cpu_backend_refuses_cuda_tensors():
    s = _cuda(random_scene(n=10, width=16, height=12, cameras=1))
    with pytest.raises(BackendError, match=r"backend='cpu' needs CPU tensors"):
        render(s, "cpu")
