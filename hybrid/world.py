"""A runtime World: a Scene, its PyBullet world, scheduled events, and the splats moved to any time.

::

    world = World(scene, events=load_events("events.json"))
    world.advance_to(1.5)                  # steps physics, runs events when their time comes
    splats = world.splats()                # the scene's splats with every object at its pose now
    world.splats_at(0.5)                   # any time: replays from the start when going back
    images = world.render(cameras)         # [C, H, W, 3] float, CPU rasterizer

Per frame the cost is ``PhysicsWorld.step`` plus :class:`physics.SplatRig.apply` (one compiled
pass over the splats of the objects that moved); see ``tools/bench/physics.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from physics.events import Event, EventQueue, check_event_objects
from physics.transforms import SplatRig, quat_multiply, quat_to_matrix
from physics.world import PhysicsWorld, WorldConfig
from scenes.errors import HybridError, ShapeError
from scenes.scene import Camera, Scene
from scenes.splats import Splats, rgb_to_sh0

__all__ = ["World", "AppliedEvent"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppliedEvent:
    """An event that ran: when (world time, after rounding to the physics step) and on what."""

    time: float
    event: Event
    object: str | None  # the object acted on (the one a push found), or the spawned name


class World:
    """A scene you can step, act on and render; the splats of each object follow its rigid body."""

    def __init__(
        self,
        scene: Scene,
        config: WorldConfig | None = None,
        *,
        events: tuple[Event, ...] | list[Event] = (),
        sh_mode: str = "view_dir",  # how view-dependent colour follows a rotated object (see SplatRig)
        asset_splat_spacing: float = 0.01,  # m between splats that stand in for spawned meshes in CPU renders
    ) -> None:
        self.scene = scene
        self.physics = PhysicsWorld(scene, config)
        check_event_objects(tuple(events), self.physics.names)
        self._events = EventQueue(events)
        self.applied: list[AppliedEvent] = []
        self._names = [o.name for o in scene.objects]
        rest = np.array([[*o.position, *o.quaternion] for o in scene.objects], np.float64).reshape(-1, 7)
        self.rig = SplatRig(scene.splats, [o.splat_indices for o in scene.objects], rest, sh_mode=sh_mode)
        self._last_poses = rest.copy()
        self._spacing = float(asset_splat_spacing)
        self._asset_splats: dict[str, Splats] = {}

    # ------------------------------------------------------------------ time
    @property
    def time(self) -> float:
        return self.physics.time

    def advance_to(self, time: float) -> list[AppliedEvent]:
        """Simulate up to ``time`` (seconds), running the events due on the way; returns those events."""
        if not np.isfinite(time) or time < self.time - 1e-9:
            raise ShapeError(f"advance_to: time must be finite and >= the current time {self.time:.4f} s, got {time}")
        ran = []
        while self._events.next_time() <= time + 1e-9:
            self.physics.step_to(self._events.next_time())
            for event in self._events.due(self._events.next_time()):
                try:
                    obj = event.apply(self.physics)
                except HybridError as exc:  # say which event failed, keep the type
                    raise type(exc)(f"event {event.index} ({event.describe()}): {exc}") from exc
                applied = AppliedEvent(self.time, event, obj)
                log.info("t=%.4f s: %s -> %s", self.time, event.describe(), obj)
                ran.append(applied)
        self.physics.step_to(time)
        self.applied += ran
        return ran

    def step(self, dt: float) -> list[AppliedEvent]:
        """Advance by ``dt`` seconds (events included)."""
        return self.advance_to(self.time + dt)

    def reset(self) -> None:
        """Back to time 0: the scene as loaded, events pending again."""
        self.physics.reset()
        self._events.reset()
        self.applied = []
        self._asset_splats = {}

    # ------------------------------------------------------------------ state
    def poses(self) -> dict[str, dict[str, list[float]]]:
        """Every body now in the world: ``{name: {"position": [x, y, z], "quaternion": [w, x, y, z]}}``."""
        return {name: {"position": p[:3].tolist(), "quaternion": p[3:].tolist()}
                for name, p in zip(self.physics.names, self.physics.body_poses(), strict=True)}  # fmt: skip

    def _object_poses(self) -> tuple[np.ndarray, np.ndarray]:
        alive = set(self.physics.names)
        visible = np.array([n in alive for n in self._names], bool)
        poses = self._last_poses
        if alive:
            now = dict(zip(self.physics.names, self.physics.body_poses(), strict=True))
            poses = np.array([now.get(n, poses[i]) for i, n in enumerate(self._names)]).reshape(-1, 7)
        self._last_poses = poses
        return poses, visible

    def splat_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(means [N, 3], quats [N, 4], sh [N, K, 3], opacity_logits [N])`` of the scene's splats now.

        Views of internal buffers (no copy), valid until the next call; removed objects have
        opacity logit -100. Spawned assets are not included (see :meth:`splats`).
        """
        poses, visible = self._object_poses()
        return self.rig.apply(poses, visible)

    def splats(self, *, include_assets: bool = True) -> Splats:
        """The scene's splats with every object at its current pose (a validated copy).

        With ``include_assets``, spawned meshes are appended as surface splats so that a
        splat-only renderer shows them. In ``sh_mode="view_dir"`` the SH are the rest-frame
        ones; render with :meth:`render` (or ``rig.colors``) for exact view-dependent colour.
        """
        means, quats, sh, op = self.splat_arrays()
        out = Splats(means.copy(), quats.copy(), self.scene.splats.log_scales, op.copy(), sh.copy())
        if include_assets and self.physics.assets:
            out = Splats.concat([out, *self._assets_now()])
        return out

    def splats_at(self, time: float, *, include_assets: bool = True) -> Splats:
        """The splats at any ``time``: steps forward, or resets and replays when ``time`` is in the past."""
        if time < self.time - 1e-9:
            self.reset()
        self.advance_to(time)
        return self.splats(include_assets=include_assets)

    def asset_splats(self) -> Splats | None:
        """The spawned meshes as surface splats at their current poses (colour = the mesh's), or None."""
        assets = self._assets_now() if self.physics.assets else []
        return Splats.concat(assets) if assets else None

    def _assets_now(self) -> list[Splats]:
        """Spawned meshes as surface splats at their current poses."""
        out = []
        for name, asset in self.physics.assets.items():
            rest = self._asset_splats.get(name)
            if rest is None:
                rest = _mesh_splats(asset.vertices, asset.faces, asset.vertex_colors, self._spacing)
                self._asset_splats[name] = rest
            pose = self.physics.pose(name)
            means = rest.means @ quat_to_matrix(pose[3:]).T + pose[:3]
            out.append(rest.with_(means=means, quats=quat_multiply(pose[3:], rest.quats)))
        return out

    # ------------------------------------------------------------------ rendering
    def render(
        self,
        cameras: list[Camera],
        *,
        background: tuple[float, float, float] = (0.0, 0.0, 0.0),
        backend: str = "cpu",
        supersample: int | None = None,
    ) -> list[np.ndarray]:  # C images [H, W, 3] float32 in [0, 1]
        """Rasterize the current state for each camera with ``render.rasterize`` (cameras may differ in size).

        ``supersample`` k > 1 draws each camera k times finer and box-filters it back; ``None`` picks k
        from how much more coarsely the camera sees the splats than the capture did (:mod:`render.supersample`).
        """
        import torch

        from render.rasterize import rasterize
        from render.supersample import resolve, supersampled

        means, quats, sh, op = self.splat_arrays()
        scene_splats = self.scene.splats
        scales = np.exp(scene_splats.log_scales)
        assets = self._assets_now() if self.physics.assets else []
        extra = Splats.concat(assets) if assets else None
        images = []
        for cam in cameras:
            if scene_splats.sh_degree > 0 and self.rig.sh_mode == "view_dir":
                colors = self.rig.colors(cam.position)  # exact view-dependent colour, no SH rotation
            else:
                colors = sh  # [N, K, 3]; rotated SH, or degree 0
            m, q, s, o, c = means, quats, scales, 1.0 / (1.0 + np.exp(-op.astype(np.float64))), colors
            if assets:  # spawned meshes as surface splats, colour in the DC term
                rgb = np.clip(extra.colors, 0, 1).astype(np.float32)
                if c.ndim == 3:
                    extra_sh = np.zeros((len(extra), c.shape[1], 3), np.float32)
                    extra_sh[:, 0] = rgb_to_sh0(rgb)
                    c = np.concatenate([c, extra_sh])
                else:
                    c = np.concatenate([c, rgb])
                m = np.concatenate([m, extra.means])
                q = np.concatenate([q, extra.quats])
                s = np.concatenate([s, extra.scales])
                o = np.concatenate([o, extra.opacities])
            t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
            k, big = supersampled(supersample, self.scene, cam, means)
            res = rasterize(t(m), t(q), t(s), t(o), t(c), t(big.viewmat[None]), t(big.K[None]), big.width, big.height,
                            backgrounds=t(np.asarray(background)[None]), backend=backend)  # fmt: skip
            images.append(resolve(res.colors[0], k).clamp(0, 1).numpy())
        return images


def _mesh_splats(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None, spacing: float) -> Splats:
    """Flat splats on a mesh surface (about one per ``spacing``^2), oriented along the faces."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    n = int(np.clip(area.sum() / spacing**2, 64, 200_000))
    rng = np.random.default_rng(0)
    face = rng.choice(len(f), size=n, p=area / area.sum())
    r1, r2 = rng.random((2, n))
    s = np.sqrt(r1)
    u, w = 1 - s, s * (1 - r2)
    pts = u[:, None] * a[face] + w[:, None] * b[face] + (1 - u - w)[:, None] * c[face]
    normal = cross[face] / np.maximum(np.linalg.norm(cross[face], axis=1, keepdims=True), 1e-12)
    # rotation taking +z to the face normal (the splat is flat along its z axis)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, normal)
    cosang = normal @ z
    quats = np.concatenate([(1 + cosang)[:, None], axis], 1)
    flip = (1 + cosang) < 1e-9
    quats[flip] = [0.0, 1.0, 0.0, 0.0]
    if colors is not None:
        vc = np.asarray(colors, np.float64)
        rgb = u[:, None] * vc[f[face, 0]] + w[:, None] * vc[f[face, 1]] + (1 - u - w)[:, None] * vc[f[face, 2]]
    else:
        rgb = np.full((n, 3), 0.7)
    scales = np.tile([spacing * 0.7, spacing * 0.7, spacing * 0.05], (n, 1))
    return Splats.from_activated(pts, quats, scales, np.full(n, 0.99), np.clip(rgb, 0, 1))
