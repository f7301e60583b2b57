"""The scene model: cameras, light, ground, objects and the scene that holds them.

All poses are in the world frame (metres, +Z up). Quaternions are wxyz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from scenes.errors import SceneError, ShapeError
from scenes.splats import Splats

__all__ = [
    "Camera",
    "capture_pixels_per_metre",
    "Light",
    "Ground",
    "ColliderMesh",
    "SceneObject",
    "Scene",
    "OPENGL_TO_OPENCV",
]

# Flips the y and z camera axes: OpenGL/nerfstudio (x right, y up, z back) <-> OpenCV (x right, y down, z forward).
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def _vec(value, n: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise ShapeError(f"{name}: expected {n} finite numbers, got {np.asarray(value).tolist()!r}")
    return arr


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera: OpenCV axes (x right, y down, z forward), world-to-camera ``viewmat``."""

    K: np.ndarray  # [3, 3] intrinsics (fx, fy, cx, cy in pixels)
    viewmat: np.ndarray  # [4, 4] world-to-camera transform
    width: int  # image width in pixels
    height: int  # image height in pixels
    name: str = ""  # e.g. the source image file name

    def __post_init__(self) -> None:
        K = np.asarray(self.K, np.float64)
        V = np.asarray(self.viewmat, np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ShapeError(f"Camera.K: expected a finite 3x3 matrix with positive focal lengths, got {K.tolist()}")
        if V.shape != (4, 4) or not np.all(np.isfinite(V)):
            raise ShapeError(f"Camera.viewmat: expected a finite 4x4 matrix, got shape {V.shape}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ShapeError(f"Camera size: width and height must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "viewmat", V)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @classmethod
    def from_fov(
        cls, fov_y_deg: float, width: int, height: int, c2w: np.ndarray | None = None, name: str = ""
    ) -> Camera:
        """A centred pinhole with vertical field of view ``fov_y_deg``; ``c2w`` in OpenCV axes."""
        f = 0.5 * height / np.tan(np.radians(fov_y_deg) / 2)
        K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
        c2w = np.eye(4) if c2w is None else np.asarray(c2w, np.float64)
        return cls(K, np.linalg.inv(c2w), width, height, name)

    @classmethod
    def look_at(
        cls,
        eye,
        target,
        up=(0.0, 0.0, 1.0),
        *,
        fov_y_deg: float = 50.0,
        width: int = 640,
        height: int = 480,
        name: str = "",
    ) -> Camera:
        """A camera at ``eye`` looking at ``target`` with ``up`` (world) pointing up in the image."""
        eye, target, up = _vec(eye, 3, "eye"), _vec(target, 3, "target"), _vec(up, 3, "up")
        z = target - eye
        if np.linalg.norm(z) == 0:
            raise ShapeError("look_at: eye and target coincide")
        z /= np.linalg.norm(z)
        x = np.cross(z, up)
        if np.linalg.norm(x) < 1e-9:  # looking along up: pick any perpendicular
            x = np.cross(z, np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0]))
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
        return cls.from_fov(fov_y_deg, width, height, c2w, name)

    @property
    def c2w(self) -> np.ndarray:
        """[4, 4] camera-to-world (OpenCV axes)."""
        return np.linalg.inv(self.viewmat)

    @property
    def position(self) -> np.ndarray:
        return self.c2w[:3, 3]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(u, v, z)`` of ``[N, 3]`` world points: pixel coordinates and camera depth (``z`` <= 0: behind)."""
        p = np.asarray(points, np.float64) @ self.viewmat[:3, :3].T + self.viewmat[:3, 3]
        z = np.maximum(p[:, 2], 1e-6)
        return self.K[0, 0] * p[:, 0] / z + self.K[0, 2], self.K[1, 1] * p[:, 1] / z + self.K[1, 2], p[:, 2]

    def pixels_per_metre(self, points: np.ndarray) -> np.ndarray:  # [N, 3] -> [N]
        """How many pixels a metre spans at each world point (``sqrt(fx fy) / z``); 0 where it is out of view."""
        u, v, z = self.project(points)
        inside = (z > 1e-3) & (u >= 0) & (u < self.width) & (v >= 0) & (v < self.height)
        return np.where(inside, math.sqrt(self.K[0, 0] * self.K[1, 1]) / np.maximum(z, 1e-3), 0.0)

    def scaled(self, factor: float) -> Camera:
        """The same camera for an image resized by ``factor``."""
        K = self.K.copy()
        K[:2] *= factor
        return replace(self, K=K, width=max(1, round(self.width * factor)), height=max(1, round(self.height * factor)))

    def resized(self, width: int, height: int) -> Camera:
        """The same view for an image of ``width`` x ``height`` pixels (each axis scaled on its own)."""
        if (width, height) == (self.width, self.height):
            return self
        K = self.K.copy()
        K[0] *= width / self.width
        K[1] *= height / self.height
        return replace(self, K=K, width=int(width), height=int(height))

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "K": self.K.tolist(),
            "viewmat": self.viewmat.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        try:
            return cls(np.array(d["K"]), np.array(d["viewmat"]), d["width"], d["height"], d.get("name", ""))
        except KeyError as exc:
            raise SceneError(f"camera entry is missing the field {exc}") from exc


def capture_pixels_per_metre(cameras, points: np.ndarray) -> np.ndarray:  # [N, 3] -> [N]
    """:meth:`Camera.pixels_per_metre` at each point, the median over the ``cameras`` that see it; 0: none does."""
    points = np.asarray(points, np.float64)
    rates = np.stack([cam.pixels_per_metre(points) for cam in cameras]) if len(cameras) else np.zeros((0, len(points)))
    seen = rates > 0
    rates[~seen] = np.nan
    out = np.zeros(len(points))
    any_seen = seen.any(axis=0)
    out[any_seen] = np.nanmedian(rates[:, any_seen], axis=0)
    return out


@dataclass(frozen=True)
class Light:
    """A directional light plus ambient term."""

    direction: tuple[float, float, float] = (0.3, -0.4, 0.866)  # unit vector from the scene towards the light
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)  # linear RGB of the sun
    intensity: float = 1.0  # scale of the sun's colour
    ambient: tuple[float, float, float] = (0.35, 0.35, 0.35)  # linear RGB of the ambient term

    def __post_init__(self) -> None:
        d = _vec(self.direction, 3, "Light.direction")
        n = np.linalg.norm(d)
        if n == 0:
            raise ShapeError("Light.direction: zero vector; give the direction from the scene towards the light")
        if abs(n - 1.0) > 1e-12:  # keep an already-unit direction bit-exact (JSON round trips)
            d = d / n
        object.__setattr__(self, "direction", tuple(float(v) for v in d))
        object.__setattr__(self, "color", tuple(float(v) for v in _vec(self.color, 3, "Light.color")))
        object.__setattr__(self, "ambient", tuple(float(v) for v in _vec(self.ambient, 3, "Light.ambient")))
        if not np.isfinite(self.intensity) or self.intensity < 0:
            raise ShapeError(f"Light.intensity: expected a finite value >= 0, got {self.intensity}")

    def to_dict(self) -> dict:
        return {
            "direction": list(self.direction),
            "color": list(self.color),
            "intensity": self.intensity,
            "ambient": list(self.ambient),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Light:
        return cls(**{k: d[k] for k in ("direction", "color", "intensity", "ambient") if k in d})


@dataclass(frozen=True, eq=False)
class ColliderMesh:
    """A triangle mesh used as a collision shape, in the frame of its owner (object rest frame or world)."""

    vertices: np.ndarray  # [V, 3] float
    faces: np.ndarray  # [F, 3] int vertex indices
    kind: str = "convex"  # "convex" (a convex hull), "mesh" (static triangle mesh) or "compound" (parts)
    parts: tuple = ()  # for "compound": per-part face-index arrays into ``faces``

    def __post_init__(self) -> None:
        v = np.asarray(self.vertices, np.float32)
        f = np.asarray(self.faces, np.int64)
        if v.ndim != 2 or v.shape[1] != 3 or not np.all(np.isfinite(v)):
            raise ShapeError(f"ColliderMesh.vertices: expected finite [V, 3], got shape {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3 or (f.size and (f.min() < 0 or f.max() >= len(v))):
            raise ShapeError(f"ColliderMesh.faces: expected [F, 3] indices into {len(v)} vertices")
        if self.kind not in ("convex", "mesh", "compound"):
            raise ShapeError(f"ColliderMesh.kind: expected 'convex', 'mesh' or 'compound', got {self.kind!r}")
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)


@dataclass(frozen=True)
class Ground:
    """The static ground: a plane ``normal . x = offset`` and optionally a static mesh collider (world frame)."""

    normal: tuple[float, float, float] = (0.0, 0.0, 1.0)  # unit normal pointing up, out of the ground
    offset: float = 0.0  # plane equation offset: points x on the plane satisfy normal . x = offset
    mesh: ColliderMesh | None = None  # static structure (walls, terrain) beside the plane, world frame
    friction: float = 0.8
    restitution: float = 0.1

    def __post_init__(self) -> None:
        n = _vec(self.normal, 3, "Ground.normal")
        if np.linalg.norm(n) == 0:
            raise ShapeError("Ground.normal: zero vector")
        object.__setattr__(self, "normal", tuple(float(v) for v in n / np.linalg.norm(n)))
        object.__setattr__(self, "offset", float(self.offset))


@dataclass(frozen=True, eq=False)
class SceneObject:
    """A movable rigid object made of a subset of the scene's splats.

    The splats' stored positions are the object's state at ``pose``; moving the object
    to a new pose moves its splats by ``new_pose * pose^-1``. The collider is in the
    object's rest frame: the frame whose world transform is ``pose``.
    """

    name: str  # unique in the scene
    splat_indices: np.ndarray  # [M] int indices into Scene.splats
    collider: ColliderMesh | None = None  # in the object's frame
    mass: float = 1.0  # kg
    friction: float = 0.6  # Coulomb friction coefficient
    restitution: float = 0.1  # bounciness in [0, 1]
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)  # world position of the object frame (centre of mass)
    quaternion: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # wxyz world rotation of the object frame
    static: bool = False  # True for objects that never move (collide only)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise SceneError(f"SceneObject.name: expected a non-empty string, got {self.name!r}")
        idx = np.asarray(self.splat_indices, np.int64).reshape(-1)
        object.__setattr__(self, "splat_indices", idx)
        if not (np.isfinite(self.mass) and self.mass > 0):
            raise ShapeError(f"SceneObject {self.name!r}: mass must be > 0 kg, got {self.mass}")
        for attr in ("friction", "restitution"):
            v = getattr(self, attr)
            if not (np.isfinite(v) and v >= 0):
                raise ShapeError(f"SceneObject {self.name!r}: {attr} must be >= 0, got {v}")
        object.__setattr__(self, "position", tuple(float(v) for v in _vec(self.position, 3, "position")))
        q = _vec(self.quaternion, 4, "quaternion")
        if np.linalg.norm(q) == 0:
            raise ShapeError(f"SceneObject {self.name!r}: zero quaternion")
        object.__setattr__(self, "quaternion", tuple(float(v) for v in q / np.linalg.norm(q)))


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything a scene folder holds."""

    splats: Splats
    objects: tuple[SceneObject, ...] = ()
    ground: Ground | None = None
    light: Light = field(default_factory=Light)
    capture_cameras: tuple[Camera, ...] = ()  # the cameras the scene was lifted from
    weights: dict = field(default_factory=dict)  # model name -> {tensor name: np.ndarray}, saved as safetensors
    metadata: dict = field(default_factory=dict)  # free JSON-serialisable information (source, units, report)

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        object.__setattr__(self, "capture_cameras", tuple(self.capture_cameras))
        names = [o.name for o in self.objects]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SceneError(f"object names must be unique; repeated: {sorted(dup)}")
        n = len(self.splats)
        for o in self.objects:
            if o.splat_indices.size and (o.splat_indices.min() < 0 or o.splat_indices.max() >= n):
                raise SceneError(f"object {o.name!r}: splat indices out of range for {n} splats")

    def object(self, name: str) -> SceneObject:
        for o in self.objects:
            if o.name == name:
                return o
        raise SceneError(f"no object named {name!r}; the scene has: {[o.name for o in self.objects] or 'no objects'}")

    def with_(self, **changes) -> Scene:
        return replace(self, **changes)
