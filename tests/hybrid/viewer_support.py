"""Shared pieces of the viewer tests: a tiny scene built in code, a mesh asset, Xvfb and xdotool helpers.

The scene: a 3 m square ground of flat grey checker splats (z = 0) and two boxes made of
splats on their faces, ``red`` (0.3 m cube at x = -0.45) and ``blue`` (0.25 m cube at x = 0.45),
each with a box collider, on a ground plane; two capture cameras look at them from the front
(-Y) and from the right (+X).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from scenes import Camera, ColliderMesh, Ground, Light, Scene, SceneObject, Splats, save_scene

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("HYBRID_ARTIFACTS", ROOT / "artifacts")) / "viewer"

BOXES = {  # name -> (edge length m, centre, colour)
    "red": (0.3, (-0.45, 0.0, 0.15), (0.9, 0.15, 0.1)),
    "blue": (0.25, (0.45, 0.1, 0.125), (0.1, 0.3, 0.95)),
}


def _rot_to_quat(R: np.ndarray) -> np.ndarray:  # [3, 3] -> wxyz
    from physics.transforms import matrix_to_quat

    return matrix_to_quat(R)


def _face_splats(size: float, center, color, spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat splats on the six faces of a cube: means [M, 3], quats [M, 4], scales [M, 3]."""
    n = max(2, int(round(size / spacing)))
    g = (np.arange(n) + 0.5) / n - 0.5
    u, v = np.meshgrid(g * size, g * size)
    means, quats = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            a, b = [i for i in range(3) if i != axis]
            pts = np.zeros((u.size, 3))
            pts[:, a], pts[:, b] = u.ravel(), v.ravel()
            pts[:, axis] = sign * size / 2
            normal = np.zeros(3)
            normal[axis] = sign
            ex = np.zeros(3)
            ex[a] = 1.0
            ey = np.cross(normal, ex)
            R = np.stack([ex, ey, normal], 1)  # columns: the splat's x, y, z (thin) axes
            means.append(pts + np.asarray(center))
            quats.append(np.tile(_rot_to_quat(R), (len(pts), 1)))
    means, quats = np.concatenate(means), np.concatenate(quats)
    scales = np.tile([spacing * 0.75, spacing * 0.75, spacing * 0.05], (len(means), 1))
    return means, quats, scales


def box_collider(size: float) -> ColliderMesh:
    import trimesh

    hull = trimesh.creation.box(extents=(size, size, size))
    return ColliderMesh(np.asarray(hull.vertices), np.asarray(hull.faces))


def build_scene(path: Path, spacing: float = 0.025) -> Path:
    """Write the test scene folder to ``path`` and return it."""
    parts, objects, count = [], [], 0
    # ground: checker of two greys
    half, gs = 1.5, 0.04
    g = np.arange(-half + gs / 2, half, gs)
    gx, gy = np.meshgrid(g, g)
    gm = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    checker = ((np.floor(gx.ravel() / 0.3) + np.floor(gy.ravel() / 0.3)) % 2)[:, None]
    gc = 0.45 + 0.2 * checker * np.ones((1, 3))
    parts.append(Splats.from_activated(gm, np.tile([1.0, 0, 0, 0], (len(gm), 1)),
                                       np.tile([gs * 0.8, gs * 0.8, 0.002], (len(gm), 1)),
                                       np.full(len(gm), 0.99), gc))  # fmt: skip
    count += len(gm)
    for name, (size, center, color) in BOXES.items():
        m, q, s = _face_splats(size, center, color, spacing)
        parts.append(Splats.from_activated(m, q, s, np.full(len(m), 0.99), np.tile(color, (len(m), 1))))
        objects.append(SceneObject(name, np.arange(count, count + len(m)), box_collider(size), mass=1.0,
                                   friction=0.5, restitution=0.0, position=center))  # fmt: skip
        count += len(m)
    splats = Splats.concat(parts)
    cams = (
        Camera.look_at((0.0, -2.2, 1.0), (0.0, 0.0, 0.15), width=640, height=360, fov_y_deg=50, name="front"),
        Camera.look_at((2.2, 0.0, 0.9), (0.0, 0.0, 0.15), width=640, height=360, fov_y_deg=50, name="right"),
    )
    scene = Scene(splats, tuple(objects), Ground(friction=0.8, restitution=0.0),
                  Light((0.4, -0.5, 0.77), (1.0, 1.0, 1.0), 1.0, (0.3, 0.3, 0.3)), cams)  # fmt: skip
    return save_scene(scene, path)


def box_asset(path: Path, size: float = 0.2, color=(230, 200, 40)) -> Path:
    """A coloured box mesh file (GLB) to spawn."""
    import trimesh

    mesh = trimesh.creation.box(extents=(size, size, size))
    mesh.visual.vertex_colors = np.tile([*color, 255], (len(mesh.vertices), 1)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)
    return path


def save_artifact(name: str, image: np.ndarray) -> Path:
    from PIL import Image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    Image.fromarray(image).save(path)
    return path


# ---------------------------------------------------------------------- Xvfb + xdotool
class Display:
    """A private Xvfb server (its own display number, picked by the server) for one test module."""

    def __init__(self, size=(1280, 800)) -> None:
        if shutil.which("Xvfb") is None:
            pytest.skip("Xvfb is not installed (apt-get install xvfb)")
        r, w = os.pipe()
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(w), "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp"],
            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(w)
        number = b""
        deadline = time.time() + 15
        while time.time() < deadline and not number.endswith(b"\n"):
            chunk = os.read(r, 16)
            if not chunk:
                break
            number += chunk
        os.close(r)
        if not number.strip():
            self.close()
            pytest.skip("Xvfb did not start")
        self.name = f":{number.decode().strip()}"
        self.env = {**os.environ, "DISPLAY": self.name}
        self.env.pop("WAYLAND_DISPLAY", None)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def xdo(display: Display, *args: str) -> str:
    out = subprocess.run(["xdotool", *args], env=display.env, capture_output=True, text=True, timeout=20)
    return out.stdout.strip()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def read_shot(path: Path) -> tuple[np.ndarray, dict]:
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB"))
    info = json.loads(path.with_suffix(".json").read_text())
    return image, info
