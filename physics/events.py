"""The events file: interventions scheduled in time, validated with messages that point at the bad field.

A JSON list (or ``{"events": [...]}``) of objects, each with ``time`` (seconds >= 0) and
``type``; world frame, metres, kilograms, seconds, newtons::

    [{"time": 0.0, "type": "push", "point": [x, y, z], "impulse": [ix, iy, iz]},
     {"time": 0.5, "type": "apply_force", "object": "box", "force": [0, 0, 30], "duration": 0.2},
     {"time": 1.0, "type": "set_velocity", "object": "box", "linear": [1, 0, 0]},
     {"time": 1.5, "type": "drop", "object": "ball", "height": 0.5},
     {"time": 2.0, "type": "spawn", "mesh": "crate.glb", "position": [0, 0, 1], "mass": 2.0},
     {"time": 2.5, "type": "remove", "object": "ball"},
     {"time": 3.0, "type": "set_gravity", "gravity": [0, 0, -1.62]}]

``force``, ``velocity`` and ``gravity`` are accepted for the three ``apply_``/``set_`` types.
Relative ``mesh`` paths are relative to the events file. Events at the same time run in
file order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenes.errors import FormatError

__all__ = ["Event", "EVENT_TYPES", "parse_events", "load_events", "check_event_objects", "EventQueue"]

# field -> (kind, required)
_SPECS: dict[str, dict[str, tuple[str, bool]]] = {
    "push": {"point": ("vec3", True), "impulse": ("vec3", True)},
    "apply_force": {
        "object": ("name", True),
        "force": ("vec3", True),
        "point": ("vec3", False),
        "duration": ("positive", False),
    },  # fmt: skip
    "set_velocity": {"object": ("name", True), "linear": ("vec3", False), "angular": ("vec3", False)},
    "drop": {"object": ("name", True), "height": ("nonneg", True)},
    "spawn": {
        "mesh": ("path", True),
        "position": ("vec3", True),
        "quaternion": ("quat", False),
        "mass": ("positive", True),
        "name": ("name", False),
        "friction": ("nonneg", False),
        "restitution": ("nonneg", False),
        "concave": ("bool", False),
    },  # fmt: skip
    "remove": {"object": ("name", True)},
    "set_gravity": {"gravity": ("vec3", True)},
}
_ALIASES = {"force": "apply_force", "velocity": "set_velocity", "gravity": "set_gravity"}
EVENT_TYPES = tuple(_SPECS)


@dataclass(frozen=True)
class Event:
    """One scheduled intervention: ``type`` is one of :data:`EVENT_TYPES`, ``args`` its validated fields."""

    time: float  # seconds from the start of the simulation
    type: str
    args: dict  # field -> value (tuples of floats for vectors, Path for meshes)
    index: int = 0  # position in the source file, for messages

    @property
    def object(self) -> str | None:
        """The object the event acts on by name (None for push, spawn, set_gravity)."""
        return self.args.get("object")

    def apply(self, world) -> str | None:
        """Run the intervention on a :class:`physics.PhysicsWorld`; returns the object acted on (if any)."""
        a = self.args
        if self.type == "push":
            return world.push(a["point"], a["impulse"])
        if self.type == "apply_force":
            world.apply_force(a["object"], a["force"], a.get("point"), a.get("duration"))
        elif self.type == "set_velocity":
            world.set_velocity(a["object"], a.get("linear"), a.get("angular"))
        elif self.type == "drop":
            world.drop(a["object"], a["height"])
        elif self.type == "spawn":
            pose = [*a["position"], *a.get("quaternion", (1.0, 0.0, 0.0, 0.0))]
            return world.spawn(a["mesh"], pose, a["mass"], name=a.get("name"), friction=a.get("friction", 0.6),
                               restitution=a.get("restitution", 0.1), concave=a.get("concave", False))  # fmt: skip
        elif self.type == "remove":
            world.remove(a["object"])
        elif self.type == "set_gravity":
            world.set_gravity(a["gravity"])
        return a.get("object")

    def describe(self) -> str:
        parts = ", ".join(f"{k}={_short(v)}" for k, v in self.args.items())
        return f"t={self.time:g} s {self.type}({parts})"


def _short(v: Any) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(f"{x:g}" for x in v) + "]"
    return str(v)


def _field(value: Any, kind: str, where: str, base: Path | None) -> Any:
    def bad(expected: str) -> FormatError:
        got = json.dumps(value) if _jsonable(value) else repr(value)
        return FormatError(f"{where}: expected {expected}, got {got}")

    if kind in ("vec3", "quat"):
        n = 3 if kind == "vec3" else 4
        if not (isinstance(value, list | tuple) and len(value) == n and all(_is_number(x) for x in value)):
            raise bad(f"a list of {n} finite numbers" + (" [w, x, y, z]" if n == 4 else " [x, y, z]"))
        if kind == "quat" and math.sqrt(sum(float(x) ** 2 for x in value)) == 0:
            raise bad("a non-zero quaternion [w, x, y, z]")
        return tuple(float(x) for x in value)
    if kind in ("positive", "nonneg"):
        if not _is_number(value) or (value <= 0 if kind == "positive" else value < 0):
            raise bad("a finite number " + ("> 0" if kind == "positive" else ">= 0"))
        return float(value)
    if kind == "name":
        if not isinstance(value, str) or not value:
            raise bad("a non-empty string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "path":
        if not isinstance(value, str) or not value:
            raise bad("a mesh file path (string)")
        path = Path(value)
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            raise FormatError(f"{where}: the mesh file {str(path)!r} does not exist")
        return path
    raise AssertionError(kind)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def parse_events(data: Any, *, source: str = "events", base: Path | None = None) -> tuple[Event, ...]:
    """Validate decoded JSON ``data`` into events sorted by time (stable); ``base`` resolves mesh paths."""
    if isinstance(data, dict) and "events" in data:
        data = data["events"]
    if not isinstance(data, list):
        raise FormatError(
            f'{source}: expected a JSON list of events (or {{"events": [...]}}), got {type(data).__name__}'
        )
    events = []
    for i, item in enumerate(data):
        where = f"{source}: event {i}"
        if not isinstance(item, dict):
            raise FormatError(f"{where}: expected an object with 'time' and 'type', got {json.dumps(item)}")
        kind = item.get("type")
        if not isinstance(kind, str):
            raise FormatError(f"{where}: missing 'type'; one of {list(EVENT_TYPES)}")
        kind = _ALIASES.get(kind, kind)
        if kind not in _SPECS:
            raise FormatError(f"{where}: unknown type {item['type']!r}; expected one of {list(EVENT_TYPES)}")
        where = f"{source}: event {i} ({kind})"
        if "time" not in item:
            raise FormatError(f"{where}: missing 'time' (seconds >= 0)")
        time = item["time"]
        if not _is_number(time) or time < 0:
            raise FormatError(f"{where}: 'time' must be a finite number of seconds >= 0, got {json.dumps(time)}")
        spec = _SPECS[kind]
        unknown = sorted(set(item) - set(spec) - {"time", "type"})
        if unknown:
            raise FormatError(f"{where}: unknown field(s) {unknown}; {kind} takes {sorted(spec)}")
        args = {}
        for name, (fkind, required) in spec.items():
            if name not in item:
                if required:
                    raise FormatError(f"{where}: missing field {name!r}")
                continue
            args[name] = _field(item[name], fkind, f"{where}: field {name!r}", base)
        if kind == "set_velocity" and not ({"linear", "angular"} & set(args)):
            raise FormatError(f"{where}: give 'linear' and/or 'angular'")
        events.append(Event(float(time), kind, args, i))
    return tuple(sorted(events, key=lambda e: e.time))


def load_events(path: str | Path) -> tuple[Event, ...]:
    """Read and validate an events JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FormatError(f"{path}: events file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON ({exc})") from exc
    return parse_events(data, source=str(path), base=path.parent)


def check_event_objects(events: tuple[Event, ...], names: list[str] | tuple[str, ...]) -> None:
    """Check that every named object exists when its event runs (spawns add names, removals take them away)."""
    from physics.world import default_asset_name

    alive, removed = list(names), []
    for e in events:
        if e.type == "spawn" and e.args.get("name") is not None:
            if e.args["name"] in alive:
                raise FormatError(f"event {e.index} (spawn): an object named {e.args['name']!r} already exists")
            alive.append(e.args["name"])
        elif e.type == "spawn":
            alive.append(default_asset_name(e.args["mesh"], alive + removed))  # as the world will name it
        obj = e.object
        if obj is not None and obj not in alive:
            raise FormatError(
                f"event {e.index} ({e.type}) at t={e.time:g} s: unknown object {obj!r}; objects then: {alive}"
            )
        if e.type == "remove":
            alive.remove(obj)
            removed.append(obj)


class EventQueue:
    """Hands out events in time order: :meth:`due` pops those scheduled at or before a time."""

    def __init__(self, events: tuple[Event, ...] | list[Event]) -> None:
        self._events = sorted(events, key=lambda e: e.time)
        self._next = 0

    def due(self, time: float, eps: float = 1e-9) -> list[Event]:
        out = []
        while self._next < len(self._events) and self._events[self._next].time <= time + eps:
            out.append(self._events[self._next])
            self._next += 1
        return out

    def next_time(self) -> float:
        """Time of the next pending event (inf when none)."""
        return self._events[self._next].time if self._next < len(self._events) else math.inf

    def reset(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self._events) - self._next
