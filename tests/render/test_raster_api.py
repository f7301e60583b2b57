"""The front door: public names, backend selection, input validation, empty inputs, result object."""

from __future__ import annotations

import dataclasses
import importlib
import logging

import pytest
import torch

import render
from render import BACKEND_ENV, RasterOptions, RasterResult, available_backends
from scenes.errors import BackendError, ShapeError
from tests.render._raster_scenes import random_scene
from tests.render._raster_scenes import render as run

CPU_BACKENDS = [b for b in ("cpu", "reference") if b in available_backends()]


def test_public_names_do_not_vanish():
    for name in ("rasterize", "RasterResult", "RasterOptions", "available_backends", "BACKEND_ENV", "eval_sh",
                 "sh_basis", "sh_to_color"):  # fmt: skip
        assert name in render.__all__ and hasattr(render, name), name
    assert "reference" in available_backends()


def test_import_render_stays_light():
    import subprocess
    import sys

    code = "import sys, render; print('numba' in sys.modules, 'gsplat' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"], "render must not import numba or gsplat until a backend runs"


# ------------------------------------------------------------------------------------------ backends
def test_unavailable_backend_lists_the_available_ones(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    scene = random_scene(n=5, cameras=1)
    if "gsplat" not in available_backends():
        with pytest.raises(BackendError, match=r"'gsplat' is not available here; available: .*reference"):
            run(scene, "gsplat")
    with pytest.raises(BackendError, match=r"backend: must be one of gsplat, cpu, reference; got 'vulkan'"):
        run(scene, "vulkan")


def test_backend_from_environment_variable(monkeypatch):
    scene = random_scene(n=20, cameras=1)
    monkeypatch.setenv(BACKEND_ENV, "reference")
    assert run(scene, None)[0].backend == "reference"
    if "cpu" in available_backends():
        assert run(scene, "cpu")[0].backend == "cpu", "an explicit backend wins over the environment"
    monkeypatch.setenv(BACKEND_ENV, "metal")
    with pytest.raises(BackendError, match=f"{BACKEND_ENV}: must be one of .*got 'metal'"):
        run(scene, None)


@pytest.mark.skipif("cpu" not in available_backends(), reason="numba not installed")
def test_auto_selection_picks_cpu_for_cpu_tensors_and_logs_it(monkeypatch, caplog):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setattr(importlib.import_module("render.rasterize"), "_logged", set())
    with caplog.at_level(logging.INFO, logger="render.rasterize"):
        res, _ = run(random_scene(n=20, cameras=1), None)
    assert res.backend == "cpu"
    assert any("'cpu' backend" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_gsplat_needs_cuda_tensors():
    with pytest.raises(BackendError, match="gsplat"):
        run(random_scene(n=5, cameras=1), "gsplat")


def test_absgrad_is_refused_by_the_reference():
    with pytest.raises(BackendError, match="absgrad: the reference backend"):
        run(random_scene(n=5, cameras=1), "reference", options=RasterOptions(absgrad=True))


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("means", torch.zeros(7, 2), r"means: expected shape \[N, 3\], got \(7, 2\)"),
        ("quats", torch.ones(7, 3), r"quats: expected shape \[N, 4\] = \(7, 4\), got \(7, 3\)"),
        ("scales", torch.ones(6, 3), r"scales: expected shape \[N, 3\] = \(7, 3\), got \(6, 3\)"),
        ("opacities", torch.ones(7, 1), r"opacities: expected shape \[N\] = \(7,\), got \(7, 1\)"),
        ("colors", torch.ones(7, 4), r"colors: expected shape \[N, 3\] \(or SH \[N, K, 3\]\) = \(7, 3\), got \(7, 4\)"),
        ("colors", torch.ones(7, 5, 3), r"colors: 5 SH coefficients per channel is not 1, 4, 9 or 16"),
        ("viewmats", torch.eye(4)[None, :3], r"viewmats: expected shape \[C, 4, 4\], got \(1, 3, 4\)"),
        ("Ks", torch.eye(3).repeat(2, 1, 1), r"Ks: expected shape \[C, 3, 3\] \(one per viewmat\) = \(1, 3, 3\)"),
        ("backgrounds", torch.ones(2, 3), r"backgrounds: expected shape \[C, 3\] = \(1, 3\), got \(2, 3\)"),
        ("depth_limit", torch.ones(1, 5, 5), r"depth_limit: expected shape \[C, H, W\] = \(1, 48, 64\)"),
        (
            "quats",
            torch.ones(7, 4, dtype=torch.float64),
            r"quats: expected dtype torch.float32 on cpu like means, got ",
        ),
        ("means", torch.zeros(7, 3, dtype=torch.float16), r"means: expected float32 or float64, got torch.float16"),
    ],
)
def test_wrong_shapes_and_dtypes_name_the_field(field, value, match):
    scene = random_scene(n=7, cameras=1)
    scene[field] = value
    with pytest.raises(ShapeError, match=match):
        run(scene, "reference")


@pytest.mark.parametrize(
    ("field", "rows", "bad", "match"),
    [
        (
            "means",
            [2, 5],
            float("nan"),
            r"means: 2 non-finite value\(s\) \(NaN/inf\) in 2 splat\(s\), first at index 2",
        ),
        ("scales", [4], float("inf"), r"scales: 1 non-finite value\(s\) \(NaN/inf\) in 1 splat\(s\), first at index 4"),
        ("colors", [1, 1], float("-inf"), r"colors: 1 non-finite value\(s\)"),
        ("viewmats", [0], float("nan"), r"viewmats: 1 non-finite value\(s\) \(NaN/inf\) in 1 camera\(s\)"),
    ],
)
def test_nan_and_inf_are_counted_and_refused(field, rows, bad, match):
    scene = random_scene(n=9, cameras=1)
    t = scene[field].clone()
    for r in dict.fromkeys(rows):
        t[r].view(-1)[0] = bad
    scene[field] = t
    for backend in CPU_BACKENDS:
        with pytest.raises(ShapeError, match=match):
            run(scene, backend)
    if field == "means":  # ShapeError is a ValueError
        with pytest.raises(ValueError, match="non-finite"):
            run(scene, "reference")


def test_zero_quaternion_and_bad_options_are_refused():
    scene = random_scene(n=6, cameras=1)
    scene["quats"] = scene["quats"].clone()
    scene["quats"][3] = 0.0
    with pytest.raises(ShapeError, match=r"quats: 1 zero-length quaternion\(s\), first at index 3"):
        run(scene, "reference")
    ok = random_scene(n=6, cameras=1)
    with pytest.raises(ValueError, match=r"render_mode: must be one of RGB, D, ED, RGB\+D, RGB\+ED; got 'rgb'"):
        run(ok, "reference", render_mode="rgb")
    with pytest.raises(ValueError, match=r"rasterize_mode: must be one of classic, antialiased; got 'aa'"):
        run(ok, "reference", rasterize_mode="aa")
    with pytest.raises(ValueError, match=r"width: expected a non-negative integer number of pixels, got -3"):
        run(ok | {"width": -3}, "reference")
    with pytest.raises(ValueError, match=r"near_plane, far_plane: need 0 < near_plane < far_plane"):
        run(ok, "reference", near_plane=0.0)
    sh = random_scene(n=6, cameras=1, sh_degree=1)
    with pytest.raises(ShapeError, match=r"colors: sh_degree=2 needs 9 coefficients, got 4"):
        run(sh, "reference", sh_degree=2)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_unit_quaternions_are_normalised(backend):
    scene = random_scene(n=80, width=40, height=30, cameras=1)
    unit = scene | {"quats": scene["quats"] / scene["quats"].norm(dim=-1, keepdim=True)}
    scaled = scene | {"quats": unit["quats"] * torch.linspace(0.01, 50.0, 80)[:, None]}
    a, ga = run(unit, backend, grad=True)
    b, gb = run(scaled, backend, grad=True)
    assert torch.allclose(a.colors, b.colors, atol=1e-6)
    assert torch.allclose(ga["means"], gb["means"], rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ empty inputs
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_scene_gives_the_background(backend):
    scene = random_scene(n=0, width=8, height=6, cameras=2)
    res, grads = run(scene, backend, grad=True, render_mode="RGB+D")
    assert res.colors.shape == (2, 6, 8, 3) and res.depths.shape == (2, 6, 8, 1)
    assert torch.equal(res.colors, scene["backgrounds"][:, None, None, :].expand(2, 6, 8, 3))
    assert (res.alphas == 0).all() and (res.depths == 0).all() and (res.splat_ids == -1).all()
    assert res.means2d.shape == (2, 0, 2) and res.radii.shape == (2, 0, 2)
    weights = torch.rand((2, 6, 8, 3), generator=torch.Generator().manual_seed(123))  # the loss render() uses
    assert torch.allclose(grads["backgrounds"], weights.sum((1, 2))), "d loss / d background = sum of the weights"
    assert res.means2d.requires_grad, "result.means2d.retain_grad() keeps working on an empty scene"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(("w", "h"), [(0, 10), (10, 0), (0, 0)])
def test_zero_size_image(backend, w, h):
    scene = random_scene(n=20, cameras=2) | {"width": w, "height": h}
    res, _ = run(scene, backend)
    assert res.colors.shape == (2, h, w, 3) and res.alphas.shape == (2, h, w, 1)
    assert res.splat_ids.shape == (2, h, w) and res.radii.shape == (2, 20, 2)


# ------------------------------------------------------------------------------------------ result object
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_result_shapes_per_render_mode_and_frozen(backend):
    scene = random_scene(n=30, width=20, height=12, cameras=2)
    for mode, has_rgb, has_depth in [("RGB", True, False), ("D", False, True), ("ED", False, True),
                                     ("RGB+D", True, True), ("RGB+ED", True, True)]:  # fmt: skip
        res, _ = run(scene, backend, render_mode=mode)
        assert isinstance(res, RasterResult) and res.backend == backend
        assert (res.colors is not None) == has_rgb and (res.depths is not None) == has_depth, mode
        if has_rgb:
            assert res.colors.shape == (2, 12, 20, 3)
        if has_depth:
            assert res.depths.shape == (2, 12, 20, 1)
        assert res.alphas.shape == (2, 12, 20, 1) and res.means2d.shape == (2, 30, 2)
        assert res.radii.dtype == torch.int32 and res.splat_ids.dtype == torch.int64
    without_ids, _ = run(scene, backend, options=RasterOptions(splat_ids=False))
    assert without_ids.splat_ids is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.colors = None
