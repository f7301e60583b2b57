"""The viewer's core without a window: a World (scene + physics), a GL renderer, the fly camera,
selection, interventions with undo, light and display settings.

The GLFW window (:mod:`hybrid.viewer.window`) feeds it input and time and shows what it draws;
scripts and tests drive it the same way on a headless EGL context. Coordinates of clicks are
framebuffer pixels of the view (row 0 at the top), the size given to :meth:`ViewerSession.resize`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybrid.viewer._dynamics import body_dynamics, set_body_dynamics
from hybrid.viewer.camera import FlyCamera
from hybrid.viewer.overlays import ImagePass, OutlinePass, WireframePass
from hybrid.viewer.refine import VIEWER_WORLD_MODES, StillFrameRefiner
from hybrid.viewer.state import FrameStats, Intervention, InterventionStack, LightSettings
from hybrid.world import World
from physics.colliders import convex_collider
from physics.transforms import quat_to_matrix
from render.gl import SPLAT_PATHS, Mesh, Renderer, RenderSettings, load_mesh
from render.gl.headless import scene_orbit
from render.gl.splat_layer import is_software_renderer
from scenes.errors import FormatError, PhysicsError, ShapeError
from scenes.scene import Camera, Scene

__all__ = ["ViewerSettings", "ViewerSession", "SOFTWARE_RENDER_SIZE"]

log = logging.getLogger(__name__)

SOFTWARE_RENDER_SIZE = (640, 360)  # on a CPU GL (llvmpipe) the internal render has at most this many pixels by default
_DRAG_PIXELS = 100.0  # a drag this long pushes with the set strength; shorter or longer scales it (0.2x .. 5x)


AUTO_CPU_SPLAT_BUDGET_MS = 60.0  # splat_path="auto" on a software GL: the cpu splat layer's frame budget


@dataclass(frozen=True)
class ViewerSettings:
    """How a viewer session renders and steps; fixed at start (the panel changes the live values)."""

    # "auto": "cpu" splats with a frame budget on a software GL (llvmpipe), "gl" quads on a GPU; or "gl" (GL quads),
    # "raster" (render.rasterize image), "cpu" (numba compositing), as RenderSettings.splat_path
    splat_path: str = "auto"
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # colour where nothing is drawn
    render_scale: float | None = None  # internal render size / view size; None: 1 on a GPU, <= 640x360 on a CPU GL
    push_strength: float = 1.0  # N s of a modifier-click push (the panel's slider)
    max_step: float = 0.25  # s: the longest physics step one frame takes (a slow frame runs in slow motion)
    shadows: bool = True  # shadow map for meshes (spawned assets)
    splat_scale: float = 1.0  # cpu splat path: splat resolution / render resolution (RenderSettings.splat_scale)
    splat_budget_ms: float | None = None  # cpu splat path: choose splat_scale each frame for this budget
    min_splat_scale: float = 0.25  # cpu splat path with a budget: the lowest scale

    def __post_init__(self) -> None:
        if self.splat_path not in ("auto", *SPLAT_PATHS):
            raise ShapeError(
                f"ViewerSettings.splat_path must be one of {('auto', *SPLAT_PATHS)}, got {self.splat_path!r}"
            )
        if self.render_scale is not None and not 0.05 <= self.render_scale <= 1.0:
            raise ShapeError(f"ViewerSettings.render_scale must lie in [0.05, 1], got {self.render_scale}")
        if not (math.isfinite(self.push_strength) and self.push_strength > 0):
            raise ShapeError(f"ViewerSettings.push_strength must be > 0 N s, got {self.push_strength}")


def _pose_matrix(pose: np.ndarray) -> np.ndarray:  # [7] -> [4, 4]
    m = np.eye(4)
    m[:3, :3] = quat_to_matrix(np.asarray(pose[3:], np.float64))
    m[:3, 3] = pose[:3]
    return m


class ViewerSession:
    """Everything the viewer shows and changes, drawn into a caller's framebuffer."""

    def __init__(self, scene: Scene, ctx, size: tuple[int, int] = (1280, 720),
                 settings: ViewerSettings | None = None) -> None:  # fmt: skip
        self.scene = scene
        self.ctx = ctx
        self.settings = settings or ViewerSettings()
        self.software_gl = is_software_renderer(ctx)
        self.world = World(scene)
        self.camera = FlyCamera()
        self.light = LightSettings.from_light(scene.light)
        self.interventions = InterventionStack()
        self.stats = FrameStats()
        self.selected: str | None = None
        self.paused = False
        self.time_scale = 1.0
        self.push_strength = self.settings.push_strength
        self.show_colliders = False
        self.world_view = "gl"  # "gl", or a world model for still views: "exact", "relight", "full"
        self.refiner: StillFrameRefiner | None = None
        self._world_frame: np.ndarray | None = None  # the world-model frame of the current view, when done
        self._view_key = None
        self._refiner_status = ""
        self.message = ""  # last status line for the panel
        self.render_scale = self.settings.render_scale
        self.view_size = (0, 0)
        self.render_size = (0, 0)
        self._colliders: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._asset_meshes: dict[str, tuple[int, Path]] = {}  # spawned name -> (renderer mesh id, file)
        self._mesh_cache: dict[Path, Mesh] = {}
        self._last_poses: np.ndarray | None = None
        self._body_of_splat: np.ndarray | None = None  # [N] object index of each scene splat (-1: none)
        self._last_names: tuple[str, ...] = ()
        vs = self.settings
        splat_path, budget = vs.splat_path, vs.splat_budget_ms
        if splat_path == "auto":
            splat_path = "cpu" if self.software_gl else "gl"
            if splat_path == "cpu" and budget is None:
                budget = AUTO_CPU_SPLAT_BUDGET_MS
        rs = RenderSettings(splat_path=splat_path, background=vs.background, shadows=vs.shadows,
                            splat_scale=vs.splat_scale, splat_budget_ms=budget,
                            min_splat_scale=vs.min_splat_scale)  # fmt: skip
        self.renderer = Renderer(ctx, 16, 16, rs)
        self.renderer.set_splats(scene.splats)
        self.outline = OutlinePass(ctx)
        self.wireframes = WireframePass(ctx)
        self.image_pass = ImagePass(ctx)
        self.resize(*size)
        self.home_view()
        self.sync(force=True)

    # ------------------------------------------------------------------ sizes
    def auto_render_scale(self, width: int, height: int) -> float:
        """1 on a GPU; on a CPU GL the scale that keeps the pixel count within :data:`SOFTWARE_RENDER_SIZE`'s."""
        if not self.software_gl:
            return 1.0
        budget = SOFTWARE_RENDER_SIZE[0] * SOFTWARE_RENDER_SIZE[1]
        return min(1.0, math.sqrt(budget / (width * height)))

    def resize(self, width: int, height: int) -> None:
        """Set the view's size in framebuffer pixels; the internal render size follows the render scale."""
        width, height = max(int(width), 1), max(int(height), 1)
        self.view_size = (width, height)
        scale = self.render_scale if self.render_scale is not None else self.auto_render_scale(width, height)
        self.render_size = (max(16, round(width * scale)), max(16, round(height * scale)))
        self.renderer.resize(*self.render_size)

    def set_render_scale(self, scale: float | None) -> None:
        if scale is not None and not 0.05 <= scale <= 1.0:
            raise ShapeError(f"render scale must lie in [0.05, 1], got {scale}")
        self.render_scale = scale
        self.resize(*self.view_size)

    # ------------------------------------------------------------------ camera
    def home_view(self) -> None:
        """The first capture camera if the scene has one, else a view of the whole scene."""
        if self.scene.capture_cameras:
            self.go_to_capture_camera(0, animate=False)
            return
        if len(self.scene.splats):
            cam = scene_orbit(self.scene, 8, width=self.view_size[0], height=self.view_size[1])[1]
            self.camera.set_view(cam.viewmat, exact=False)
            lo, hi = self.scene_bounds()
            self.camera.speed = float(np.clip(np.linalg.norm(hi - lo) / 4, 0.05, 50.0))

    def scene_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Robust bounds of the splats (2nd to 98th percentile of the centres)."""
        means = self.world.splat_arrays()[0] if len(self.scene.splats) else np.zeros((1, 3))
        return np.percentile(means, 2, axis=0), np.percentile(means, 98, axis=0)

    def frame_view(self) -> None:
        """F: fly to a view of the selected object, or of the scene when nothing is selected."""
        if self.selected is not None and self.selected in self.world.physics.names:
            v, _ = self.collider(self.selected)
            pose = self.world.physics.pose(self.selected)
            pts = v @ quat_to_matrix(pose[3:]).T + pose[:3]
            self.camera.frame(pts.min(0), pts.max(0))
        else:
            self.camera.frame(*self.scene_bounds())

    def go_to_capture_camera(self, index: int, *, animate: bool = True) -> bool:
        """Number keys: fly to capture camera ``index`` (0-based); False when the scene has no such camera."""
        cams = self.scene.capture_cameras
        if not 0 <= index < len(cams):
            self.message = f"no capture camera {index + 1} (the scene has {len(cams)})"
            return False
        cam = cams[index]
        fov = math.degrees(2 * math.atan(0.5 * cam.height / cam.K[1, 1]))
        if animate:
            self.camera.fly_to_view(cam.viewmat, fov)
        else:
            self.camera.set_view(cam.viewmat, fov)
        self.message = f"capture camera {index + 1}" + (f" ({cam.name})" if cam.name else "")
        return True

    def viewmat_and_K(self, width: int | None = None, height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        w, h = (width, height) if width else self.view_size
        return self.camera.viewmat(), self.camera.K(w, h)

    # ------------------------------------------------------------------ time
    def tick(self, dt: float, held=()) -> None:
        """Advance the camera by ``dt`` wall seconds and, unless paused, physics by ``dt * time_scale``."""
        self.camera.update(dt, held)
        if self.paused or self.time_scale <= 0:
            return
        step = min(dt, self.settings.max_step) * self.time_scale
        with self.stats.section("physics"):
            try:
                self.world.step(step)
            except PhysicsError as exc:
                self.paused = True
                self.message = f"physics paused: {exc}"
                log.warning("%s", exc)

    def toggle_pause(self) -> bool:
        self.paused = not self.paused
        self.message = "physics paused" if self.paused else "physics running"
        return self.paused

    # ------------------------------------------------------------------ picking and interventions
    def pick(self, x: float, y: float):
        """The object under view pixel ``(x, y)`` as a :class:`physics.Pick`, or None."""
        origin, direction = self.camera.ray(x, y, *self.view_size)
        return self.world.physics.pick(origin, direction, max_distance=1e4)

    def select_at(self, x: float, y: float) -> str | None:
        """Click: select the object under the pixel (None, and nothing selected, when there is none)."""
        hit = self.pick(x, y)
        self.selected = None if hit is None else hit.name
        self.message = f"selected {self.selected}" if self.selected else ""
        return self.selected

    def push_at(self, x: float, y: float, strength: float | None = None) -> str | None:
        """Modifier-click: push the object under the pixel along the view ray; returns its name."""
        hit = self.pick(x, y)
        if hit is None:
            self.message = "nothing to push there"
            return None
        _, direction = self.camera.ray(x, y, *self.view_size)
        return self.push(hit.name, hit.point, direction * (strength or self.push_strength))

    def drag_push(self, x0: float, y0: float, x1: float, y1: float) -> str | None:
        """Drag from an object: push it at the grabbed point towards where the mouse was released.

        The direction is the drag carried to the grabbed point's depth; the impulse is the push
        strength times the drag length over 100 pixels (clamped to 0.2x .. 5x).
        """
        hit = self.pick(x0, y0)
        if hit is None:
            self.message = "nothing to push there"
            return None
        view = self.camera.viewmat()
        depth = float(view[2, :3] @ hit.point + view[2, 3])
        origin, d1 = self.camera.ray(x1, y1, *self.view_size)
        target = origin + d1 * depth / float(view[2, :3] @ d1)
        move = target - hit.point
        if np.linalg.norm(move) < 1e-9:
            return self.push_at(x0, y0)
        pixels = math.hypot(x1 - x0, y1 - y0)
        scale = float(np.clip(pixels / _DRAG_PIXELS, 0.2, 5.0))
        return self.push(hit.name, hit.point, move / np.linalg.norm(move) * self.push_strength * scale)

    def push(self, name: str, point, impulse) -> str | None:
        """Apply ``impulse`` (N s, world) at ``point`` on ``name`` as an undoable intervention."""
        self.selected = name
        record = self._snapshot(f"push {name}")
        try:
            pushed = self.world.physics.push(point, impulse)
        except PhysicsError as exc:
            self.message = f"push refused: {exc}"
            return None
        self.interventions.push(record)
        self.message = f"pushed {pushed} with {np.linalg.norm(impulse):.2f} N s"
        return pushed

    def spawn(self, path: str | Path, mass: float = 1.0) -> str | None:
        """Drop a mesh file (GLB/OBJ/...) onto the point at the centre of the view; returns its name."""
        path = Path(path).expanduser()
        try:
            mesh = self._mesh(path)
            lo, hi = mesh.bounds()
            target = self._spawn_point()
            position = target - np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]) + [0.0, 0.0, 0.05]
            record = self._snapshot(f"spawn {path.name}")
            name = self.world.physics.spawn(path, [*position, 1.0, 0.0, 0.0, 0.0], mass)
        except (FormatError, PhysicsError, ShapeError) as exc:
            self.message = f"spawn failed: {exc}"
            return None
        self.interventions.push(record)
        self.selected = name
        self.message = f"spawned {name} ({mass:g} kg)"
        return name

    def _spawn_point(self) -> np.ndarray:
        """Where the view's centre ray meets the ground (or 2 m ahead), raised onto any object below it."""
        origin, direction = self.camera.ray(self.view_size[0] / 2, self.view_size[1] / 2, *self.view_size)
        target = origin + 2.0 * direction
        g = self.scene.ground
        if g is not None:
            n = np.asarray(g.normal)
            denom = float(n @ direction)
            if denom < -1e-6:
                t = (g.offset - float(n @ origin)) / denom
                if 0 < t < 1e3:
                    target = origin + t * direction
        phys = self.world.physics
        hit = phys.pick(target + [0.0, 0.0, 20.0], [0.0, 0.0, -1.0], max_distance=40.0)
        if hit is not None and hit.point[2] > target[2]:
            target = hit.point.copy()
        return target

    def begin_edit(self, label: str) -> None:
        """Record the world before a panel edit (gravity, mass, friction) so that undo restores it."""
        self.interventions.push(self._snapshot(label))

    def set_gravity(self, gz: float) -> None:
        self.world.physics.set_gravity((0.0, 0.0, float(gz)))

    def dynamics(self, name: str) -> tuple[float, float, float]:
        """``(mass, friction, restitution)`` of a body (mass 0 for a static one)."""
        return body_dynamics(self.world.physics, name)

    def set_dynamics(self, name: str, *, mass: float | None = None, friction: float | None = None) -> None:
        set_body_dynamics(self.world.physics, name, mass=mass, friction=friction)

    def _snapshot(self, label: str) -> Intervention:
        phys = self.world.physics
        dyn = {n: body_dynamics(phys, n) for n in phys.names}
        assets = {n: a.path for n, a in phys.assets.items()}
        return Intervention(label, (phys.get_state(), assets), phys.names, dyn)

    def undo(self) -> str | None:
        """Backspace: put the world back as it was before the last intervention; returns its label."""
        item = self.interventions.pop()
        if item is None:
            self.message = "nothing to undo"
            return None
        self._restore(item)
        self.message = f"undid {item.label}"
        return item.label

    def reset(self) -> None:
        """R: the world as loaded (time 0, spawned assets gone); undoable like an intervention."""
        record = self._snapshot("reset")
        self.world.reset()
        self.interventions.push(record)
        if self.selected not in self.world.physics.names:
            self.selected = None
        self.message = "world reset"

    def _restore(self, item: Intervention) -> None:
        phys = self.world.physics
        state, assets = item.state
        for name in phys.names:
            if name not in item.bodies:
                phys.remove(name)
        for name in item.bodies:
            if name not in phys.names:  # a spawned asset a reset took away: bring it back
                mass, friction, restitution = item.dynamics[name]
                phys.spawn(assets[name], [0, 0, 0, 1, 0, 0, 0], mass, name=name, friction=friction,
                           restitution=restitution)  # fmt: skip
        if phys.names != item.bodies:
            raise PhysicsError(f"undo: bodies {list(phys.names)} do not match the recorded {list(item.bodies)}")
        phys.set_state(state)
        for name, (mass, friction, _) in item.dynamics.items():
            set_body_dynamics(phys, name, mass=mass if mass > 0 else None, friction=friction)
        if self.selected not in phys.names:
            self.selected = None

    # ------------------------------------------------------------------ scene content on the GPU
    def collider(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(vertices [V, 3], faces [F, 3])`` of a body's collider in its object frame (as physics builds it)."""
        got = self._colliders.get(name)
        if got is not None:
            return got
        phys = self.world.physics
        if name in phys.assets:
            a = phys.assets[name]
            hull = convex_collider(a.vertices, what=f"asset {name!r}")
            got = (hull.vertices.astype(np.float64), hull.faces)
        else:
            obj = self.scene.object(name)
            col = obj.collider
            if col is None:  # physics uses the convex hull of the splat centres
                pts = self.scene.splats.means[obj.splat_indices].astype(np.float64)
                local = (pts - np.asarray(obj.position)) @ quat_to_matrix(np.asarray(obj.quaternion))
                col = convex_collider(local, what=f"object {name!r}")
            got = (np.asarray(col.vertices, np.float64), col.faces)
        self._colliders[name] = got
        return got

    def _mesh(self, path: Path) -> Mesh:
        mesh = self._mesh_cache.get(path)
        if mesh is None:
            mesh = load_mesh(path)
            self._mesh_cache[path] = mesh
        return mesh

    def sync(self, force: bool = False) -> bool:
        """Move the splats and meshes to the bodies' poses when they changed; True when something moved."""
        phys = self.world.physics
        poses = phys.body_poses()
        names = phys.names
        changed = force or names != self._last_names or self._last_poses is None
        changed = changed or poses.shape != self._last_poses.shape or not np.array_equal(poses, self._last_poses)
        if not changed:
            return False
        with self.stats.section("splats"):
            if len(self.scene.splats):
                means, quats, _, _ = self.world.splat_arrays()
                self.renderer.update_splats(means, quats)
                self._sync_sh_frames(dict(zip(names, poses, strict=True)))
            self._sync_meshes(dict(zip(names, poses, strict=True)))
        self._last_poses, self._last_names = poses.copy(), names
        return True

    def _sync_sh_frames(self, poses: dict[str, np.ndarray]) -> None:
        """View-dependent colour of moved objects: the renderer keeps the rest SH (the rig's "view_dir"
        mode) and evaluates them with the view direction in each object's rest frame."""
        rig = self.world.rig
        if self.scene.splats.sh_degree == 0 or rig.sh_mode != "view_dir" or rig.num_bodies == 0:
            return
        if self._body_of_splat is None:
            body = np.full(len(self.scene.splats), -1, np.int32)
            for b, idx in enumerate(rig.groups):
                body[idx] = b
            self._body_of_splat = body
        rest_q = rig.rest_poses[:, 3:]
        now_q = np.array(
            [poses[o.name][3:] if o.name in poses else rest_q[i] for i, o in enumerate(self.scene.objects)]
        )
        rotations = quat_to_matrix(now_q) @ np.swapaxes(quat_to_matrix(rest_q), 1, 2)
        self.renderer.set_splat_rotations(self._body_of_splat, rotations)

    def _sync_meshes(self, poses: dict[str, np.ndarray]) -> None:
        r = self.renderer
        phys = self.world.physics
        for name in list(self._asset_meshes):
            mesh_id, path = self._asset_meshes[name]
            asset = phys.assets.get(name)
            if asset is None or asset.path != path:
                r.remove_mesh(mesh_id)
                del self._asset_meshes[name]
                self._colliders.pop(name, None)
                self.wireframes.forget(name)
        for name, asset in phys.assets.items():
            if name not in self._asset_meshes:
                self._asset_meshes[name] = (r.add_mesh(self._mesh(asset.path)), asset.path)
            r.set_mesh_model(self._asset_meshes[name][0], _pose_matrix(poses[name]))

    def set_show_colliders(self, show: bool) -> None:
        self.show_colliders = bool(show)

    # ------------------------------------------------------------------ world model
    def set_world_view(self, choice: str) -> None:
        """``"gl"`` (GL frames only) or a world model for still views: ``"exact"`` (the engine on the CPU
        rasterizer), ``"relight"`` or ``"full"`` (:mod:`hybrid.world_model`); see :mod:`hybrid.viewer.refine`."""
        if choice not in VIEWER_WORLD_MODES:
            raise ShapeError(f"world view must be one of {list(VIEWER_WORLD_MODES)}, got {choice!r}")
        if choice == self.world_view:
            return
        if self.refiner is not None:
            self.refiner.close(timeout=0.1)
            self.refiner = None
        self.world_view, self._world_frame, self._view_key = choice, None, None
        mode = VIEWER_WORLD_MODES[choice]
        if mode is not None:
            self.refiner = StillFrameRefiner(self.scene, mode)
            self.message = self.refiner.status

    def update_world_frame(self) -> bool:
        """Ask for a world-model frame once the view is still; True when the frame to show changed."""
        if self.refiner is None:
            return False
        phys = self.world.physics
        view = self.camera.viewmat()
        # resting bodies creep by micrometres under a running simulation: poses to 0.1 mm / 1e-4 for "still"
        poses = np.round(np.asarray(phys.body_poses(), np.float64), 4)
        key = (view.tobytes(), self.render_size, phys.names, poses.tobytes(), self.light.direction)
        still = key == self._view_key and not self.camera.moving
        self._view_key = key
        if still:
            from hybrid.world_model import SplatState

            w, h = self.render_size
            camera = Camera(self.camera.K(w, h), view, w, h)
            self.refiner.request(key, lambda: SplatState.of_world(self.world), camera, self.light.direction)
        image = self.refiner.image(key)
        changed = image is not self._world_frame or self.refiner.status != self._refiner_status
        self._world_frame, self._refiner_status = image, self.refiner.status
        return changed

    @property
    def showing_world_frame(self) -> bool:
        return self._world_frame is not None

    # ------------------------------------------------------------------ drawing
    def render(self) -> None:
        """Draw the scene at the internal render size (offscreen)."""
        self.renderer.light = self.light.to_light()
        viewmat, K = self.viewmat_and_K(*self.render_size)
        with self.stats.section("render"):
            self.renderer.render(viewmat, K)
            self.ctx.finish()

    def compose(self, framebuffer, viewport: tuple[int, int, int, int] | None = None) -> None:
        """Show the last render in ``framebuffer`` (upscaled to the view) with the selection outline."""
        viewport = viewport or (0, 0, *self.view_size)
        with self.stats.section("present"):
            if self._world_frame is not None:
                self.image_pass.draw(framebuffer, viewport, self._world_frame)
            else:
                self.renderer.present(framebuffer, viewport)
            if self.show_colliders:
                self._draw_wireframes(framebuffer, viewport)
            if self.selected is not None and self.selected in self.world.physics.names:
                v, f = self.collider(self.selected)
                model = _pose_matrix(self.world.physics.pose(self.selected))
                viewmat, K = self.viewmat_and_K(*viewport[2:])
                self.outline.draw(framebuffer, viewport, self.selected, v, f, model, viewmat, K,
                                  near=self.renderer.settings.near, far=self.renderer.settings.far)  # fmt: skip

    def _draw_wireframes(self, framebuffer, viewport) -> None:
        phys = self.world.physics
        items = [(n, *self.collider(n), _pose_matrix(p)) for n, p in zip(phys.names, phys.body_poses(), strict=True)]
        g = self.scene.ground
        if g is not None and g.mesh is not None:
            items.append(("__ground__", g.mesh.vertices, g.mesh.faces, np.eye(4)))
        viewmat, K = self.viewmat_and_K(*viewport[2:])
        s = self.renderer.settings
        self.wireframes.draw(framebuffer, viewport, items, viewmat, K, near=s.near, far=s.far)

    def read_render(self) -> np.ndarray:  # [H, W, 3] uint8 at the render size
        return self.renderer.read().to_uint8()

    # ------------------------------------------------------------------ reporting
    def describe(self) -> dict:
        """What the view shows now, as JSON-ready data (saved beside screenshots)."""
        viewmat, K = self.viewmat_and_K()
        phys = self.world.physics
        return {
            "time": phys.time,
            "paused": self.paused,
            "time_scale": self.time_scale,
            "gravity": list(phys.gravity),
            "selected": self.selected,
            "camera": {
                "viewmat": viewmat.tolist(),
                "K": K.tolist(),
                "width": self.view_size[0],
                "height": self.view_size[1],
                "speed": self.camera.speed,
            },
            "render_size": list(self.render_size),
            "light": self.light.to_light().to_dict(),
            "poses": {
                n: {"position": p[:3].tolist(), "quaternion": p[3:].tolist()}
                for n, p in zip(phys.names, phys.body_poses(), strict=True)
            },
            "dynamics": {
                n: dict(zip(("mass", "friction", "restitution"), self.dynamics(n), strict=True)) for n in phys.names
            },
            "undo": self.interventions.labels(),
            "world_view": self.world_view,
            "world_frame": self.showing_world_frame,
            "message": self.message,
            "wall_time": time.time(),
        }

    def release(self) -> None:
        if self.refiner is not None:
            self.refiner.close(timeout=0.1)
        self.outline.release()
        self.wireframes.release()
        self.image_pass.release()
        self.renderer.release()
        self.world.physics.close()
