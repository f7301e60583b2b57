"""Mesh shadows on splats: a box above a floor made of splats darkens the splats where geometry says."""

from __future__ import annotations

import numpy as np
import pytest

from render.gl import Renderer, RenderSettings, box_mesh, intrinsics_from_fov, look_at, plane_mesh
from scenes import Splats
from scenes.scene import Light
from tests.render.gl_support import ctx_fixture, floor_pixels, gl_context_fixture, save_artifact  # noqa: F401

W, H = 160, 120


def _splat_floor(spacing: float = 0.05) -> Splats:
    """Flat grey splats tiling z = 0 over [-2.8, 2.8] x [-1.9, 1.9], overlapping so the floor is opaque."""
    xs = np.arange(-2.8, 2.8 + 1e-9, spacing)
    ys = np.arange(-1.9, 1.9 + 1e-9, spacing)
    gx, gy = np.meshgrid(xs, ys)
    n = gx.size
    means = np.stack([gx.ravel(), gy.ravel(), np.zeros(n)], 1)
    return Splats.from_activated(
        means=means,
        quats=np.tile([1.0, 0, 0, 0], (n, 1)),
        scales=np.tile([0.6 * spacing, 0.6 * spacing, 0.002], (n, 1)),
        opacities=np.full(n, 0.9),
        colors=np.tile([0.6, 0.55, 0.5], (n, 1)),
    )


@pytest.mark.parametrize("path", ["gl", "cpu", "raster"])
def test_box_above_splat_floor_shadows_the_splats_where_geometry_says(ctx, path):
    # light at 45 degrees towards +X: a box [-0.25, 0.25]^2 x [1.0, 1.5] shadows x in [-1.75, -0.75], |y| < 0.25
    light = Light(direction=(1.0, 0.0, 1.0), color=(1, 1, 1), intensity=0.5, ambient=(0.2, 0.2, 0.2))
    factor = 0.2 / (0.2 + 0.5)  # (ambient + sun * 0) / (ambient + sun): the sun's share removed
    viewmat = look_at([0.0, -0.01, 6.0], [0, 0, 0])
    K = intrinsics_from_fov(W, H, 50)
    floor = _splat_floor()
    frames = {}
    for shadows in (True, False):
        settings = RenderSettings(splat_path=path, shadows=shadows, raster_backend="cpu" if path == "raster" else None)
        with Renderer(ctx, W, H, settings) as r:
            r.light = light
            r.set_splats(floor)
            r.add_mesh(box_mesh((0.5, 0.5, 0.5), (0, 0, 1.25), color=(0.9, 0.3, 0.2)))
            frames[shadows] = r.render_frame(viewmat, K)
    lit, dark = frames[False], frames[True]
    save_artifact(f"splat_floor_shadow_{path}", np.concatenate([dark.color, lit.color], axis=1))
    pts, u, v, _ = floor_pixels(viewmat, K, W, H, 2.7, 1.8, 55, 37)  # world points on the floor, as pixels
    sees_floor = ~np.isfinite(dark.mesh_depth[v, u])  # not hidden by the box
    in_shadow = (pts[:, 0] > -1.75) & (pts[:, 0] < -0.75) & (np.abs(pts[:, 1]) < 0.25)
    margin = 0.15  # clear of the shadow's edge (splat footprints, PCF blur, pixel rounding)
    far_from_edge = (np.abs(pts[:, 0] + 1.75) > margin) & (np.abs(pts[:, 0] + 0.75) > margin)
    far_from_edge &= np.abs(np.abs(pts[:, 1]) - 0.25) > margin
    check = sees_floor & far_from_edge
    assert (check & in_shadow).sum() >= 5 and (check & ~in_shadow).sum() >= 100
    base = lit.color[v, u]
    assert (base > 0.3).all(axis=1)[check].all(), "the splat floor should be drawn and opaque enough"
    np.testing.assert_allclose(dark.color[v, u][check & in_shadow], factor * base[check & in_shadow], atol=2e-3)
    np.testing.assert_allclose(dark.color[v, u][check & ~in_shadow], base[check & ~in_shadow], atol=2e-3)
    # the splats' coverage is unchanged: shadows scale colour, never alpha
    np.testing.assert_allclose(dark.alpha, lit.alpha, atol=1e-5)


def test_splat_square_above_a_mesh_plane_casts_its_shadow_where_geometry_says(ctx):
    # opaque flat splats tiling [-0.25, 0.25]^2 at z = 1.25, light at 45 degrees towards +X: the
    # plane z = 0 is in shadow for x in [-1.5, -1.0], |y| < 0.25 (the mesh test's box top, made of splats)
    from render.gl import plane_mesh

    albedo = np.array([0.8, 0.8, 0.8])
    light = Light(direction=(1.0, 0.0, 1.0), color=(1, 1, 1), intensity=0.5, ambient=(0.2, 0.2, 0.2))
    lit_value = albedo * (0.2 + 0.5 * np.cos(np.radians(45)))
    shadowed_value = albedo * 0.2
    step = 0.02
    g = np.arange(-0.25 + step / 2, 0.25, step)
    gx, gy = np.meshgrid(g, g)
    n = gx.size
    roof = Splats.from_activated(
        means=np.stack([gx.ravel(), gy.ravel(), np.full(n, 1.25)], 1),
        quats=np.tile([1.0, 0, 0, 0], (n, 1)),
        scales=np.tile([0.6 * step, 0.6 * step, 0.002], (n, 1)),
        opacities=np.full(n, 0.98),
        colors=np.tile([0.2, 0.4, 0.9], (n, 1)),
    )
    viewmat = look_at([0.0, -0.01, 6.0], [0, 0, 0])
    K = intrinsics_from_fov(W, H, 50)
    frames = {}
    for cast in (True, False):
        with Renderer(ctx, W, H, RenderSettings(splat_shadow_casting=cast)) as r:
            r.light = light
            r.set_splats(roof)
            r.add_mesh(plane_mesh((6, 4), color=albedo))
            frames[cast] = r.render_frame(viewmat, K)
    frame = frames[True]
    save_artifact("splat_roof_shadow", np.concatenate([frame.color, frames[False].color], axis=1))
    pts, u, v, _ = floor_pixels(viewmat, K, W, H, 2.8, 1.9, 57, 39)
    open_sky = frame.alpha[v, u] >= 1.0 - 1e-6  # plane pixels not covered by the splats themselves
    open_sky &= (np.abs(pts[:, 0]) > 0.5) | (np.abs(pts[:, 1]) > 0.5)
    in_shadow = (pts[:, 0] > -1.5) & (pts[:, 0] < -1.0) & (np.abs(pts[:, 1]) < 0.25)
    margin = 0.1
    far_from_edge = (np.abs(pts[:, 0] + 1.5) > margin) & (np.abs(pts[:, 0] + 1.0) > margin)
    far_from_edge &= np.abs(np.abs(pts[:, 1]) - 0.25) > margin
    check = open_sky & far_from_edge
    colors = frame.color[v, u]
    assert (check & in_shadow).sum() >= 5 and (check & ~in_shadow).sum() >= 100
    np.testing.assert_allclose(
        colors[check & in_shadow], np.broadcast_to(shadowed_value, (int((check & in_shadow).sum()), 3)), atol=3e-3
    )
    np.testing.assert_allclose(
        colors[check & ~in_shadow], np.broadcast_to(lit_value, (int((check & ~in_shadow).sum()), 3)), atol=3e-3
    )
    # the roof does not shadow itself (its own depth in the map is behind the bias)
    roof_px = (K[:2, :2] @ (np.array([[-0.2, -0.2], [0.2, 0.2]]).T / (6.0 - 1.25)) + K[:2, 2:]).T.astype(int)
    (x0, y0), (x1, y1) = roof_px.min(0), roof_px.max(0)
    np.testing.assert_allclose(frame.color[y0:y1, x0:x1], frames[False].color[y0:y1, x0:x1], atol=2e-3)
    assert frame.alpha[y0:y1, x0:x1].min() > 0.95
    # without casting, the plane is lit everywhere the splats leave open
    np.testing.assert_allclose(
        frames[False].color[v, u][check], np.broadcast_to(lit_value, (int(check.sum()), 3)), atol=3e-3
    )


def test_splat_shadow_casting_needs_the_gl_path():
    from scenes.errors import BackendError

    with pytest.raises(BackendError, match="splat_shadow_casting"):
        RenderSettings(splat_path="cpu", splat_shadow_casting=True)


@pytest.mark.parametrize("path", ["cpu", "raster"])
def test_cached_shadow_factors_follow_a_moved_box_and_a_turned_light(ctx, path):
    """The cpu/raster paths reuse per-splat shadow factors while nothing that shades them changes; moving
    the box or turning the light must give the frame a fresh renderer gives for the new state."""
    light0 = Light(direction=(1.0, 0.0, 1.0), color=(1, 1, 1), intensity=0.5, ambient=(0.2, 0.2, 0.2))
    light1 = Light(direction=(-0.5, 0.5, 1.0), color=(1, 1, 1), intensity=0.5, ambient=(0.2, 0.2, 0.2))
    viewmat = look_at([0.0, -0.01, 6.0], [0, 0, 0])
    K = intrinsics_from_fov(W, H, 50)
    floor = _splat_floor()
    settings = RenderSettings(splat_path=path, raster_backend="cpu" if path == "raster" else None)

    def fresh(light, box_at):
        with Renderer(ctx, W, H, settings) as r:
            r.light = light
            r.set_splats(floor)
            r.add_mesh(plane_mesh((8.0, 8.0), (0.0, 0.0, -0.5)))
            r.add_mesh(box_mesh((0.5, 0.5, 0.5), box_at, color=(0.9, 0.3, 0.2)))
            return r.render_frame(viewmat, K).color

    with Renderer(ctx, W, H, settings) as r:
        r.light = light0
        r.set_splats(floor)
        r.add_mesh(plane_mesh((8.0, 8.0), (0.0, 0.0, -0.5)))  # under the splat floor: fixes the shadow map's bounds
        box = r.add_mesh(box_mesh((0.5, 0.5, 0.5), (0, 0, 1.25), color=(0.9, 0.3, 0.2)))
        first = r.render_frame(viewmat, K).color
        np.testing.assert_allclose(r.render_frame(viewmat, K).color, first, atol=1e-6)
        model = np.eye(4)
        model[:3, 3] = (0.8, 0.4, 0.0)  # the box's mesh is centred at (0, 0, 1.25): now at (0.8, 0.4, 1.25)
        r.set_mesh_model(box, model)
        moved = r.render_frame(viewmat, K).color
        r.light = light1
        turned = r.render_frame(viewmat, K).color
    want_moved = fresh(light0, (0.8, 0.4, 1.25))
    want_turned = fresh(light1, (0.8, 0.4, 1.25))
    assert np.abs(moved - first).max() > 0.1  # the shadow really moved
    # a posed mesh vs one built in place differ by float rounding in the shadow map (~3e-5); a stale cache by > 0.1
    np.testing.assert_allclose(moved, want_moved, atol=1e-3)
    np.testing.assert_allclose(turned, want_turned, atol=1e-3)
    assert np.abs(turned - moved).max() > 0.1
