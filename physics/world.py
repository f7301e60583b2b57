"""The PyBullet world: one DIRECT client per world, fixed time step, interventions, divergence checks.

Frames. Every body has an *object frame* (the frame the scene stores: ``SceneObject.position``
/ ``quaternion``, the mesh frame of a spawned asset) and a *body frame* that PyBullet moves:
the centre of mass with the principal axes of inertia, so the collider's exact inertia
tensor can be given to Bullet as a diagonal. The fixed offset between them lives here;
everything this module takes or returns is in object frames, world coordinates, wxyz.

Contacts. Bullet combines the friction (and restitution) of two touching bodies by
multiplying them: an object with friction 0.6 on a ground with 0.8 slides with 0.48.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from physics.colliders import (
    collider_parts,
    convex_collider,
    load_mesh,
    mass_properties,
    mesh_collider,
    write_obj_parts,
)
from physics.transforms import matrix_to_quat, pose_compose, pose_inverse, quat_normalize, quat_to_matrix
from scenes._deps import require
from scenes.errors import PhysicsError, ShapeError
from scenes.scene import ColliderMesh, Scene

__all__ = ["WorldConfig", "PhysicsWorld", "WorldState", "Pick", "SpawnedAsset"]

log = logging.getLogger(__name__)

_CHECK_EVERY = 4  # internal steps between divergence checks (and after every step() call): 60 Hz at 240 Hz


@dataclass(frozen=True)
class WorldConfig:
    """How a :class:`PhysicsWorld` integrates; the defaults suit table-top scenes in metres."""

    timestep: float = 1.0 / 240.0  # seconds per internal step (Bullet's fixed time step)
    substeps: int = 1  # Bullet sub-steps inside each internal step
    solver_iterations: int = 50  # constraint solver iterations per step
    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81)  # m/s^2, world frame (+Z up)
    linear_damping: float = 0.0  # Bullet's velocity damping per second (its own default, 0.04, slows free fall)
    angular_damping: float = 0.0  # same for angular velocity
    # m: Bullet pads a convex collider by a margin *outside* it (PyBullet's default 1 mm: bodies rose by it when the
    # simulation started, a box on a box by 3 mm). At 0 PyBullet's ray tests miss the hull (pick, pushes at a
    # point). Single-hull colliders only: set on a compound, its pieces' rays miss too, so they keep Bullet's
    collision_margin: float = 1e-4
    max_linear_speed: float = 50.0  # m/s; a faster body is a diverged simulation (PhysicsError)
    max_angular_speed: float = 300.0  # rad/s; same for spin
    point_tolerance: float = 0.02  # m: push() finds a body whose surface is at most this far from the point

    def __post_init__(self) -> None:
        if not (_is_real(self.collision_margin) and 0.0 <= self.collision_margin < 0.1):
            raise ShapeError(
                f"WorldConfig.collision_margin: expected metres in [0, 0.1), got {self.collision_margin!r}"
            )
        for name in ("timestep", "max_linear_speed", "max_angular_speed", "point_tolerance"):
            v = getattr(self, name)
            if not (_is_real(v) and math.isfinite(v) and v > 0):
                raise ShapeError(f"WorldConfig.{name}: expected a finite number > 0, got {v!r}")
        if not (isinstance(self.substeps, int) and self.substeps >= 1):
            raise ShapeError(f"WorldConfig.substeps: expected an integer >= 1, got {self.substeps!r}")
        if not (isinstance(self.solver_iterations, int) and self.solver_iterations >= 1):
            raise ShapeError(f"WorldConfig.solver_iterations: expected an integer >= 1, got {self.solver_iterations!r}")
        _vec3(self.gravity, "WorldConfig.gravity")


@dataclass(frozen=True)
class WorldState:
    """Everything needed to put a world back where it was (see :meth:`PhysicsWorld.set_state`)."""

    time: float  # seconds since the start (steps * timestep)
    steps: int  # internal steps taken
    names: tuple[str, ...]  # bodies, in the order of the arrays
    poses: np.ndarray  # [B, 7] object-frame poses (x, y, z, qw, qx, qy, qz)
    linear_velocities: np.ndarray  # [B, 3] m/s of the centre of mass
    angular_velocities: np.ndarray  # [B, 3] rad/s, world frame
    gravity: tuple[float, float, float]
    forces: tuple = ()  # pending timed forces: (name, force [3], point [3] | None, until_step)


@dataclass(frozen=True)
class Pick:
    """The first object a ray hits."""

    name: str  # the object
    point: np.ndarray  # [3] world hit point
    normal: np.ndarray  # [3] surface normal at the hit
    distance: float  # metres from the ray origin


@dataclass(frozen=True, eq=False)
class SpawnedAsset:
    """A game asset added with :meth:`PhysicsWorld.spawn`; renderers draw it as a mesh."""

    name: str
    path: Path  # the file it came from
    vertices: np.ndarray  # [V, 3] in the asset's own (object) frame
    faces: np.ndarray  # [F, 3]
    vertex_colors: np.ndarray | None  # [V, 3] in [0, 1] when the file has them (else None)


@dataclass
class _Body:
    name: str
    uid: int  # PyBullet body id
    mass: float  # 0 for static
    inertia: np.ndarray  # [3] principal moments (body frame)
    offset: np.ndarray  # [7] pose of the body frame in the object frame
    offset_inv: np.ndarray  # [7]
    friction: float
    restitution: float

    @property
    def static(self) -> bool:
        return self.mass == 0.0


def _vec3(value, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, np.float64).reshape(-1)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ShapeError(f"{name}: expected 3 finite numbers [x, y, z], got {value!r}")
    return arr


def default_asset_name(path: str | Path, taken) -> str:
    """The name :meth:`PhysicsWorld.spawn` gives an asset: the file's stem, ``_1``, ``_2``... if taken."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", Path(path).stem) or "asset"
    taken = set(taken)
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _canonical(poses: np.ndarray) -> np.ndarray:  # [..., 7] with the quaternion's w made >= 0
    poses[..., 3:] *= np.where(poses[..., 3:4] < 0, -1.0, 1.0)
    return poses


def _xyzw(q_wxyz) -> list[float]:
    return [float(q_wxyz[1]), float(q_wxyz[2]), float(q_wxyz[3]), float(q_wxyz[0])]


def _wxyz(q_xyzw) -> np.ndarray:
    return np.array([q_xyzw[3], q_xyzw[0], q_xyzw[1], q_xyzw[2]], np.float64)


class PhysicsWorld:
    """A PyBullet simulation of a :class:`scenes.Scene`'s objects and ground.

    Small interface: :meth:`step`, :meth:`body_poses`, :meth:`get_state` / :meth:`set_state`,
    :meth:`reset`; interventions :meth:`push`, :meth:`apply_force`, :meth:`set_velocity`,
    :meth:`drop`, :meth:`spawn`, :meth:`remove`, :meth:`set_gravity`, :meth:`pick`. A step that
    produces NaN or a body faster than the configured limits raises :class:`PhysicsError`
    (the world must then be :meth:`reset` or given a :meth:`set_state`).

    Objects with ``static=True`` collide but never move. An object without a collider gets
    the convex hull of its splat centres.
    """

    def __init__(self, scene: Scene, config: WorldConfig | None = None) -> None:
        self._p = require("pybullet", "physics simulation")
        self.scene = scene
        self.config = config or WorldConfig()
        self._client = self._p.connect(self._p.DIRECT)
        if self._client < 0:
            raise PhysicsError("could not start a PyBullet DIRECT client")
        self._tmp = tempfile.TemporaryDirectory(prefix="hybrid-physics-")
        self._build()

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Disconnect the PyBullet client (also done when the world is garbage collected)."""
        if getattr(self, "_client", -1) >= 0:
            try:
                self._p.disconnect(physicsClientId=self._client)
            except Exception:  # noqa: BLE001 - already gone (interpreter shutdown)
                pass
            self._client = -1
            self._tmp.cleanup()

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> PhysicsWorld:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, fn, *args, **kwargs):
        if self._client < 0:
            raise PhysicsError("the physics world is closed")
        return fn(*args, physicsClientId=self._client, **kwargs)

    def _build(self) -> None:
        p, cfg = self._p, self.config
        self._call(p.resetSimulation)
        self._call(p.setPhysicsEngineParameter, fixedTimeStep=cfg.timestep, numSubSteps=cfg.substeps,
                   numSolverIterations=cfg.solver_iterations, deterministicOverlappingPairs=1)  # fmt: skip
        self._gravity = tuple(float(v) for v in _vec3(cfg.gravity, "gravity"))
        self._call(p.setGravity, *self._gravity)
        self._probe = self._call(p.createCollisionShape, p.GEOM_SPHERE, radius=1e-4)  # point queries (body_at)
        self._bodies: dict[str, _Body] = {}
        self._offsets_cache: np.ndarray | None = None
        self._by_uid: dict[int, str] = {}
        self._static_uids: set[int] = set()
        self._forces: list[tuple] = []
        self._steps = 0
        self._t_target = 0.0
        self.assets: dict[str, SpawnedAsset] = {}
        self.removed: list[str] = []
        self._build_ground()
        for obj in self.scene.objects:
            collider = obj.collider
            pose = np.array([*obj.position, *obj.quaternion], np.float64)
            if collider is None:
                idx = obj.splat_indices
                if idx.size < 4:
                    raise PhysicsError(f"object {obj.name!r}: no collider and only {idx.size} splats to build one from")
                pts = self.scene.splats.means[idx].astype(np.float64)
                local = (pts - pose[:3]) @ quat_to_matrix(pose[3:])  # world -> object frame
                collider = convex_collider(local, what=f"object {obj.name!r}")
                log.info("object %r has no collider; using the convex hull of its %d splats", obj.name, idx.size)
            mass = 0.0 if obj.static else obj.mass
            self._add_body(obj.name, collider, pose, mass, obj.friction, obj.restitution)

    def _build_ground(self) -> None:
        p = self._p
        g = self.scene.ground
        if g is None:
            return
        n = np.asarray(g.normal)
        shape = self._call(p.createCollisionShape, p.GEOM_PLANE, planeNormal=n.tolist())
        uid = self._call(p.createMultiBody, 0.0, shape, basePosition=(n * g.offset).tolist())
        self._call(p.changeDynamics, uid, -1, lateralFriction=g.friction, restitution=g.restitution)
        self._static_uids.add(uid)
        if g.mesh is not None:
            shape = self._call(p.createCollisionShape, p.GEOM_MESH, vertices=g.mesh.vertices.astype(np.float64).tolist(),
                               indices=g.mesh.faces.reshape(-1).tolist(), flags=p.GEOM_FORCE_CONCAVE_TRIMESH)  # fmt: skip
            if shape < 0:
                raise PhysicsError("the ground mesh could not be turned into a collision shape")
            uid = self._call(p.createMultiBody, 0.0, shape)
            self._call(p.changeDynamics, uid, -1, lateralFriction=g.friction, restitution=g.restitution)
            self._static_uids.add(uid)

    def _add_body(
        self, name: str, collider: ColliderMesh, pose: np.ndarray, mass: float, friction: float, restitution: float
    ) -> _Body:
        p = self._p
        what = f"object {name!r}"
        if collider.kind == "mesh" and mass > 0:
            log.warning("%s: a dynamic body cannot use a concave triangle mesh in Bullet; using its convex hull", what)
            collider = convex_collider(collider.vertices, what=what)
        if mass > 0:  # body frame: centre of mass, principal axes
            props = mass_properties(collider, mass, what=what)
            offset = np.concatenate([props.com, matrix_to_quat(props.principal_axes)])
            inertia = props.principal_moments
        else:  # static: the object frame itself; no mass properties needed (flat or open meshes are fine)
            offset = np.array([0, 0, 0, 1.0, 0, 0, 0])
            inertia = np.zeros(3)
        offset_inv = pose_inverse(offset)
        # collider vertices in the body frame: R_off^T (v - t_off), as rows
        parts = [((v - offset[:3]) @ quat_to_matrix(offset[3:]), f) for v, f in collider_parts(collider)]
        if collider.kind == "mesh":  # static concave triangle mesh
            v, f = parts[0]
            shape = self._call(p.createCollisionShape, p.GEOM_MESH, vertices=v.tolist(), indices=f.reshape(-1).tolist(),
                               flags=p.GEOM_FORCE_CONCAVE_TRIMESH)  # fmt: skip
        elif len(parts) == 1:
            shape = self._call(p.createCollisionShape, p.GEOM_MESH, vertices=parts[0][0].tolist())
        else:  # compound of convex pieces: PyBullet loads each OBJ object as one hull
            path = Path(self._tmp.name) / f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)}_{len(self._by_uid)}.obj"
            write_obj_parts(path, parts)
            shape = self._call(p.createCollisionShape, p.GEOM_MESH, fileName=str(path))
        if shape < 0:
            raise PhysicsError(f"{what}: PyBullet could not create a collision shape from its collider")
        body_pose = pose_compose(pose, offset)
        uid = self._call(p.createMultiBody, float(mass), shape, basePosition=body_pose[:3].tolist(),
                         baseOrientation=_xyzw(body_pose[3:]))  # fmt: skip
        if uid < 0:
            raise PhysicsError(f"{what}: PyBullet could not create the body")
        kw = dict(lateralFriction=friction, restitution=restitution, linearDamping=self.config.linear_damping,
                  angularDamping=self.config.angular_damping)  # fmt: skip
        if collider.kind != "mesh" and len(parts) == 1:  # one convex hull (WorldConfig.collision_margin)
            kw["collisionMargin"] = self.config.collision_margin
        if mass > 0:
            kw["localInertiaDiagonal"] = inertia.tolist()
        self._call(p.changeDynamics, uid, -1, **kw)
        body = _Body(name, uid, float(mass), inertia, offset, offset_inv, float(friction), float(restitution))
        self._bodies[name] = body
        self._by_uid[uid] = name
        self._offsets_cache = None
        return body

    # ------------------------------------------------------------------ the small interface
    @property
    def names(self) -> tuple[str, ...]:
        """The bodies now in the world (scene objects, then spawned assets), in :meth:`body_poses` order."""
        return tuple(self._bodies)

    @property
    def time(self) -> float:
        """Simulated seconds since the start (a whole number of internal steps)."""
        return self._steps * self.config.timestep

    @property
    def gravity(self) -> tuple[float, float, float]:
        return self._gravity

    def step(self, dt: float) -> None:
        """Advance by ``dt`` seconds in fixed internal steps (the remainder carries over to the next call)."""
        if not (_is_real(dt) and math.isfinite(dt) and dt >= 0):
            raise ShapeError(f"step: dt must be a finite number of seconds >= 0, got {dt!r}")
        self._t_target += dt
        self.step_to(self._t_target)

    def step_to(self, time: float) -> None:
        """Advance until :attr:`time` is the last internal step at or before ``time``."""
        if not (_is_real(time) and math.isfinite(time)):
            raise ShapeError(f"step_to: time must be a finite number of seconds, got {time!r}")
        target = int(math.floor(time / self.config.timestep + 1e-6))
        self._t_target = max(self._t_target, float(time))
        p = self._p
        ran = False
        while self._steps < target:
            self._apply_forces()
            self._call(p.stepSimulation)
            self._steps += 1
            ran = True
            if self._steps % _CHECK_EVERY == 0:
                self._check()
        if ran:
            self._check()

    def body_poses(self) -> np.ndarray:  # -> [B, 7]
        """Object-frame pose of every body in :attr:`names` order: ``[x, y, z, qw, qx, qy, qz]``."""
        if not self._bodies:
            return np.zeros((0, 7))
        get = self._p.getBasePositionAndOrientation
        raw = np.empty((len(self._bodies), 7))
        for i, b in enumerate(self._bodies.values()):
            (x, y, z), (qx, qy, qz, qw) = get(b.uid, physicsClientId=self._client)
            raw[i] = (x, y, z, qw, qx, qy, qz)
        return _canonical(pose_compose(raw, self._offsets_inv()))

    def pose(self, name: str) -> np.ndarray:  # -> [7]
        return self._object_pose(self._body(name))

    def velocity(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(linear [3] of the centre of mass, angular [3])`` in the world frame."""
        lin, ang = self._call(self._p.getBaseVelocity, self._body(name).uid)
        return np.asarray(lin), np.asarray(ang)

    def get_state(self) -> WorldState:
        vel = [self.velocity(n) for n in self._bodies]
        return WorldState(
            time=self.time,
            steps=self._steps,
            names=self.names,
            poses=self.body_poses(),
            linear_velocities=np.array([v[0] for v in vel]).reshape(-1, 3),
            angular_velocities=np.array([v[1] for v in vel]).reshape(-1, 3),
            gravity=self._gravity,
            forces=tuple(self._forces),
        )

    def set_state(self, state: WorldState) -> None:
        """Put every body back to ``state`` (same bodies required; contact caches are not part of it)."""
        if tuple(state.names) != self.names:
            raise PhysicsError(
                f"set_state: the state has bodies {list(state.names)} but the world has {list(self.names)}; "
                "reset() and spawn/remove to match first"
            )
        p = self._p
        for i, b in enumerate(self._bodies.values()):
            bp = pose_compose(state.poses[i], b.offset)
            self._call(p.resetBasePositionAndOrientation, b.uid, bp[:3].tolist(), _xyzw(bp[3:]))
            self._call(
                p.resetBaseVelocity, b.uid, state.linear_velocities[i].tolist(), state.angular_velocities[i].tolist()
            )
        self.set_gravity(state.gravity)
        self._steps = int(state.steps)
        self._t_target = self._steps * self.config.timestep
        self._forces = list(state.forces)

    def reset(self) -> None:
        """Back to the scene as loaded: time 0, spawned assets gone, removed objects back, config gravity."""
        self._build()

    # ------------------------------------------------------------------ interventions
    def push(self, point, impulse) -> str:
        """Apply ``impulse`` (N s, world) at world ``point`` on the body whose surface is there; returns its name."""
        point = _vec3(point, "push: point")
        impulse = _vec3(impulse, "push: impulse")
        name = self.body_at(point)
        b = self._bodies[name]
        if b.static:
            raise PhysicsError(f"push: the point {point.tolist()} is on the static object {name!r}, which cannot move")
        lin, ang = self.velocity(name)
        com, rot = self._body_frame(b)
        dv = impulse / b.mass
        # angular impulse about the centre of mass -> world inverse inertia R diag(1/I) R^T
        dw = rot @ ((rot.T @ np.cross(point - com, impulse)) / b.inertia)
        self._set_velocity(
            b, lin + dv, ang + dw, f"push at {point.round(4).tolist()} with impulse {impulse.tolist()} N s"
        )
        return name

    def apply_force(self, name: str, force, point=None, duration: float | None = None) -> None:
        """Apply ``force`` (N, world) at world ``point`` (default: centre of mass) for ``duration`` s (default one step)."""
        b = self._body(name)
        force = _vec3(force, "apply_force: force")
        point = None if point is None else _vec3(point, "apply_force: point")
        if duration is None:
            duration = self.config.timestep
        if not (_is_real(duration) and math.isfinite(duration) and duration > 0):
            raise ShapeError(f"apply_force: duration must be a finite number of seconds > 0, got {duration!r}")
        if b.static:
            raise PhysicsError(f"apply_force: object {name!r} is static and cannot move")
        until = self._steps + max(1, int(round(duration / self.config.timestep)))
        self._forces.append((name, force, point, until))
        self._wake(b)

    def set_velocity(self, name: str, linear=None, angular=None) -> None:
        """Set the linear (m/s, of the centre of mass) and/or angular (rad/s) velocity of a body."""
        b = self._body(name)
        if b.static:
            raise PhysicsError(f"set_velocity: object {name!r} is static and cannot move")
        lin, ang = self.velocity(name)
        lin = lin if linear is None else _vec3(linear, "set_velocity: linear")
        ang = ang if angular is None else _vec3(angular, "set_velocity: angular")
        self._set_velocity(b, lin, ang, "set_velocity")

    def drop(self, name: str, height: float) -> None:
        """Lift a body ``height`` metres straight up (against gravity) from where it is, stop it and let it fall."""
        b = self._body(name)
        if not (_is_real(height) and math.isfinite(height) and height >= 0):
            raise ShapeError(f"drop: height must be a finite number of metres >= 0, got {height!r}")
        if b.static:
            raise PhysicsError(f"drop: object {name!r} is static and cannot move")
        up = -np.asarray(self._gravity)
        up = up / np.linalg.norm(up) if np.linalg.norm(up) > 0 else np.array([0.0, 0.0, 1.0])
        pos, orn = self._call(self._p.getBasePositionAndOrientation, b.uid)
        self._call(self._p.resetBasePositionAndOrientation, b.uid, (np.asarray(pos) + height * up).tolist(), orn)
        self._call(self._p.resetBaseVelocity, b.uid, [0, 0, 0], [0, 0, 0])
        self._wake(b)

    def spawn(
        self,
        mesh_path: str | Path,
        pose,  # [7] object-frame pose of the asset (its file's frame): x, y, z, qw, qx, qy, qz
        mass: float,
        *,
        name: str | None = None,  # default: the file's stem, made unique
        friction: float = 0.6,
        restitution: float = 0.1,
        concave: bool = False,  # convex decomposition (VHACD) instead of one convex hull
    ) -> str:
        """Add a game asset (GLB/OBJ/...) as a dynamic body; returns its name. It is listed in :attr:`assets`."""
        path = Path(mesh_path)
        pose = np.asarray(pose, np.float64).reshape(-1)
        if pose.shape != (7,) or not np.all(np.isfinite(pose)):
            raise ShapeError(f"spawn: pose must be 7 finite numbers [x, y, z, qw, qx, qy, qz], got {pose.tolist()}")
        pose[3:] = quat_normalize(pose[3:])
        if not (_is_real(mass) and math.isfinite(mass) and mass > 0):
            raise ShapeError(f"spawn: mass must be a finite number of kg > 0, got {mass!r}")
        for label, v in (("friction", friction), ("restitution", restitution)):
            if not (math.isfinite(v) and v >= 0):
                raise ShapeError(f"spawn: {label} must be >= 0, got {v!r}")
        if name is not None and name in self._bodies:
            raise PhysicsError(f"spawn: a body named {name!r} already exists; choose another name")
        if name is None:
            name = default_asset_name(path, [*self._bodies, *self.removed])
        mesh = load_mesh(path, what=f"spawn {str(path)!r}")
        collider = mesh_collider(mesh, concave=concave, what=f"spawn {str(path)!r}")
        self._add_body(name, collider, pose, float(mass), float(friction), float(restitution))
        colors = None
        vc = getattr(mesh.visual, "vertex_colors", None) if mesh.visual.kind == "vertex" else None
        if vc is not None and len(vc) == len(mesh.vertices):
            colors = np.asarray(vc, np.float64)[:, :3] / 255.0
        self.assets[name] = SpawnedAsset(
            name, path, np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces), colors
        )
        return name

    def remove(self, name: str) -> None:
        """Take a body out of the world (its splats should vanish); :meth:`reset` brings scene objects back."""
        b = self._body(name)
        self._call(self._p.removeBody, b.uid)
        del self._bodies[name]
        del self._by_uid[b.uid]
        self._offsets_cache = None
        self._forces = [f for f in self._forces if f[0] != name]
        self.assets.pop(name, None)
        self.removed.append(name)

    def set_gravity(self, gravity) -> None:
        """Gravity in m/s^2, world frame (default ``(0, 0, -9.81)``)."""
        g = _vec3(gravity, "set_gravity: gravity")
        self._gravity = tuple(float(v) for v in g)
        self._call(self._p.setGravity, *self._gravity)
        for b in self._bodies.values():
            self._wake(b)

    def dynamics(self, name: str) -> tuple[float, float, float]:
        """``(mass kg, friction, restitution)`` of body ``name`` (mass 0 for a static body)."""
        b = self._body(name)
        return (b.mass, b.friction, b.restitution)

    def set_dynamics(self, name: str, *, mass: float | None = None, friction: float | None = None) -> None:
        """Change the mass (kg, dynamic bodies; inertia scales with it) and/or the friction of body ``name``."""
        b = self._body(name)
        kw = {}
        if mass is not None:
            if not (math.isfinite(mass) and mass > 0):
                raise ShapeError(f"mass of {name!r}: expected a finite number of kg > 0, got {mass!r}")
            if b.static:
                raise PhysicsError(f"object {name!r} is static; its mass cannot change")
            if mass != b.mass:
                b.inertia = b.inertia * (mass / b.mass)
                b.mass = float(mass)
                kw.update(mass=b.mass, localInertiaDiagonal=b.inertia.tolist())
        if friction is not None:
            if not (math.isfinite(friction) and friction >= 0):
                raise ShapeError(f"friction of {name!r}: expected a finite number >= 0, got {friction!r}")
            b.friction = float(friction)
            kw.update(lateralFriction=b.friction)
        if kw:
            self._call(self._p.changeDynamics, b.uid, -1, **kw)
            self._wake(b)

    def pick(self, origin, direction, max_distance: float = 100.0) -> Pick | None:
        """The first object hit by the ray from ``origin`` along ``direction``; None if it hits none (or only the ground)."""
        origin = _vec3(origin, "pick: origin")
        direction = _vec3(direction, "pick: direction")
        n = np.linalg.norm(direction)
        if n == 0:
            raise ShapeError("pick: direction is the zero vector")
        end = origin + direction / n * max_distance
        hit = self._call(self._p.rayTest, origin.tolist(), end.tolist())[0]
        uid, frac = hit[0], hit[2]
        if uid < 0 or uid not in self._by_uid:
            return None
        return Pick(self._by_uid[uid], np.asarray(hit[3]), np.asarray(hit[4]), float(frac * max_distance))

    def body_at(self, point, tolerance: float | None = None) -> str:
        """The body whose surface is nearest ``point`` (inside counts as nearest), within ``tolerance`` m."""
        point = _vec3(point, "point")
        tol = self.config.point_tolerance if tolerance is None else float(tolerance)
        p = self._p
        best, best_d, nearest = None, math.inf, (None, math.inf)
        for b in self._bodies.values():
            hits = self._call(p.getClosestPoints, bodyA=b.uid, bodyB=-1, distance=10.0, collisionShapeB=self._probe,
                              collisionShapePositionB=point.tolist())  # fmt: skip
            for h in hits:
                d = h[8] + 1e-4
                if d < nearest[1]:
                    nearest = (b.name, d)
                if d <= tol and d < best_d:
                    best, best_d = b.name, d
        if best is None:
            where = f"the nearest is {nearest[0]!r} at {nearest[1]:.3f} m" if nearest[0] else "no object within 10 m"
            raise PhysicsError(
                f"the point {point.round(4).tolist()} is on no object (tolerance {tol} m; {where}); "
                "give a point on an object's surface, e.g. from pick(ray)"
            )
        return best

    # ------------------------------------------------------------------ internals
    def _body(self, name: str) -> _Body:
        b = self._bodies.get(name)
        if b is None:
            extra = " (it was removed)" if name in self.removed else ""
            raise PhysicsError(f"unknown object {name!r}{extra}; the world has: {list(self._bodies) or 'no bodies'}")
        return b

    def _body_frame(self, b: _Body) -> tuple[np.ndarray, np.ndarray]:
        pos, orn = self._call(self._p.getBasePositionAndOrientation, b.uid)
        return np.asarray(pos), quat_to_matrix(_wxyz(orn))

    def _offsets_inv(self) -> np.ndarray:  # [B, 7], cached until the set of bodies changes
        if self._offsets_cache is None:
            self._offsets_cache = np.array([b.offset_inv for b in self._bodies.values()]).reshape(-1, 7)
        return self._offsets_cache

    def _object_pose(self, b: _Body) -> np.ndarray:
        pos, orn = self._call(self._p.getBasePositionAndOrientation, b.uid)
        return _canonical(pose_compose(np.concatenate([pos, _wxyz(orn)]), b.offset_inv))

    def _wake(self, b: _Body) -> None:
        if not b.static:
            self._call(self._p.changeDynamics, b.uid, -1, activationState=self._p.ACTIVATION_STATE_WAKE_UP)

    def _set_velocity(self, b: _Body, lin: np.ndarray, ang: np.ndarray, what: str) -> None:
        cfg = self.config
        speed, spin = float(np.linalg.norm(lin)), float(np.linalg.norm(ang))
        if speed > cfg.max_linear_speed or spin > cfg.max_angular_speed:
            raise PhysicsError(
                f"{what}: object {b.name!r} ({b.mass:.3g} kg) would move at {speed:.3g} m/s and spin at {spin:.3g} rad/s, "
                f"above the limits (WorldConfig.max_linear_speed={cfg.max_linear_speed} m/s, "
                f"max_angular_speed={cfg.max_angular_speed} rad/s); use a smaller impulse or raise the limits"
            )
        self._call(self._p.resetBaseVelocity, b.uid, lin.tolist(), ang.tolist())
        self._wake(b)

    def _apply_forces(self) -> None:
        if not self._forces:
            return
        p = self._p
        keep = []
        for name, force, point, until in self._forces:
            b = self._bodies.get(name)
            if b is None or self._steps >= until:
                continue
            at = self._body_frame(b)[0] if point is None else point
            self._call(p.applyExternalForce, b.uid, -1, force.tolist(), np.asarray(at).tolist(), p.WORLD_FRAME)
            keep.append((name, force, point, until))
        self._forces = [f for f in keep if self._steps + 1 < f[3]]

    def _check(self) -> None:
        """Raise if a body's velocity is NaN or above the limits (runs after every internal step)."""
        cfg = self.config
        vmax2, wmax2 = cfg.max_linear_speed**2, cfg.max_angular_speed**2
        get = self._p.getBaseVelocity
        for b in self._bodies.values():
            if b.static:
                continue
            (vx, vy, vz), (wx, wy, wz) = get(b.uid, physicsClientId=self._client)
            v2, w2 = vx * vx + vy * vy + vz * vz, wx * wx + wy * wy + wz * wz
            if v2 <= vmax2 and w2 <= wmax2:  # False for NaN too
                continue
            pos, _ = self._body_frame(b)
            raise PhysicsError(
                f"the simulation diverged at t={self.time:.4f} s: object {b.name!r} is at {pos.round(3).tolist()} "
                f"moving at {math.sqrt(v2):.3g} m/s, spinning at {math.sqrt(w2):.3g} rad/s (limits "
                f"{cfg.max_linear_speed} m/s, {cfg.max_angular_speed} rad/s); reset() or set_state() the world, "
                "and use gentler interventions or a smaller WorldConfig.timestep"
            )
