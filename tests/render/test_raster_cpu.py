"""The cpu backend (numba kernels, hand-written backward) against the pure-PyTorch reference."""

from __future__ import annotations

import math
import os

import pytest
import torch

from render import RasterOptions, rasterize
from tests.render._raster_scenes import DIFF, assert_close, garden_subset, random_scene, render

pytest.importorskip("numba")

OUTPUTS = ("colors", "alphas", "depths", "means2d")


def _compare(scene: dict, rtol_img: float = 2e-5, rtol_grad: float = 2e-4, skip=(), **kw) -> tuple[dict, dict]:
    ref, g_ref = render(scene, "reference", grad=True, **kw)
    cpu, g_cpu = render(scene, "cpu", grad=True, **kw)
    assert torch.equal(cpu.radii, ref.radii), "radii differ"
    assert cpu.backend == "cpu" and ref.backend == "reference"
    for name in OUTPUTS:
        a, b = getattr(cpu, name), getattr(ref, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert_close(name, a.detach(), b.detach(), rtol_img)
    if ref.splat_ids is not None:
        same = (cpu.splat_ids == ref.splat_ids).float().mean().item()
        assert same > 0.999, f"splat_ids agree on only {same:.4%} of pixels"
    for name, want in g_ref.items():
        if name in skip or want is None:
            continue
        assert g_cpu[name] is not None, f"cpu backend gave no gradient for {name}"
        assert_close(f"d/d{name}", g_cpu[name], want, rtol_grad)
    return g_cpu, g_ref


@pytest.mark.parametrize(
    ("kw", "scene_kw"),
    [
        ({}, {}),
        ({"render_mode": "RGB+D"}, {"sh_degree": 3}),
        ({"render_mode": "RGB+ED", "rasterize_mode": "antialiased"}, {"sh_degree": 1}),
        ({"render_mode": "D"}, {"cameras": 1, "backgrounds": False}),
        ({"render_mode": "ED", "eps2d": 0.1, "radius_clip": 1.5}, {"cameras": 3}),
    ],
    ids=["rgb", "rgb+d-sh3", "rgb+ed-aa-sh1", "d", "ed-3cams-clip"],
)
def test_cpu_matches_reference_random(kw, scene_kw):
    scene = random_scene(n=250, width=61, height=45, seed=len(str(kw)), **scene_kw)
    if kw.get("render_mode") in ("D", "ED"):
        scene.pop("backgrounds", None)
    rtol = 1e-3 if "ED" in kw.get("render_mode", "") else 2e-4  # ED divides by small alphas at splat edges
    _compare(scene, rtol_grad=rtol, **kw)


def test_cpu_matches_reference_depth_limit():
    scene = random_scene(n=250, width=50, height=40, seed=3)
    g = torch.Generator().manual_seed(0)
    limit = 2.6 + 0.8 * torch.rand((2, 40, 50), generator=g)
    limit[:, :, :10] = float("inf")  # no limit in a band
    ref, g_ref = render(scene, "reference", grad=True, depth_limit=limit, render_mode="RGB+D")
    cpu, g_cpu = render(scene, "cpu", grad=True, depth_limit=limit, render_mode="RGB+D")
    assert_close("transmittance", cpu.transmittance.detach(), ref.transmittance.detach(), 2e-5)
    assert_close("colors", cpu.colors.detach(), ref.colors.detach(), 2e-5)
    free, _ = render(scene, "cpu", render_mode="RGB+D")
    assert (cpu.alphas <= free.alphas + 1e-6).all(), "a depth limit can only remove contributions"
    assert (cpu.alphas < free.alphas - 1e-3).any(), "the limit should cut some pixels"
    for name in ("means", "scales", "opacities", "colors", "means2d"):
        assert_close(f"d/d{name}", g_cpu[name], g_ref[name], 2e-4)


def test_cpu_matches_reference_on_garden(shared_data):
    scene = garden_subset(shared_data / "gsplat" / "test_garden.npz", n=3000, scale=0.25, sh_degree=2)
    g_cpu, g_ref = _compare(scene, rtol_img=5e-5, rtol_grad=5e-4, skip=("quats",))
    # gsplat's initial scales are isotropic: rotating a splat changes nothing, so d/dquats is rounding noise
    for grads in (g_cpu, g_ref):
        assert grads["quats"].abs().max() <= 1e-6 * grads["scales"].abs().max()


def test_cpu_gradcheck_float64():
    scene = random_scene(n=6, width=12, height=10, cameras=2, sh_degree=1, dtype=torch.float64, seed=7)
    _gradcheck(scene, "cpu")


def test_reference_gradcheck_float64():
    scene = random_scene(n=5, width=10, height=8, cameras=1, dtype=torch.float64, seed=8)
    _gradcheck(scene, "reference")


def _gradcheck(scene: dict, backend: str) -> None:
    g = torch.Generator().manual_seed(1)
    scene["means"] = scene["means"] * 0.4  # a few big splats near the centre of a tiny image
    scene["scales"] = 0.2 + 0.3 * torch.rand(scene["scales"].shape, generator=g, dtype=torch.float64)
    scene["opacities"] = scene["opacities"].clamp(0.3, 0.8)  # keep away from the 0.999 clamp
    names = [k for k in DIFF if scene.get(k) is not None]

    def fn(*xs):
        args = dict(scene)
        args.update(dict(zip(names, xs, strict=True)))
        pos = [args.pop(k) for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks",
                                     "width", "height")]  # fmt: skip
        res = rasterize(*pos, backend=backend, render_mode="RGB+D", rasterize_mode="antialiased", **args)
        return res.colors, res.alphas, res.depths

    inputs = tuple(scene[k].detach().clone().requires_grad_(True) for k in names)
    assert fn(*inputs)[1].max() > 0.3, "the tiny scene should be visible"
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_cpu_absgrad_and_means2d_grad():
    scene = random_scene(n=120, width=40, height=30, cameras=1, seed=11)
    res, grads = render(scene, "cpu", grad=True, options=RasterOptions(absgrad=True))
    absgrad = res.means2d.absgrad
    assert absgrad.shape == res.means2d.shape
    assert (absgrad >= grads["means2d"].abs() - 1e-6).all(), "|sum| <= sum |.|"
    # one pixel: the per-pixel sum has a single term, so absgrad == |grad|
    one = random_scene(n=40, width=1, height=1, cameras=1, seed=12)
    res1, g1 = render(one, "cpu", grad=True, options=RasterOptions(absgrad=True))
    assert torch.allclose(res1.means2d.absgrad, g1["means2d"].abs(), atol=1e-7)


def test_cpu_is_deterministic_and_float64_matches_float32():
    scene = random_scene(n=200, width=48, height=36, seed=5)
    a, _ = render(scene, "cpu")
    b, _ = render(scene, "cpu")
    assert torch.equal(a.colors, b.colors) and torch.equal(a.splat_ids, b.splat_ids)
    s64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in scene.items()}
    c, _ = render(s64, "cpu")
    assert c.colors.dtype == torch.float64
    assert_close("float64 colours", c.colors.float(), a.colors, 1e-4)


def test_numba_cache_falls_back_to_user_cache_when_the_package_dir_is_not_writable(tmp_path, monkeypatch):
    from render._cpu import _prepare_numba_cache

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    import numba

    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)  # restored after the test
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the package directory would be")
    fallback = _prepare_numba_cache(blocker)  # mkdir of blocker/__pycache__ fails
    assert fallback == tmp_path / "xdg" / "hybrid" / "numba" and fallback.is_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == str(fallback) and numba.config.CACHE_DIR == str(fallback)
    assert _prepare_numba_cache(blocker) is None, "an explicit NUMBA_CACHE_DIR is left alone"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert _prepare_numba_cache(tmp_path) is None and (tmp_path / "__pycache__").is_dir()


def test_vectorised_exp_is_within_one_ulp_and_clamped():
    """The compositing kernels' float32 exp(-s) (a polynomial that vectorises) against float64 libm exp."""
    import numpy as np
    from numba import njit

    from render import _cpu

    k = _cpu.kernels()
    exp_neg = k._exp_neg

    @njit
    def run(s, s_lim, out):
        for i in range(s.size):
            out[i] = exp_neg(s[i], s_lim)

    s = np.concatenate([np.linspace(0, 87, 400_001), np.random.default_rng(0).uniform(0, 6, 100_000)]).astype(
        np.float32
    )
    got = np.empty_like(s)
    run(s, np.float32(k.EXP_ARG_MAX), got)
    want = np.exp(-s.astype(np.float64)).astype(np.float32)
    assert (np.abs(got - want) <= np.spacing(want)).all(), "more than 1 ulp from exp"
    ends = np.array([-3.0, 0.0, 2.0, 9.0], np.float32)
    got = np.empty_like(ends)
    run(ends, np.float32(2.0), got)  # clamped to [0, s_lim]: exp(-s_lim) beyond it
    assert got[0] == got[1] == 1.0 and got[2] == got[3] == np.float32(math.exp(-2.0))
