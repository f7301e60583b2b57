"""The viewer's fly camera: position, yaw and pitch (+Z up), smoothed motion, framing and fly-to animations.

Plain numpy, no GL and no window, so it is tested directly. The camera produces OpenCV
world-to-camera matrices and intrinsics like every other camera in the runtime.

Motion is frame-rate independent: held keys set a target velocity, the velocity follows it
exponentially (time constant ``smoothing``), and both are integrated in closed form over each
frame, so a key held for one second moves the camera the same distance at 5 or 500 frames per
second, easing in and out the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from render.gl.camera import camera_center, intrinsics_from_fov, look_at
from scenes.errors import ShapeError

__all__ = ["FlyCamera", "FlyCameraConfig", "MOVE_KEYS"]

# key name -> direction in the camera's (forward, right, world up) frame
MOVE_KEYS = {
    "w": (1.0, 0.0, 0.0),
    "s": (-1.0, 0.0, 0.0),
    "d": (0.0, 1.0, 0.0),
    "a": (0.0, -1.0, 0.0),
    "e": (0.0, 0.0, 1.0),
    "q": (0.0, 0.0, -1.0),
}

_MAX_PITCH = math.radians(89.0)


@dataclass(frozen=True)
class FlyCameraConfig:
    """How the fly camera responds to input."""

    speed: float = 1.0  # m/s when a movement key is held (scroll changes it)
    min_speed: float = 0.01  # m/s, lower bound of the scroll-adjusted speed
    max_speed: float = 100.0  # m/s, upper bound
    scroll_factor: float = 1.25  # speed multiplier per scroll notch
    look_sensitivity: float = 0.004  # radians of yaw/pitch per pixel of mouse motion
    smoothing: float = 0.08  # s, time constant of the velocity following the held keys
    fly_duration: float = 0.35  # s, length of the animation to a framed view or a capture camera
    fov_y_deg: float = 50.0  # vertical field of view in degrees (until a capture camera sets another)

    def __post_init__(self) -> None:
        if not 0 < self.min_speed <= self.speed <= self.max_speed:
            raise ShapeError(
                f"FlyCameraConfig: need 0 < min_speed <= speed <= max_speed, got {self.min_speed}, "
                f"{self.speed}, {self.max_speed}"
            )
        if not 0 < self.fov_y_deg < 180:
            raise ShapeError(f"FlyCameraConfig.fov_y_deg must lie in (0, 180), got {self.fov_y_deg}")
        if self.smoothing < 0 or self.fly_duration < 0:
            raise ShapeError("FlyCameraConfig: smoothing and fly_duration must be >= 0")


def _forward(yaw: float, pitch: float) -> np.ndarray:  # [3]
    cp = math.cos(pitch)
    return np.array([cp * math.cos(yaw), cp * math.sin(yaw), math.sin(pitch)])


def _yaw_pitch(forward: np.ndarray) -> tuple[float, float]:
    f = np.asarray(forward, np.float64)
    f = f / np.linalg.norm(f)
    pitch = math.asin(float(np.clip(f[2], -1.0, 1.0)))
    yaw = math.atan2(float(f[1]), float(f[0])) if abs(f[2]) < 1 - 1e-12 else 0.0
    return yaw, float(np.clip(pitch, -_MAX_PITCH, _MAX_PITCH))


def _smoothstep(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return t * t * (3 - 2 * t)


class FlyCamera:
    """A first-person camera for the viewer window.

    ``update(dt, held)`` advances it by ``dt`` seconds with the movement keys in ``held`` (names from
    :data:`MOVE_KEYS`); :meth:`look` turns it by mouse pixels; :meth:`scroll` changes the speed;
    :meth:`frame` and :meth:`fly_to_view` animate to a new view over ``fly_duration`` seconds.
    A view set from a capture camera keeps that camera's exact matrix (roll included) until the
    user moves or turns.
    """

    def __init__(self, position=(0.0, -3.0, 1.0), yaw: float = math.pi / 2, pitch: float = 0.0,
                 config: FlyCameraConfig | None = None) -> None:  # fmt: skip
        self.config = config or FlyCameraConfig()
        self.position = np.asarray(position, np.float64).copy()
        if self.position.shape != (3,) or not np.isfinite(self.position).all():
            raise ShapeError(f"FlyCamera position: expected 3 finite numbers, got {position!r}")
        self.yaw = float(yaw)
        self.pitch = float(np.clip(pitch, -_MAX_PITCH, _MAX_PITCH))
        self.speed = self.config.speed
        self.fov_y_deg = self.config.fov_y_deg
        self.velocity = np.zeros(3)  # m/s, world frame
        self._exact_view: np.ndarray | None = None  # a capture camera's viewmat, shown until the user moves
        self._anim: tuple | None = None  # (start pos, start yaw, start pitch, end pos, end yaw, end pitch, t, exact)

    # ------------------------------------------------------------------ axes
    @property
    def forward(self) -> np.ndarray:  # [3] world
        if self._exact_view is not None:
            return self._exact_view[2, :3].copy()
        return _forward(self.yaw, self.pitch)

    @property
    def right(self) -> np.ndarray:  # [3] world, horizontal
        return np.array([math.sin(self.yaw), -math.cos(self.yaw), 0.0])

    @property
    def animating(self) -> bool:
        return self._anim is not None

    @property
    def moving(self) -> bool:
        """True while the camera moves (held keys, the smoothing tail, or an animation)."""
        return self.animating or float(np.linalg.norm(self.velocity)) > 1e-4

    # ------------------------------------------------------------------ input
    def update(self, dt: float, held=()) -> None:
        """Advance by ``dt`` seconds with the movement keys ``held`` (e.g. ``{"w", "e"}``)."""
        if not (math.isfinite(dt) and dt >= 0):
            raise ShapeError(f"FlyCamera.update: dt must be a finite number of seconds >= 0, got {dt!r}")
        if self._anim is not None:
            self._step_animation(dt)
        direction = np.zeros(3)
        fwd, right, up = _forward(self.yaw, self.pitch), self.right, np.array([0.0, 0.0, 1.0])
        for key in held:
            axes = MOVE_KEYS.get(key)
            if axes is not None:
                direction += axes[0] * fwd + axes[1] * right + axes[2] * up
        norm = float(np.linalg.norm(direction))
        target = direction / norm * self.speed if norm > 1e-9 else np.zeros(3)
        if norm > 1e-9:
            self._leave_exact_view()
            self._anim = None
        # v(t) = target + (v0 - target) exp(-t / tau), integrated exactly over the frame
        tau = self.config.smoothing
        decay = 0.0 if tau == 0 else math.exp(-dt / tau)
        lag = self.velocity - target
        self.position += target * dt + lag * (tau * (1.0 - decay))
        self.velocity = target + lag * decay

    def look(self, dx: float, dy: float) -> None:
        """Turn by a mouse motion of ``dx, dy`` pixels (right / down turn right / down)."""
        self._leave_exact_view()
        self._anim = None
        s = self.config.look_sensitivity
        self.yaw -= dx * s
        self.pitch = float(np.clip(self.pitch - dy * s, -_MAX_PITCH, _MAX_PITCH))

    def scroll(self, notches: float) -> float:
        """Scale the speed by ``scroll_factor ** notches`` (clamped); returns the new speed."""
        c = self.config
        self.speed = float(np.clip(self.speed * c.scroll_factor**notches, c.min_speed, c.max_speed))
        return self.speed

    # ------------------------------------------------------------------ views
    def set_view(self, viewmat: np.ndarray, fov_y_deg: float | None = None, *, exact: bool = True) -> None:
        """Jump to a world-to-camera ``viewmat [4, 4]`` (kept exactly, roll included, while ``exact``)."""
        viewmat = self._check_view(viewmat)
        self.position = camera_center(viewmat)
        self.yaw, self.pitch = _yaw_pitch(viewmat[2, :3])
        self._exact_view = viewmat.copy() if exact else None
        self.velocity[:] = 0.0
        self._anim = None
        if fov_y_deg is not None:
            self.fov_y_deg = float(fov_y_deg)

    def fly_to_view(self, viewmat: np.ndarray, fov_y_deg: float | None = None) -> None:
        """Animate to ``viewmat`` over ``fly_duration`` seconds, then show it exactly."""
        viewmat = self._check_view(viewmat)
        if fov_y_deg is not None:
            self.fov_y_deg = float(fov_y_deg)
        yaw, pitch = _yaw_pitch(viewmat[2, :3])
        self._start_animation(camera_center(viewmat), yaw, pitch, viewmat.copy())

    def frame(self, lo, hi) -> None:
        """Animate to a view of the box ``lo..hi`` (world): same direction, distance fitting its sphere."""
        lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        if lo.shape != (3,) or hi.shape != (3,) or not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ShapeError(f"FlyCamera.frame: expected two finite 3-vectors, got {lo!r}, {hi!r}")
        center = (lo + hi) / 2
        radius = max(float(np.linalg.norm(hi - lo)) / 2, 0.05)
        half = math.radians(self.fov_y_deg) / 2
        distance = 1.1 * radius / math.sin(half)
        self._leave_exact_view()
        fwd = _forward(self.yaw, self.pitch)
        self._start_animation(center - fwd * distance, self.yaw, self.pitch, None)
        # a speed that crosses the framed box in about two seconds
        c = self.config
        self.speed = float(np.clip(radius, c.min_speed, c.max_speed))

    def viewmat(self) -> np.ndarray:  # [4, 4] world-to-camera, OpenCV
        if self._exact_view is not None:
            return self._exact_view.copy()
        return look_at(self.position, self.position + _forward(self.yaw, self.pitch))

    def K(self, width: int, height: int) -> np.ndarray:  # [3, 3]
        return intrinsics_from_fov(width, height, self.fov_y_deg)

    def ray(self, x: float, y: float, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """World ray ``(origin [3], unit direction [3])`` through pixel ``(x, y)`` of a ``width x height`` view."""
        K = self.K(width, height)
        view = self.viewmat()
        d_cam = np.array([(x - K[0, 2]) / K[0, 0], (y - K[1, 2]) / K[1, 1], 1.0])
        d = view[:3, :3].T @ d_cam
        return camera_center(view), d / np.linalg.norm(d)

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _check_view(viewmat) -> np.ndarray:
        viewmat = np.asarray(viewmat, np.float64)
        if viewmat.shape != (4, 4) or not np.isfinite(viewmat).all():
            raise ShapeError(f"FlyCamera: viewmat must be a finite 4x4 matrix, got shape {viewmat.shape}")
        return viewmat

    def _leave_exact_view(self) -> None:
        if self._exact_view is not None:
            self.position = camera_center(self._exact_view)
            self.yaw, self.pitch = _yaw_pitch(self._exact_view[2, :3])
            self._exact_view = None

    def _start_animation(self, pos: np.ndarray, yaw: float, pitch: float, exact: np.ndarray | None) -> None:
        self._leave_exact_view()
        self.velocity[:] = 0.0
        # turn the short way round
        yaw = self.yaw + (yaw - self.yaw + math.pi) % (2 * math.pi) - math.pi
        self._anim = (self.position.copy(), self.yaw, self.pitch, np.asarray(pos, np.float64), yaw, pitch, 0.0, exact)
        if self.config.fly_duration == 0:
            self._step_animation(0.0)

    def _step_animation(self, dt: float) -> None:
        p0, y0, t0, p1, y1, t1, t, exact = self._anim
        duration = self.config.fly_duration
        t = t + dt
        s = 1.0 if duration == 0 else _smoothstep(t / duration)
        self.position = p0 + (p1 - p0) * s
        self.yaw = y0 + (y1 - y0) * s
        self.pitch = t0 + (t1 - t0) * s
        if s >= 1.0:
            self._anim = None
            self.position, self.yaw, self.pitch = p1.copy(), y1, t1
            if exact is not None:
                self._exact_view = exact
        else:
            self._anim = (p0, y0, t0, p1, y1, t1, t, exact)
