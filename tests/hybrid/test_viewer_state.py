"""The viewer's plain state: fly camera, light settings, undo stack, feature edges (no GL, no window)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybrid.viewer import FlyCamera, FlyCameraConfig, InterventionStack, LightSettings
from hybrid.viewer.overlays import feature_edges
from hybrid.viewer.state import FrameStats, Intervention
from render.gl import look_at
from scenes import Camera, Light
from scenes.errors import ShapeError


def _hold(cam: FlyCamera, keys, seconds: float, fps: float) -> None:
    n = int(round(seconds * fps))
    for _ in range(n):
        cam.update(1.0 / fps, keys)


@pytest.mark.parametrize("fps", [4.0, 30.0, 500.0])
def test_held_key_distance_does_not_depend_on_frame_rate(fps):
    cam = FlyCamera(position=(0, 0, 1), yaw=math.pi / 2, pitch=0.0)
    _hold(cam, {"w"}, 1.0, fps)
    _hold(cam, set(), 1.0, fps)  # let go: the camera eases to a stop
    tau, v = cam.config.smoothing, cam.config.speed
    # closed form: 1 s accelerating + the decay tail, all along +Y (yaw 90 deg)
    expected = (
        v * 1.0 - v * tau * (1 - math.exp(-1 / tau)) + v * (1 - math.exp(-1 / tau)) * tau * (1 - math.exp(-1 / tau))
    )
    assert cam.position[1] == pytest.approx(expected, rel=1e-9)
    assert cam.position[0] == pytest.approx(0.0, abs=1e-12)
    assert cam.position[2] == pytest.approx(1.0, abs=1e-12)


def test_move_keys_follow_the_view_and_world_up():
    cam = FlyCamera(position=(0, 0, 0), yaw=0.0, pitch=0.0, config=FlyCameraConfig(smoothing=0.0))
    cam.update(1.0, {"w"})
    np.testing.assert_allclose(cam.position, [1, 0, 0], atol=1e-12)
    cam.update(1.0, {"d"})  # right of +X looking along +X with +Z up is -Y
    np.testing.assert_allclose(cam.position, [1, -1, 0], atol=1e-12)
    cam.update(1.0, {"e"})
    np.testing.assert_allclose(cam.position, [1, -1, 1], atol=1e-12)
    cam.update(0.5, {"w", "s"})  # opposite keys cancel
    np.testing.assert_allclose(cam.position, [1, -1, 1], atol=1e-12)
    # the OpenCV camera's x axis (image right) is the move-right direction, z the forward one
    view = cam.viewmat()
    np.testing.assert_allclose(view[0, :3], cam.right, atol=1e-12)
    np.testing.assert_allclose(view[2, :3], cam.forward, atol=1e-12)


def test_mouse_look_turns_and_pitch_is_clamped():
    cam = FlyCamera(yaw=0.0, pitch=0.0)
    s = cam.config.look_sensitivity
    cam.look(100, 0)  # mouse right: turn right (clockwise seen from above)
    assert cam.yaw == pytest.approx(-100 * s)
    cam.look(0, -1e6)  # far up: stops short of straight up
    assert cam.pitch == pytest.approx(math.radians(89.0))
    assert np.isfinite(cam.viewmat()).all()


def test_scroll_scales_speed_within_limits():
    cam = FlyCamera(config=FlyCameraConfig(speed=1.0, scroll_factor=2.0, max_speed=10.0))
    assert cam.scroll(2) == pytest.approx(4.0)
    assert cam.scroll(-1) == pytest.approx(2.0)
    assert cam.scroll(100) == pytest.approx(10.0)


def test_capture_camera_view_is_exact_until_the_user_moves():
    cap = Camera.look_at((1.0, -2.0, 1.5), (0.0, 0.0, 0.2), width=640, height=360)
    rolled = cap.viewmat.copy()
    c, s = math.cos(0.2), math.sin(0.2)
    rolled[:3] = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0]]) @ rolled  # 11 deg of roll
    cam = FlyCamera()
    cam.fly_to_view(rolled, 40.0)
    assert cam.animating
    _hold(cam, set(), 1.0, 30)
    assert not cam.animating
    np.testing.assert_allclose(cam.viewmat(), rolled, atol=1e-12)  # roll kept
    assert cam.fov_y_deg == 40.0
    cam.look(1, 0)  # any turn leaves the exact view: back to yaw/pitch, no roll
    view = cam.viewmat()
    assert abs(view[0, 2]) < 1e-12  # image x axis horizontal again
    np.testing.assert_allclose(cam.position, cap.position, atol=1e-9)


def test_frame_fits_the_box_in_view_from_the_same_direction():
    cam = FlyCamera(position=(5, -5, 5), yaw=math.radians(135), pitch=math.radians(-30))
    forward = cam.forward
    lo, hi = np.array([-0.3, -0.2, 0.0]), np.array([0.5, 0.4, 0.6])
    cam.frame(lo, hi)
    _hold(cam, set(), 1.0, 60)
    np.testing.assert_allclose(cam.forward, forward, atol=1e-12)
    W, H = 640, 360
    K, view = cam.K(W, H), cam.viewmat()
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    pc = corners @ view[:3, :3].T + view[:3, 3]
    uv = pc[:, :2] / pc[:, 2:] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    assert (pc[:, 2] > 0).all()
    assert uv[:, 0].min() >= 0 and uv[:, 0].max() <= W and uv[:, 1].min() >= 0 and uv[:, 1].max() <= H
    # and not tiny: the box spans at least a third of the height
    assert uv[:, 1].max() - uv[:, 1].min() > H / 3


def test_ray_through_a_projected_point_hits_it():
    cam = FlyCamera()
    cam.set_view(look_at(np.array([2.0, -3.0, 1.2]), np.array([0.0, 0.0, 0.3])), 55.0, exact=False)
    p = np.array([0.3, 0.2, 0.4])
    W, H = 800, 600
    K, view = cam.K(W, H), cam.viewmat()
    pc = view[:3, :3] @ p + view[:3, 3]
    u, v = pc[0] / pc[2] * K[0, 0] + K[0, 2], pc[1] / pc[2] * K[1, 1] + K[1, 2]
    origin, d = cam.ray(u, v, W, H)
    t = (p - origin) @ d
    np.testing.assert_allclose(origin + t * d, p, atol=1e-9)


def test_light_settings_round_trip_and_direction():
    light = Light((0.3, -0.4, 0.866), (1.0, 0.9, 0.8), 1.5, (0.2, 0.25, 0.3))
    ls = LightSettings.from_light(light)
    back = ls.to_light()
    np.testing.assert_allclose(back.direction, light.direction, atol=1e-12)
    assert back.color == light.color and back.intensity == light.intensity and back.ambient == light.ambient
    overhead = LightSettings(azimuth_deg=37.0, elevation_deg=90.0).direction
    np.testing.assert_allclose(overhead, [0, 0, 1], atol=1e-12)
    east = LightSettings(azimuth_deg=0.0, elevation_deg=0.0).direction
    np.testing.assert_allclose(east, [1, 0, 0], atol=1e-12)
    with pytest.raises(ShapeError, match="elevation"):
        LightSettings(elevation_deg=95.0)
    with pytest.raises(ShapeError, match="intensity"):
        LightSettings(intensity=-1.0)


def test_intervention_stack_is_lifo_and_bounded():
    stack = InterventionStack(limit=3)
    assert stack.pop() is None
    for i in range(5):
        stack.push(Intervention(f"push {i}", None, ()))
    assert stack.labels() == ["push 2", "push 3", "push 4"]
    assert stack.pop().label == "push 4"
    assert len(stack) == 2
    with pytest.raises(ShapeError, match="limit"):
        InterventionStack(limit=0)


def test_frame_stats_sections_and_fps():
    stats = FrameStats(window=4)
    for _ in range(3):
        stats.begin_frame()
        stats.add("render", 0.010)
        stats.add("render", 0.002)
        stats.add("physics", 0.001)
        stats.end_frame()
    stats.begin_frame()
    stats.add("render", 1.0)
    stats.discard_frame()  # nothing drawn: not counted
    summary = stats.summary()
    assert summary["render"] == pytest.approx(12.0)
    assert summary["physics"] == pytest.approx(1.0)
    assert stats.fps > 0


def test_feature_edges_of_a_triangulated_box_are_its_twelve_edges():
    import trimesh

    box = trimesh.creation.box(extents=(1, 2, 3))
    edges = feature_edges(box.vertices, box.faces)
    assert len(edges) == 12
    lengths = sorted(np.round(np.linalg.norm(box.vertices[edges[:, 0]] - box.vertices[edges[:, 1]], axis=1), 9))
    assert lengths == [1.0] * 4 + [2.0] * 4 + [3.0] * 4
