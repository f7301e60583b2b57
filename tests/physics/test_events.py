"""The events file: parsing, validation messages, scheduling, applying to a world."""

from __future__ import annotations

import json

import numpy as np
import pytest

from physics import EventQueue, check_event_objects, load_events, parse_events
from scenes import FormatError


def test_every_type_parses_and_sorts_by_time(tmp_path):
    (tmp_path / "crate.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    data = [
        {"time": 2.0, "type": "spawn", "mesh": "crate.obj", "position": [0, 0, 1], "mass": 2},
        {"time": 0.0, "type": "push", "point": [0.1, 0, 0.05], "impulse": [1, 0, 0]},
        {"time": 0.5, "type": "force", "object": "box", "force": [0, 0, 30], "duration": 0.2},
        {"time": 1.0, "type": "velocity", "object": "box", "angular": [0, 0, 1]},
        {"time": 1.0, "type": "drop", "object": "box", "height": 0.5},
        {"time": 3.0, "type": "remove", "object": "box"},
        {"time": 3.0, "type": "gravity", "gravity": [0, 0, -1.62]},
    ]
    path = tmp_path / "events.json"
    path.write_text(json.dumps({"events": data}))
    events = load_events(path)
    assert [e.type for e in events] == ["push", "apply_force", "set_velocity", "drop", "spawn", "remove", "set_gravity"]
    assert [e.time for e in events] == [0.0, 0.5, 1.0, 1.0, 2.0, 3.0, 3.0]
    assert events[0].args == {"point": (0.1, 0.0, 0.05), "impulse": (1.0, 0.0, 0.0)}
    assert events[4].args["mesh"] == tmp_path / "crate.obj"  # relative to the events file
    check_event_objects(events, ["box"])
    queue = EventQueue(events)
    assert [e.type for e in queue.due(0.99)] == ["push", "apply_force"]
    assert [e.type for e in queue.due(1.0)] == ["set_velocity", "drop"]
    assert queue.next_time() == 2.0 and len(queue) == 3


@pytest.mark.parametrize(
    "data,match",
    [
        ({"time": 0}, r"expected a JSON list of events"),
        ([[1, 2]], r"event 0: expected an object with 'time' and 'type'"),
        ([{"time": 0}], r"event 0: missing 'type'"),
        ([{"time": 0, "type": "explode"}], r"event 0: unknown type 'explode'; expected one of \['push'"),
        ([{"type": "push", "point": [0, 0, 0], "impulse": [1, 0, 0]}], r"event 0 \(push\): missing 'time'"),
        ([{"time": -1, "type": "push", "point": [0, 0, 0], "impulse": [1, 0, 0]}], r"'time' must be .* >= 0, got -1"),
        (
            [{"time": 0, "type": "push", "point": [0, 0], "impulse": [1, 0, 0]}],
            r"event 0 \(push\): field 'point': expected a list of 3 finite numbers \[x, y, z\], got \[0, 0\]",
        ),
        ([{"time": 0, "type": "push", "point": [0, 0, 0]}], r"event 0 \(push\): missing field 'impulse'"),
        (
            [{"time": 0, "type": "push", "point": [0, 0, 0], "impulse": [1, 0, 0], "force": 3}],
            r"unknown field\(s\) \['force'\]; push takes \['impulse', 'point'\]",
        ),
        (
            [{"time": 0, "type": "drop", "object": "box", "height": "high"}],
            r"field 'height': expected a finite number >= 0, got \"high\"",
        ),
        ([{"time": 0, "type": "set_velocity", "object": "box"}], r"give 'linear' and/or 'angular'"),
        (
            [{"time": 0, "type": "spawn", "mesh": "nope.glb", "position": [0, 0, 0], "mass": 1}],
            r"the mesh file .*nope\.glb' does not exist",
        ),
        ([{"time": 0, "type": "remove", "object": ""}], r"field 'object': expected a non-empty string"),
    ],
)
def test_malformed_events_name_the_event_and_field(data, match):
    with pytest.raises(FormatError, match=match):
        parse_events(data, source="ev.json")


def test_events_file_that_is_not_json(tmp_path):
    path = tmp_path / "ev.json"
    path.write_text("[{time: 0}]")
    with pytest.raises(FormatError, match=r"ev\.json: not valid JSON"):
        load_events(path)
    with pytest.raises(FormatError, match=r"events file not found"):
        load_events(tmp_path / "missing.json")


def test_unknown_objects_are_found_before_simulating():
    events = parse_events([
        {"time": 0, "type": "remove", "object": "box"},
        {"time": 1, "type": "drop", "object": "box", "height": 1},
    ])  # fmt: skip
    with pytest.raises(FormatError, match=r"event 1 \(drop\) at t=1 s: unknown object 'box'; objects then: \[\]"):
        check_event_objects(events, ["box"])
    with pytest.raises(FormatError, match=r"unknown object 'chair'"):
        check_event_objects(parse_events([{"time": 0, "type": "remove", "object": "chair"}]), ["box"])


def test_events_apply_to_a_world():
    pytest.importorskip("pybullet")
    from physics import PhysicsWorld
    from tests.physics._scenes import box_scene

    w = PhysicsWorld(box_scene())
    events = parse_events([
        {"time": 0, "type": "push", "point": [-0.1, 0, 0.05], "impulse": [1.0, 0, 0]},
        {"time": 0, "type": "set_gravity", "gravity": [0, 0, 0]},
    ])  # fmt: skip
    assert [e.apply(w) for e in events] == ["box", None]
    assert w.velocity("box")[0] == pytest.approx([0.5, 0, 0], abs=1e-3)
    assert w.gravity == (0.0, 0.0, 0.0)
    assert "push(point=[-0.1, 0, 0.05]" in events[0].describe()
    np.testing.assert_array_equal(w.body_poses().shape, (1, 7))
