"""What ``hybrid demo`` does after lifting the sample: objects, the world model's light, and a push.

The lifted scene becomes a living one, the way a user would do it by hand::

    hybrid objects SCENE --detect --write
    hybrid world-model train SCENE
    hybrid simulate SCENE --events SCENE/push/events.json --cameras SCENE/push/cameras.json \\
        --duration 2.5 --times 0,2.5 --world-model full -o SCENE/push

The push hits the tallest object standing on the ground, at two thirds of its height on the side
facing the first capture camera, away from that camera.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scenes import Scene

__all__ = ["LivingResult", "bring_to_life", "push_event"]

PUSH_DURATION = 2.5  # seconds simulated after the push
PUSH_SPEED = 1.5  # m/s given to the pushed object's mass (as an impulse at the contact point)


@dataclass(frozen=True)
class LivingResult:
    objects: tuple[str, ...]  # object names found
    pushed: str | None  # the object pushed (None: no object stands on the ground)
    push_dir: Path | None  # SCENE/push with events.json, cameras.json, poses.json, simulation.mp4, stills
    light: dict  # the fitted capture light (direction, sun, ambient)
    seconds: dict  # per stage
    settled: dict = field(default_factory=dict)  # objects whose colliders were turned to rest (segmentation's report)
    not_objects: list = field(default_factory=list)  # clusters judged not to be objects (segmentation's report)


def push_event(scene: Scene, camera_index: int = 0, *, time: float = 0.3) -> tuple[dict, str] | None:
    """A push at the tallest ground-standing object, away from capture camera ``camera_index``.

    Returns ``(event, object name)`` or None when the scene has no such object.
    """
    from scipy.spatial import ConvexHull

    from physics.colliders import collider_parts
    from physics.transforms import transform_points

    if not scene.objects or not scene.capture_cameras:
        return None
    up = np.asarray(scene.ground.normal if scene.ground is not None else (0.0, 0.0, 1.0), np.float64)
    offset = float(scene.ground.offset) if scene.ground is not None else 0.0
    best = None
    for o in scene.objects:
        if o.static:
            continue
        pose = np.r_[o.position, o.quaternion]
        pts = np.concatenate([transform_points(pose, v) for v, _ in collider_parts(o.collider)])
        h = pts @ up - offset
        if h.min() > 0.03:  # resting on another object
            continue
        if best is None or h.max() > best[1]:
            best = (o, float(h.max()), pts)
    if best is None:
        return None
    obj, top, pts = best
    cam = scene.capture_cameras[camera_index]
    away = np.asarray(obj.position, np.float64) - cam.position
    away -= (away @ up) * up
    if np.linalg.norm(away) < 1e-9:
        away = np.cross(up, [1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.cross(up, [0.0, 1.0, 0.0])
    away /= np.linalg.norm(away)
    # the contact point: where the line through the centre at two thirds of the height, along the push,
    # enters the collider (1 mm inside its hull)
    centre = np.asarray(obj.position, np.float64)
    centre = centre + (2.0 / 3.0 * top - (centre @ up - offset)) * up
    eq = ConvexHull(pts).equations  # n . x + d <= 0 inside
    facing = eq[:, :3] @ -away > 1e-9
    back = float(np.min(-(eq[facing, :3] @ centre + eq[facing, 3]) / (eq[facing, :3] @ -away)))
    point = centre - max(back - 1e-3, 0.0) * away
    impulse = obj.mass * PUSH_SPEED * away
    event = {"time": time, "type": "push", "point": [round(float(v), 4) for v in point],
             "impulse": [round(float(v), 4) for v in impulse]}  # fmt: skip
    return event, obj.name


def _compare(push_dir: Path, cameras: int) -> Path:
    """``push_dir/compare.png``: after the push, the engine alone (left) and with the world model (right)."""
    from PIL import Image

    from hybrid.objects import _label

    name = f"t{PUSH_DURATION:.2f}_c{{}}.png"
    rows = []
    for i in range(cameras):
        off = np.asarray(Image.open(push_dir / "engine_only" / name.format(i)).convert("RGB"))
        full = np.asarray(Image.open(push_dir / name.format(i)).convert("RGB"))
        rows.append(np.concatenate([_label(off, "engine only", (255, 255, 255)),
                                    _label(full, "world model (full)", (255, 255, 255))], axis=1))  # fmt: skip
    path = push_dir / "compare.png"
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def bring_to_life(
    scene_dir: str | Path,
    *,
    backend: str = "cpu",
    video_width: int = 320,
    progress: Callable[[str], None] | None = None,  # called with each stage's name as it starts
) -> LivingResult:
    """Detect the objects of the lifted scene in ``scene_dir``, fit its light, and film a push."""
    import time

    from hybrid.objects import contact_sheet, refine_with_views
    from hybrid.simulate import simulate
    from hybrid.world_model import WEIGHTS_NAME, TrainConfig, train_world_model
    from physics.events import parse_events
    from physics.segment import segment_scene
    from scenes import load_scene, save_scene
    from scenes.cameras import write_transforms_json

    say = progress or (lambda stage: None)
    scene_dir = Path(scene_dir)
    seconds = {}
    t0 = time.perf_counter()
    say("objects")
    scene = segment_scene(load_scene(scene_dir, load_weights=False))
    if scene.objects and scene.capture_cameras:
        scene, _ = refine_with_views(scene, backend=backend)
    save_scene(scene, scene_dir)
    contact_sheet(scene, scene_dir / "objects.png", backend=backend)
    seconds["objects"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say("world model")
    result = train_world_model(scene, TrainConfig(), backend=backend)
    scene = scene.with_(weights={**scene.weights, WEIGHTS_NAME: result.weights})
    save_scene(scene, scene_dir)
    L = result.relighting.light
    light = {"direction": [round(float(v), 4) for v in L.direction], "sun": [round(float(v), 4) for v in L.color],
             "ambient": [round(float(v), 4) for v in L.ambient]}  # fmt: skip
    seconds["world_model"] = time.perf_counter() - t0

    push = push_event(scene)
    push_dir = None
    if push is not None:
        t0 = time.perf_counter()
        say("push")
        event, name = push
        push_dir = scene_dir / "push"
        push_dir.mkdir(exist_ok=True)
        (push_dir / "events.json").write_text(json.dumps([event], indent=2) + "\n")
        cams = [scene.capture_cameras[0], scene.capture_cameras[len(scene.capture_cameras) // 2]]
        write_transforms_json(push_dir / "cameras.json", cams, ["c0.png", "c1.png"])
        simulate(scene, parse_events([event]), push_dir, duration=PUSH_DURATION, cameras=cams,
                 times=[0.0, PUSH_DURATION], video_width=video_width, backend=backend,
                 world_model="full")  # fmt: skip
        # the same push drawn by the engine alone, for the comparison picture
        simulate(scene, parse_events([event]), push_dir / "engine_only", duration=PUSH_DURATION, cameras=cams,
                 times=[PUSH_DURATION], video=False, backend=backend, world_model="off")  # fmt: skip
        _compare(push_dir, len(cams))
        seconds["push"] = time.perf_counter() - t0
    segmentation = scene.metadata.get("segmentation", {})
    return LivingResult(tuple(o.name for o in scene.objects), push[1] if push else None, push_dir, light, seconds,
                        segmentation.get("settled", {}), segmentation.get("not_objects", []))  # fmt: skip
