"""`hybrid export` / `hybrid import`: every format round-trips splats (within its quantisation), objects and
physics; axis conventions hold analytically; collider GLBs open in trimesh; the CLI works end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree
from typer.testing import CliRunner

from hybrid.export import export_scene, import_file
from scenes import SceneError, load_scene, save_scene
from scenes.export import AXES, quat_to_matrix
from scenes.formats import read_splats
from tests.scenes.test_gltf_support import make_scene

C = AXES["y-up"]


@pytest.fixture(scope="module")
def scene():
    return make_scene(seed=1)


# format -> (position atol [m], log-scale atol, opacity atol, SH-rest atol or None when dropped)
TOLERANCES = {
    "glb": (1e-5, 1e-5, 1e-6, 1e-5),
    "ply": (1e-5, 1e-5, 1e-6, 1e-5),
    "spz": (5e-4, 0.04, 0.01, 0.12),
    "splat": (1e-5, 1e-5, 0.01, None),
    "compressed-ply": (3e-3, 0.05, 0.01, 0.05),
}


def matched(a, b):
    """``b`` reordered to pair each splat of ``a`` with its nearest splat centre in ``b``."""
    _, idx = cKDTree(b.means).query(a.means)
    assert len(np.unique(idx)) == len(a)
    return b.subset(idx)


def assert_splats_close(a, b, fmt):
    pos, scale, alpha, sh = TOLERANCES[fmt]
    b = matched(a, b)
    np.testing.assert_allclose(b.means, a.means, atol=pos)
    np.testing.assert_allclose(b.log_scales, a.log_scales, atol=scale)
    np.testing.assert_allclose(b.opacities, a.opacities, atol=alpha)
    assert np.abs(np.sum(b.unit_quats * a.unit_quats, axis=1)).min() > 0.99
    np.testing.assert_allclose(b.sh[:, 0], a.sh[:, 0], atol=0.03)
    if sh is None:
        assert b.sh_degree == 0
    else:
        np.testing.assert_allclose(b.sh[:, 1:], a.sh[:, 1:], atol=sh)


@pytest.mark.parametrize("fmt", list(TOLERANCES))
def test_export_then_import_gives_the_same_scene(scene, tmp_path, fmt):
    result = export_scene(scene, tmp_path / "out", fmt)
    assert result.path.exists() and result.num_splats == len(scene.splats)
    back = import_file(result.path)
    assert len(back.splats) == len(scene.splats)
    assert [o.name for o in back.objects] == [o.name for o in scene.objects]
    for a, b in zip(scene.objects, back.objects, strict=True):
        assert (b.mass, b.friction, b.restitution, b.static) == (a.mass, a.friction, a.restitution, a.static)
        np.testing.assert_allclose(b.position, a.position, atol=1e-9)
        np.testing.assert_allclose(
            quat_to_matrix(np.asarray(b.quaternion)), quat_to_matrix(np.asarray(a.quaternion)), atol=1e-9
        )
        assert b.collider.kind == a.collider.kind and len(b.collider.parts) == len(a.collider.parts)
        np.testing.assert_allclose(b.collider.vertices, a.collider.vertices, atol=1e-6)
        assert_splats_close(scene.splats.subset(a.splat_indices), back.splats.subset(b.splat_indices), fmt)
    assert back.ground is not None
    np.testing.assert_allclose(back.ground.normal, scene.ground.normal, atol=1e-12)
    assert (back.ground.offset, back.ground.friction) == (scene.ground.offset, scene.ground.friction)
    np.testing.assert_allclose(back.ground.mesh.vertices, scene.ground.mesh.vertices, atol=1e-6)
    np.testing.assert_allclose(back.light.direction, scene.light.direction, atol=1e-9)
    assert_splats_close(scene.splats, back.splats, fmt)


@pytest.mark.parametrize(("fmt", "axes"), [("ply", "y-down"), ("spz", "y-up"), ("splat", "y-down"), ("ply", "z-up")])
def test_splat_files_use_the_format_axes(scene, tmp_path, fmt, axes):
    result = export_scene(scene, tmp_path, fmt, axes=None if axes in ("y-down", "y-up") else axes)
    assert result.axes == axes
    raw = read_splats(result.path)
    expected = scene.splats.means @ AXES[axes].T
    np.testing.assert_allclose(matched(scene.splats.with_(means=expected), raw).means, expected, atol=5e-4)
    phys = json.loads((tmp_path / "scene.physics.json").read_text())
    assert phys["splat_axes"] == axes
    # the JSON's matrix takes splat-file coordinates to the glTF frame of the poses and colliders
    np.testing.assert_allclose(np.asarray(phys["splat_to_frame"]) @ AXES[axes], C, atol=1e-12)


def test_single_object_export_is_in_the_object_frame_with_its_collider(scene, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    crate = scene.object("crate")
    result = export_scene(scene, tmp_path, "ply", object_name="crate")
    assert result.path.name == "crate.ply"
    raw = read_splats(result.path)
    R = quat_to_matrix(np.asarray(crate.quaternion))
    local = (scene.splats.means[crate.splat_indices] - crate.position) @ R  # R^T (p - t)
    np.testing.assert_allclose(raw.means, local @ AXES["y-down"].T, atol=1e-5)
    phys = json.loads((tmp_path / "crate.physics.json").read_text())
    (entry,) = phys["objects"]
    assert (entry["name"], entry["mass"], entry["friction"], entry["restitution"]) == ("crate", 2.0, 0.5, 0.2)
    np.testing.assert_allclose(entry["translation"], C @ np.asarray(crate.position), atol=1e-12)
    # an independent GLB reader sees the collider in glTF's +Y-up object frame
    loaded = trimesh.load(tmp_path / entry["collider"], force="mesh")
    np.testing.assert_allclose(
        np.sort(loaded.vertices, axis=0), np.sort(crate.collider.vertices @ C.T, axis=0), atol=1e-6
    )
    back = import_file(result.path)
    np.testing.assert_allclose(back.splats.means, scene.splats.means[crate.splat_indices], atol=1e-5)
    assert back.objects[0].name == "crate" and len(back.objects[0].splat_indices) == len(crate.splat_indices)


def test_compound_collider_glb_opens_in_trimesh_with_its_parts(scene, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    export_scene(scene, tmp_path, "spz")
    ball = scene.object("ball")
    loaded = trimesh.load(tmp_path / "scene.colliders" / "ball.glb")
    assert len(loaded.geometry) == len(ball.collider.parts)
    verts = np.concatenate([g.vertices for g in loaded.dump()])
    np.testing.assert_allclose(
        np.unique(verts.round(5), axis=0), np.unique((ball.collider.vertices @ C.T).round(5), axis=0), atol=1e-5
    )


def test_cli_export_and_import(scene, tmp_path):
    from hybrid.cli import app

    runner = CliRunner()
    save_scene(scene, tmp_path / "world")
    res = runner.invoke(app, ["export", str(tmp_path / "world"), "--format", "glb", "-o", str(tmp_path / "w.glb")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["import", str(tmp_path / "w.glb"), "-o", str(tmp_path / "back")])
    assert res.exit_code == 0, res.output
    back = load_scene(tmp_path / "back")
    assert [o.name for o in back.objects] == ["crate", "ball", "pillar"] and len(back.splats) == len(scene.splats)
    res = runner.invoke(
        app, ["export", str(tmp_path / "world"), "-f", "compressed-ply", "-o", str(tmp_path / "c"), "--object", "ball"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "ball.compressed.ply").exists() and (tmp_path / "c" / "ball.physics.json").exists()
    save_scene(make_scene(seed=2, degree=1), tmp_path / "deg1")
    res = runner.invoke(
        app, ["export", str(tmp_path / "deg1"), "-f", "ply", "-o", str(tmp_path / "u.ply"), "--sh-degree", "3"]
    )  # aras-p's Unity importer wants all 45 f_rest values
    assert res.exit_code == 0, res.output
    header = (tmp_path / "u.ply").read_bytes()[:4000].split(b"end_header")[0].decode()
    assert "f_rest_44" in header and read_splats(tmp_path / "u.ply").sh_degree == 3
    res = runner.invoke(app, ["export", str(tmp_path / "world"), "-f", "ply", "-o", str(tmp_path / "x.glb")])
    assert isinstance(res.exception, SceneError) and "not the ply suffix" in str(res.exception)
    res = runner.invoke(app, ["export", str(tmp_path / "world"), "-f", "ply", "-o", str(tmp_path), "--object", "no"])
    assert isinstance(res.exception, SceneError) and "no object named 'no'" in str(res.exception)


@pytest.mark.parametrize(
    "name",
    [
        "splats/supersplat_test64.compressed.ply",
        "splats/fixtures/minimal-v4.spz",
        "splats/fixtures/minimal.ksplat",
        "splats/fixtures/minimal.splat",
    ],
)
def test_import_third_party_files(shared_data, tmp_path, name):
    path = shared_data / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    raw = read_splats(path)
    imported = import_file(path)
    axes = "y-up" if name.endswith(".spz") else "y-down"
    assert imported.metadata["imported_from"]["axes"] == axes
    np.testing.assert_allclose(imported.splats.means, raw.means @ AXES[axes], atol=1e-5)  # file -> +Z up
    save_scene(imported, tmp_path / "s")
    assert len(load_scene(tmp_path / "s").splats) == len(raw)


def test_import_refuses_missing_files_and_wrong_axes(tmp_path, scene):
    with pytest.raises(SceneError, match="no such file"):
        import_file(tmp_path / "nope.ply")
    path = export_scene(scene, tmp_path, "glb").path
    with pytest.raises(SceneError, match="glTF files are \\+Y up"):
        import_file(path, axes="y-down")
