"""PhysicsWorld against analytic mechanics: free fall, rest, friction stopping distance, impulses."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pybullet")
pytest.importorskip("trimesh")

from physics import PhysicsWorld, WorldConfig  # noqa: E402
from scenes import ColliderMesh, PhysicsError, Scene, SceneObject, ShapeError, Splats  # noqa: E402
from tests.physics._scenes import G, box_collider, box_scene  # noqa: E402

DT = 1.0 / 240.0


def test_free_fall_follows_z0_minus_half_g_t2_until_contact():
    w = PhysicsWorld(box_scene(position=(0.0, 0.0, 0.05)))
    w.drop("box", 1.0)  # bottom 1 m above the ground: contact after sqrt(2 / g) = 0.45 s
    z0 = w.pose("box")[2]
    assert z0 == pytest.approx(1.05, abs=1e-9)
    for n in (12, 48, 96):  # up to t = 0.4 s, before contact
        w.step_to(n * DT)
        t = w.time
        z = w.pose("box")[2]
        # Bullet integrates semi-implicit Euler: z_n = z0 - g dt^2 n (n + 1) / 2 exactly ...
        assert z == pytest.approx(z0 - G * DT * DT * n * (n + 1) / 2, abs=1e-9)
        # ... which is the analytic z0 - g t^2 / 2 up to its known O(dt) term g dt t / 2
        assert abs(z - (z0 - 0.5 * G * t * t)) <= 0.5 * G * DT * t + 1e-9
        assert w.velocity("box")[0][2] == pytest.approx(-G * t, rel=1e-9)


def test_resting_box_stays_put():
    w = PhysicsWorld(box_scene(position=(0.3, -0.2, 0.05)))
    start = w.pose("box")
    w.step(2.0)
    end = w.pose("box")
    # at rest on its collider: Bullet's default 1 mm margin outside a convex mesh lifted it by 1 mm (0.1 mm now)
    assert np.linalg.norm(end[:3] - start[:3]) < 2e-4
    assert abs(abs(end[3]) - 1.0) < 1e-6


def test_a_stack_resting_on_its_colliders_stays_put():
    """A box on a box on the ground, placed touching: nothing moves (the default margin lifted them by 1 and 3 mm)."""
    lower = SceneObject("lower", np.zeros(0, np.int64), box_collider((0.3, 0.3, 0.2)), mass=3.0, position=(0, 0, 0.1))
    upper = SceneObject("upper", np.zeros(0, np.int64), box_collider((0.1, 0.1, 0.1)), mass=0.5,
                        position=(0.05, -0.03, 0.25))  # fmt: skip
    w = PhysicsWorld(Scene(Splats.empty(), objects=(lower, upper), ground=box_scene().ground))
    start = {n: w.pose(n) for n in ("lower", "upper")}
    w.step(2.0)
    for n, pose in start.items():
        assert np.linalg.norm(w.pose(n)[:3] - pose[:3]) < 4e-4, n  # 0.1 + 0.2 mm of margins (was 1 + 2 mm)
    assert WorldConfig().collision_margin == pytest.approx(1e-4)
    with pytest.raises(ShapeError, match="collision_margin"):
        WorldConfig(collision_margin=-1.0)


@pytest.mark.parametrize("mu,v0", [(0.3, 1.0), (0.5, 1.5), (0.8, 2.0)])
def test_push_slides_the_friction_stopping_distance(mu, v0):
    mass = 2.0
    w = PhysicsWorld(box_scene(mass=mass, friction=mu, ground_friction=1.0))  # contact friction = product = mu
    w.step(0.05)
    x0, vx0 = w.pose("box")[0], w.velocity("box")[0][0]
    assert w.push([-0.1, 0.0, 0.05], [mass * v0, 0.0, 0.0]) == "box"  # centre of the -x face, through the COM
    assert w.velocity("box")[0][0] - vx0 == pytest.approx(v0, rel=1e-9)
    w.step(v0 / (mu * G) + 0.5)  # past the stopping time v0 / (mu g)
    travelled = w.pose("box")[0] - x0
    expected = v0**2 / (2 * mu * G)
    assert travelled == pytest.approx(expected, rel=0.05, abs=2e-3)
    assert np.linalg.norm(w.velocity("box")[0]) < 1e-3


def test_off_centre_impulse_spins_by_the_inverse_inertia():
    size, mass, J = (0.2, 0.2, 0.1), 2.0, 0.4
    w = PhysicsWorld(box_scene(size=size, mass=mass, ground=False), WorldConfig(gravity=(0, 0, 0)))
    w.push([-0.1, -0.1, 0.05], [J, 0.0, 0.0])  # corner edge of the -x face: lever arm 0.1 m about z
    lin, ang = w.velocity("box")
    izz = mass * (size[0] ** 2 + size[1] ** 2) / 12
    assert lin == pytest.approx([J / mass, 0, 0], abs=1e-12)
    assert ang == pytest.approx([0, 0, 0.1 * J / izz], rel=1e-6, abs=1e-9)  # float32 collider vertices


def test_constant_force_in_zero_gravity_gives_half_a_t2():
    w = PhysicsWorld(box_scene(ground=False, mass=2.0), WorldConfig(gravity=(0, 0, 0)))
    w.apply_force("box", [3.0, 0.0, 0.0], duration=0.5)
    w.step(0.5)
    x = w.pose("box")[0]
    n = 120  # a = F / m = 1.5 m/s^2 for 120 steps; semi-implicit Euler: a dt^2 n (n + 1) / 2
    assert x == pytest.approx(1.5 * DT * DT * n * (n + 1) / 2, rel=1e-9)
    w.step(0.5)  # the force has ended: constant velocity a t
    assert w.velocity("box")[0][0] == pytest.approx(1.5 * 0.5, rel=1e-9)


def test_object_frame_offset_from_the_centre_of_mass_round_trips():
    # collider centred at (0.3, 0, 0) in the object frame, object rotated 90 degrees about z
    col = box_collider((0.2, 0.1, 0.1))
    col = ColliderMesh(col.vertices + np.array([0.3, 0.0, 0.0]), col.faces)
    q = (math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4))
    obj = SceneObject("o", np.zeros(0, np.int64), col, mass=1.0, position=(1.0, 2.0, 0.05), quaternion=q)
    w = PhysicsWorld(Scene(Splats.empty(), objects=(obj,)), WorldConfig(gravity=(0, 0, 0)))
    assert w.body_poses()[0] == pytest.approx([1.0, 2.0, 0.05, *q], abs=1e-9)
    hit = w.pick([1.0, 2.3, 1.0], [0, 0, -1])  # the box sits at object x = 0.3 -> world y = 2.3
    assert hit is not None and hit.name == "o"
    assert hit.point[2] == pytest.approx(0.1, abs=2e-3)


def test_same_inputs_give_identical_trajectories():
    def run():
        w = PhysicsWorld(box_scene())
        w.step(0.1)
        w.push([-0.1, 0.05, 0.03], [1.0, 0.5, 0.2])
        w.step(1.0)
        return w.body_poses()

    np.testing.assert_array_equal(run(), run())


def test_get_state_set_state_restores_the_trajectory():
    w = PhysicsWorld(box_scene(ground=False), WorldConfig(gravity=(0, 0, -1.0)))
    w.set_velocity("box", [0.3, 0.0, 0.5], [0.0, 1.0, 2.0])
    w.step(0.2)
    state = w.get_state()
    w.step(0.5)
    after = w.body_poses()
    w.set_state(state)
    assert w.time == pytest.approx(0.2)
    np.testing.assert_allclose(w.body_poses(), state.poses, atol=1e-12)
    w.step(0.5)
    np.testing.assert_allclose(w.body_poses(), after, atol=1e-9)


def test_reset_brings_back_the_scene():
    w = PhysicsWorld(box_scene())
    start = w.body_poses()
    w.push([-0.1, 0.0, 0.05], [2.0, 0.0, 0.0])
    w.step(0.5)
    w.remove("box")
    assert w.names == ()
    w.reset()
    assert w.names == ("box",) and w.time == 0.0
    np.testing.assert_allclose(w.body_poses(), start, atol=1e-12)


def test_pick_returns_object_and_hit_point_or_none():
    w = PhysicsWorld(box_scene())
    hit = w.pick([0.05, 0.02, 2.0], [0.0, 0.0, -1.0])
    assert hit.name == "box"
    assert hit.point == pytest.approx([0.05, 0.02, 0.1], abs=2e-3)
    assert hit.normal == pytest.approx([0, 0, 1], abs=1e-6)
    assert hit.distance == pytest.approx(1.9, abs=2e-3)
    assert w.pick([0.5, 0.5, 2.0], [0.0, 0.0, -1.0]) is None  # hits only the ground


def test_spawned_asset_falls_and_rests_on_the_ground(tmp_path):
    import trimesh

    path = tmp_path / "crate.glb"
    trimesh.creation.box([0.3, 0.3, 0.3]).export(path)
    w = PhysicsWorld(box_scene(position=(1.0, 1.0, 0.05)))
    name = w.spawn(path, [0, 0, 0.5, 1, 0, 0, 0], mass=3.0)
    assert name == "crate" and "crate" in w.assets and w.names == ("box", "crate")
    w.step(1.5)
    assert w.pose("crate")[:3] == pytest.approx([0, 0, 0.15], abs=2e-3)
    assert w.spawn(path, [1, -1, 0.5, 1, 0, 0, 0], mass=1.0) == "crate_1"


def test_zero_gravity_keeps_a_box_floating():
    w = PhysicsWorld(box_scene(position=(0, 0, 1.0)))
    w.set_gravity([0, 0, 0])
    w.step(1.0)
    assert w.pose("box")[:3] == pytest.approx([0, 0, 1.0], abs=1e-12)


# ------------------------------------------------------------------ bad input
def test_push_at_empty_space_is_a_clear_error():
    w = PhysicsWorld(box_scene())
    with pytest.raises(PhysicsError, match=r"is on no object .*nearest is 'box'"):
        w.push([0.5, 0.5, 0.5], [1.0, 0.0, 0.0])


def test_unknown_and_removed_object_names_are_clear_errors():
    w = PhysicsWorld(box_scene())
    with pytest.raises(PhysicsError, match=r"unknown object 'chair'; the world has: \['box'\]"):
        w.set_velocity("chair", [1, 0, 0])
    w.remove("box")
    with pytest.raises(PhysicsError, match=r"unknown object 'box' \(it was removed\)"):
        w.drop("box", 1.0)


def test_exploding_impulse_is_refused_before_it_is_applied():
    w = PhysicsWorld(box_scene(mass=2.0))
    before = w.get_state()
    with pytest.raises(PhysicsError, match=r"would move at 5e\+03 m/s .*max_linear_speed=50"):
        w.push([-0.1, 0.0, 0.05], [1e4, 0.0, 0.0])
    assert np.linalg.norm(w.velocity("box")[0]) == 0.0
    np.testing.assert_array_equal(w.body_poses(), before.poses)


def test_divergence_is_detected_by_step():
    w = PhysicsWorld(box_scene(position=(0, 0, 5.0)), WorldConfig(max_linear_speed=5.0))
    with pytest.raises(PhysicsError, match=r"diverged at t=0\.5.* object 'box'"):
        w.step(1.0)  # free fall passes 5 m/s at t = 0.51 s


@pytest.mark.parametrize(
    "content,match",
    [(b"not a mesh at all", r"cannot load .*broken\.glb"), (b"", r"cannot load|holds no triangles")],
)
def test_mesh_that_does_not_load_is_a_format_error(tmp_path, content, match):
    from scenes import FormatError

    path = tmp_path / "broken.glb"
    path.write_bytes(content)
    w = PhysicsWorld(box_scene())
    with pytest.raises(FormatError, match=match):
        w.spawn(path, [0, 0, 1, 1, 0, 0, 0], mass=1.0)
    with pytest.raises(FormatError, match=r"does not exist"):
        w.spawn(tmp_path / "missing.obj", [0, 0, 1, 1, 0, 0, 0], mass=1.0)
    assert w.names == ("box",)


def test_bad_arguments_name_the_argument():
    w = PhysicsWorld(box_scene())
    with pytest.raises(ShapeError, match=r"push: impulse: expected 3 finite numbers"):
        w.push([-0.1, 0, 0.05], [1.0, float("nan"), 0.0])
    with pytest.raises(ShapeError, match=r"step: dt must be .* got -1"):
        w.step(-1)
    with pytest.raises(ShapeError, match=r"drop: height must be"):
        w.drop("box", -0.5)
    with pytest.raises(ShapeError, match=r"WorldConfig.timestep"):
        WorldConfig(timestep=0.0)
