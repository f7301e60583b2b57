"""The viewer window: GLFW input and event loop around a :class:`ViewerSession`, plus the panel.

The GLFW callbacks call the ``handle_*`` methods, which are the viewer's whole input surface
(tests may call them too, from the same loop). Each frame: physics and camera advance by the
wall-clock time, the scene renders at the internal size, is upscaled into the window with the
selection outline, the panel is drawn on top and the buffers swap. Nothing is redrawn while
nothing changes (paused or resting physics, still camera): the loop then waits for events.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np

from hybrid.viewer._display import NO_DISPLAY_HINT, check_display
from hybrid.viewer.camera import MOVE_KEYS
from hybrid.viewer.capture import VideoRecorder, next_path, save_screenshot
from hybrid.viewer.session import ViewerSession, ViewerSettings
from render.gl import create_context
from scenes._deps import require
from scenes.errors import BackendError
from scenes.scene import Scene

__all__ = ["ViewerWindow", "open_window", "NO_DISPLAY_HINT"]

log = logging.getLogger(__name__)

_DRAG_THRESHOLD = 6.0  # window pixels a left press must move to be a drag rather than a click


def _glfw_message(exc) -> str:
    """pyGLFW's "(65550) b'X11: Failed to open display :1'" as "X11: Failed to open display :1"."""
    return re.sub(r"^\(\d+\)\s*b?['\"](.*)['\"]$", r"\1", str(exc).strip())


def open_window(glfw, size: tuple[int, int], title: str):
    """A GLFW window with a current OpenGL 3.3 core context; :class:`BackendError` when there is no display."""
    check_display()
    previous = glfw.ERROR_REPORTING
    glfw.ERROR_REPORTING = "raise"
    try:
        try:
            ok = glfw.init()
        except glfw.GLFWError as exc:
            raise BackendError(f"GLFW could not start ({_glfw_message(exc)}); {NO_DISPLAY_HINT}") from exc
        if not ok:
            raise BackendError(f"GLFW could not start; {NO_DISPLAY_HINT}")
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        try:
            window = glfw.create_window(int(size[0]), int(size[1]), title, None, None)
        except glfw.GLFWError as exc:
            glfw.terminate()
            raise BackendError(
                f"could not open an OpenGL 3.3 window ({_glfw_message(exc)}); {NO_DISPLAY_HINT}"
            ) from exc
        if not window:
            glfw.terminate()
            raise BackendError(f"could not open an OpenGL 3.3 window; {NO_DISPLAY_HINT}")
        glfw.make_context_current(window)
        glfw.swap_interval(1)
    finally:
        glfw.ERROR_REPORTING = "log" if previous == "raise" else previous
    return window


class ViewerWindow:
    """``hybrid view``: a window showing a scene you can fly through, poke and relight."""

    def __init__(
        self,
        scene: Scene,
        *,
        title: str = "hybrid view",
        size: tuple[int, int] = (1280, 720),  # window size in screen coordinates
        settings: ViewerSettings | None = None,
        panel: bool = True,  # the ImGui panel (needs imgui-bundle)
        out_dir: str | Path = ".",  # where P screenshots and recordings go
        asset_path: str = "",  # mesh file the panel's Spawn field starts with
        start_camera: int | None = None,  # capture camera to start at (0-based), default the first
    ) -> None:
        if panel:  # before glfw: imgui-bundle points pyGLFW at its own GLFW library, so only one is loaded
            require("imgui_bundle", "the viewer panel (or run with --no-panel)")
        glfw = require("glfw", "the viewer window")
        self.glfw = glfw
        self.out_dir = Path(out_dir)
        self.window = open_window(glfw, size, title)
        self.panel = None
        self.input = None
        self.session = None
        try:
            self.ctx = create_context("window")
            self.session = ViewerSession(scene, self.ctx, glfw.get_framebuffer_size(self.window), settings)
            if start_camera is not None:
                self.session.go_to_capture_camera(start_camera, animate=False)
            if panel:
                from hybrid.viewer.panel import ImguiInput, Panel

                self.panel = Panel(self.session, self, asset_path)
                self.input = ImguiInput(glfw)
        except BaseException:
            self._close_window()
            raise
        self.held: set[str] = set()
        self.screenshots: list[Path] = []
        self.recordings: list[Path] = []
        self.recorder: VideoRecorder | None = None
        self.frames = 0  # frames drawn
        self._cursor = (0.0, 0.0)  # window coordinates
        self._look: tuple[float, float] | None = None
        self._press: tuple[float, float, int] | None = None  # left press: x, y, mods
        self._screenshot_requested: str | None = None  # "view" or "window"
        self._redraw = 5  # frames still to draw after an event
        self._last_time = time.perf_counter()
        self._keys = {getattr(glfw, f"KEY_{k.upper()}"): k for k in MOVE_KEYS}
        self._install_callbacks()

    # ------------------------------------------------------------------ callbacks
    def _install_callbacks(self) -> None:
        glfw, w = self.glfw, self.window
        glfw.set_key_callback(w, lambda _w, key, scancode, action, mods: self.handle_key(key, action, mods))
        glfw.set_char_callback(w, lambda _w, codepoint: self.handle_char(codepoint))
        glfw.set_mouse_button_callback(
            w, lambda _w, button, action, mods: self.handle_mouse_button(button, action, mods)
        )
        glfw.set_cursor_pos_callback(w, lambda _w, x, y: self.handle_cursor(x, y))
        glfw.set_scroll_callback(w, lambda _w, dx, dy: self.handle_scroll(dx, dy))
        glfw.set_window_focus_callback(w, lambda _w, focused: self.handle_focus(focused))
        glfw.set_framebuffer_size_callback(w, lambda _w, width, height: self._touch())

    def _touch(self) -> None:
        # ImGui takes one queued button or key change per frame: draw a few frames after any event
        self._redraw = 5

    def _over_panel(self, x: float, y: float) -> bool:
        """True when the cursor (window coordinates) is on the panel rather than the 3D view."""
        if self.panel is None or not self.panel.visible:
            return False
        return self.input.wants_mouse() or self._fb(x, y)[0] < 0

    def _scale(self) -> tuple[float, float]:
        """Framebuffer pixels per window coordinate (1 unless HiDPI)."""
        ww, wh = self.glfw.get_window_size(self.window)
        fw, fh = self.glfw.get_framebuffer_size(self.window)
        return fw / max(ww, 1), fh / max(wh, 1)

    def view_rect(self, fw: int, fh: int) -> tuple[int, int, int, int]:
        """``(x, y, width, height)`` of the 3D view in the framebuffer: right of the panel, or all of it."""
        if self.panel is None or not self.panel.visible:
            return (0, 0, fw, fh)
        from hybrid.viewer.panel import PANEL_WIDTH

        x0 = min(round((PANEL_WIDTH + 16) * self._scale()[0]), fw - 16)
        return (x0, 0, fw - x0, fh)

    def _fb(self, x: float, y: float) -> tuple[float, float]:
        """Window coordinates -> pixels of the 3D view (row 0 at the top)."""
        sx, sy = self._scale()
        fw, fh = self.glfw.get_framebuffer_size(self.window)
        vx, vy, vw, vh = self.view_rect(fw, fh)
        return x * sx - vx, y * sy - (fh - vy - vh)

    def handle_key(self, key: int, action: int, mods: int) -> None:
        glfw, s = self.glfw, self.session
        self._touch()
        if self.input is not None:
            self.input.key(key, action, mods)
        move = self._keys.get(key)
        if action == glfw.RELEASE:
            if move is not None:
                self.held.discard(move)
            return
        if self.input is not None and self.input.wants_keyboard():
            return
        if move is not None:
            self.held.add(move)
            return
        if action == glfw.REPEAT:
            return
        if key == glfw.KEY_F:
            s.frame_view()
        elif key == glfw.KEY_SPACE:
            s.toggle_pause()
        elif key == glfw.KEY_R:
            s.reset()
        elif key == glfw.KEY_BACKSPACE:
            s.undo()
        elif key == glfw.KEY_P:
            self.request_screenshot(with_panel=bool(mods & glfw.MOD_SHIFT))
        elif key == glfw.KEY_H and self.panel is not None:
            self.panel.visible = not self.panel.visible
        elif key == glfw.KEY_ESCAPE:
            if s.selected is not None:
                s.selected = None
            else:
                glfw.set_window_should_close(self.window, True)
        elif glfw.KEY_1 <= key <= glfw.KEY_9 or key == glfw.KEY_0:
            s.go_to_capture_camera(9 if key == glfw.KEY_0 else key - glfw.KEY_1)

    def handle_char(self, codepoint: int) -> None:
        self._touch()
        if self.input is not None:
            self.input.char(codepoint)

    def handle_mouse_button(self, button: int, action: int, mods: int) -> None:
        glfw = self.glfw
        self._touch()
        down = action == glfw.PRESS
        if self.input is not None:
            self.input.mouse_button(button, down)
        x, y = self._cursor
        if down and self._over_panel(x, y):
            return
        if button == glfw.MOUSE_BUTTON_RIGHT:
            self._look = (x, y) if down else None
        elif button == glfw.MOUSE_BUTTON_LEFT:
            if down:
                self._press = (x, y, mods)
            elif self._press is not None:
                self._release_left(x, y)

    def _release_left(self, x: float, y: float) -> None:
        x0, y0, mods = self._press
        self._press = None
        s = self.session
        if math.hypot(x - x0, y - y0) > _DRAG_THRESHOLD:
            s.drag_push(*self._fb(x0, y0), *self._fb(x, y))
        elif mods & (self.glfw.MOD_SHIFT | self.glfw.MOD_CONTROL):
            s.push_at(*self._fb(x, y))
        else:
            s.select_at(*self._fb(x, y))

    def handle_cursor(self, x: float, y: float) -> None:
        if self.input is not None:
            self.input.mouse_pos(x, y)
        if self._look is not None:
            lx, ly = self._look
            self.session.camera.look(x - lx, y - ly)
            self._look = (x, y)
        self._cursor = (x, y)
        self._touch()

    def handle_scroll(self, dx: float, dy: float) -> None:
        self._touch()
        if self.input is not None:
            self.input.scroll(dx, dy)
        if not self._over_panel(*self._cursor):
            speed = self.session.camera.scroll(dy)
            self.session.message = f"camera speed {speed:.2f} m/s"

    def handle_focus(self, focused: bool) -> None:
        if self.input is not None:
            self.input.focus(focused)
        if not focused:
            self.held.clear()
            self._look = None
        self._touch()

    # ------------------------------------------------------------------ actions for the panel
    def request_screenshot(self, with_panel: bool = False) -> None:
        """Save the view at the end of the next frame: P without the panel, shift+P with it."""
        self._screenshot_requested = "window" if with_panel else "view"
        self._touch()

    def toggle_recording(self) -> None:
        s = self.session
        if self.recorder is None:
            self.recorder = VideoRecorder(next_path(self.out_dir, "view", ".mp4"))
            s.message = f"recording to {self.recorder.path}"
        else:
            path, count = self.recorder.close(), self.recorder.count
            self.recordings.append(path)
            self.recorder = None
            s.message = f"wrote {count} frames to {path}"
        self._touch()

    def recording_status(self) -> str:
        r = self.recorder
        return "" if r is None else f"recording {r.count} frames, {r.duration:.1f} s"

    def renderer_note(self) -> str:
        s = self.session
        (rw, rh), (vw, vh) = s.render_size, s.view_size
        name = self.ctx.info.get("GL_RENDERER", "?").split(" (")[0]
        r = s.renderer
        splats = ""
        if r.settings.splat_path == "cpu" and r.splat_size != (0, 0) and r.splat_size != (rw, rh):
            splats = f", splats (CPU) at {r.splat_size[0]}x{r.splat_size[1]}"
        if (rw, rh) == (vw, vh):
            return f"{name}: rendering {rw}x{rh}{splats}"
        cpu = " (CPU GL: lower internal resolution)" if s.software_gl else ""
        return f"{name}: rendering {rw}x{rh}{splats}, upscaled to {vw}x{vh}{cpu}"

    # ------------------------------------------------------------------ frames
    def _needs_redraw(self, moved: bool) -> bool:
        return bool(
            moved
            or self._redraw > 0
            or self.held
            or self._look is not None
            or self._press is not None
            or self.session.camera.moving
            or self.recorder is not None
            or self._screenshot_requested
        )

    def frame(self) -> bool:
        """One iteration: advance, and draw if anything changed; True when a frame was drawn."""
        glfw, s = self.glfw, self.session
        now = time.perf_counter()
        dt, self._last_time = now - self._last_time, now
        fw, fh = glfw.get_framebuffer_size(self.window)
        if fw <= 0 or fh <= 0:  # minimised
            s.tick(dt, ())
            return False
        s.stats.begin_frame()
        vx, vy, vw, vh = self.view_rect(fw, fh)
        if (vw, vh) != s.view_size:
            s.resize(vw, vh)
        s.tick(dt, self.held)
        moved = s.sync()
        moved = s.update_world_frame() or moved
        if not self._needs_redraw(moved):
            s.stats.discard_frame()
            return False
        if not s.showing_world_frame:
            s.render()
        if vx or vy:
            self.ctx.screen.use()
            self.ctx.viewport = (0, 0, fw, fh)
            self.ctx.screen.clear(0.08, 0.08, 0.09)
        s.compose(self.ctx.screen, (vx, vy, vw, vh))
        shot, self._screenshot_requested = self._screenshot_requested, None
        image = info = None
        if shot:
            info = s.describe()  # the state this frame was rendered from (the panel may change it below)
        if shot == "view" or (shot and self.panel is None):
            image = self.read_window((vx, vy, vw, vh))
        if self.recorder is not None:
            with s.stats.section("record"):
                self.recorder.add(s.read_render())
        if self.panel is not None:
            with s.stats.section("panel"):
                ww, wh = glfw.get_window_size(self.window)
                self.panel.draw((ww, wh), (fw / max(ww, 1), fh / max(wh, 1)), dt, self._draw_overlay)
            if shot == "window":
                image = self.read_window((0, 0, fw, fh))
        if image is not None:  # saved after the panel ran, so its widget rectangles are this frame's
            self._save_screenshot(image, (vx, vy, vw, vh) if shot == "view" else (0, 0, fw, fh), info)
        with s.stats.section("swap"):
            glfw.swap_buffers(self.window)
        s.stats.end_frame()
        self.frames += 1
        self._redraw = max(0, self._redraw - 1)
        return True

    def _draw_overlay(self, imgui) -> None:
        """The drag line while pushing by dragging."""
        if self._press is None:
            return
        x0, y0, _ = self._press
        x1, y1 = self._cursor
        if math.hypot(x1 - x0, y1 - y0) > _DRAG_THRESHOLD:
            dl = imgui.get_foreground_draw_list()
            dl.add_line(
                imgui.ImVec2(x0, y0), imgui.ImVec2(x1, y1), imgui.get_color_u32(imgui.ImVec4(1, 0.8, 0.1, 1)), 2.5
            )

    def read_window(self, rect: tuple[int, int, int, int]) -> np.ndarray:  # [H, W, 3] uint8, row 0 at the top
        """Pixels of the window's back buffer in ``rect = (x, y, width, height)`` (GL origin, bottom left)."""
        data = self.ctx.screen.read(viewport=rect, components=3)
        return np.frombuffer(data, np.uint8).reshape(rect[3], rect[2], 3)[::-1].copy()

    def _save_screenshot(self, image: np.ndarray, rect: tuple[int, int, int, int], info: dict) -> Path:
        path = next_path(self.out_dir, "view", ".png")
        fw, fh = self.glfw.get_framebuffer_size(self.window)
        vx, vy, vw, vh = self.view_rect(fw, fh)
        info.update(
            screenshot=path.name,
            image_rect=[rect[0], fh - rect[1] - rect[3], rect[2], rect[3]],  # x, y (from the top), w, h in the window
            view_rect=[vx, fh - vy - vh, vw, vh],
            window=list(self.glfw.get_window_size(self.window)),
            frames=self.frames,
            fps=self.session.stats.fps,
            timings_ms=self.session.stats.summary(),
            panel=self.panel.rects if self.panel is not None and self.panel.visible else {},
            held=sorted(self.held),
        )
        save_screenshot(path, image, info)
        self.screenshots.append(path)
        self.session.message = f"saved {path}"
        log.info("screenshot %s", path)
        return path

    def run(self, max_frames: int | None = None) -> None:
        """The event loop, until the window closes (or ``max_frames`` frames were drawn)."""
        glfw = self.glfw
        previous = None
        if threading.current_thread() is threading.main_thread():  # SIGTERM closes cleanly (recordings finished)
            previous = signal.signal(signal.SIGTERM, lambda *_: glfw.set_window_should_close(self.window, True))
        try:
            while not glfw.window_should_close(self.window):
                glfw.poll_events()
                drew = self.frame()
                if max_frames is not None and self.frames >= max_frames:
                    break
                if not drew:
                    glfw.wait_events_timeout(1 / 30)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            self.close()

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        if self.recorder is not None:
            self.recordings.append(self.recorder.close())
            self.recorder = None
        if self.panel is not None:
            self.panel.release()
            self.panel = None
        if self.session is not None:
            self.session.release()
            self.session = None
        self._close_window()

    def _close_window(self) -> None:
        if self.window is not None:
            self.glfw.destroy_window(self.window)
            self.window = None
            self.glfw.terminate()
