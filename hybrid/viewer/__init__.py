"""The interactive viewer (``hybrid view``): a GLFW window composing the GL renderer and the physics world.

Front door::

    from hybrid.viewer import ViewerWindow
    ViewerWindow(load_scene("scene/")).run()

The parts are usable without a window: :class:`ViewerSession` (world + renderer + camera +
selection + undo, drawn into any framebuffer, e.g. on a headless EGL context) and the plain
state classes :class:`FlyCamera`, :class:`LightSettings`, :class:`InterventionStack`.
Importing this package imports neither GLFW nor ImGui nor ModernGL.
"""

from hybrid.viewer.camera import MOVE_KEYS, FlyCamera, FlyCameraConfig
from hybrid.viewer.capture import VideoRecorder, save_screenshot
from hybrid.viewer.session import SOFTWARE_RENDER_SIZE, ViewerSession, ViewerSettings
from hybrid.viewer.state import FrameStats, Intervention, InterventionStack, LightSettings
from hybrid.viewer.window import NO_DISPLAY_HINT, ViewerWindow

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
