"""``hybrid objects``: detection through the CLI, clicked seeds, the contact sheet's outlines."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pybullet")
pytest.importorskip("trimesh")

from hybrid.objects import _PALETTE, click_seed, contact_sheet, overview_camera, render_ids  # noqa: E402
from physics import segment_scene  # noqa: E402
from scenes import Camera, Scene, SceneError  # noqa: E402
from tests.physics._scenes import PRIMITIVES, primitive_splats  # noqa: E402

CAPTURE = Camera.look_at([1.0, -1.3, 1.1], [0.0, 0.0, 0.05], width=160, height=120)


@pytest.fixture(scope="module")
def data():
    splats, labels = primitive_splats(seed=2, spacing=0.012, ground_half=0.7)
    return Scene(splats, capture_cameras=(CAPTURE,)), labels


def _project(cam: Camera, x) -> np.ndarray:
    p = cam.viewmat @ np.append(x, 1.0)
    uv = cam.K @ p[:3]
    return uv[:2] / uv[2]


def test_click_on_a_capture_pixel_seeds_that_object(data):
    scene, labels = data
    center = np.array(PRIMITIVES[0][3]) + [0, 0, 0.05]  # top face of box_a
    u, v = _project(CAPTURE, center)
    seed = click_seed(scene, 0, u, v)
    assert np.linalg.norm(seed - center) < 0.05
    lifted = segment_scene(scene, seeds=seed[None])
    assert len(lifted.objects) == 1
    assert np.isin(lifted.objects[0].splat_indices, labels["box_a"]).mean() > 0.99
    solid = np.concatenate([labels[k] for k in ("ground", "box_a", "box_b", "ball")])  # no haze, no floater
    clean = Scene(scene.splats.subset(solid), capture_cameras=(CAPTURE,))
    with pytest.raises(SceneError, match=r"pixel \(80.0, 1.0\) of capture camera 0 shows no splat"):
        click_seed(clean, 0, 80.0, 1.0)  # top centre: the sky beyond the ground's far edge


def test_contact_sheet_outlines_each_object_where_it_is(data, tmp_path):
    from PIL import Image

    scene, _ = data
    lifted = segment_scene(scene)
    path = contact_sheet(lifted, tmp_path / "sheet.png")
    sheet = np.asarray(Image.open(path))
    assert sheet.shape == (192, 256 * (1 + len(lifted.objects)), 3)
    overview = sheet[:, :256]
    view = overview_camera(lifted)
    for k, obj in enumerate(lifted.objects):
        ys, xs = np.nonzero(np.all(overview == _PALETTE[k], axis=-1))
        assert len(xs) > 20, obj.name
        u, v = _project(view, np.array(obj.position)) * np.array([256 / view.width, 192 / view.height])
        assert xs.min() - 2 <= u <= xs.max() + 2 and ys.min() - 2 <= v <= ys.max() + 2  # the outline surrounds it


def test_cli_detects_renames_and_saves(data, tmp_path):
    from typer.testing import CliRunner

    from hybrid.cli import app
    from scenes import load_scene, save_scene

    scene, _ = data
    trained = {"light.direction": np.array([0.1, 0.2, 0.97]), "net.head.bias": np.arange(3, dtype=np.float32)}
    save_scene(scene.with_(weights={"world_model": trained}), tmp_path / "s")  # e.g. after `hybrid world-model train`
    run = CliRunner().invoke(app, ["objects", str(tmp_path / "s"), "--detect", "--write", "--json", "--no-sheet"])
    assert run.exit_code == 0, run.output
    rows = json.loads(run.output[: run.output.rindex("]") + 1])
    assert len(rows) == 3 and {"name", "splats", "mass", "position", "size"} <= set(rows[0])
    run = CliRunner().invoke(app, ["objects", str(tmp_path / "s"), "--rename", "object_0=crate", "--write"])
    assert run.exit_code == 0, run.output
    assert (tmp_path / "s" / "objects.png").is_file()
    saved = load_scene(tmp_path / "s")
    assert sorted(o.name for o in saved.objects) == ["crate", "object_1", "object_2"]
    assert set(saved.weights) == {"world_model"}  # writing the objects keeps the scene's weights
    for k, v in trained.items():
        np.testing.assert_array_equal(saved.weights["world_model"][k], v)


def test_refinement_with_capture_views_adds_the_lowest_band_and_hidden_splats_and_not_the_ground(data):
    from hybrid.objects import refine_with_views
    from physics import SegmentConfig

    scene, labels = data
    ring = tuple(Camera.look_at([1.3 * np.cos(a), 1.3 * np.sin(a), 0.9], [0.0, 0.0, 0.05], width=160, height=120)
                 for a in np.linspace(0, 2 * np.pi, 8, endpoint=False))  # fmt: skip
    scene = Scene(scene.splats, capture_cameras=ring)
    # a high min_height leaves the lowest 4 cm of every object behind, as a thick lifted ground does
    found = segment_scene(scene, SegmentConfig(min_height=0.04))
    refined, added = refine_with_views(found)
    threshold = found.metadata["segmentation"]["ground"]["threshold"]
    height = scene.splats.means @ np.asarray(found.ground.normal) - found.ground.offset
    shown = np.zeros(len(scene.splats) + 1)  # pixels each splat dominates over the views
    for cam in ring:
        np.add.at(shown, render_ids(found, cam)[1].reshape(-1), 1)
    box = {n: labels[n] for n in ("box_a", "box_b", "ball")}
    back = []
    for o, r in zip(found.objects, refined.objects, strict=True):
        name = max(box, key=lambda n: np.isin(o.splat_indices, box[n]).sum())
        low = box[name][scene.splats.means[box[name], 2] < 0.035]  # the band clustering left out
        assert not np.isin(low, o.splat_indices).any()
        seen = low[shown[low] >= 2]
        back.append(np.isin(seen, r.splat_indices))
        assert np.isin(r.splat_indices, box[name]).mean() > 0.99, name  # and no ground, haze or floater
        # splats no view shows (behind the object's own surface) join too: left behind, they would draw a
        # ghost of the object where it stood once it moves (0.78-0.94 of each object before they did)
        mine = box[name][height[box[name]] >= threshold]
        assert np.isin(mine, r.splat_indices).mean() > 0.99, name
        assert added[o.name] == r.splat_indices.size - o.splat_indices.size
    back = np.concatenate(back)
    assert len(back) > 50 and back.mean() > 0.8, (len(back), back.mean())  # the views give the band back
