"""GL splat path on a headless EGL context: analytic footprints, blending order, sorting, and agreement
with an independent rasterizer on the same scene and camera."""

from __future__ import annotations

import numpy as np
import pytest

from render.gl import Renderer, RenderSettings, box_mesh, intrinsics_from_fov, look_at, plane_mesh
from render.gl.camera import camera_center
from scenes import Splats
from tests.render.gl_support import ctx_fixture, gl_context_fixture, psnr, reference_render, save_artifact  # noqa: F401

W, H = 160, 120


def _K(width=W, height=H, f=140.0):
    # principal point on a pixel centre so that a splat on the optical axis projects onto one
    return np.array([[f, 0, width / 2 + 0.5], [0, f, height / 2 + 0.5], [0, 0, 1.0]])


def _random_splats(n: int, degree: int, seed: int) -> Splats:
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    sh = np.zeros((n, k, 3), np.float32)
    sh[:, 0] = (rng.uniform(0.05, 0.95, (n, 3)) - 0.5) / 0.28209479177387814
    sh[:, 1:] = rng.normal(0, 0.3, (n, k - 1, 3))
    return Splats.from_activated(
        means=rng.uniform(-1, 1, (n, 3)) * [1.0, 1.0, 0.6],
        quats=rng.normal(size=(n, 4)),
        scales=np.exp(rng.uniform(np.log(0.02), np.log(0.25), (n, 3))),
        opacities=rng.uniform(0.05, 0.99, n),
        sh=sh,
    )


def test_single_isotropic_splat_matches_analytic_gaussian(ctx):
    # One isotropic splat on the optical axis: alpha = o exp(-|p - c|^2 / (2 ((f s / z)^2 + 0.3))).
    z, s, o, color = 4.0, 0.05, 0.8, np.array([0.9, 0.6, 0.3])
    splats = Splats.from_activated([[0, 0, z]], [[1, 0, 0, 0]], [[s, s, s]], [o], color[None])
    K = _K()
    with Renderer(ctx, W, H) as r:
        r.set_splats(splats)
        frame = r.render_frame(np.eye(4), K)
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    var = (K[0, 0] * s / z) ** 2 + 0.3
    d2 = (xs - K[0, 2]) ** 2 + (ys - K[1, 2]) ** 2
    alpha = np.minimum(0.999, o * np.exp(-0.5 * d2 / var))
    alpha[alpha < 1 / 255] = 0
    save_artifact("single_splat", frame.color)
    np.testing.assert_allclose(frame.alpha, alpha, atol=2e-3)
    np.testing.assert_allclose(frame.color, alpha[..., None] * color, atol=2e-3)
    assert frame.alpha[int(K[1, 2]), int(K[0, 2])] == pytest.approx(o, abs=1e-3)


@pytest.mark.parametrize("swap", [False, True])
def test_blending_order_follows_depth_not_upload_order(ctx, swap):
    # red at z=2 in front of blue at z=3, both opacity 0.9: centre = 0.9 red + 0.1 * 0.9 blue
    zs = [3.0, 2.0] if swap else [2.0, 3.0]
    splats = Splats.from_activated(
        means=[[0, 0, zs[0]], [0, 0, zs[1]]],
        quats=[[1, 0, 0, 0]] * 2,
        scales=[[0.1] * 3, [0.15] * 3],
        opacities=[0.9, 0.9],
        colors=[[1, 0, 0], [0, 0, 1]],
    )
    K = _K()
    with Renderer(ctx, W, H) as r:
        r.set_splats(splats)
        frame = r.render_frame(np.eye(4), K)
    save_artifact(f"blend_order_swap{int(swap)}", frame.color)
    front, back = (
        (np.array([0, 0, 1.0]), np.array([1.0, 0, 0])) if swap else (np.array([1.0, 0, 0]), np.array([0, 0, 1.0]))
    )
    expected = 0.9 * front + 0.1 * 0.9 * back
    np.testing.assert_allclose(frame.color[int(K[1, 2]), int(K[0, 2])], expected, atol=2e-3)
    assert frame.alpha[int(K[1, 2]), int(K[0, 2])] == pytest.approx(0.99, abs=2e-3)


@pytest.mark.parametrize("degree", [0, 3])
@pytest.mark.parametrize(("path", "alpha_atol"), [("gl", 0.02), ("cpu", 2e-3)])
def test_splat_paths_match_numpy_reference(ctx, degree, path, alpha_atol):
    splats = _random_splats(250, degree, seed=degree)
    viewmat = look_at([0.4, -3.2, 1.3], [0, 0, 0])
    K = intrinsics_from_fov(W, H, 55)
    bg = (0.1, 0.2, 0.3)
    with Renderer(ctx, W, H, RenderSettings(splat_path=path, background=bg)) as r:
        r.set_splats(splats)
        frame = r.render_frame(viewmat, K)
        if path == "cpu":
            assert r.splat_size == (W, H)
    ref, ref_alpha = reference_render(
        splats.means, splats.unit_quats, splats.scales, splats.opacities, splats.sh, viewmat, K, W, H, bg
    )
    save_artifact(f"{path}_vs_reference_deg{degree}", np.concatenate([frame.color, ref], axis=1))
    value = psnr(frame.color, ref)
    assert value >= 40.0, f"PSNR {value:.1f} dB"
    np.testing.assert_allclose(frame.alpha, ref_alpha, atol=alpha_atol)


def test_sort_is_redone_only_when_the_view_direction_turns(ctx):
    splats = _random_splats(200, 1, seed=7)
    K = intrinsics_from_fov(W, H, 55)
    eye, target = np.array([0.0, -3.0, 1.0]), np.zeros(3)
    with Renderer(ctx, W, H, RenderSettings(resort_angle_deg=1.0)) as r:
        r.set_splats(splats)
        r.render(look_at(eye, target), K)
        assert r.splat_layer.sort_count == 1
        # pure translation keeps every splat's depth order: no re-sort, and the image equals a fresh sort
        moved = look_at(eye, target)
        moved[:3, 3] += [0.3, -0.1, 0.5]
        stale = r.render_frame(moved, K)
        assert r.splat_layer.sort_count == 1
        r.splat_layer.sort(moved, force=True)
        fresh = r.render_frame(moved, K)
        np.testing.assert_array_equal(stale.color, fresh.color)
        # turning by 5 degrees re-sorts
        turned = look_at(eye, target + [np.tan(np.radians(5)) * 3.16, 0, 0])
        count = r.splat_layer.sort_count
        r.render(turned, K)
        assert r.splat_layer.sort_count == count + 1


def test_update_splats_equals_uploading_the_moved_splats(ctx):
    splats = _random_splats(150, 1, seed=3)
    K = intrinsics_from_fov(W, H, 55)
    viewmat = look_at([0, -3.0, 1.0], [0, 0, 0])
    shift = np.array([0.2, 0.0, -0.1], np.float32)
    q = np.array([np.cos(0.3), 0, 0, np.sin(0.3)], np.float32)  # 0.6 rad about +Z
    with Renderer(ctx, W, H) as r:
        r.set_splats(splats)
        r.render(viewmat, K)
        r.update_splats(means=splats.means + shift, quats=np.tile(q, (len(splats), 1)))
        moved = r.render_frame(viewmat, K)
        r.set_splats(splats.with_(means=splats.means + shift, quats=np.tile(q, (len(splats), 1))))
        fresh = r.render_frame(viewmat, K)
    np.testing.assert_array_equal(moved.color, fresh.color)
    assert camera_center(viewmat) == pytest.approx([0, -3.0, 1.0])


def test_empty_and_missing_splats_draw_the_background(ctx):
    with Renderer(ctx, 32, 24, RenderSettings(background=(0.25, 0.5, 0.75))) as r:
        r.set_splats(Splats.empty())
        frame = r.render_frame(np.eye(4), _K(32, 24, 30))
    np.testing.assert_allclose(frame.color, np.broadcast_to([0.25, 0.5, 0.75], (24, 32, 3)), atol=1e-3)
    assert (frame.alpha == 0).all() and np.isinf(frame.mesh_depth).all()


@pytest.mark.parametrize("n", [1, 1000, 4096])
def test_gpu_sort_orders_farthest_first_like_numpy(ctx, n):
    from render.gl.splat_layer import GLSplatLayer

    if ctx.version_code < 430:
        pytest.skip(f"GPU sort needs GL 4.3 compute shaders, the context has {ctx.version_code}")
    splats = _random_splats(n, 0, seed=n)
    viewmat = look_at([0.4, -3.2, 1.3], [0, 0, 0])
    layer = GLSplatLayer(ctx, sort="gpu")
    try:
        layer.set_splats(splats)
        assert layer.sort(viewmat)
        order = layer.sorted_order()
    finally:
        layer.release()
    z = splats.means @ viewmat[2, :3]
    np.testing.assert_array_equal(np.sort(order), np.arange(n))  # a permutation
    np.testing.assert_array_equal(z[order], np.sort(z)[::-1])  # farthest first, as numpy sorts


def test_gpu_and_cpu_sort_render_the_same_image(ctx):
    if ctx.version_code < 430:
        pytest.skip(f"GPU sort needs GL 4.3 compute shaders, the context has {ctx.version_code}")
    splats = _random_splats(300, 1, seed=2)
    viewmat = look_at([0.4, -3.2, 1.3], [0, 0, 0])
    K = intrinsics_from_fov(W, H, 55)
    frames = []
    for sort in ("cpu", "gpu"):
        with Renderer(ctx, W, H, RenderSettings(sort=sort)) as r:
            assert r.splat_layer.sort_mode == sort
            r.set_splats(splats)
            frames.append(r.render_frame(viewmat, K))
    np.testing.assert_array_equal(frames[0].color, frames[1].color)


def test_auto_sort_uses_the_cpu_on_a_software_renderer(ctx):
    from render.gl.splat_layer import is_software_renderer, resolve_sort_mode

    expected = "cpu" if is_software_renderer(ctx) or ctx.version_code < 430 else "gpu"
    assert resolve_sort_mode(ctx, "auto") == expected


def test_present_draws_the_frame_into_another_framebuffer(ctx):
    # what a window does: present() into its framebuffer (here an offscreen RGBA8 one) shows read()'s image
    splats = _random_splats(100, 0, seed=4)
    viewmat = look_at([0.4, -3.2, 1.3], [0, 0, 0])
    with Renderer(ctx, W, H) as r:
        r.set_splats(splats)
        frame = r.render_frame(viewmat, intrinsics_from_fov(W, H, 55))
        target_tex = ctx.texture((W, H), 4)
        target = ctx.framebuffer([target_tex])
        try:
            r.present(target)
            shown = np.frombuffer(target.read(components=3), np.uint8).reshape(H, W, 3)[::-1]
        finally:
            ctx.detect_framebuffer(0).use()  # never leave a released framebuffer bound
            target.release()
            target_tex.release()
    assert np.abs(shown.astype(int) - frame.to_uint8().astype(int)).max() <= 1


# ---------------------------------------------------------------------------------------- cpu splat path
def test_cpu_and_gl_paths_agree_with_a_mesh_in_front_and_after_moving(ctx):

    splats = _random_splats(300, 2, seed=11)
    viewmat = look_at([0.4, -3.2, 1.3], [0, 0, 0])
    K = intrinsics_from_fov(W, H, 55)
    shift = np.array([0.1, -0.05, 0.05], np.float32)
    q = np.array([np.cos(0.2), np.sin(0.2), 0, 0], np.float32)
    frames = {}
    for path in ("gl", "cpu"):
        with Renderer(ctx, W, H, RenderSettings(splat_path=path)) as r:
            r.set_splats(splats)
            r.add_mesh(box_mesh((0.8, 0.8, 0.8), (0.2, -1.0, 0.1)))  # hides part of the cloud
            r.render(viewmat, K)
            r.update_splats(means=splats.means + shift, quats=np.tile(q, (len(splats), 1)))
            frames[path] = r.render_frame(viewmat, K)
    save_artifact("cpu_vs_gl_mesh", np.concatenate([frames["gl"].color, frames["cpu"].color], axis=1))
    assert np.isfinite(frames["gl"].mesh_depth).mean() > 0.05
    value = psnr(frames["gl"].color, frames["cpu"].color)
    assert value >= 40.0, f"PSNR {value:.1f} dB"
    np.testing.assert_allclose(frames["gl"].alpha, frames["cpu"].alpha, atol=2e-3)


def _bilinear_upscale(img: np.ndarray, height: int, width: int) -> np.ndarray:  # GL LINEAR, clamp to edge
    h, w = img.shape[:2]
    y = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    x = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def test_cpu_path_at_half_internal_resolution_is_the_low_res_image_upscaled(ctx):
    from render.gl.cpu_splats import CPUSplatLayer

    splats = _random_splats(200, 1, seed=5)
    viewmat = look_at([0.4, -3.2, 1.3], [0, 0, 0])
    K = intrinsics_from_fov(W, H, 55)
    bg = np.array([0.2, 0.1, 0.0])
    with Renderer(ctx, W, H, RenderSettings(splat_path="cpu", splat_scale=0.5, background=tuple(bg))) as r:
        r.set_splats(splats)
        frame = r.render_frame(viewmat, K)
        assert r.splat_size == (W // 2, H // 2)
    layer = CPUSplatLayer()
    layer.set_splats(splats)
    low = layer.render(viewmat, np.diag([0.5, 0.5, 1.0]) @ K, W // 2, H // 2)  # the same view at half size
    up = _bilinear_upscale(low.astype(np.float64), H, W)
    expected = up[..., :3] + (1 - up[..., 3:]) * bg
    save_artifact("cpu_half_res", np.concatenate([frame.color, expected], axis=1))
    np.testing.assert_allclose(frame.alpha, up[..., 3], atol=4e-3)
    np.testing.assert_allclose(frame.color, expected, atol=4e-3)


def test_splat_budget_moves_the_internal_scale_within_its_bounds(ctx):
    splats = _random_splats(300, 0, seed=6)
    K = intrinsics_from_fov(W, H, 55)
    for budget, bound in ((1e-4, 0.25), (1e4, 1.0)):
        settings = RenderSettings(splat_path="cpu", splat_scale=0.6, splat_budget_ms=budget, min_splat_scale=0.25)
        with Renderer(ctx, W, H, settings) as r:
            r.set_splats(splats)
            for i in range(13):  # a moving camera: the budget governs moving frames
                r.render(look_at([0.4 + 0.01 * i, -3.2, 1.3], [0, 0, 0]), K)
            assert r.splat_scale == pytest.approx(bound)
            assert r.splat_size == (round(W * bound), round(H * bound))


def test_a_still_frame_is_refined_to_full_scale_then_reused(ctx):
    """With a budget, an unchanged frame is redrawn once at full scale (the image a scale-1 renderer gives),
    then reused; any change (camera, splats) goes back to the budgeted scale."""
    splats = _random_splats(300, 1, seed=7)
    K = intrinsics_from_fov(W, H, 55)
    view = look_at([0.4, -3.2, 1.3], [0, 0, 0])
    with Renderer(ctx, W, H, RenderSettings(splat_path="cpu")) as r:
        r.set_splats(splats)
        full = r.render_frame(view, K)
    settings = RenderSettings(splat_path="cpu", splat_scale=0.25, splat_budget_ms=1e-4, min_splat_scale=0.25)
    with Renderer(ctx, W, H, settings) as r:
        r.set_splats(splats)
        low = r.render_frame(view, K)
        assert r.splat_size == (W // 4, H // 4)
        still = r.render_frame(view, K)
        assert r.splat_size == (W, H)
        np.testing.assert_allclose(still.color, full.color, atol=1e-6)
        np.testing.assert_allclose(still.alpha, full.alpha, atol=1e-6)
        assert np.abs(low.color - full.color).max() > 0.05  # the refinement is visible
        r.cpu_splats.count, count = 0, r.cpu_splats.count  # a reused frame does not draw the splats again
        again = r.render_frame(view, K)
        r.cpu_splats.count = count
        np.testing.assert_array_equal(again.color, still.color)
        r.render(look_at([0.5, -3.2, 1.3], [0, 0, 0]), K)  # the camera moved
        assert r.splat_size == (W // 4, H // 4)
        r.update_splats(splats.means + np.float32(0.01), splats.quats)  # the splats moved
        r.render(look_at([0.5, -3.2, 1.3], [0, 0, 0]), K)
        assert r.splat_size == (W // 4, H // 4)


def test_bad_splat_scale_settings_name_the_field():
    from scenes.errors import ShapeError

    with pytest.raises(ShapeError, match="splat_scale"):
        RenderSettings(splat_path="cpu", splat_scale=1.5)
    with pytest.raises(ShapeError, match="splat_budget_ms"):
        RenderSettings(splat_path="cpu", splat_budget_ms=0.0)


@pytest.mark.parametrize("size", [(W // 2, H // 2), (W // 4, H // 4), (W // 3 + 1, H // 5)])
def test_internal_mesh_depth_is_the_nearest_full_size_pixel(ctx, size):
    """The cpu path samples the mesh depth for its internal grid on the GPU: the same pixels as indexing
    the full-size depth at each internal pixel centre."""
    w, h = size
    K = intrinsics_from_fov(W, H, 55)
    with Renderer(ctx, W, H, RenderSettings(splat_path="cpu")) as r:
        r.add_mesh(plane_mesh((4.0, 4.0), (0.0, 0.0, -0.3)))
        r.add_mesh(box_mesh((0.4, 0.3, 0.5), (0.3, 0.2, 0.1)))
        r.render(look_at([0.9, -2.7, 1.4], [0, 0, 0]), K)
        full = r._read_view_z()
        small = r._read_view_z_at(w, h)
    rows = np.minimum(((np.arange(h) + 0.5) * H / h).astype(np.int64), H - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * W / w).astype(np.int64), W - 1)
    assert np.isfinite(full).mean() > 0.3 and np.isinf(full).any()  # meshes and empty sky both present
    np.testing.assert_array_equal(small, full[rows[:, None], cols[None, :]])
