"""``hybrid simulate``: run a scene's physics with scheduled events; write poses, a video and stills.

Outputs in ``OUT/``:

- ``poses.json``: ``{"frames": [{"time": t, "objects": {name: {"position": [x, y, z],
  "quaternion": [w, x, y, z]}}}]}`` (world frame) at every video frame time and every
  requested still time, in time order; objects removed by an event are absent from
  later frames, spawned assets appear from their spawn time.
- ``simulation.mp4``: the video (orbit cameras, or the first camera of ``--cameras``).
- ``t{time:.2f}_c{i}.png``: with ``cameras`` and ``times``, one still per time and camera
  (``i`` 0-based in the camera file's order), at the camera's full resolution.
- ``events.log.json``: the events that ran, when (after rounding to the physics step) and on what.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from physics.events import Event
from physics.world import WorldConfig
from scenes.errors import ShapeError
from scenes.scene import Camera, Scene

__all__ = ["SimulationResult", "simulate", "still_name", "VIDEO_NAME", "POSES_NAME"]

log = logging.getLogger(__name__)

VIDEO_NAME = "simulation.mp4"
POSES_NAME = "poses.json"


def still_name(time: float, camera: int) -> str:
    """The file name of the still for ``time`` (seconds) and camera index ``camera``."""
    return f"t{time:.2f}_c{camera}.png"


@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate` wrote."""

    out: Path
    poses: Path  # OUT/poses.json
    video: Path | None  # OUT/simulation.mp4 (None with video=False)
    stills: tuple[Path, ...] = ()  # OUT/t{time:.2f}_c{i}.png
    applied: tuple = field(default=())  # hybrid.world.AppliedEvent, in the order they ran


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _renderer(scene: Scene, world, mode: str, light_direction, background, backend: str):
    """``cameras -> images`` of the world now: the engine alone, or through the appearance world model."""
    if mode == "off":
        return lambda cams: world.render(cams, background=background, backend=backend)
    from hybrid.world_model import SplatState, WorldModel

    wm = WorldModel(scene, mode, backend=backend)
    return lambda cams: wm.images(SplatState.of_world(world), cams, light_direction=light_direction,
                                  background=background)  # fmt: skip


def simulate(
    scene: Scene,
    events: tuple[Event, ...] | list[Event],
    out: str | Path,
    *,
    duration: float,  # seconds simulated
    cameras: list[Camera] | None = None,  # stills (with ``times``) and, the first, the video view
    times: list[float] | tuple[float, ...] = (),  # seconds at which to write stills from every camera
    fps: float = 30.0,  # video frame rate; poses.json has a frame per video frame
    video: bool = True,  # write OUT/simulation.mp4
    video_width: int = 640,  # the video is scaled down to at most this width
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    backend: str = "cpu",  # render.rasterize backend
    config: WorldConfig | None = None,
    progress: Callable[[int, int], None] | None = None,  # called with (done, total) after each time sample
    world_model: str = "off",  # appearance world model: "off", "relight" or "full" (hybrid.world_model)
    light_direction=None,  # with relight/full: direction towards the light (world frame); None keeps the capture light
) -> SimulationResult:
    """Simulate ``scene`` for ``duration`` s with ``events``; write poses.json, the video and the stills."""
    from hybrid.world import World

    if not (np.isfinite(duration) and duration > 0):
        raise ShapeError(f"duration: expected a number of seconds > 0, got {duration}")
    if not (np.isfinite(fps) and fps > 0):
        raise ShapeError(f"fps: expected frames per second > 0, got {fps}")
    times = [float(t) for t in times]
    bad = [t for t in times if not (np.isfinite(t) and 0 <= t <= duration + 1e-9)]
    if bad:
        raise ShapeError(f"times: {bad} outside the simulated interval [0, {duration:g}] s (--duration)")
    if times and not cameras:
        raise ShapeError("times: stills need cameras; give --cameras FILE with --times")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    world = World(scene, config, events=events)
    render = _renderer(scene, world, world_model, light_direction, background, backend)
    n_frames = int(round(duration * fps)) + 1
    frame_times = [i / fps for i in range(n_frames)]
    samples = sorted({round(t, 9) for t in frame_times} | {round(t, 9) for t in times})
    frame_set = {round(t, 9) for t in frame_times}
    still_set = {round(t, 9) for t in times}

    video_cams: list[Camera] = []
    if video:
        if cameras:
            cam = cameras[0]
            video_cams = [cam.scaled(video_width / cam.width) if cam.width > video_width else cam]
        else:
            from render.gl.headless import scene_orbit

            w = min(video_width, 640)
            video_cams = scene_orbit(scene, n_frames, width=w // 2 * 2, height=(w * 9 // 16) // 2 * 2)

    frames_json: list[dict] = []
    stills: list[Path] = []

    def run():  # yields video frames while writing poses and stills; streamed into the encoder
        from PIL import Image

        frame = 0
        for k, t in enumerate(samples):
            world.advance_to(t)
            frames_json.append({"time": round(t, 6), "objects": world.poses()})
            if video and t in frame_set:
                cam = video_cams[frame % len(video_cams)]
                frame += 1
                yield _to_uint8(render([cam])[0])
            if t in still_set:
                for i, image in enumerate(render(list(cameras))):
                    path = out / still_name(t, i)
                    Image.fromarray(_to_uint8(image)).save(path)
                    stills.append(path)
            if progress is not None:
                progress(k + 1, len(samples))

    video_path = None
    if video:
        from render.gl.headless import write_video

        video_path = out / VIDEO_NAME
        write_video(video_path, run(), fps=fps)
    else:
        for _ in run():
            pass
    poses_path = out / POSES_NAME
    poses_path.write_text(
        '{"frames": [\n' + ",\n".join(json.dumps(f) for f in frames_json) + "\n]}\n"
    )  # a frame a line
    (out / "events.log.json").write_text(json.dumps([
        {"time": a.time, "scheduled": a.event.time, "type": a.event.type, "object": a.object, "index": a.event.index}
        for a in world.applied], indent=1))  # fmt: skip
    return SimulationResult(out, poses_path, video_path, tuple(stills), tuple(world.applied))
