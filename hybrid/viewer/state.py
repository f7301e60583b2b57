"""The viewer's state that is not the camera: light settings, the undo stack of interventions, timings.

Plain Python (no GL, no window): the window and the panel read and write these, the tests drive
them directly.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from scenes.errors import ShapeError
from scenes.scene import Light

__all__ = ["LightSettings", "Intervention", "InterventionStack", "FrameStats"]


@dataclass(frozen=True)
class LightSettings:
    """The panel's view of a :class:`scenes.Light`: the direction as azimuth and elevation (+Z up)."""

    azimuth_deg: float = 0.0  # direction towards the light, degrees from +X towards +Y
    elevation_deg: float = 45.0  # degrees above the horizontal plane (90: straight overhead)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)  # linear RGB of the sun
    intensity: float = 1.0  # scale of the sun's colour
    ambient: tuple[float, float, float] = (0.35, 0.35, 0.35)  # linear RGB of the ambient term

    def __post_init__(self) -> None:
        for name in ("azimuth_deg", "elevation_deg", "intensity"):
            if not math.isfinite(getattr(self, name)):
                raise ShapeError(f"LightSettings.{name}: expected a finite number, got {getattr(self, name)!r}")
        if not -90.0 <= self.elevation_deg <= 90.0:
            raise ShapeError(f"LightSettings.elevation_deg must lie in [-90, 90], got {self.elevation_deg}")
        if self.intensity < 0:
            raise ShapeError(f"LightSettings.intensity must be >= 0, got {self.intensity}")

    @classmethod
    def from_light(cls, light: Light) -> LightSettings:
        x, y, z = light.direction
        elevation = math.degrees(math.asin(max(-1.0, min(1.0, z))))
        azimuth = math.degrees(math.atan2(y, x)) if abs(z) < 1 - 1e-12 else 0.0
        return cls(azimuth, elevation, tuple(light.color), float(light.intensity), tuple(light.ambient))

    @property
    def direction(self) -> tuple[float, float, float]:
        """Unit vector from the scene towards the light."""
        az, el = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        return (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))

    def to_light(self) -> Light:
        return Light(self.direction, self.color, self.intensity, self.ambient)

    def with_(self, **changes) -> LightSettings:
        return replace(self, **changes)


@dataclass(frozen=True, eq=False)
class Intervention:
    """One undoable change to the world: what it was and the world just before it."""

    label: str  # e.g. "push box_a", "spawn chair"
    state: object  # physics.WorldState before the change
    bodies: tuple[str, ...]  # bodies in the world before the change
    dynamics: dict = field(default_factory=dict)  # body name -> (mass, friction) before the change


class InterventionStack:
    """Last-in first-out record of interventions, at most ``limit`` deep (the oldest are dropped)."""

    def __init__(self, limit: int = 64) -> None:
        if limit < 1:
            raise ShapeError(f"InterventionStack: limit must be >= 1, got {limit}")
        self._items: deque[Intervention] = deque(maxlen=limit)

    def push(self, item: Intervention) -> None:
        self._items.append(item)

    def pop(self) -> Intervention | None:
        """The most recent intervention (removed from the stack), or None when there is none."""
        return self._items.pop() if self._items else None

    def peek(self) -> Intervention | None:
        return self._items[-1] if self._items else None

    def clear(self) -> None:
        self._items.clear()

    def labels(self) -> list[str]:
        """Labels, oldest first."""
        return [i.label for i in self._items]

    def __len__(self) -> int:
        return len(self._items)


class FrameStats:
    """Rolling frame-time breakdown: ``begin_frame()``, ``with stats.section("render"): ...``, ``end_frame()``."""

    def __init__(self, window: int = 30) -> None:
        self._window = int(window)
        self._sections: dict[str, deque[float]] = {}
        self._frames: deque[float] = deque(maxlen=self._window)
        self._current: dict[str, float] = {}
        self._frame_start: float | None = None

    def begin_frame(self) -> None:
        """Start timing a frame (sections added before the matching :meth:`end_frame` belong to it)."""
        self._frame_start = time.perf_counter()
        self._current = {}

    def end_frame(self) -> None:
        """Close the frame: its duration and sections enter the rolling window."""
        if self._frame_start is None:
            return
        self._frames.append(time.perf_counter() - self._frame_start)
        for name, value in self._current.items():
            self._sections.setdefault(name, deque(maxlen=self._window)).append(value)
        self._current = {}
        self._frame_start = None

    def discard_frame(self) -> None:
        """Drop the frame being timed (nothing was drawn)."""
        self._current = {}
        self._frame_start = None

    def add(self, name: str, seconds: float) -> None:
        self._current[name] = self._current.get(name, 0.0) + seconds

    def section(self, name: str) -> _Section:
        return _Section(self, name)

    @property
    def fps(self) -> float:
        """Frames per second the work of the recent frames allows (idle waits excluded; 0 before a frame)."""
        if not self._frames:
            return 0.0
        return len(self._frames) / max(sum(self._frames), 1e-9)

    def summary(self) -> dict[str, float]:
        """Mean milliseconds per section over the window."""
        return {k: 1000.0 * float(np.mean(v)) for k, v in self._sections.items() if v}


class _Section:
    def __init__(self, stats: FrameStats, name: str) -> None:
        self._stats, self._name = stats, name

    def __enter__(self) -> _Section:
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._stats.add(self._name, time.perf_counter() - self._t)
