"""The CPU splat layer (render.gl.cpu_splats) against the cpu rasterization backend it mirrors: its
projection and SH bit for bit, its image to float rounding (with and without a depth limit), and the
renderer's CPU blend of the image against the GL composite it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from render.gl import Renderer, RenderSettings, box_mesh, intrinsics_from_fov, look_at
from scenes import Splats
from scenes.errors import ShapeError
from tests.render.gl_support import ctx_fixture, gl_context_fixture  # noqa: F401

W, H = 96, 72
F32 = np.float32


def _splats(n: int, degree: int, seed: int) -> Splats:
    """Sizes from sub-pixel to a third of the image, opacities down to below 1/255, some splats behind the
    camera or outside the view (culled)."""
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    sh = rng.normal(0, 0.4, (n, k, 3))
    sh[:, 0] += 1.0
    return Splats.from_activated(
        means=rng.uniform(-1, 1, (n, 3)) * [2.0, 2.0, 1.5],
        quats=rng.normal(size=(n, 4)),
        scales=np.exp(rng.uniform(np.log(0.003), np.log(0.3), (n, 3))),
        opacities=rng.uniform(0.002, 0.999, n),
        sh=sh,
    )


def _camera():
    return look_at([0.3, -3.0, 1.1], [0, 0, 0]).astype(F32), intrinsics_from_fov(W, H, 60).astype(F32)


def _kernels():
    from render.gl.cpu_splats import _kernels

    return _kernels()


def test_cpu_splat_projection_is_the_cpu_backends_bit_for_bit():
    from render._cpu import kernels

    k, ck = kernels(), _kernels()
    splats = _splats(203, 0, seed=1)
    viewmat, K = _camera()
    n, n_pad = len(splats), 208
    means, quats = np.array(splats.means, F32), np.ascontiguousarray(splats.quats, F32)
    scales, opac = np.array(splats.scales, F32), np.array(splats.opacities, F32)
    means[-1], scales[-1], opac[-1] = 0.0, 0.05, 0.9  # the last one in view: the padding lanes copy it
    means2d, conics = np.zeros((1, n, 2), F32), np.zeros((1, n, 3), F32)
    depths, opac_eff = np.zeros((1, n), F32), np.zeros((1, n), F32)
    radii, rects, pk = np.zeros((1, n, 2), np.int32), np.zeros((1, n, 4), np.int32), np.zeros((1, n, k.P_LEN), F32)
    k.project_fwd(means, quats, scales, opac, viewmat[None], K[None], W, H, 0.3, 0.01, 1e10, 0.0, False, 6, 5,
                  means2d, conics, depths, opac_eff, radii, rects, pk)  # fmt: skip
    cam = ck.camera_constants(viewmat, K, W, H, 0.3, 0.01, 1e10, 0.0)
    rec, depth, visible = np.zeros((n_pad, ck.PACK), F32), np.zeros(n_pad, F32), np.zeros(n_pad, np.int8)
    ck.project(means, quats, ck.splat_constants(scales, opac, n_pad), cam, rec, depth, visible)
    shown = radii[0, :, 0] > 0
    assert 0 < shown.sum() < n and shown[-1]  # some culled, most kept
    np.testing.assert_array_equal(visible[:n].astype(bool), shown)
    assert not visible[n:].any()
    pairs = [(k.P_MX, ck.P_U), (k.P_MY, ck.P_V), (k.P_CA, ck.P_CA), (k.P_CB, ck.P_CB), (k.P_CC, ck.P_CC),
             (k.P_OP, ck.P_O), (k.P_Z, ck.P_Z), (k.P_RX, ck.P_RX), (k.P_RY, ck.P_RY)]  # fmt: skip
    for a, b in pairs:
        np.testing.assert_array_equal(rec[:n][shown, b], pk[0, shown, a])
    np.testing.assert_array_equal(depth[:n][shown], depths[0, shown])
    smax, ca = pk[0, shown, k.P_SMAX], pk[0, shown, k.P_CA]
    np.testing.assert_array_equal(rec[:n][shown, ck.P_2SCA], (smax + smax) * ca)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_cpu_splat_sh_colors_are_sh_fwd_in_rest_frames_bit_for_bit(degree):
    from render._cpu import kernels

    k, ck = kernels(), _kernels()
    splats = _splats(101, degree, seed=2 + degree)
    n, n_pad, nk = len(splats), 104, (degree + 1) ** 2
    means, sh = np.ascontiguousarray(splats.means, F32), np.ascontiguousarray(splats.sh, F32)
    campos = np.array([0.3, -3.0, 1.1], F32)
    rng = np.random.default_rng(degree)
    body = rng.integers(-1, 3, n).astype(np.int64)
    rotations = np.linalg.qr(rng.normal(size=(3, 3, 3)))[0].astype(F32)
    coefs = np.zeros((nk * 3, n_pad), F32)
    coefs[:, :n] = sh.reshape(n, nk * 3).T
    for rotated in (False, True):
        points = means
        if rotated:
            points = np.empty_like(means)
            ck.rest_frame_points(means, campos, body, rotations, points)
        want = np.zeros((1, n, 3), F32)
        k.sh_fwd_parallel(points, sh, campos[None], degree, np.ones((1, n, 2), np.int32), want)
        rec = np.zeros((n_pad, ck.PACK), F32)
        ck.sh_colors(means, campos, body, rotations, rotated, degree, coefs.reshape(-1), np.empty((0, 3), F32), rec)
        np.testing.assert_array_equal(rec[:n, ck.P_R : ck.P_B + 1], want[0])
        assert not rec[:, : ck.P_R].any() and not rec[:, ck.P_B + 1 :].any()  # only the colours written
    shade = rng.uniform(0, 1, (n, 3)).astype(F32)
    ck.sh_colors(means, campos, body, rotations, True, degree, coefs.reshape(-1), shade, rec)
    np.testing.assert_array_equal(rec[:n, ck.P_R : ck.P_B + 1], want[0] * shade)


@pytest.mark.parametrize(("degree", "size"), [(0, (W, H)), (3, (W, H)), (3, (101, 37))])  # 101: not whole blocks
@pytest.mark.parametrize("with_limit", [False, True])
def test_cpu_splat_layer_image_matches_rasterize_cpu_backend(degree, size, with_limit):
    import torch

    from render.gl.cpu_splats import CPUSplatLayer
    from render.rasterize import rasterize

    w, h = size
    splats = _splats(400, degree, seed=10 + degree)
    viewmat, K = _camera()
    K = intrinsics_from_fov(w, h, 60).astype(F32)
    limit = None
    if with_limit:  # a wall at z = 3.2 over the right half, a nearer band across the middle
        limit = np.full((h, w), np.inf, F32)
        limit[:, w // 2 :] = 3.2
        limit[h // 3 : h // 2] = 2.6
    layer = CPUSplatLayer()
    layer.set_splats(splats)
    image = layer.render(viewmat, K, w, h, limit)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, F32))

    want = rasterize(t(splats.means), t(splats.unit_quats), t(splats.scales), t(splats.opacities), t(splats.sh),
                     t(viewmat)[None], t(K)[None], w, h, sh_degree=degree, backend="cpu",
                     depth_limit=None if limit is None else t(limit)[None])  # fmt: skip
    assert layer.last_visible < len(splats)
    assert (image[..., 3] > 0.5).mean() > 0.1  # a scene, not an empty image
    np.testing.assert_allclose(image[..., 3], want.alphas[0, ..., 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(image[..., :3], want.colors[0].numpy(), atol=1e-5)


def test_cpu_splat_layer_blended_over_a_framebuffer_is_the_image_over_it():
    from render.gl.cpu_splats import CPUSplatLayer, over_framebuffer

    splats = _splats(300, 1, seed=4)
    viewmat, K = _camera()
    layer = CPUSplatLayer()
    layer.set_splats(splats)
    rgba = layer.render(viewmat, K, W, H)
    under = np.random.default_rng(0).uniform(0, 1, (H, W, 4)).astype(F32)
    bg = (0.2, 0.3, 0.4, 0.0)
    for frame_under in (None, under):
        got = layer.render(viewmat, K, W, H, background=bg, under=frame_under)
        dst = np.broadcast_to(np.array(bg, F32), (H, W, 4)) if frame_under is None else frame_under[::-1]
        want = np.where(rgba[..., 3:] > 0, rgba + dst * (1 - rgba[..., 3:]), dst)[::-1]
        np.testing.assert_allclose(got, want, atol=1e-6)
        np.testing.assert_array_equal(got, over_framebuffer(rgba, frame_under, bg))
    with pytest.raises(ShapeError, match="under"):
        layer.render(viewmat, K, W, H, background=bg, under=under[:-1])


def _gl_composited(r: Renderer):
    """A stand-in for r.cpu_splats.render that blends the premultiplied image by the GL composite, then hands
    the frame back read (the renderer writes it again unchanged)."""
    cpu_render = r.cpu_splats.render

    def render(*args, background=None, under=None, **kwargs):
        r._composite_image(cpu_render(*args, **kwargs), None, None)
        return r._frame_colour(True)

    return render


def test_cpu_path_blend_on_the_cpu_equals_the_gl_composite(ctx):
    """At full scale the renderer blends the cpu layer's image into the frame on the CPU (meshes read back);
    the GL composite of the same image gives the same frame."""
    splats = _splats(300, 2, seed=5)
    viewmat, K = _camera()
    frames = {}
    for path in ("cpu_blend", "gl_composite"):
        with Renderer(ctx, W, H, RenderSettings(splat_path="cpu", background=(0.1, 0.2, 0.3))) as r:
            r.set_splats(splats)
            r.add_mesh(box_mesh((0.8, 0.8, 0.8), (0.2, -0.6, 0.1)))
            if path == "gl_composite":
                r.cpu_splats.render = _gl_composited(r)
            frames[path] = r.render_frame(viewmat, K)
    a, b = frames["cpu_blend"], frames["gl_composite"]
    assert np.isfinite(a.mesh_depth).mean() > 0.05
    np.testing.assert_allclose(a.color, b.color, atol=1e-6)
    np.testing.assert_allclose(a.alpha, b.alpha, atol=1e-6)


def test_cpu_splat_update_checks_its_input():
    from render.gl.cpu_splats import CPUSplatLayer

    splats = _splats(20, 0, seed=6)
    layer = CPUSplatLayer()
    layer.set_splats(splats)
    means, quats = np.array(splats.means), np.array(splats.quats)
    layer.update(means + 0.1, quats * 2.0)  # any length but zero
    np.testing.assert_array_equal(layer._quats, (quats * 2.0).astype(F32))
    with pytest.raises(ShapeError, match=r"means must be finite \[20, 3\]"):
        layer.update(means[:-1])
    bad = means.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ShapeError, match="1 NaN or inf"):
        layer.update(bad)
    zero = quats.copy()
    zero[[2, 5]] = 0
    with pytest.raises(ShapeError, match="2 zero-length quaternion"):
        layer.update(quats=zero)
