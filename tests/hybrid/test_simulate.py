"""The runtime World and ``hybrid simulate``: splats follow bodies, poses.json, stills, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pybullet")
pytest.importorskip("trimesh")

from hybrid.world import World  # noqa: E402
from physics import PhysicsWorld, parse_events, quat_to_matrix, segment_scene  # noqa: E402
from scenes import Camera, Scene, ShapeError  # noqa: E402
from tests.physics._scenes import primitive_splats  # noqa: E402

PUSH = {"time": 0.1, "type": "push", "point": [-0.5, 0.0, 0.05], "impulse": [2.5, 0.0, 0.0]}  # box_a's -x face


@pytest.fixture(scope="module")
def scene():
    splats, labels = primitive_splats(seed=1, spacing=0.012, ground_half=0.7)
    lifted = segment_scene(Scene(splats))
    box_a = next(o.name for o in lifted.objects if np.isin(o.splat_indices, labels["box_a"]).mean() > 0.9)
    return lifted, box_a


def test_splats_follow_their_bodies_and_replay(scene):
    lifted, box_a = scene
    world = World(lifted, events=parse_events([PUSH, {"time": 0.3, "type": "remove", "object": box_a}]))
    world.advance_to(0.25)
    assert [a.object for a in world.applied] == [box_a]
    obj = lifted.object(box_a)
    pose = world.physics.pose(box_a)
    assert pose[0] - obj.position[0] > 0.05  # pushed along +x
    splats = world.splats()
    rest = lifted.splats.means[obj.splat_indices].astype(np.float64)
    R0 = quat_to_matrix(np.array(obj.quaternion))
    expected = (rest - obj.position) @ R0 @ quat_to_matrix(pose[3:]).T + pose[:3]  # pose * rest^-1 applied
    np.testing.assert_allclose(splats.means[obj.splat_indices], expected, atol=1e-5)
    others = np.setdiff1d(np.arange(len(splats)), obj.splat_indices)
    np.testing.assert_allclose(splats.means[others], lifted.splats.means[others], atol=2e-3)  # resting (1 mm margin)
    before = splats.means.copy()
    world.advance_to(0.5)
    assert box_a not in world.physics.names
    assert np.all(world.splats().opacities[obj.splat_indices] < 1e-6)  # removed: its splats vanish
    again = world.splats_at(0.25)  # back in time: reset and replay, same result
    np.testing.assert_array_equal(again.means, before)


def test_poses_json_matches_an_independent_world(scene, tmp_path):
    from hybrid.simulate import simulate

    lifted, box_a = scene
    cams = [Camera.look_at([1.2, -1.2, 1.0], [0, 0, 0], width=48, height=36),
            Camera.look_at([-1.2, -1.0, 0.8], [0, 0, 0], width=40, height=30)]  # fmt: skip
    res = simulate(lifted, parse_events([PUSH]), tmp_path, duration=0.4, cameras=cams, times=[0.25], fps=10,
                   video=True, video_width=48)  # fmt: skip
    data = json.loads(res.poses.read_text())
    assert list(data) == ["frames"]
    assert [f["time"] for f in data["frames"]] == [0.0, 0.1, 0.2, 0.25, 0.3, 0.4]
    # the same physics run by hand: events applied at their times
    ref = PhysicsWorld(lifted)
    for frame in data["frames"]:
        if frame["time"] >= 0.1 and ref.time < 0.1:
            ref.step_to(0.1)
            assert ref.push(PUSH["point"], PUSH["impulse"]) == box_a
        ref.step_to(frame["time"])
        assert sorted(frame["objects"]) == sorted(o.name for o in lifted.objects)
        for name, p in frame["objects"].items():
            assert set(p) == {"position", "quaternion"}
            np.testing.assert_allclose([*p["position"], *p["quaternion"]], ref.pose(name), atol=1e-12)
    assert [p.name for p in res.stills] == ["t0.25_c0.png", "t0.25_c1.png"]
    from PIL import Image

    assert Image.open(res.stills[1]).size == (40, 30)
    assert res.video is not None and res.video.stat().st_size > 0
    log = json.loads((tmp_path / "events.log.json").read_text())
    assert log[0]["type"] == "push" and log[0]["object"] == box_a


def test_simulate_rejects_bad_times(scene, tmp_path):
    from hybrid.simulate import simulate

    lifted, _ = scene
    with pytest.raises(ShapeError, match=r"times: \[3.0\] outside the simulated interval \[0, 1\] s"):
        simulate(lifted, (), tmp_path, duration=1.0, cameras=[Camera.look_at([1, 1, 1], [0, 0, 0])], times=[3.0])
    with pytest.raises(ShapeError, match=r"stills need cameras"):
        simulate(lifted, (), tmp_path, duration=1.0, times=[0.5])


def test_cli_simulate_writes_the_documented_layout(scene, tmp_path):
    from typer.testing import CliRunner

    from hybrid.cli import app
    from scenes import save_scene, write_transforms_json

    lifted, box_a = scene
    save_scene(lifted, tmp_path / "scene")
    write_transforms_json(tmp_path / "cams.json", [Camera.look_at([1.2, -1.2, 1.0], [0, 0, 0], width=32, height=24)])
    (tmp_path / "ev.json").write_text(json.dumps([PUSH]))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["simulate", str(tmp_path / "scene"), "--events", str(tmp_path / "ev.json"),
                                      "--cameras", str(tmp_path / "cams.json"), "--times", "0,0.2", "--duration", "0.2",
                                      "--fps", "10", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"push -> {box_a}" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["events.log.json", "poses.json", "simulation.mp4",
                                                     "t0.00_c0.png", "t0.20_c0.png"]  # fmt: skip
    bad = CliRunner().invoke(app, ["simulate", str(tmp_path / "scene"), "--times", "0.1", "--duration", "1", "-o",
                                   str(out)])  # fmt: skip
    assert bad.exit_code != 0 and "--times needs --cameras" in str(bad.exception)


def test_spawned_asset_and_removed_object_in_poses_and_stills(scene, tmp_path):
    import trimesh
    from PIL import Image

    from hybrid.simulate import simulate

    lifted, box_a = scene
    mesh = trimesh.creation.box([0.2, 0.2, 0.2])
    mesh.visual.vertex_colors = [255, 0, 0, 255]
    mesh.export(tmp_path / "crate.glb")
    events = parse_events([
        {"time": 0.1, "type": "spawn", "mesh": "crate.glb", "position": [0.0, 0.0, 0.5], "mass": 1.0},
        {"time": 0.1, "type": "remove", "object": box_a},
    ], base=tmp_path)  # fmt: skip
    cam = Camera.look_at([1.2, -1.2, 1.0], [0, 0, 0.1], width=64, height=48)
    res = simulate(lifted, events, tmp_path / "out", duration=0.6, cameras=[cam], times=[0.0, 0.6], fps=5, video=False)
    frames = json.loads(res.poses.read_text())["frames"]
    assert "crate" not in frames[0]["objects"] and box_a in frames[0]["objects"]
    last = frames[-1]["objects"]
    assert "crate" in last and box_a not in last
    assert last["crate"]["position"] == pytest.approx([0, 0, 0.1], abs=3e-3)  # fell and rests on the ground
    before, after = (np.asarray(Image.open(p), float) for p in res.stills)
    u, v = (cam.K @ (cam.viewmat @ [0, 0, 0.1, 1])[:3])[:2] / (cam.K @ (cam.viewmat @ [0, 0, 0.1, 1])[:3])[2]
    patch = (slice(int(v) - 2, int(v) + 3), slice(int(u) - 2, int(u) + 3))
    assert after[patch][..., 0].mean() > 150 and after[patch][..., 1].mean() < 80  # the red crate is drawn there
    assert before[patch][..., 0].mean() < 150


def test_a_push_at_empty_space_names_the_event(scene):
    from scenes import PhysicsError

    lifted, _ = scene
    world = World(
        lifted, events=parse_events([{"time": 0.2, "type": "push", "point": [0, 0, 0.6], "impulse": [1, 0, 0]}])
    )
    with pytest.raises(PhysicsError, match=r"event 0 \(t=0.2 s push\(point=\[0, 0, 0.6\].*is on no object"):
        world.advance_to(1.0)
