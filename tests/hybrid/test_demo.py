"""``hybrid demo``'s push after the lift: which object, where, how hard (the whole demo: test_sample_objects.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pybullet")
pytest.importorskip("trimesh")

from hybrid.demo import PUSH_SPEED, push_event  # noqa: E402
from physics.events import parse_events  # noqa: E402
from scenes import Camera, Ground, Scene, SceneObject, Splats  # noqa: E402
from tests.physics._scenes import box_collider  # noqa: E402

CAMERA = Camera.look_at([0.0, -2.0, 1.2], [0.0, 0.0, 0.2], width=160, height=120)


def _scene() -> Scene:
    def box(name, size, xy, z0=0.0, mass=2.0):
        size = np.asarray(size, float)
        return SceneObject(name, np.zeros(0, np.int64), box_collider(size), mass=mass, friction=0.6, restitution=0.0,
                           position=(xy[0], xy[1], z0 + size[2] / 2))  # fmt: skip

    objects = (
        box("low", (0.3, 0.3, 0.2), (-0.5, 0.0)),
        box("tall", (0.2, 0.2, 0.6), (0.3, 0.2), mass=3.0),
        box("on_top", (0.1, 0.1, 0.8), (-0.5, 0.0), z0=0.2),  # the highest top, but it rests on "low"
    )
    return Scene(Splats.empty(), objects=objects, ground=Ground(), capture_cameras=(CAMERA,))


def test_the_push_hits_the_tallest_object_on_the_ground_away_from_the_camera():
    scene = _scene()
    event, name = push_event(scene)
    assert name == "tall"
    point, impulse = np.array(event["point"]), np.array(event["impulse"])
    away = np.array([0.3, 0.2, 0.0]) - CAMERA.position
    away[2] = 0.0
    away /= np.linalg.norm(away)
    np.testing.assert_allclose(impulse, 3.0 * PUSH_SPEED * away, atol=1e-3)  # mass x speed, horizontal
    assert point[2] == pytest.approx(0.4, abs=1e-3)  # two thirds of its 0.6 m height
    # on its camera-facing side: on the box's surface (1 mm inside), on the line through its centre
    local = point - [0.3, 0.2, 0.4]
    assert np.max(np.abs(local[:2])) == pytest.approx(0.1, abs=2e-3)
    assert local[:2] @ away[:2] < 0
    np.testing.assert_allclose(np.cross(local, away), 0.0, atol=1e-6)


def test_the_push_moves_that_object_and_no_other():
    from hybrid.world import World

    scene = _scene()
    event, name = push_event(scene)
    world = World(scene, events=parse_events([event]))
    start = {o.name: np.array(o.position) for o in scene.objects}
    world.step(1.5)
    assert [a.object for a in world.applied] == [name]  # the push found the object it was aimed at
    moved = {n: np.array(p["position"]) - start[n] for n, p in world.poses().items()}
    away = np.array(event["impulse"]) / np.linalg.norm(event["impulse"])
    assert moved[name][:2] @ away[:2] > 0.1  # slid or toppled away from the camera
    for other in ("low", "on_top"):
        assert np.linalg.norm(moved[other]) < 0.01, (other, moved[other])


def test_no_object_on_the_ground_means_no_push():
    assert push_event(Scene(Splats.empty(), capture_cameras=(CAMERA,))) is None
