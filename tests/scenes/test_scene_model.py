"""The scene model: validation, cameras (against known projections and real camera files), collider GLB."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scenes import Camera, ColliderMesh, FormatError, Light, Scene, SceneError, SceneObject, ShapeError, Splats
from scenes.cameras import quat_to_rotmat, read_transforms_json, write_transforms_json
from scenes.glb import read_collider_glb, write_collider_glb


def random_splats(n: int, degree: int = 1, seed: int = 0) -> Splats:
    rng = np.random.default_rng(seed)
    return Splats(
        rng.normal(size=(n, 3)),
        rng.normal(size=(n, 4)),
        rng.normal(-3, 0.5, size=(n, 3)),
        rng.normal(size=n),
        rng.normal(size=(n, (degree + 1) ** 2, 3)) * 0.3,
    )


def test_splats_validation_names_field_and_count():
    s = random_splats(10)
    means = s.means.copy()
    means[[2, 5], 1] = np.nan
    with pytest.raises(ShapeError, match=r"Splats.means: 2 non-finite value\(s\) in 2 splat\(s\) \(first at index 2\)"):
        s.with_(means=means)
    with pytest.raises(ShapeError, match=r"Splats.quats: expected shape \(10, 4\), got \(10, 3\)"):
        s.with_(quats=s.quats[:, :3])
    with pytest.raises(ShapeError, match="5 coefficients per channel"):
        s.with_(sh=np.zeros((10, 5, 3)))
    with pytest.raises(ShapeError, match="zero-length quaternion"):
        s.with_(quats=np.zeros((10, 4)))
    # +inf opacity (an opacity of exactly one, written by some tools) is allowed; -inf and NaN are not.
    ok = s.opacity_logits.copy()
    ok[0] = np.inf
    assert s.with_(opacity_logits=ok).opacities[0] == 1.0
    ok[1] = -np.inf
    with pytest.raises(ShapeError, match="opacity_logits: 1 non-finite"):
        s.with_(opacity_logits=ok)


def test_splats_activation_and_sh_degree_helpers():
    s = random_splats(7, degree=2)
    assert s.sh_degree == 2 and len(s) == 7
    np.testing.assert_allclose(s.scales, np.exp(s.log_scales), rtol=1e-6)
    np.testing.assert_allclose(s.opacities, 1 / (1 + np.exp(-s.opacity_logits)), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(s.unit_quats, axis=1), 1, rtol=1e-6)
    assert s.with_sh_degree(3).sh.shape == (7, 16, 3) and s.with_sh_degree(0).sh.shape == (7, 1, 3)
    back = Splats.from_activated(s.means, s.quats, s.scales, s.opacities, sh=s.sh)
    np.testing.assert_allclose(back.opacity_logits, s.opacity_logits, atol=1e-4)
    both = Splats.concat([s, random_splats(3, degree=0)])
    assert len(both) == 10 and both.sh_degree == 2 and np.all(both.sh[7:, 1:] == 0)


def test_camera_look_at_projects_target_to_principal_point():
    cam = Camera.look_at(eye=(3, -4, 2), target=(0.5, 0.2, 0.1), width=320, height=240, fov_y_deg=60)
    p = cam.viewmat @ np.array([0.5, 0.2, 0.1, 1.0])
    assert p[2] > 0  # in front (OpenCV +z forward)
    uv = cam.K @ (p[:3] / p[2])
    np.testing.assert_allclose(uv[:2], [160, 120], atol=1e-9)
    # world up (+Z) points up in the image: a point above the target has a smaller v.
    q = cam.viewmat @ np.array([0.5, 0.2, 1.1, 1.0])
    assert (cam.K @ (q[:3] / q[2]))[1] < 120
    # fov: the top edge of the image is 30 degrees above the axis.
    assert math.isclose(cam.K[1, 1], 120 / math.tan(math.radians(30)), rel_tol=1e-12)


def test_camera_rejects_bad_input():
    with pytest.raises(ShapeError, match="positive focal"):
        Camera(np.zeros((3, 3)), np.eye(4), 10, 10)
    with pytest.raises(ShapeError, match="width and height must be positive"):
        Camera(np.eye(3), np.eye(4), 0, 10)


def test_transforms_json_round_trip_and_opengl_axes(tmp_path):
    cams = [Camera.look_at((2, 0, 1), (0, 0, 0), width=64, height=48), Camera.look_at((0, 3, 2), (0, 0, 0.5))]
    write_transforms_json(tmp_path / "transforms.json", cams)
    raw = json.loads((tmp_path / "transforms.json").read_text())
    # OpenGL convention: the camera looks along its -Z axis; column 2 of c2w points away from the target.
    c2w = np.array(raw["frames"][0]["transform_matrix"])
    np.testing.assert_allclose(c2w[:3, 2], np.array([2, 0, 1]) / np.sqrt(5), atol=1e-12)
    back, _ = read_transforms_json(tmp_path)
    for a, b in zip(cams, back):
        np.testing.assert_allclose(a.viewmat, b.viewmat, atol=1e-12)
        np.testing.assert_allclose(a.K, b.K, atol=1e-12)
        assert (a.width, a.height) == (b.width, b.height)


def test_transforms_json_real_blender_file(shared_data):
    """The NeRF-synthetic lego file: camera_angle_x and OpenGL c2w, 800x800 images."""
    path = shared_data / "lego" / "transforms_train.json"
    raw = json.loads(path.read_text())
    cams, images = read_transforms_json(path, default_size=(800, 800))
    assert len(cams) == len(raw["frames"]) == 100
    f_expected = 400 / math.tan(raw["camera_angle_x"] / 2)
    assert math.isclose(cams[0].K[0, 0], f_expected, rel_tol=1e-12)
    # The lego sits at the origin: every camera looks towards it (origin in front, near the image centre).
    for cam in cams[::10]:
        p = cam.viewmat @ np.array([0, 0, 0, 1.0])
        assert p[2] > 0
        uv = cam.K @ (p[:3] / p[2])
        assert np.all(np.abs(uv[:2] - 400) < 80)
    assert images[0].name == "r_0.png" and images[0].exists()


def test_transforms_json_errors(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        read_transforms_json(bad)
    bad.write_text(json.dumps({"frames": [{"transform_matrix": np.eye(4).tolist()}]}))
    with pytest.raises(ValueError, match="no image size"):
        read_transforms_json(bad)


def test_quat_to_rotmat_matches_axis_angle():
    angle = 0.7
    q = np.array([math.cos(angle / 2), 0, 0, math.sin(angle / 2)])  # about +Z
    R = quat_to_rotmat(q)
    np.testing.assert_allclose(
        R, [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]], atol=1e-12
    )


def test_collider_glb_read_by_trimesh(tmp_path):
    """Our GLB writer against an independent reader (trimesh)."""
    trimesh = pytest.importorskip("trimesh")
    box = trimesh.creation.box(extents=(0.2, 0.3, 0.4))
    mesh = ColliderMesh(box.vertices, box.faces, "convex")
    write_collider_glb(tmp_path / "c.glb", mesh)
    loaded = trimesh.load(tmp_path / "c.glb", force="mesh", process=False)
    np.testing.assert_allclose(loaded.vertices, box.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, box.faces)
    assert math.isclose(loaded.volume, 0.2 * 0.3 * 0.4, rel_tol=1e-5)
    back = read_collider_glb(tmp_path / "c.glb")
    np.testing.assert_array_equal(back.faces, box.faces)
    assert back.kind == "convex"


def test_collider_glb_compound_parts(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    a = trimesh.creation.box(extents=(1, 1, 1))
    b = trimesh.creation.box(extents=(1, 1, 1))
    b.apply_translation((2, 0, 0))
    both = trimesh.util.concatenate([a, b])
    mesh = ColliderMesh(both.vertices, both.faces, "compound", (np.arange(12), np.arange(12, 24)))
    write_collider_glb(tmp_path / "c.glb", mesh)
    back = read_collider_glb(tmp_path / "c.glb")
    assert back.kind == "compound" and len(back.parts) == 2
    np.testing.assert_array_equal(back.faces, both.faces)


def test_scene_rejects_duplicate_names_and_bad_indices():
    s = random_splats(5)
    with pytest.raises(SceneError, match="repeated"):
        Scene(s, (SceneObject("a", [0]), SceneObject("a", [1])))
    with pytest.raises(SceneError, match="out of range for 5 splats"):
        Scene(s, (SceneObject("a", [7]),))
    with pytest.raises(ShapeError, match="mass must be > 0"):
        SceneObject("a", [0], mass=0)
    with pytest.raises(SceneError, match="no object named 'b'"):
        Scene(s, (SceneObject("a", [0]),)).object("b")
    assert Light(direction=(0, 0, 2)).direction == (0.0, 0.0, 1.0)


def test_camera_resized_maps_pixels_by_the_size_ratio():
    """A point seen at pixel (u, v) by a w x h camera is seen at (u W / w, v H / h) by its resized copy."""
    cam = Camera.look_at((1.0, -3.0, 2.0), (0.0, 0.0, 0.3), width=320, height=240)
    big = cam.resized(640, 360)
    assert (big.width, big.height) == (640, 360) and np.array_equal(big.viewmat, cam.viewmat)
    assert cam.resized(320, 240) is cam
    p = np.array([0.2, 0.1, 0.5, 1.0])

    def pixel(c):
        x = (c.viewmat @ p)[:3]
        uv = c.K @ (x / x[2])
        return uv[:2]

    np.testing.assert_allclose(pixel(big), pixel(cam) * [640 / 320, 360 / 240], rtol=1e-12)
