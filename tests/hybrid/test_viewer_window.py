"""``hybrid view`` end to end: the real CLI in a real GLFW window on a private Xvfb, driven by xdotool.

The viewer runs as a subprocess; P (and shift+P) screenshots with their JSON sidecars tell the
test what the viewer shows (camera, selection, body poses, light, panel widget rectangles).
Screenshots are copied to ``artifacts/viewer/window_*.png``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.hybrid.viewer_support import (
    ARTIFACTS,
    BOXES,
    ROOT,
    Display,
    box_asset,
    build_scene,
    read_shot,
    wait_for,
    xdo,
)

pytestmark = pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool is not installed")

SIZE = (1000, 700)


class Viewer:
    def __init__(self, display: Display, proc: subprocess.Popen, out: Path) -> None:
        self.display, self.proc, self.out = display, proc, out

    def alive(self) -> bool:
        return self.proc.poll() is None

    def shots(self) -> list[Path]:
        return sorted(self.out.glob("*.json"), key=lambda p: p.stat().st_mtime_ns) if self.out.is_dir() else []

    def shot(self, key: str = "p", name: str | None = None, timeout: float = 20.0):
        """Press P (or ``key``) and return the new screenshot ``(image, info)``."""
        before = len(self.shots())
        self.key(key)
        wait_for(lambda: len(self.shots()) > before or not self.alive(), timeout, f"a screenshot after {key}")
        assert self.alive(), self.output()
        path = self.shots()[-1].with_suffix(".png")
        image, info = read_shot(path)
        if name:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, ARTIFACTS / f"window_{name}.png")
        return image, info

    def shot_until(self, predicate, what: str, timeout: float = 20.0, name: str | None = None):
        """Screenshots until ``predicate(info)`` holds (input takes a frame or two to show)."""
        deadline = time.time() + timeout
        while True:
            image, info = self.shot(name=name)
            if predicate(info):
                return image, info
            assert time.time() < deadline, f"timed out waiting for {what}; last screenshot: {info}"
            time.sleep(0.2)

    def key(self, *keys: str) -> None:
        xdo(self.display, "key", *keys)

    def move(self, x: float, y: float) -> None:
        xdo(self.display, "mousemove", str(int(round(x))), str(int(round(y))))

    def click(self, x: float, y: float, modifier: str | None = None) -> None:
        self.move(x, y)
        time.sleep(0.3)  # let a frame see the cursor there
        if modifier:
            xdo(self.display, "keydown", modifier, "click", "1", "keyup", modifier)
        else:
            xdo(self.display, "click", "1")

    def output(self) -> str:
        if self.alive():
            return "(still running)"
        return self.proc.stdout.read().decode(errors="replace")[-3000:]


# how long the viewer may take to open and show its first frame (importing torch, compiling numba kernels, loading
# the scene): about 10 s on a quiet 2-core machine, over 40 s beside the rest of the suite on both cores (-n 2)
STARTUP_S = 120


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    """The test scene folder and a crate mesh to spawn."""
    tmp = tmp_path_factory.mktemp("view")
    return build_scene(tmp / "scene"), box_asset(tmp / "crate.glb")


@pytest.fixture(scope="module")
def viewer(files, tmp_path_factory):
    yield from launch(files, tmp_path_factory.mktemp("view_out"))


def launch(files, tmp: Path, *extra: str):
    """The viewer under a private Xvfb, up and showing a frame (a generator: the caller closes it)."""
    scene, asset = files
    display = Display((SIZE[0] + 40, SIZE[1] + 40))
    out = tmp / "shots"
    cmd = [sys.executable, "-m", "hybrid.cli", "view", str(scene), "--out-dir", str(out), "--asset", str(asset),
           "--size", f"{SIZE[0]}x{SIZE[1]}", "--push-strength", "2", *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=display.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    v = Viewer(display, proc, out)
    try:
        wait_for(
            lambda: xdo(display, "search", "--name", "hybrid view") or not v.alive(), STARTUP_S, "the viewer window"
        )
        if not v.alive():
            text = v.output()
            if "could not open" in text or "GLFW could not start" in text or "context" in text:
                pytest.skip(f"no GL window under Xvfb: {text.strip().splitlines()[-1]}")
            raise AssertionError(f"the viewer exited: {text}")
        v.move(SIZE[0] - 100, SIZE[1] - 60)  # over the 3D view: keys go to the window under the pointer
        deadline = time.time() + STARTUP_S
        while not v.shots():  # the window opens before the scene is loaded: retry P until a frame shows
            assert time.time() < deadline, "no screenshot from the viewer"
            assert v.alive(), v.output()
            v.key("p")
            time.sleep(1.0)
        yield v
    finally:
        if v.alive():
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        display.close()


def window_pixel(info: dict, point) -> tuple[float, float]:
    """Window coordinates of a world point in the 3D view of a screenshot's camera."""
    view, K = np.array(info["camera"]["viewmat"]), np.array(info["camera"]["K"])
    pc = view[:3, :3] @ np.asarray(point, float) + view[:3, 3]
    vx, vy, _, _ = info["view_rect"]
    return vx + pc[0] / pc[2] * K[0, 0] + K[0, 2], vy + pc[1] / pc[2] * K[1, 1] + K[1, 2]


def red_pixels(image: np.ndarray) -> int:
    c = image.astype(int)
    return int(((c[..., 0] > 150) & (c[..., 1] < 80) & (c[..., 2] < 80)).sum())


def outline_pixels(image: np.ndarray) -> np.ndarray:
    c = image.astype(int)
    return (c[..., 0] > 200) & (c[..., 1] > 150) & (c[..., 1] < 230) & (c[..., 2] < 80)


def test_keys_and_mouse_move_the_camera(viewer):
    image0, info0 = viewer.shot(name="start")
    view0 = np.array(info0["camera"]["viewmat"])
    pos0, fwd0 = -view0[:3, :3].T @ view0[:3, 3], view0[2, :3]
    xdo(viewer.display, "keydown", "w")
    time.sleep(0.8)
    xdo(viewer.display, "keyup", "w")
    time.sleep(0.3)
    image1, info1 = viewer.shot(name="after_w")
    view1 = np.array(info1["camera"]["viewmat"])
    pos1 = -view1[:3, :3].T @ view1[:3, 3]
    travelled = pos1 - pos0
    assert travelled @ fwd0 > 0.3  # about 1 m/s for 0.8 s, forward
    assert np.linalg.norm(travelled - (travelled @ fwd0) * fwd0) < 1e-6
    assert red_pixels(image1) > 1.3 * red_pixels(image0)  # closer: the red box fills more of the view
    # right-drag to the right turns the camera right (it faces +Y, so its forward gains +X)
    x, y = SIZE[0] - 200, SIZE[1] - 150
    viewer.move(x, y)
    xdo(viewer.display, "mousedown", "3")
    for dx in range(20, 161, 20):
        viewer.move(x + dx, y)
        time.sleep(0.05)
    xdo(viewer.display, "mouseup", "3")
    _, info2 = viewer.shot(name="after_look")
    fwd2 = np.array(info2["camera"]["viewmat"])[2, :3]
    assert fwd2[0] > fwd0[0] + 0.2
    # 1 flies back to the first capture camera, exactly
    viewer.key("1")
    time.sleep(1.0)
    _, info3 = viewer.shot()
    np.testing.assert_allclose(info3["camera"]["viewmat"], view0, atol=1e-9)


def test_click_selects_and_shift_click_pushes_then_backspace_undoes(viewer):
    image0, info0 = viewer.shot()
    start = info0["poses"]
    u, v = window_pixel(info0, BOXES["red"][1])
    viewer.click(u, v)
    image1, info1 = viewer.shot_until(lambda info: info["selected"] == "red", "red selected", name="selected")
    ring = outline_pixels(image1)
    ys, xs = np.nonzero(ring)
    vx, vy = info1["view_rect"][:2]
    assert ring.sum() > 100 and not outline_pixels(image0).any()
    assert xs.min() < u - vx < xs.max() and ys.min() < v - vy < ys.max()

    viewer.click(u, v, modifier="shift")
    time.sleep(1.5)
    image2, info2 = viewer.shot(name="pushed")
    red0, red2 = np.array(start["red"]["position"]), np.array(info2["poses"]["red"]["position"])
    moved = red2 - red0
    assert info2["undo"] == ["push red"]
    assert moved[1] > 0.15  # 2 N s on 1 kg: pushed away from the front camera (+Y), along the view ray
    assert np.linalg.norm(np.array(info2["poses"]["blue"]["position"]) - start["blue"]["position"]) < 0.01
    assert np.abs(image2.astype(int) - image1.astype(int)).sum(-1).max() > 100

    viewer.key("BackSpace")
    time.sleep(0.5)
    image3, info3 = viewer.shot(name="undone")
    np.testing.assert_allclose(info3["poses"]["red"]["position"], red0, atol=2e-3)
    assert info3["undo"] == []
    viewer.key("Escape")  # deselect


def test_panel_spawns_a_mesh_and_changes_the_light(viewer):
    _, info0 = viewer.shot()
    panel = info0["panel"]
    assert "spawn" in panel and "light intensity" in panel, sorted(panel)  # both scrolled into view
    x0, y0, x1, y1 = panel["spawn"]
    viewer.click((x0 + x1) / 2, (y0 + y1) / 2)
    viewer.shot_until(lambda info: "crate" in info["poses"], "the spawned crate")
    time.sleep(1.5)  # let it land
    viewer.move(SIZE[0] - 100, SIZE[1] - 60)
    viewer.key("Escape")  # the new crate is selected: deselect it, so that no outline covers it
    # full intensity, then none: the crate's lit faces follow, the splats do not change
    x0, y0, x1, y1 = panel["light intensity"]
    viewer.click(x1 - 3, (y0 + y1) / 2)
    bright, info_b = viewer.shot_until(
        lambda info: info["light"]["intensity"] > 3.5, "intensity 4", name="light_bright"
    )
    viewer.click(x0 + 3, (y0 + y1) / 2)
    dark, info_d = viewer.shot_until(lambda info: info["light"]["intensity"] < 0.1, "intensity 0", name="light_dark")
    crate = np.array(info_d["poses"]["crate"]["position"])
    assert crate[2] == pytest.approx(0.1, abs=0.02)  # resting on the ground
    assert info_d["selected"] is None
    u, v = window_pixel(info_d, crate + [0.0, -0.1, 0.0])  # the face towards the camera (and the light)
    vx, vy = info_d["view_rect"][:2]
    patch = (slice(int(v - vy) - 2, int(v - vy) + 3), slice(int(u - vx) - 2, int(u - vx) + 3))
    assert bright[patch].mean() > dark[patch].mean() + 60
    changed = np.abs(bright.astype(int) - dark.astype(int)).sum(-1) > 0
    assert changed.mean() < 0.05  # only the crate (splats keep their captured light)
    viewer.shot("shift+p", name="panel")


def test_world_model_option_redraws_the_still_view_through_the_world_model(files, tmp_path):
    """``hybrid view --world-model relight``: once the view is still its frame comes from the world model."""
    session = launch(files, tmp_path, "--world-model", "relight")
    v = next(session)
    try:
        _, info = v.shot_until(lambda i: i["world_frame"], "a world-model frame", timeout=60, name="world_model")
        assert info["world_view"] == "relight"
    finally:
        session.close()


def test_a_bad_world_model_option_is_a_clear_error(files):
    scene, _ = files
    out = subprocess.run([sys.executable, "-m", "hybrid.cli", "view", str(scene), "--world-model", "fancy"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "--world-model" in out.stderr and "relight" in out.stderr


def test_no_display_gives_a_clear_message(files):
    scene, _ = files
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "-m", "hybrid.cli", "view", str(scene)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "no display" in out.stderr and "hybrid render" in out.stderr
