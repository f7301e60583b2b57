"""Meshes in the GL compositor: depth against splats, Lambert shading, shadow map geometry."""

from __future__ import annotations

import numpy as np
import pytest

from render.gl import Mesh, Renderer, RenderSettings, box_mesh, intrinsics_from_fov, load_mesh, look_at, plane_mesh
from scenes import Splats
from scenes.errors import ShapeError
from scenes.scene import Light
from tests.render.gl_support import ctx_fixture, floor_pixels, gl_context_fixture, save_artifact  # noqa: F401

W, H = 160, 120


def _K(f=140.0):
    return np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])


def test_mesh_in_front_occludes_splats_and_mesh_behind_is_covered(ctx):
    # identity camera: world = camera frame. A green splat at z=3 on the axis; an unlit red quad at
    # z=2 covers the left half of the image, an unlit blue quad at z=4 the right half.
    z, s, o = 3.0, 0.3, 0.95
    splats = Splats.from_activated([[0, 0, z]], [[1, 0, 0, 0]], [[s] * 3], [o], [[0, 1, 0]])
    K = _K()
    # no shadow map: the default light shines from +z, so the blue quad would shadow the splat
    # (tests/render/test_gl_splat_shadows.py checks splat shadows)
    with Renderer(ctx, W, H, RenderSettings(shadows=False)) as r:
        r.set_splats(splats)
        r.add_mesh(plane_mesh((2, 4), (-1, 0, 2), color=(1, 0, 0), lit=False))
        r.add_mesh(plane_mesh((4, 4), (2, 0, 4), color=(0, 0, 1), lit=False))
        frame = r.render_frame(np.eye(4), K)
    save_artifact("mesh_occlusion", frame.color)
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    var = (K[0, 0] * s / z) ** 2 + 0.3
    alpha = np.minimum(0.999, o * np.exp(-0.5 * ((xs - K[0, 2]) ** 2 + (ys - K[1, 2]) ** 2) / var))
    alpha[alpha < 1 / 255] = 0
    left, right = xs < K[0, 2] - 1, xs > K[0, 2] + 1
    # in front: the mesh hides the splat entirely, even at its centre
    np.testing.assert_allclose(frame.color[left], np.broadcast_to([1, 0, 0], frame.color[left].shape), atol=1e-3)
    np.testing.assert_allclose(frame.mesh_depth[left], 2.0, rtol=1e-5)
    # behind: the splat is blended over the mesh
    expected = alpha[..., None] * [0, 1, 0] + (1 - alpha[..., None]) * [0, 0, 1]
    np.testing.assert_allclose(frame.color[right], expected[right], atol=3e-3)
    np.testing.assert_allclose(frame.mesh_depth[right], 4.0, rtol=1e-5)
    assert alpha[right].max() > 0.9  # the comparison saw the splat's core, not only its tail


@pytest.mark.parametrize("angle_deg", [0.0, 60.0, 120.0])
def test_lambert_shading_matches_analytic_value(ctx, angle_deg):
    albedo = np.array([0.5, 0.4, 0.3])
    a = np.radians(angle_deg)
    light = Light(direction=(np.sin(a), 0.0, np.cos(a)), color=(1.0, 0.9, 0.8), intensity=0.7, ambient=(0.1, 0.2, 0.1))
    expected = albedo * (np.array(light.ambient) + np.array(light.color) * light.intensity * max(np.cos(a), 0.0))
    viewmat = look_at([0.3, -0.5, 3.0], [0, 0, 0])
    with Renderer(ctx, W, H) as r:
        r.light = light
        r.add_mesh(plane_mesh((3, 3), color=albedo))
        frame = r.render_frame(viewmat, intrinsics_from_fov(W, H, 40))
    on_plane = np.isfinite(frame.mesh_depth)
    assert on_plane.mean() > 0.5
    np.testing.assert_allclose(frame.color[on_plane], np.broadcast_to(expected, frame.color[on_plane].shape), atol=2e-3)


def test_cube_above_plane_casts_its_shadow_where_geometry_says(ctx):
    # light at 45 degrees towards +X: a cube [-0.25, 0.25]^2 x [1.0, 1.5] shadows x in [-1.75, -0.75], |y| < 0.25
    albedo = np.array([0.8, 0.8, 0.8])
    light = Light(direction=(1.0, 0.0, 1.0), color=(1, 1, 1), intensity=0.5, ambient=(0.2, 0.2, 0.2))
    lit = albedo * (0.2 + 0.5 * np.cos(np.radians(45)))
    shadowed = albedo * 0.2
    viewmat = look_at([0.0, -0.01, 6.0], [0, 0, 0])
    K = intrinsics_from_fov(W, H, 50)
    with Renderer(ctx, W, H) as r:
        r.light = light
        r.add_mesh(plane_mesh((6, 4), color=albedo))
        r.add_mesh(box_mesh((0.5, 0.5, 0.5), (0, 0, 1.25), color=(0.9, 0.3, 0.2)))
        frame = r.render_frame(viewmat, K)
    save_artifact("cube_shadow", frame.color)
    pts, u, v, z = floor_pixels(viewmat, K, W, H, 2.8, 1.9, 57, 39)  # world points on the plane, as pixels
    sees_plane = np.abs(frame.mesh_depth[v, u] - z) < 0.02  # not hidden by the cube
    in_shadow = (pts[:, 0] > -1.75) & (pts[:, 0] < -0.75) & (np.abs(pts[:, 1]) < 0.25)
    margin = 0.1  # stay clear of the shadow's edge (PCF blur, pixel rounding)
    far_from_edge = (np.abs(pts[:, 0] + 1.75) > margin) & (np.abs(pts[:, 0] + 0.75) > margin)
    far_from_edge &= np.abs(np.abs(pts[:, 1]) - 0.25) > margin
    check = sees_plane & far_from_edge
    colors = frame.color[v, u]
    assert (check & in_shadow).sum() >= 10 and (check & ~in_shadow).sum() >= 100
    np.testing.assert_allclose(
        colors[check & in_shadow], np.broadcast_to(shadowed, colors[check & in_shadow].shape), atol=3e-3
    )
    np.testing.assert_allclose(
        colors[check & ~in_shadow], np.broadcast_to(lit, colors[check & ~in_shadow].shape), atol=3e-3
    )


def test_mesh_pose_and_loaded_glb(ctx, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    path = tmp_path / "box.glb"
    trimesh.creation.box(extents=(1, 1, 1)).export(path)
    mesh = load_mesh(path, color=(0.2, 0.6, 0.9), lit=False)
    assert mesh.vertices.shape == (8, 3) and mesh.faces.shape == (12, 3)
    viewmat = look_at([0, -5, 0], [0, 0, 0])  # looking along +Y
    K = intrinsics_from_fov(W, H, 40)
    model = np.eye(4)
    model[:3, 3] = [0, 1.0, 0]  # pushed 1 m away from the camera
    with Renderer(ctx, W, H) as r:
        mesh_id = r.add_mesh(mesh)
        r.set_mesh_model(mesh_id, model)
        frame = r.render_frame(viewmat, K)
        # the near face is at y = 0.5 in the mesh frame, so 5 + 1 - 0.5 = 5.5 m from the camera
        assert frame.mesh_depth[H // 2, W // 2] == pytest.approx(5.5, rel=1e-5)
        np.testing.assert_allclose(frame.color[H // 2, W // 2], [0.2, 0.6, 0.9], atol=1e-3)
        r.set_mesh_visible(mesh_id, False)
        assert np.isinf(r.render_frame(viewmat, K).mesh_depth).all()
        with pytest.raises(ShapeError, match="no mesh with id"):
            r.set_mesh_model(mesh_id + 7, model)


def test_mesh_rejects_bad_arrays():
    with pytest.raises(ShapeError, match="faces"):
        Mesh(np.zeros((3, 3)), np.array([[0, 1, 5]]))
    with pytest.raises(ShapeError, match="color"):
        Mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]), color=(1, 0))


def test_settings_reject_unknown_splat_path():
    from scenes.errors import BackendError

    with pytest.raises(BackendError, match="splat_path"):
        RenderSettings(splat_path="vulkan")
