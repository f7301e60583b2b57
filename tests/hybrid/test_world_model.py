"""The appearance world model on an analytic cube-over-plane scene with a known light."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from hybrid.world_model import (
    WEIGHTS_NAME,
    Relighting,
    ResidualNet,
    SplatState,
    TrainConfig,
    WorldModel,
    apply_world_model,
    parse_light_direction,
    scene_normals,
    splat_normals,
    train_world_model,
)
from hybrid.world_model.relight import FLOATING
from hybrid.world_model.residual import gate_reach, residual_output
from scenes import Light, SceneError, ShapeError, load_scene, save_scene
from scenes.splats import rgb_to_sh0
from tests.hybrid._world_model_scenes import (
    CANOPY_CENTER,
    CANOPY_HALF,
    CUBE_CENTER,
    CUBE_HALF,
    LIGHT,
    cube_over_plane,
    shadow_center_on_floor,
    top_camera,
)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.fixture(scope="module")
def cube():
    scene, truth = cube_over_plane(floor_half=0.45, spacing=0.015)
    return scene, truth, Relighting.fit(scene, light=LIGHT)


def moved_state(scene, truth, offset) -> SplatState:
    rest = SplatState.rest(scene)
    mask = np.zeros(len(rest.means), bool)
    mask[truth["cube"]] = True
    means = rest.means + np.where(mask[:, None], np.asarray(offset, np.float32), 0.0).astype(np.float32)
    return replace(rest, means=means, moved=mask)


def shadowed_floor_centroid(rel: Relighting, scene, truth, state, light) -> np.ndarray:
    shade = rel.shade(state.means, state.quats, state.scales, state.opacities, light)
    floor = truth["floor"]
    dark = floor[shade.vis[floor] < 0.5]
    assert len(dark) > 20, "no shadow on the floor"
    return state.means[dark].mean(axis=0)


def test_relit_render_without_edits_reproduces_the_capture(cube):
    scene, truth, rel = cube
    capture = WorldModel(scene, "off").images(SplatState.rest(scene), list(scene.capture_cameras[:3]))
    relit = WorldModel(scene, "relight", relighting=rel).images(SplatState.rest(scene), list(scene.capture_cameras[:3]))
    for a, b in zip(capture, relit, strict=True):
        assert psnr(a, b) > 50.0
    # the recovered albedo is the true one away from shadow edges
    sure = (rel.vis_capture == 0) | (rel.vis_capture == 1)
    floor = np.zeros(len(sure), bool)
    floor[truth["floor"]] = True
    err = np.abs(rel.albedo - truth["albedo"])[sure & floor]
    assert np.median(err) < 0.01


def test_estimated_light_matches_the_truth_and_still_reproduces_the_capture(cube):
    scene, truth, _ = cube
    rel = Relighting.fit(scene)  # light estimated from the baked colours
    d = np.asarray(rel.light.direction)
    angle = np.degrees(np.arccos(np.clip(d @ np.asarray(LIGHT.direction), -1, 1)))
    assert angle < 12.0
    ratio = np.asarray(rel.light.color) / np.asarray(rel.light.ambient)
    assert np.allclose(ratio, 0.6 / 0.4, rtol=0.35)
    cams = list(scene.capture_cameras[:2])
    a = WorldModel(scene, "off").images(SplatState.rest(scene), cams)
    b = WorldModel(scene, "relight", relighting=rel).images(SplatState.rest(scene), cams)
    assert min(psnr(x, y) for x, y in zip(a, b, strict=True)) > 45.0


def test_normals_face_outwards_on_an_off_centre_cube():
    # most of an orbit is behind the faces of a cube away from its centre: an all-camera vote flips them
    scene, truth = cube_over_plane(cube_center=(0.38, 0.22, 0.2), floor_half=0.6, spacing=0.02)
    s = scene.splats
    cube_idx = truth["cube"]
    naive = splat_normals(s.means, s.unit_quats, s.scales, scene.capture_cameras)
    assert np.mean(np.sum(naive[cube_idx] * truth["normals"][cube_idx], axis=1) < 0) > 0.1  # the scene is a trap
    got = splat_normals(s.means, s.unit_quats, s.scales, scene.capture_cameras, s.opacities)
    agree = np.sum(got * truth["normals"], axis=1)
    seen_faces = cube_idx[truth["normals"][cube_idx, 2] > -0.5]  # no capture camera sees the bottom face
    assert np.all(agree[seen_faces] > 0.99)
    assert np.all(agree[truth["floor"]] > 0.99)


def _lifted_like(scene, truth, *, shell: bool = False, seed: int = 1):
    """The cube scene as a lift leaves it: blob-shaped splats with arbitrary axes, the cube with its box collider.

    With ``shell`` the cube gets an inner layer of dark splats (a lift's object is a shell a few
    splats thick whose inner splats are never seen and often dark).
    """
    import trimesh

    from physics.transforms import quat_to_matrix  # noqa: F401 (the quaternions below are random unit wxyz)
    from scenes import ColliderMesh, Splats

    rng = np.random.default_rng(seed)
    s = scene.splats
    means, sh, n = s.means.copy(), s.sh.copy(), len(s)
    cube = truth["cube"]
    if shell:
        inner = CUBE_CENTER + 0.75 * (means[cube] - CUBE_CENTER)
        means = np.concatenate([means, inner])
        sh = np.concatenate([sh, np.full((len(cube), 1, 3), -1.5, np.float32)])  # DC colour ~0.08
        cube = np.concatenate([cube, np.arange(n, n + len(cube))])
    m = len(means)
    quats = rng.normal(size=(m, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    scales = rng.uniform(0.45, 0.75, (m, 3)) * 0.015  # no axis much shorter than the others
    splats = Splats.from_activated(means, quats, scales, np.full(m, 0.97), sh=sh)
    box = trimesh.creation.box([2 * CUBE_HALF] * 3)
    obj = replace(scene.objects[0], splat_indices=cube, collider=ColliderMesh(box.vertices, box.faces))
    return scene.with_(splats=splats, objects=(obj,)), cube


def test_lifted_like_splats_take_their_normals_from_the_ground_plane_and_the_collider():
    scene, truth = cube_over_plane(floor_half=0.45, spacing=0.015)
    lifted, cube = _lifted_like(scene, truth)
    s = lifted.splats
    own = splat_normals(s.means, s.unit_quats, s.scales, lifted.capture_cameras, s.opacities)
    wrong = np.sum(own * truth["normals"], axis=1) < np.cos(np.radians(30))
    assert wrong.mean() > 0.3  # the splats' own axes say little about the surface
    got, source = scene_normals(lifted)
    assert np.all(source[truth["floor"]] == 1) and np.all(source[cube] == 2)
    assert np.allclose(got[truth["floor"]], [0.0, 0.0, 1.0])
    assert np.all(np.sum(got[cube] * truth["normals"][cube], axis=1) > 0.999)


def test_floaters_without_a_surface_direction_are_lit_like_the_ground_and_a_flat_shelf_keeps_its_own():
    """Round static blobs and static splats hanging in the air take the ground's normal; a shelf on a post keeps its own.

    A flat floater's axis is as arbitrary as a blob's (bench lift 0: 190 of them glowed under a turned light).
    """
    from scenes import Splats

    scene, truth = cube_over_plane(floor_half=0.45, spacing=0.015)
    lifted, cube = _lifted_like(scene, truth)
    s = lifted.splats
    rng = np.random.default_rng(3)
    k = 40  # round blobs 0.5-0.8 m up (a lift's floaters), arbitrary axes
    blob_means = np.c_[rng.uniform(-0.3, 0.3, (k, 2)), rng.uniform(0.5, 0.8, k)]
    blob_q = rng.normal(size=(k, 4))
    blob_q /= np.linalg.norm(blob_q, axis=1, keepdims=True)
    blob_scales = rng.uniform(0.03, 0.05, (k, 3))
    tilt = np.radians(35)  # a flat shelf tilted about x: its normal is (0, -sin, cos)
    shelf_means = np.c_[np.linspace(-0.3, 0.3, 20), np.full(20, -0.3), np.full(20, 0.55)]
    shelf_q = np.tile([np.cos(tilt / 2), np.sin(tilt / 2), 0.0, 0.0], (20, 1))
    shelf_scales = np.tile([0.03, 0.03, 0.002], (20, 1))
    post_means = np.c_[np.full(40, -0.33), np.full(40, -0.3), np.linspace(0.02, 0.54, 40)]  # the shelf stands on it
    post_q, post_scales = np.tile([1.0, 0.0, 0.0, 0.0], (40, 1)), np.tile([0.01, 0.002, 0.01], (40, 1))
    flat_means = shelf_means + [0.0, 0.6, 0.1]  # the same shelf hanging in the air: a lift's flat floaters
    n0, m = len(s), k + 60 + 20
    splats = Splats.from_activated(
        np.concatenate([s.means, blob_means, shelf_means, post_means, flat_means]),
        np.concatenate([s.unit_quats, blob_q, shelf_q, post_q, shelf_q]),
        np.concatenate([s.scales, blob_scales, shelf_scales, post_scales, shelf_scales]),
        np.concatenate([s.opacities, np.full(m, 0.9)]), sh=np.concatenate([s.sh, np.zeros((m, 1, 3), np.float32)]))  # fmt: skip
    floaters = lifted.with_(splats=splats)
    blobs, shelf = np.arange(n0, n0 + k), np.arange(n0 + k, n0 + k + 20)
    flat = np.arange(n0 + k + 60, n0 + m)
    normals, source = scene_normals(floaters)
    assert np.all(source[blobs] == 3) and np.allclose(normals[blobs], [0.0, 0.0, 1.0])
    assert np.all(source[flat] == 3) and np.allclose(normals[flat], [0.0, 0.0, 1.0])
    assert np.all(source[shelf] == 0)  # a flat static splat keeps its shortest axis, turned to face the cameras
    assert np.all(np.abs(normals[shelf] @ [0.0, -np.sin(tilt), np.cos(tilt)]) > 0.999)
    # under a new light an unshadowed floater changes as the lit floor does, not by its arbitrary axis
    rel = Relighting.fit(floaters, light=LIGHT, static_casts=False)
    turned = Light(direction=(-0.4, 0.5, 0.77), color=LIGHT.color, intensity=LIGHT.intensity, ambient=LIGHT.ambient)
    shade = rel.shade(splats.means, splats.unit_quats, splats.scales, splats.opacities, turned)
    lit_floor = truth["floor"][(rel.vis_capture[truth["floor"]] == 1) & (shade.vis[truth["floor"]] == 1)]
    ratio = shade.shading[:, 0] / rel.shading_capture[:, 0]
    lit_blobs = blobs[(rel.vis_capture[blobs] == 1) & (shade.vis[blobs] == 1)]
    assert len(lit_blobs) > k // 2 and len(lit_floor) > 100
    assert np.allclose(ratio[lit_blobs], np.median(ratio[lit_floor]), rtol=1e-4)


def test_an_objects_inner_splats_are_lit_and_the_light_comes_from_what_the_cameras_see():
    scene, truth = cube_over_plane(floor_half=0.45, spacing=0.015)
    lifted, cube = _lifted_like(scene, truth, shell=True)
    rel = Relighting.fit(lifted, light=LIGHT)
    inner = cube[len(truth["cube"]) :]
    inner_top = inner[truth["normals"][truth["cube"], 2] > 0.9]
    assert np.all(rel.vis_capture[inner_top] == 1.0)  # not shadowed by the object's own outer layer
    floor = truth["floor"]
    dark, shadowed = rel.vis_map_capture[floor] < 0.5, ~truth["vis"][floor]  # the cast shadow is still there
    assert np.mean(dark[shadowed]) > 0.9 and np.mean(dark != shadowed) < 0.02
    # the dark inner splats are not evidence about the light: the sun / ambient ratio comes from the pixels
    est = Relighting.fit(lifted, light_direction=LIGHT.direction)
    ratio = np.asarray(est.light.color) / np.asarray(est.light.ambient)
    assert np.allclose(ratio, 0.6 / 0.4, rtol=0.35)


def test_light_direction_and_shadow_strength_recovered_on_an_off_centre_cube():
    # partial shadows (a fifth of the sun removed, as TinyRenderer's) and the cube away from the centre
    light = Light(direction=(-0.5, 0.3, 0.81), color=(0.65, 0.65, 0.65), intensity=1.0, ambient=(0.35, 0.35, 0.35))
    scene, truth = cube_over_plane(light, cube_center=(0.3, -0.2, 0.2), floor_half=0.6, spacing=0.015,
                                   shadow_strength=0.4)  # fmt: skip
    rel = Relighting.fit(scene)
    d = np.asarray(rel.light.direction)
    truth_d = np.asarray(light.direction) / np.linalg.norm(light.direction)
    assert np.degrees(np.arccos(np.clip(d @ truth_d, -1, 1))) < 8.0
    assert rel.shadow_strength == pytest.approx(0.4, abs=0.1)
    ratio = np.asarray(rel.light.color) / np.asarray(rel.light.ambient)
    assert np.allclose(ratio, 0.65 / 0.35, rtol=0.3)


def test_shadow_lands_where_geometry_says_and_moves_with_its_caster(cube):
    scene, truth, rel = cube
    rest = SplatState.rest(scene)
    expected = shadow_center_on_floor(CUBE_CENTER, LIGHT)
    got = shadowed_floor_centroid(rel, scene, truth, rest, LIGHT)
    assert np.linalg.norm(got[:2] - expected[:2]) < 0.015
    offset = np.array([0.0, 0.2, 0.05])
    moved = moved_state(scene, truth, offset)
    expected2 = shadow_center_on_floor(np.asarray(CUBE_CENTER) + offset, LIGHT)
    got2 = shadowed_floor_centroid(rel, scene, truth, moved, LIGHT)
    assert np.linalg.norm(got2[:2] - expected2[:2]) < 0.015
    # a light edit moves the shadow too
    light2 = Light(direction=(-0.3, 0.4, 0.87), color=LIGHT.color, ambient=LIGHT.ambient)
    got3 = shadowed_floor_centroid(rel, scene, truth, rest, light2)
    assert np.linalg.norm(got3[:2] - shadow_center_on_floor(CUBE_CENTER, light2)[:2]) < 0.015

    # in pixels, from above: the old shadow is lit floor again in relight, still dark in the engine alone
    cam = top_camera(size=160)
    off = WorldModel(scene, "off").images(moved, [cam])[0].mean(axis=-1)
    relit = WorldModel(scene, "relight", relighting=rel).images(moved, [cam])[0].mean(axis=-1)

    def pixel(p):
        x = cam.viewmat[:3, :3] @ p + cam.viewmat[:3, 3]
        return int(cam.K[1, 1] * x[1] / x[2] + cam.K[1, 2]), int(cam.K[0, 0] * x[0] / x[2] + cam.K[0, 2])

    def patch(img, p):
        r, c = pixel(p)
        return float(img[r - 2 : r + 3, c - 2 : c + 3].mean())

    lit_floor = np.asarray(LIGHT.ambient) + np.asarray(LIGHT.color) * LIGHT.direction[2]
    old, new = expected, expected2
    assert patch(off, old) < 0.65 * patch(relit, old)  # the baked shadow stays in the engine alone
    assert patch(relit, new) < 0.65 * patch(off, new)  # the moved cube casts a new shadow only with relight
    albedo_old = truth["albedo"][
        truth["floor"][np.argmin(np.linalg.norm(scene.splats.means[truth["floor"]] - old, axis=1))]
    ]
    assert patch(relit, old) == pytest.approx(float(np.mean(albedo_old * lit_floor)), rel=0.15)


def test_residual_never_changes_pixels_far_from_any_edit(cube):
    scene, truth, rel = cube
    torch.manual_seed(0)
    net = ResidualNet(8)
    for p in net.parameters():  # any weights at all, not only trained ones: the bound is structural
        torch.nn.init.normal_(p, std=0.5)
    weights = {**{k: v for k, v in net.state_arrays().items()}, "config.width": np.array([8])}
    wm = WorldModel(scene.with_(weights={WEIGHTS_NAME: _with_light(weights, LIGHT)}), "full", relighting=rel)
    cams = [scene.capture_cameras[0], top_camera(size=128)]
    for frame in wm.render(moved_state(scene, truth, (0.0, 0.2, 0.0)), cams, keep_gbuffers=True):
        gb = frame.gbuffers
        relit = apply_world_model("relight", gb)
        diff = np.abs(frame.image - relit).max(axis=-1)
        edit = gb.edit[..., 0].numpy() > 0
        assert edit.any() and diff.max() > 0.05  # the network does act near the edit
        h, w = edit.shape
        far = distance_transform_edt(~edit) > gate_reach(h, w)
        assert far.mean() > 0.3
        assert diff[far].max() <= 1e-6


def test_a_light_edit_alone_leaves_the_explicit_layers_shadows_to_stand(cube):
    """The residual only learned (one capture light) to correct what moved; a new light is the explicit layer's.

    With random weights: after a light edit with nothing moved the gate is shut and `full` is
    exactly `relight`; under the capture light, a moved cube's old and new shadows open it.
    """
    scene, truth, rel = cube
    torch.manual_seed(1)
    net = ResidualNet(8)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.5)
    weights = {**{k: v for k, v in net.state_arrays().items()}, "config.width": np.array([8])}
    wm = WorldModel(scene.with_(weights={WEIGHTS_NAME: _with_light(weights, LIGHT)}), "full", relighting=rel)
    cam = top_camera(size=128)
    turned = (-0.45, 0.25, 0.86)
    (frame,) = wm.render(SplatState.rest(scene), [cam], light_direction=turned, keep_gbuffers=True)
    relit = apply_world_model("relight", frame.gbuffers)
    assert float((frame.gbuffers.vis_now - frame.gbuffers.vis_capture).abs().max()) > 0.9  # shadows did move
    assert not frame.gbuffers.edit.numpy().any()
    assert np.array_equal(frame.image, relit)
    (moved,) = wm.render(moved_state(scene, truth, (0.0, 0.2, 0.0)), [cam], keep_gbuffers=True)
    gb = moved.gbuffers
    shadow_only = (gb.edit[..., 0] > 0) & (gb.moved[..., 0] < 0.5) & (gb.disoccluded[..., 0] < 0.05)
    assert int(shadow_only.sum()) > 20  # floor pixels whose shadow came or went


def _with_light(weights: dict, light: Light) -> dict:
    return {**weights, "light.direction": np.asarray(light.direction, np.float32),
            "light.color": np.asarray(light.color, np.float32), "light.ambient": np.asarray(light.ambient, np.float32),
            "light.intensity": np.asarray([light.intensity], np.float32)}  # fmt: skip


def test_training_runs_and_weights_round_trip_through_the_scene_folder(cube, tmp_path):
    scene, truth, rel = cube
    calls = []
    result = train_world_model(scene, TrainConfig(steps=12, views=2, samples_per_view=3, crop=48, batch=4, width=8, init="scratch"),
                               relighting=rel, progress=lambda *a: calls.append(a))  # fmt: skip
    assert {c[0] for c in calls} == {"samples", "train"} and calls[-1] == ("train", 12, 12)
    assert result.net.num_parameters < 3_000_000
    folder = save_scene(scene.with_(weights={WEIGHTS_NAME: result.weights}), tmp_path / "scene")
    assert (folder / "weights" / f"{WEIGHTS_NAME}.safetensors").is_file()
    loaded = load_scene(folder)
    for k, v in result.weights.items():
        np.testing.assert_array_equal(loaded.weights[WEIGHTS_NAME][k], v)
    state = moved_state(scene, truth, (0.0, 0.2, 0.0))
    cams = [scene.capture_cameras[1]]
    a = WorldModel(scene.with_(weights={WEIGHTS_NAME: result.weights}), "full", relighting=rel).images(state, cams)
    b = WorldModel(loaded, "full").images(state, cams)  # light read from the weights
    assert WorldModel(loaded, "full").capture_light == rel.light
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)


def test_a_network_that_does_not_beat_the_hole_fill_is_switched_off(cube):
    """The training report compares like with like (whole samples, gated L1); a network no better is not used.

    Untrained (0 steps) the network's output is exactly zero, so it does not beat the hole fill:
    it is switched off and `full` renders the hole-filled relight exactly. Trained on the cube
    scene, it beats the hole fill on its training views.
    """
    scene, truth, rel = cube
    small = dict(views=2, samples_per_view=3, crop=48, batch=4, width=8, init="scratch")
    off = train_world_model(scene, TrainConfig(steps=0, **small), relighting=rel)
    assert not off.network_used and off.fitted_loss == pytest.approx(off.baseline_loss, abs=1e-9)
    wm = WorldModel(scene.with_(weights={WEIGHTS_NAME: off.weights}), "full", relighting=rel)
    (frame,) = wm.render(moved_state(scene, truth, (0.0, 0.2, 0.0)), [scene.capture_cameras[1]], keep_gbuffers=True)
    filled = residual_output(None, frame.gbuffers)
    assert float(filled.gate.max()) > 0.5  # the edit opened the gate
    np.testing.assert_allclose(frame.image, np.clip(filled.color.numpy(), 0.0, 1.0), atol=1e-6)
    on = train_world_model(scene, TrainConfig(steps=150, **small), relighting=rel)
    assert on.network_used and on.fitted_loss < on.baseline_loss


def test_scene_without_weights_renders_with_relight_and_says_so(cube, tmp_path):
    scene, _, rel = cube
    heard = []
    wm = WorldModel(scene, "full", relighting=rel, notify=heard.append)
    assert wm.mode == "relight" and wm.net is None
    assert any("no world-model weights" in h and "relight" in h for h in heard)
    with pytest.raises(ShapeError, match="--world-model"):
        WorldModel(scene, "fancy")
    with pytest.raises(ShapeError, match="--light-direction"):
        parse_light_direction("1,2")


def test_render_cli_light_edit_writes_one_png_per_camera_and_moves_the_shadow(cube, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from hybrid.cli import app
    from scenes import write_transforms_json

    scene, _, _ = cube
    folder = save_scene(scene.with_(light=LIGHT), tmp_path / "scene")
    cams = [top_camera(size=96), scene.capture_cameras[0]]
    cams_path = tmp_path / "cams.json"
    write_transforms_json(cams_path, cams)
    json.loads(cams_path.read_text())
    runner = CliRunner()
    out_off = tmp_path / "off"
    res = runner.invoke(app, ["render", str(folder), "--cameras", str(cams_path), "--world-model", "off",
                              "--splat-path", "raster", "-o", str(out_off)])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = tmp_path / "relit"
    res = runner.invoke(app, ["render", str(folder), "--cameras", str(cams_path), "--light-direction", "-0.3,0.4,0.87",
                              "-o", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "relight" in res.output  # no weights: full falls back to relight, and says so
    assert sorted(p.name for p in out.iterdir()) == ["c0.png", "c1.png"]
    a = np.asarray(Image.open(out / "c0.png"), np.float32) / 255
    b = np.asarray(Image.open(out_off / "c0.png"), np.float32) / 255
    assert a.shape == b.shape == (96, 96, 3)
    assert np.abs(a - b).mean() > 0.01  # the light edit changes the picture


def test_render_and_simulate_cli_relight_with_the_stored_capture_light(cube, tmp_path):
    """``--world-model relight`` uses the light that ``hybrid world-model train`` stored, not a new estimate."""
    from PIL import Image
    from typer.testing import CliRunner

    from hybrid.cli import app
    from scenes import write_transforms_json

    scene, _, _ = cube
    stored = Light(direction=(0.2, -0.1, 0.97), color=(0.5, 0.5, 0.5), intensity=1.0, ambient=(0.5, 0.5, 0.5))
    weights = train_world_model(scene, TrainConfig(), light=stored).weights  # not the light the capture shows
    folder = save_scene(scene.with_(weights={WEIGHTS_NAME: weights}), tmp_path / "scene")
    cam = top_camera(size=96)
    write_transforms_json(tmp_path / "cams.json", [cam])
    turned = (-0.3, 0.4, 0.87)
    expected = WorldModel(scene.with_(weights={WEIGHTS_NAME: weights}), "relight").images(
        SplatState.rest(scene), [cam], light_direction=turned)[0]  # fmt: skip
    for command in (["render", str(folder), "-o", str(tmp_path / "r")],
                    ["simulate", str(folder), "--duration", "0.1", "--times", "0", "--no-video", "-o", str(tmp_path / "s")]):  # fmt: skip
        run = CliRunner().invoke(app, [*command, "--cameras", str(tmp_path / "cams.json"), "--world-model", "relight",
                                       "--light-direction", ",".join(map(str, turned))])  # fmt: skip
        assert run.exit_code == 0, run.output
        assert "estimating the capture light" not in run.output
        (png,) = list(Path(command[command.index("-o") + 1]).rglob("*.png"))
        got = np.asarray(Image.open(png).convert("RGB"), np.float32) / 255
        assert psnr(got, expected) > 40.0, command[0]


def test_spawned_assets_are_drawn_lit_and_cast_shadows_in_every_mode(cube):
    """A spawned mesh (surface splats, colour = albedo) is lit by the light now and shadows the floor."""
    import trimesh

    from hybrid.world import _mesh_splats

    scene, truth, rel = cube
    centre, half, grey = np.array([0.2, -0.2, 0.25]), 0.06, 0.7  # floating: its shadow lies clear of it
    mesh = trimesh.creation.box([2 * half] * 3)
    mesh.apply_translation(centre)
    crate = _mesh_splats(mesh.vertices, mesh.faces, np.full((len(mesh.vertices), 3), grey), 0.01)
    rest = SplatState.rest(scene)
    state = replace(rest, extra=crate)
    cam = top_camera(size=160)

    def pixel(p):
        x = cam.viewmat[:3, :3] @ p + cam.viewmat[:3, 3]
        return int(cam.K[1, 1] * x[1] / x[2] + cam.K[1, 2]), int(cam.K[0, 0] * x[0] / x[2] + cam.K[0, 2])

    def patch(img, p):
        r, c = pixel(p)
        return img[r - 2 : r + 3, c - 2 : c + 3].reshape(-1, 3).mean(axis=0)

    top = centre + [0.0, 0.0, half]
    shadow = shadow_center_on_floor(centre, LIGHT)  # the crate's shadow on the floor (z = 0)
    off = WorldModel(scene, "off").images(state, [cam])[0]
    np.testing.assert_allclose(patch(off, top), grey, atol=0.05)  # the engine alone: the mesh's own colour
    wm = WorldModel(scene, "relight", relighting=rel)
    (frame,) = wm.render(state, [cam], keep_gbuffers=True)
    (plain,) = wm.images(rest, [cam])
    lit_top = grey * (np.asarray(LIGHT.ambient) + np.asarray(LIGHT.color) * LIGHT.direction[2])
    np.testing.assert_allclose(patch(frame.image, top), lit_top, rtol=0.08)
    floor_albedo = truth["albedo"][truth["floor"][np.argmin(np.linalg.norm(
        scene.splats.means[truth["floor"]] - shadow, axis=1))]]  # fmt: skip
    np.testing.assert_allclose(patch(frame.image, shadow), floor_albedo * np.asarray(LIGHT.ambient), rtol=0.15)
    assert patch(plain, shadow).mean() > 1.3 * patch(frame.image, shadow).mean()  # no crate, no shadow
    r, c = pixel(top)
    assert float(frame.gbuffers.moved[r, c, 0]) == 1.0  # new: the residual's gate opens on it
    # a light edit turns its shading: from straight above the top face gets sun * 1
    above = WorldModel(scene, "relight", relighting=rel).images(state, [cam], light_direction=(0.0, 0.0, 1.0))[0]
    np.testing.assert_allclose(patch(above, top), grey * (np.asarray(LIGHT.ambient) + np.asarray(LIGHT.color)),
                               rtol=0.08)  # fmt: skip


@pytest.mark.parametrize("canopy", ["haze", "solid", "floating"])
def test_static_splats_cast_shadows_only_where_the_capture_shows_them(canopy):
    """A static shelf on a post (no object) over the floor: its shadow is drawn only if the capture has it.

    On lifts the static splats are mostly floaters, which drew shadows on 18 % of a benchmark lift's
    ground that its capture did not have; a real static caster (a shelf, a wall) keeps its shadow.
    Without its post the shelf hangs in the air as a floater does, and casts nothing, whatever the
    capture shows (on the sample video the floaters' "shadows" matched the ground they copy).
    """
    scene, truth = cube_over_plane(floor_half=0.5, spacing=0.015, canopy=canopy)
    floor = truth["floor"]
    in_canopy_shadow = np.zeros(len(scene.splats), bool)
    d = np.asarray(LIGHT.direction)
    p = scene.splats.means[floor].astype(np.float64)
    t = (CANOPY_CENTER[2] - p[:, 2]) / d[2]
    hit = p + t[:, None] * d
    in_canopy_shadow[floor] = np.all(np.abs(hit[:, :2] - CANOPY_CENTER[:2]) < CANOPY_HALF - 0.01, axis=1)
    cube_shadow = floor[~truth["vis"][floor] & ~in_canopy_shadow[floor]]
    for rel in (Relighting.fit(scene, light=LIGHT), Relighting.fit(scene, light_direction=LIGHT.direction)):
        shelf = truth["canopy"]
        assert np.all((rel.shadow_groups[shelf] == FLOATING) == (canopy == "floating"))
        if canopy != "floating":
            assert rel.static_casts == (canopy == "solid")
        dark = rel.vis_map_capture < 0.5
        assert dark[cube_shadow].mean() > 0.9  # the object's shadow either way
        if canopy == "solid":
            assert dark[in_canopy_shadow].mean() > 0.9
        else:
            assert dark[in_canopy_shadow].mean() < 0.02
    # the decision is stored with the weights and used when the scene is loaded
    result = train_world_model(scene, TrainConfig(), light=LIGHT)
    loaded = WorldModel(scene.with_(weights={WEIGHTS_NAME: result.weights}), "relight")
    if canopy != "floating":
        assert loaded.relighting.static_casts == (canopy == "solid")


def test_export_bakes_the_relit_colours_and_the_new_shadow(cube, tmp_path):
    """``hybrid export --light-direction``: the file, drawn plainly as an engine would, is the relit render."""
    from typer.testing import CliRunner

    from hybrid.cli import app
    from hybrid.export import import_file
    from scenes.splats import sh0_to_rgb

    scene, truth, _ = cube
    stored = scene.with_(weights={WEIGHTS_NAME: train_world_model(scene, TrainConfig(), light=LIGHT).weights})
    save_scene(stored, tmp_path / "s")
    light2 = Light(direction=(-0.3, 0.4, 0.87), color=LIGHT.color, ambient=LIGHT.ambient)
    run = CliRunner().invoke(app, ["export", str(tmp_path / "s"), "--format", "ply", "-o", str(tmp_path / "relit.ply"),
                                   "--light-direction", "-0.3,0.4,0.87"])  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "relit under the light" in run.output
    back = import_file(tmp_path / "relit.ply")
    cam = top_camera(size=160)
    plain = WorldModel(back, "off").images(SplatState.rest(back), [cam])[0]
    relit = WorldModel(stored, "relight").images(SplatState.rest(stored), [cam], light_direction=light2.direction)[0]
    assert psnr(plain, relit) > 40.0
    # its floor is dark where the cube's shadow falls under the new light, and lit where it fell before
    floor = truth["floor"]
    d2 = np.asarray(light2.direction) / np.linalg.norm(light2.direction)
    lit = truth["albedo"][floor] * (np.asarray(LIGHT.ambient) + np.asarray(LIGHT.color) * d2[2])
    got = sh0_to_rgb(back.splats.sh[floor, 0])
    dark = floor[(got / lit).mean(axis=1) < 0.8]
    assert len(dark) > 20
    centre = back.splats.means[dark].mean(axis=0)
    assert np.linalg.norm(centre[:2] - shadow_center_on_floor(CUBE_CENTER, light2)[:2]) < 0.02
    old = np.linalg.norm(back.splats.means[floor, :2] - shadow_center_on_floor(CUBE_CENTER, LIGHT)[:2], axis=1) < 0.03
    assert (got[old] / lit[old]).mean() == pytest.approx(1.0, abs=0.1)


def test_a_scene_without_ground_or_capture_cameras_relights(cube):
    """An imported splat file has neither: relight still works and reproduces the plain render at rest."""
    scene, _, _ = cube
    bare = scene.with_(ground=None, capture_cameras=())
    rest = SplatState.rest(bare)
    cam = top_camera(size=96)
    plain = WorldModel(bare, "off").images(rest, [cam])[0]
    relit = WorldModel(bare, "relight", relighting=Relighting.fit(bare, light=LIGHT)).images(rest, [cam])[0]
    assert psnr(plain, relit) > 50.0
    turned = WorldModel(bare, "relight", relighting=Relighting.fit(bare, light=LIGHT)).images(
        rest, [cam], light_direction=(-0.3, 0.4, 0.87)
    )[0]
    assert psnr(plain, turned) < 40.0  # and a light edit changes it
    # training keeps the shipped prior and fits the light; training the residual needs capture frames
    result = train_world_model(bare, TrainConfig(), light=LIGHT)
    assert result.init == "prior" and result.samples == 0
    with pytest.raises(SceneError, match="no capture cameras"):
        train_world_model(bare, TrainConfig(init="scratch", steps=5), light=LIGHT)


def test_an_object_that_only_settles_has_not_moved():
    """A box placed 2 mm above the ground drops onto it: not a move for the picture; a push is."""
    from hybrid.world import World
    from physics.events import parse_events
    from scenes import Ground, Scene, SceneObject, Splats
    from tests.physics._scenes import box_collider

    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.05, 0.05, (200, 3)) + [0.0, 0.0, 0.052]
    splats = Splats.from_activated(pts, np.tile([1.0, 0, 0, 0], (200, 1)), np.full((200, 3), 0.005), np.full(200, 0.9),
                                   np.full((200, 3), 0.5))  # fmt: skip
    box = SceneObject("box", np.arange(200), box_collider((0.1, 0.1, 0.1)), mass=1.0, friction=0.8, restitution=0.0,
                      position=(0.0, 0.0, 0.052))  # fmt: skip
    scene = Scene(splats, objects=(box,), ground=Ground(restitution=0.0))
    world = World(scene)
    world.step(0.5)
    settled = np.linalg.norm(np.asarray(world.poses()["box"]["position"]) - box.position)
    assert 1e-4 < settled < 3e-3  # it did move a little
    assert not SplatState.of_world(world).moved.any()
    pushed = World(scene, events=parse_events([{"time": 0.0, "type": "set_velocity", "object": "box",
                                                "linear": [0.5, 0.0, 0.0]}]))  # fmt: skip
    pushed.step(0.5)
    assert SplatState.of_world(pushed).moved.all()


def test_the_floor_a_moved_object_hid_takes_the_colour_of_the_floor_around_it():
    """A cube resting on the floor hides the floor under it from every capture camera; a lift paints it with
    guesses (here: black). Once the cube moves away, relight draws that floor from its surroundings, and at rest
    nothing changes."""
    from hybrid.world_model.relight import GROUND, covered_ground

    scene, truth = cube_over_plane(cube_center=(0.0, 0.0, CUBE_HALF), floor_half=0.45, spacing=0.015)
    floor = truth["floor"]
    fm = scene.splats.means[floor]
    under = floor[np.all(np.abs(fm[:, :2]) < CUBE_HALF - 0.025, axis=1)]
    sh = scene.splats.sh.copy()
    sh[under] = rgb_to_sh0(np.full((len(under), 3), 0.02))[:, None, :]  # the lift's guess under the box
    scene = scene.with_(splats=replace(scene.splats, sh=sh))
    rel = Relighting.fit(scene, light=LIGHT)
    cover = covered_ground(scene, rel.shadow_groups)
    hidden = np.nonzero(cover == 0)[0]
    assert set(under) <= set(hidden) and np.all(rel.shadow_groups[hidden] == GROUND)
    outer = np.max(np.abs(scene.splats.means[hidden, :2]))
    assert outer <= CUBE_HALF - 0.02 + 1e-6  # only inside the footprint, inset by REVEAL_INSET
    # at rest the relit render is the capture
    cams = list(scene.capture_cameras[:2])
    rest = SplatState.rest(scene)
    plain = WorldModel(scene, "off").images(rest, cams)
    relit = WorldModel(scene, "relight", relighting=rel).images(rest, cams)
    assert all(psnr(a, b) > 50.0 for a, b in zip(plain, relit, strict=True))
    # moved away: the hidden floor's albedo is its surroundings' (the checker's two colours), not black
    state = moved_state(scene, truth, (0.0, 0.3, 0.0))
    assert np.array_equal(rel.revealed(state.moved), cover >= 0)
    revealed = rel.albedo_revealed[under]
    err = np.abs(revealed - truth["albedo"][under]).mean(axis=1)
    assert np.median(err) < 0.08
    assert np.abs(rel.albedo[under] - truth["albedo"][under]).mean(axis=1).min() > 0.3  # the guess was far off
    cam = top_camera(size=128)
    (frame,) = WorldModel(scene, "relight", relighting=rel).render(state, [cam], keep_gbuffers=True)
    px = np.round(np.array([64.0, 64.0])).astype(int)  # the cube's old centre (top camera over the origin)
    patch = frame.image[px[1] - 3 : px[1] + 4, px[0] - 3 : px[0] + 4].mean(axis=(0, 1))
    lit = np.asarray(LIGHT.ambient) + np.asarray(LIGHT.color) * LIGHT.direction[2]
    expected = 0.5 * (np.array([0.75, 0.7, 0.6]) + np.array([0.55, 0.6, 0.7])) * lit
    np.testing.assert_allclose(patch, expected, atol=0.1)
    engine = WorldModel(scene, "off").images(state, [cam])[0]
    assert engine[px[1] - 3 : px[1] + 4, px[0] - 3 : px[0] + 4].mean() < 0.1  # the engine shows the black guess
    # a floating cube (the fixture's) stands on nothing and hides nothing
    floating, _ = cube_over_plane(floor_half=0.45, spacing=0.015)
    assert not (covered_ground(floating, Relighting.fit(floating, light=LIGHT).shadow_groups) >= 0).any()
