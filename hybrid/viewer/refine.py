"""World-model frames in the viewer: the still view re-rendered through :class:`hybrid.world_model.WorldModel`.

The world model runs on the CPU rasterizer (about a second a frame on a CPU machine), too slow
for every frame. So the window shows GL frames while anything moves, and once the camera, the
bodies and the light have been still for a moment it asks :class:`StillFrameRefiner` for a
world-model frame of exactly that view; a background thread renders it and the window shows it
until something changes. Building the model (light estimation, normals) also runs in the thread.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from scenes.errors import HybridError
from scenes.scene import Camera, Scene

__all__ = ["StillFrameRefiner", "VIEWER_WORLD_MODES"]

log = logging.getLogger(__name__)

# viewer choice -> WorldModel mode ("gl": no world model, the GL frames only)
VIEWER_WORLD_MODES = {"gl": None, "exact": "off", "relight": "relight", "full": "full"}


class StillFrameRefiner:
    """Renders still views through a world model in a background thread (one job at a time, latest wins)."""

    def __init__(self, scene: Scene, mode: str) -> None:
        self.mode = mode  # WorldModel mode: "off" (exact CPU raster of the engine), "relight" or "full"
        self.status = "preparing the world model..."
        self.notes: list[str] = []
        self.seconds = 0.0  # time of the last world-model frame
        self._cond = threading.Condition()
        self._job = None  # (key, state, camera, light direction)
        self._requested = None
        self._result: tuple | None = None  # (key, image [H, W, 3] uint8)
        self._ready = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(scene,), name="world-model", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self._ready

    def _run(self, scene: Scene) -> None:
        from hybrid.world_model import WorldModel

        try:
            model = WorldModel(scene, self.mode, notify=self.notes.append)
        except HybridError as exc:
            self.status = f"world model unavailable: {exc}"
            log.warning("%s", self.status)
            return
        self.mode = model.mode
        self.status = f"world model ready ({model.mode})"
        self._ready = True
        while True:
            with self._cond:
                while self._job is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                key, state, camera, direction = self._job
                self._job = None
            start = time.perf_counter()
            try:
                image = model.images(state, [camera], light_direction=direction)[0]
            except HybridError as exc:
                self.status = f"world-model frame failed: {exc}"
                log.warning("%s", self.status)
                continue
            self.seconds = time.perf_counter() - start
            frame = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            with self._cond:
                self._result = (key, frame)
            self.status = f"world model ({self.mode}): {self.seconds:.2f} s a frame"

    def request(self, key, state_fn, camera: Camera, light_direction) -> bool:
        """Ask for the frame of ``key`` (built from ``state_fn()`` when queued); False when already asked or done."""
        if not self._ready or key == self._requested:
            return False
        with self._cond:
            self._job = (key, state_fn(), camera, tuple(light_direction))
            self._requested = key
            self._cond.notify()
        self.status = f"world model ({self.mode}): rendering..."
        return True

    def image(self, key) -> np.ndarray | None:
        """The finished frame of ``key``, or None."""
        with self._cond:
            if self._result is not None and self._result[0] == key:
                return self._result[1]
        return None

    def busy(self) -> bool:
        """True while a requested frame is not finished yet."""
        with self._cond:
            done = self._result is not None and self._result[0] == self._requested
        return self._requested is not None and not done and self._ready

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)
