"""The viewer's immediate-mode panel (Dear ImGui through imgui-bundle) and its GLFW input feed.

The panel reads the session's state every frame and writes back what the user changed, so there
is no second copy of any setting. ImGui draws with imgui-bundle's OpenGL 3 renderer on the window's
GL context; input reaches it through :class:`ImguiInput`, which the window's own GLFW callbacks
call (imgui-bundle's GLFW backend is not used, so no second GLFW library is involved).

The screen rectangle of every widget drawn is kept in :attr:`Panel.rects` (label -> x0, y0, x1, y1
in window coordinates), written beside screenshots so that scripts can find the controls.
"""

from __future__ import annotations

from pathlib import Path

from hybrid.viewer.refine import VIEWER_WORLD_MODES
from scenes._deps import require

__all__ = ["Panel", "ImguiInput", "PANEL_WIDTH"]

PANEL_WIDTH = 330  # pixels (window coordinates); the 3D view starts right of it
_TIMING_PARTS = ("physics", "splats", "render", "present", "panel", "swap", "record")
_WORLD_LABELS = ["off (GL frames)", "exact (CPU raster)", "relight", "full (learned residual)"]
_UNLABELLED = {"pause", "reset", "undo", "spawn", "screenshot", "record", "colliders", "world model"}  # buttons


def _imgui():
    return require("imgui_bundle", "the viewer panel").imgui


def _glfw_key_map(glfw, imgui) -> dict[int, int]:
    K = imgui.Key
    m = {
        glfw.KEY_TAB: K.tab, glfw.KEY_LEFT: K.left_arrow, glfw.KEY_RIGHT: K.right_arrow, glfw.KEY_UP: K.up_arrow,
        glfw.KEY_DOWN: K.down_arrow, glfw.KEY_PAGE_UP: K.page_up, glfw.KEY_PAGE_DOWN: K.page_down,
        glfw.KEY_HOME: K.home, glfw.KEY_END: K.end, glfw.KEY_INSERT: K.insert, glfw.KEY_DELETE: K.delete,
        glfw.KEY_BACKSPACE: K.backspace, glfw.KEY_SPACE: K.space, glfw.KEY_ENTER: K.enter,
        glfw.KEY_ESCAPE: K.escape, glfw.KEY_KP_ENTER: K.keypad_enter, glfw.KEY_LEFT_SHIFT: K.left_shift,
        glfw.KEY_RIGHT_SHIFT: K.right_shift, glfw.KEY_LEFT_CONTROL: K.left_ctrl, glfw.KEY_RIGHT_CONTROL: K.right_ctrl,
        glfw.KEY_LEFT_ALT: K.left_alt, glfw.KEY_RIGHT_ALT: K.right_alt, glfw.KEY_LEFT_SUPER: K.left_super,
        glfw.KEY_RIGHT_SUPER: K.right_super, glfw.KEY_PERIOD: K.period, glfw.KEY_SLASH: K.slash,
        glfw.KEY_MINUS: K.minus, glfw.KEY_COMMA: K.comma,
    }  # fmt: skip
    for i in range(26):
        m[glfw.KEY_A + i] = getattr(K, chr(ord("a") + i))
    return m


class ImguiInput:
    """Forwards GLFW events (window coordinates) to ImGui's input queue."""

    def __init__(self, glfw) -> None:
        self.imgui = _imgui()
        self.glfw = glfw
        self._keys = _glfw_key_map(glfw, self.imgui)

    @property
    def io(self):
        return self.imgui.get_io()

    def wants_mouse(self) -> bool:
        return bool(self.io.want_capture_mouse)

    def wants_keyboard(self) -> bool:
        """True while the user types into a panel field (the viewer's key shortcuts then stay quiet)."""
        return bool(self.io.want_text_input)

    def key(self, key: int, action: int, mods: int) -> None:
        glfw, io, K = self.glfw, self.io, self.imgui.Key
        if action == glfw.REPEAT:
            action = glfw.PRESS
        down = action == glfw.PRESS
        io.add_key_event(K.mod_ctrl, bool(mods & glfw.MOD_CONTROL) if down else key_mod(key, glfw, mods, "ctrl"))
        io.add_key_event(K.mod_shift, bool(mods & glfw.MOD_SHIFT) if down else key_mod(key, glfw, mods, "shift"))
        io.add_key_event(K.mod_alt, bool(mods & glfw.MOD_ALT) if down else key_mod(key, glfw, mods, "alt"))
        mapped = self._keys.get(key)
        if mapped is not None:
            io.add_key_event(mapped, down)

    def char(self, codepoint: int) -> None:
        self.io.add_input_character(int(codepoint))

    def mouse_pos(self, x: float, y: float) -> None:
        self.io.add_mouse_pos_event(float(x), float(y))

    def mouse_button(self, button: int, down: bool) -> None:
        if 0 <= button < 5:
            self.io.add_mouse_button_event(button, bool(down))

    def scroll(self, dx: float, dy: float) -> None:
        self.io.add_mouse_wheel_event(float(dx), float(dy))

    def focus(self, focused: bool) -> None:
        self.io.add_focus_event(bool(focused))


def key_mod(key: int, glfw, mods: int, which: str) -> bool:
    """Whether a modifier is still down after ``key`` was released (GLFW reports mods before the release)."""
    keys = {
        "ctrl": (glfw.KEY_LEFT_CONTROL, glfw.KEY_RIGHT_CONTROL, glfw.MOD_CONTROL),
        "shift": (glfw.KEY_LEFT_SHIFT, glfw.KEY_RIGHT_SHIFT, glfw.MOD_SHIFT),
        "alt": (glfw.KEY_LEFT_ALT, glfw.KEY_RIGHT_ALT, glfw.MOD_ALT),
    }[which]
    if key in keys[:2]:
        return False
    return bool(mods & keys[2])


class Panel:
    """Draws the control panel for a :class:`hybrid.viewer.session.ViewerSession` inside a window.

    ``actions`` is the window: the panel calls its ``request_screenshot()``, ``toggle_recording()``,
    ``recording_status()`` and reads ``renderer_note()``.
    """

    def __init__(self, session, actions, asset_path: str = "") -> None:
        self.imgui = _imgui()
        imgui = self.imgui
        self.session = session
        self.actions = actions
        self.visible = True
        self.rects: dict[str, tuple[float, float, float, float]] = {}
        self.spawn_path = asset_path
        self.spawn_mass = 1.0
        imgui.create_context()
        io = imgui.get_io()
        io.set_ini_filename("")  # no imgui.ini in the user's folder
        imgui.style_colors_dark()
        imgui.get_style().window_rounding = 4.0
        if not imgui.backends.opengl3_init("#version 330"):
            from scenes.errors import BackendError

            raise BackendError("the viewer panel: ImGui's OpenGL 3 renderer failed to initialise")

    # ------------------------------------------------------------------ frame
    def draw(
        self, window_size: tuple[int, int], framebuffer_scale: tuple[float, float], dt: float, overlay=None
    ) -> None:
        """Build and render the panel for one frame into the bound (window) framebuffer."""
        imgui = self.imgui
        io = imgui.get_io()
        io.display_size = imgui.ImVec2(*window_size)
        io.display_framebuffer_scale = imgui.ImVec2(*framebuffer_scale)
        io.delta_time = max(float(dt), 1e-4)
        imgui.backends.opengl3_new_frame()
        imgui.new_frame()
        self.rects = {}
        if self.visible:
            self._window(window_size)
        if overlay is not None:
            overlay(imgui)
        imgui.render()
        imgui.backends.opengl3_render_draw_data(imgui.get_draw_data())

    def _rect(self, label: str) -> None:
        """Keep the last widget's rectangle (only when it is scrolled into view).

        For a labelled control (slider, field, colour) the rectangle is its frame, without the label.
        """
        imgui = self.imgui
        if imgui.is_item_visible():
            a, b = imgui.get_item_rect_min(), imgui.get_item_rect_max()
            x1 = float(b.x)
            if label not in _UNLABELLED:
                x1 = min(x1, float(a.x) + imgui.calc_item_width())
            self.rects[label] = (float(a.x), float(a.y), x1, float(b.y))

    def _window(self, window_size) -> None:
        imgui = self.imgui
        s = self.session
        imgui.set_next_window_pos(imgui.ImVec2(8, 8), imgui.Cond_.always)
        imgui.set_next_window_size(imgui.ImVec2(PANEL_WIDTH, max(100, window_size[1] - 16)), imgui.Cond_.always)
        imgui.set_next_window_bg_alpha(0.85)
        flags = imgui.WindowFlags_.no_move | imgui.WindowFlags_.no_resize | imgui.WindowFlags_.no_collapse
        imgui.begin("hybrid view", None, flags)
        self.rects["panel"] = (8.0, 8.0, 8.0 + PANEL_WIDTH, float(window_size[1] - 8))
        imgui.push_item_width(160)
        open_ = imgui.TreeNodeFlags_.default_open
        if imgui.collapsing_header("Statistics", open_):
            self._stats()
        if imgui.collapsing_header("Light", open_):
            self._light()
        if imgui.collapsing_header("Physics", open_):
            self._physics()
        if imgui.collapsing_header("Spawn a mesh", open_):
            self._spawn()
        if imgui.collapsing_header("Display", open_):
            self._display()
        if imgui.collapsing_header("Capture", open_):
            self._capture()
        imgui.separator()
        if s.message:
            imgui.text_wrapped(s.message)
        imgui.push_style_color(imgui.Col_.text, imgui.get_style_color_vec4(imgui.Col_.text_disabled))
        imgui.text_wrapped(
            "WASD/QE move, right-drag look, wheel speed, F frame, 1-9 capture cameras; click select, "
            "shift-click or drag push, space pause, R reset, Backspace undo, P screenshot (shift+P with "
            "the panel), H hide the panel, Esc deselect / quit"
        )
        imgui.pop_style_color()
        imgui.pop_item_width()
        imgui.end()

    # ------------------------------------------------------------------ sections
    def _stats(self) -> None:
        imgui, s = self.imgui, self.session
        imgui.text_unformatted(
            f"{s.stats.fps:5.1f} FPS   {len(s.scene.splats):,} splats   {len(s.world.physics.names)} bodies"
        )
        imgui.text_wrapped(self.actions.renderer_note())
        parts = s.stats.summary()
        # a fixed grid (the layout below must not jump when a part appears): ms per frame
        if imgui.begin_table("timings", 3, imgui.TableFlags_.sizing_stretch_same):
            for i, name in enumerate(_TIMING_PARTS):
                imgui.table_next_column()
                value = parts.get(name)
                imgui.text_unformatted(f"{name} {value:.1f}" if value is not None else f"{name} -")
                if i == len(_TIMING_PARTS) - 1:
                    imgui.table_next_column()
                    imgui.text_disabled("(ms/frame)")
            imgui.end_table()

    def _light(self) -> None:
        imgui, s = self.imgui, self.session
        L = s.light
        changed, az = imgui.slider_float("azimuth", L.azimuth_deg, -180.0, 180.0, "%.0f deg")
        self._rect("light azimuth")
        if changed:
            s.light = L = L.with_(azimuth_deg=az)
        changed, el = imgui.slider_float("elevation", L.elevation_deg, -10.0, 90.0, "%.0f deg")
        self._rect("light elevation")
        if changed:
            s.light = L = L.with_(elevation_deg=el)
        changed, col = imgui.color_edit3("colour", list(L.color))
        self._rect("light colour")
        if changed:
            s.light = L = L.with_(color=tuple(float(c) for c in col))
        changed, inten = imgui.slider_float("intensity", L.intensity, 0.0, 4.0, "%.2f")
        self._rect("light intensity")
        if changed:
            s.light = L = L.with_(intensity=max(0.0, inten))
        changed, amb = imgui.slider_float("ambient", float(sum(L.ambient) / 3), 0.0, 1.5, "%.2f")
        self._rect("light ambient")
        if changed:
            s.light = L.with_(ambient=(amb, amb, amb))
        imgui.text_wrapped("lights meshes; splats keep their captured light (see Display > world model)")

    def _physics(self) -> None:
        imgui, s = self.imgui, self.session
        phys = s.world.physics
        if imgui.button("Resume (space)" if s.paused else "Pause (space)"):
            s.toggle_pause()
        self._rect("pause")
        imgui.same_line()
        if imgui.button("Reset (R)"):
            s.reset()
        self._rect("reset")
        imgui.same_line()
        if imgui.button(f"Undo ({len(s.interventions)})"):
            s.undo()
        self._rect("undo")
        imgui.text_unformatted(f"t = {phys.time:.2f} s" + ("  (paused)" if s.paused else ""))
        changed, ts = imgui.slider_float("time scale", s.time_scale, 0.0, 2.0, "%.2f")
        self._rect("time scale")
        if changed:
            s.time_scale = max(0.0, ts)
        gz = phys.gravity[2]
        changed, gz = imgui.slider_float("gravity z", gz, -20.0, 0.0, "%.2f m/s2")
        self._rect("gravity")
        if imgui.is_item_activated():
            s.begin_edit("gravity")
        if changed:
            s.set_gravity(gz)
        changed, strength = imgui.slider_float("push N s", s.push_strength, 0.05, 20.0, "%.2f",
                                               imgui.SliderFlags_.logarithmic)  # fmt: skip
        self._rect("push strength")
        if changed:
            s.push_strength = max(0.05, strength)
        imgui.separator_text("selected object")
        name = s.selected
        if name is None or name not in phys.names:
            imgui.text_disabled("none: click an object")
            return
        mass, friction, _ = s.dynamics(name)
        pose = phys.pose(name)
        imgui.text_unformatted(f"{name}  at ({pose[0]:.2f}, {pose[1]:.2f}, {pose[2]:.2f})")
        if mass == 0:
            imgui.text_disabled("static (does not move)")
        else:
            changed, m = imgui.slider_float("mass kg", mass, 0.01, 100.0, "%.2f", imgui.SliderFlags_.logarithmic)
            self._rect("mass")
            if imgui.is_item_activated():
                s.begin_edit(f"mass {name}")
            if changed and m > 0:
                s.set_dynamics(name, mass=m)
        changed, f = imgui.slider_float("friction", friction, 0.0, 2.0, "%.2f")
        self._rect("friction")
        if imgui.is_item_activated():
            s.begin_edit(f"friction {name}")
        if changed:
            s.set_dynamics(name, friction=max(0.0, f))

    def _spawn(self) -> None:
        imgui, s = self.imgui, self.session
        _, self.spawn_path = imgui.input_text("file", self.spawn_path)
        self._rect("spawn file")
        imgui.set_item_tooltip("GLB, glTF, OBJ, PLY or STL; dropped where the view's centre meets the ground")
        _, mass = imgui.slider_float("mass##spawn", self.spawn_mass, 0.05, 50.0, "%.2f kg",
                                     imgui.SliderFlags_.logarithmic)  # fmt: skip
        self.spawn_mass = max(0.05, mass)
        if imgui.button("Spawn"):
            path = self.spawn_path.strip()
            if path:
                s.spawn(Path(path), self.spawn_mass)
            else:
                s.message = "type the path of a mesh file first"
        self._rect("spawn")

    def _display(self) -> None:
        imgui, s = self.imgui, self.session
        changed, show = imgui.checkbox("collider wireframes", s.show_colliders)
        self._rect("colliders")
        if changed:
            s.set_show_colliders(show)
        choices = list(VIEWER_WORLD_MODES)
        current = choices.index(s.world_view)
        changed, current = imgui.combo("world model", current, _WORLD_LABELS)
        self._rect("world model")
        imgui.set_item_tooltip(
            "still views re-rendered on the CPU: exact = the engine on the rasterizer, relight = the world model's "
            "explicit lighting (follows the light direction), full = plus the learned residual (trained scenes)"
        )
        if changed:
            s.set_world_view(choices[current])
        if s.refiner is not None:
            imgui.text_wrapped(s.refiner.status + (" (showing it)" if s.showing_world_frame else ""))
            for note in s.refiner.notes[-2:]:
                imgui.text_disabled(note)
        scale = s.render_scale if s.render_scale is not None else s.auto_render_scale(*s.view_size)
        changed, scale = imgui.slider_float("render scale", scale, 0.1, 1.0, "%.2f")
        self._rect("render scale")
        if changed:
            s.set_render_scale(float(min(max(scale, 0.1), 1.0)))

    def _capture(self) -> None:
        imgui = self.imgui
        if imgui.button("Screenshot (P)"):
            self.actions.request_screenshot()
        self._rect("screenshot")
        imgui.same_line()
        recording = self.actions.recording_status()
        if imgui.button("Stop recording" if recording else "Record MP4"):
            self.actions.toggle_recording()
        self._rect("record")
        if recording:
            imgui.text_unformatted(recording)

    def release(self) -> None:
        imgui = self.imgui
        imgui.backends.opengl3_shutdown()
        imgui.destroy_context()
