"""The raster-image splat path: render.rasterize colour + depth composited with the GL mesh layer."""

from __future__ import annotations

import numpy as np
import pytest

from render.gl import Renderer, RenderSettings, intrinsics_from_fov, look_at, plane_mesh
from scenes import Splats
from tests.render.gl_support import ctx_fixture, gl_context_fixture, psnr, reference_render, save_artifact  # noqa: F401
from tests.render.test_gl_splats import _random_splats

W, H = 128, 96


def _backends() -> list[str]:
    from render.rasterize import available_backends

    return [b for b in available_backends() if b != "gsplat"]  # CPU tensors here


@pytest.fixture(params=_backends())
def raster_backend(request) -> str:
    if request.param == "cpu":
        try:
            from render import _cpu  # noqa: F401
        except ImportError as exc:
            pytest.skip(f"render.rasterize cpu backend not importable yet: {exc}")
    return request.param


def test_gl_splats_match_render_rasterize(ctx, raster_backend):
    import torch

    from render.rasterize import rasterize

    splats = _random_splats(200, 3, seed=11)
    viewmat = look_at([-0.5, -3.0, 1.5], [0, 0, 0])
    K = intrinsics_from_fov(W, H, 55)
    with Renderer(ctx, W, H) as r:
        r.set_splats(splats)
        frame = r.render_frame(viewmat, K)
    t = splats.to_torch()
    result = rasterize(
        t["means"], t["quats"], t["scales"], t["opacities"], t["sh"],
        torch.tensor(viewmat, dtype=torch.float32)[None], torch.tensor(K, dtype=torch.float32)[None], W, H,
        sh_degree=3, backend=raster_backend,
    )  # fmt: skip
    ref = result.colors[0].numpy()
    save_artifact(f"gl_vs_rasterize_{raster_backend}", np.concatenate([frame.color, ref], axis=1))
    value = psnr(frame.color, ref)
    assert value >= 30.0, f"PSNR {value:.1f} dB against render.rasterize({raster_backend!r})"
    assert value >= 45.0, f"PSNR {value:.1f} dB: the same formulas should agree far beyond the 30 dB target"


@pytest.mark.parametrize("occlusion", ["limit", "depth_test"])
def test_raster_path_composites_with_meshes_like_the_gl_path(ctx, raster_backend, occlusion):
    splats = _random_splats(150, 1, seed=5)
    viewmat = look_at([0.4, -3.2, 1.3], [0, 0, 0])
    K = intrinsics_from_fov(W, H, 55)
    frames = {}
    for path in ("gl", "raster"):
        settings = RenderSettings(splat_path=path, raster_backend=raster_backend, raster_occlusion=occlusion)
        with Renderer(ctx, W, H, settings) as r:
            r.set_splats(splats)
            r.add_mesh(plane_mesh((1.0, 4.0), (0, 0, 0.1), color=(0.2, 0.8, 0.3)))
            frames[path] = r.render_frame(viewmat, K)
    save_artifact(
        f"raster_vs_gl_{raster_backend}_{occlusion}", np.concatenate([frames["gl"].color, frames["raster"].color], 1)
    )
    value = psnr(frames["gl"].color, frames["raster"].color)
    # the depth limit cuts splats exactly as the GL depth test does; the expected-depth test is per pixel
    assert value >= (45.0 if occlusion == "limit" else 25.0), f"PSNR {value:.1f} dB"
    np.testing.assert_array_equal(frames["gl"].mesh_depth, frames["raster"].mesh_depth)


@pytest.mark.parametrize("occlusion", ["limit", "depth_test"])
def test_raster_path_mesh_in_front_hides_splat(ctx, raster_backend, occlusion):
    z, s, o = 3.0, 0.3, 0.95
    splats = Splats.from_activated([[0, 0, z]], [[1, 0, 0, 0]], [[s] * 3], [o], [[0, 1, 0]])
    K = np.array([[110.0, 0, W / 2], [0, 110.0, H / 2], [0, 0, 1]])
    # no shadow map: the default light shines from +z, so the blue quad would shadow the splat
    settings = RenderSettings(
        splat_path="raster", raster_backend=raster_backend, raster_occlusion=occlusion, shadows=False
    )
    with Renderer(ctx, W, H, settings) as r:
        r.set_splats(splats)
        r.add_mesh(plane_mesh((2, 4), (-1, 0, 2), color=(1, 0, 0), lit=False))
        r.add_mesh(plane_mesh((4, 4), (2, 0, 4), color=(0, 0, 1), lit=False))
        frame = r.render_frame(np.eye(4), K)
    ref, ref_alpha = reference_render(
        splats.means, splats.unit_quats, splats.scales, splats.opacities, splats.sh, np.eye(4), K, W, H
    )
    xs = np.arange(W) + 0.5
    left, right = xs < K[0, 2] - 1, xs > K[0, 2] + 1
    np.testing.assert_allclose(frame.color[:, left], np.broadcast_to([1, 0, 0], frame.color[:, left].shape), atol=1e-3)
    expected = ref[:, right] + (1 - ref_alpha[:, right, None]) * [0, 0, 1]
    np.testing.assert_allclose(frame.color[:, right], expected, atol=3e-3)


def test_gl_splats_match_render_rasterize_on_a_real_trained_splat(ctx, shared_data):
    import torch

    from render.rasterize import rasterize
    from scenes.formats import read_splats

    path = shared_data / "splats" / "donut_fused.ply"
    if not path.exists():
        pytest.skip(f"{path} not found")
    splats = read_splats(path)
    try:
        from render import _cpu  # noqa: F401

        backend = "cpu"
    except ImportError:  # the exact reference is slow: a random fifth of the splats
        backend = "reference"
        splats = splats.subset(np.random.default_rng(0).choice(len(splats), len(splats) // 5, replace=False))
    center = np.median(splats.means, axis=0)
    viewmat = look_at(center + [0.12, -0.2, 0.15], center)
    K = intrinsics_from_fov(W, H, 50)
    with Renderer(ctx, W, H) as r:
        r.set_splats(splats)
        frame = r.render_frame(viewmat, K)
    t = splats.to_torch()
    result = rasterize(
        t["means"], t["quats"], t["scales"], t["opacities"], t["sh"],
        torch.tensor(viewmat, dtype=torch.float32)[None], torch.tensor(K, dtype=torch.float32)[None], W, H,
        sh_degree=splats.sh_degree, backend=backend,
    )  # fmt: skip
    ref = result.colors[0].numpy()
    save_artifact(f"donut_gl_vs_rasterize_{backend}", np.concatenate([frame.color, ref], axis=1))
    assert frame.alpha.mean() > 0.2  # the donut fills a good part of the view
    value = psnr(frame.color, ref)
    assert value >= 30.0, f"PSNR {value:.1f} dB against render.rasterize({backend!r}) on {len(splats)} real splats"
