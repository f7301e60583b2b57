"""The interactive viewer (``hybrid view``): a GLFW window composing the GL renderer and the physics world.

Front door::

    from hybrid.viewer import ViewerWindow
    ViewerWindow(load_scene("scene/")).run()

The parts are usable without a window: :class:`ViewerSession` (world + renderer + camera +
selection + undo, drawn into any framebuffer, e.g. on a headless EGL context) and the plain
state classes :class:`FlyCamera`, :class:`LightSettings`, :class:`InterventionStack`.
Importing this package is light: the names below are imported on first use (GLFW and ImGui only
when a window opens).
"""

import importlib

_WHERE = {
    "ViewerWindow": "window",
    "ViewerSession": "session",
    "ViewerSettings": "session",
    "SOFTWARE_RENDER_SIZE": "session",
    "NO_DISPLAY_HINT": "_display",
    "FlyCamera": "camera",
    "FlyCameraConfig": "camera",
    "MOVE_KEYS": "camera",
    "LightSettings": "state",
    "Intervention": "state",
    "InterventionStack": "state",
    "FrameStats": "state",
    "VideoRecorder": "capture",
    "save_screenshot": "capture",
}

__all__ = [
    "ViewerWindow",
    "ViewerSession",
    "ViewerSettings",
    "SOFTWARE_RENDER_SIZE",
    "NO_DISPLAY_HINT",
    "FlyCamera",
    "FlyCameraConfig",
    "MOVE_KEYS",
    "LightSettings",
    "Intervention",
    "InterventionStack",
    "FrameStats",
    "VideoRecorder",
    "save_screenshot",
]


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hybrid.viewer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hybrid.viewer.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
