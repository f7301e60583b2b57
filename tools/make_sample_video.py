"""Make the bundled sample video ``assets/sample.mp4`` and its ground truth ``assets/sample_gt.json``.

A PyBullet scene (a textured ground plane and four textured boxes dropped onto it and left
to settle) is filmed by a camera orbiting it once. Frames are rendered by PyBullet's own
software renderer (TinyRenderer, with shadows) at twice the output size and box-filtered
down, then encoded as H.264 with PyAV. Everything is seeded: running the tool twice gives
the same ground truth (the H.264 bytes may differ between FFmpeg builds).

Ground truth written beside the video (metres, world +Z up, quaternions wxyz):
  - ``cameras``: one per frame, ``{"name", "width", "height", "K", "viewmat"}`` with the
    world-to-camera ``viewmat`` in OpenCV axes, as :class:`scenes.scene.Camera` stores it;
  - ``objects``: name, box half-extents, settled position and quaternion, mass, colour;
  - ``ground``: the plane ``z = 0`` and its extent; ``light``: direction towards the light.

Usage::

    python tools/make_sample_video.py                 # writes assets/sample.mp4 + assets/sample_gt.json
    python tools/make_sample_video.py -o /tmp/x.mp4 --frames 120 --width 1280 --height 720
"""

from __future__ import annotations

import argparse
import json
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]

GROUND_HALF = 10.0  # m, half side of the square ground plane (fills every view: no sky)
LIGHT_DIRECTION = (0.2, -0.15, 1.0)  # from the scene towards the light (PyBullet's lightDirection); steeper
# light directions give TinyRenderer's shadow map visible acne stripes on the ground
FOV_Y_DEG = 45.0
NEAR_SHAPES, FAR_SHAPES = 320, 160  # coloured shapes on the ground within 3.5 m of the centre, and beyond
# name, half extents (m), drop position (m), yaw (deg), mass (kg), main colour (RGB 0-255)
BOXES = [
    ("crate", (0.30, 0.30, 0.20), (0.25, 0.15, 0.25), 20.0, 8.0, (200, 120, 40)),
    ("tower", (0.14, 0.14, 0.36), (-0.55, 0.35, 0.40), -15.0, 3.0, (40, 90, 200)),
    ("slab", (0.26, 0.16, 0.08), (-0.35, -0.55, 0.12), 40.0, 2.0, (40, 160, 70)),
    ("cube", (0.11, 0.11, 0.11), (0.22, 0.12, 0.62), 35.0, 0.5, (210, 40, 60)),
]


def _ground_texture(rng: np.random.Generator, size: int = 2048) -> Image.Image:
    """A mid-tone ground with coloured disks and bars: dense near the centre (for SIFT), sparse far away."""
    low = rng.random((12, 12, 3)) * 0.3 + 0.35
    base = Image.fromarray((low * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    draw = ImageDraw.Draw(base)
    px_per_m = size / (2 * GROUND_HALF)
    for k in range(NEAR_SHAPES + FAR_SHAPES):
        near = k < NEAR_SHAPES
        rad = (3.5 if near else GROUND_HALF) * np.sqrt(rng.random())  # uniform over a disk
        ang = rng.uniform(0, 2 * np.pi)
        x, y = size / 2 + px_per_m * rad * np.cos(ang), size / 2 + px_per_m * rad * np.sin(ang)
        r = int(rng.integers(8, 24) if near else rng.integers(20, 50))
        col = tuple(int(v) for v in rng.integers(40, 220, 3))
        kind = rng.random()
        if kind < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=col)
        elif kind < 0.75:
            draw.rectangle([x - r, y - r // 2, x + r, y + r // 2], fill=col)
        else:
            draw.rectangle([x - r // 2, y - r, x + r // 2, y + r], fill=col)
    return base


def _box_texture(rng: np.random.Generator, colour: tuple[int, int, int], size: int = 256) -> Image.Image:
    """A face texture: the box colour with lighter and darker stripes, dots and a frame."""
    col = np.array(colour, np.float64)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in col))
    draw = ImageDraw.Draw(img)
    for _ in range(10):  # stripes
        x0 = int(rng.integers(0, size))
        w = int(rng.integers(4, 16))
        shade = tuple(int(v) for v in np.clip(col * rng.uniform(0.4, 1.5) + rng.uniform(-30, 30, 3), 0, 255))
        if rng.random() < 0.5:
            draw.rectangle([x0, 0, x0 + w, size], fill=shade)
        else:
            draw.rectangle([0, x0, size, x0 + w], fill=shade)
    for _ in range(40):  # dots
        r = int(rng.integers(5, 18))
        x, y = rng.integers(0, size, 2)
        shade = tuple(int(v) for v in np.clip(255 - col + rng.uniform(-40, 40, 3), 0, 255))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=shade)
    draw.rectangle([0, 0, size - 1, size - 1], outline=(25, 25, 25), width=10)
    return img


def _box_mesh(half) -> dict:
    """Vertices, triangle indices, normals and UVs of a box whose every face maps the whole texture."""
    hx, hy, hz = half
    verts, normals, uvs, idx = [], [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            n = np.zeros(3)
            n[axis] = sign
            u = np.zeros(3)
            u[(axis + 1) % 3] = 1.0
            v = np.cross(n, u)
            base = len(verts)
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                pt = (n + a * u + b * v) * np.array([hx, hy, hz])
                verts.append(pt.tolist())
                normals.append(n.tolist())
                uvs.append([(a + 1) / 2, (b + 1) / 2])
            idx += [base, base + 1, base + 2, base, base + 2, base + 3]
    return {"vertices": verts, "indices": idx, "normals": normals, "uvs": uvs}


def _look_at_c2w(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[4, 4] camera-to-world in OpenCV axes (x right, y down, z forward), world +Z up."""
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


def orbit(frames: int, radius: float = 2.4, height: float = 2.2) -> list[np.ndarray]:
    """Camera-to-world matrices of one orbit around the scene with a gentle bob in height and radius."""
    out = []
    for i in range(frames):
        a = 2 * np.pi * i / frames
        r = radius + 0.1 * np.sin(2 * a)
        eye = np.array([r * np.cos(a), r * np.sin(a), height + 0.15 * np.sin(3 * a)])
        out.append(_look_at_c2w(eye, np.array([0.0, 0.0, 0.15])))
    return out


def simulate(client: int, tex_dir: Path, seed: int) -> list[dict]:
    """Build the scene, drop the boxes and let them settle; returns their ground-truth records."""
    import pybullet as p

    rng = np.random.default_rng(seed)
    p.setGravity(0, 0, -9.81, physicsClientId=client)
    ground_png = tex_dir / "ground.png"
    _ground_texture(rng).save(ground_png)
    g = GROUND_HALF
    gv = p.createVisualShape(
        p.GEOM_MESH,
        vertices=[[-g, -g, 0], [g, -g, 0], [g, g, 0], [-g, g, 0]],
        indices=[0, 1, 2, 0, 2, 3],
        uvs=[[0, 0], [1, 0], [1, 1], [0, 1]],
        normals=[[0, 0, 1]] * 4,
        physicsClientId=client,
    )
    gc = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=client)
    ground = p.createMultiBody(0, gc, gv, physicsClientId=client)
    tid = p.loadTexture(str(ground_png), physicsClientId=client)
    p.changeVisualShape(ground, -1, textureUniqueId=tid, rgbaColor=[1, 1, 1, 1], physicsClientId=client)
    p.changeDynamics(ground, -1, lateralFriction=0.9, physicsClientId=client)

    bodies = []
    for name, half, pos, yaw, mass, colour in BOXES:
        png = tex_dir / f"{name}.png"
        _box_texture(rng, colour).save(png)
        vs = p.createVisualShape(p.GEOM_MESH, **_box_mesh(half), physicsClientId=client)
        cs = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=client)
        orn = p.getQuaternionFromEuler([0, 0, np.radians(yaw)])
        b = p.createMultiBody(mass, cs, vs, basePosition=pos, baseOrientation=orn, physicsClientId=client)
        p.changeVisualShape(
            b,
            -1,
            textureUniqueId=p.loadTexture(str(png), physicsClientId=client),
            rgbaColor=[1, 1, 1, 1],
            physicsClientId=client,
        )
        p.changeDynamics(b, -1, lateralFriction=0.8, physicsClientId=client)
        bodies.append((b, name, half, mass, colour))
    for _ in range(960):  # 4 s at 240 Hz: everything comes to rest
        p.stepSimulation(physicsClientId=client)

    records = []
    for b, name, half, mass, colour in bodies:
        pos, q = p.getBasePositionAndOrientation(b, physicsClientId=client)
        records.append(
            {
                "name": name,
                "shape": "box",
                "half_extents": list(half),
                "position": [float(v) for v in pos],
                "quaternion": [float(q[3]), float(q[0]), float(q[1]), float(q[2])],  # xyzw -> wxyz
                "mass": mass,
                "colour": [c / 255 for c in colour],
            }
        )
    return records


def render_frames(
    client: int, c2ws: list[np.ndarray], width: int, height: int, supersample: int = 2
) -> list[np.ndarray]:
    """[H, W, 3] uint8 frames rendered by TinyRenderer with shadows, ``supersample``-times box-filtered."""
    import pybullet as p

    W, H = width * supersample, height * supersample
    proj = p.computeProjectionMatrixFOV(FOV_Y_DEG, W / H, 0.05, 60.0)
    frames = []
    for c2w in c2ws:
        eye = c2w[:3, 3]
        view = p.computeViewMatrix(eye, eye + c2w[:3, 2], -c2w[:3, 1])  # OpenCV -y is up in the image
        _, _, rgba, _, _ = p.getCameraImage(
            W,
            H,
            view,
            proj,
            renderer=p.ER_TINY_RENDERER,
            shadow=1,
            lightDirection=list(LIGHT_DIRECTION),
            physicsClientId=client,
        )
        img = np.asarray(rgba, np.uint8).reshape(H, W, 4)[..., :3].astype(np.float32)
        img = img.reshape(height, supersample, width, supersample, 3).mean(axis=(1, 3))
        frames.append(np.clip(np.round(img), 0, 255).astype(np.uint8))
    return frames


def encode(frames: list[np.ndarray], path: Path, fps: int, crf: int) -> None:
    """H.264 (yuv420p) with PyAV; one encoded frame per input frame."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "slow", "tune": "film"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make(
    out: Path, frames: int = 60, width: int = 320, height: int = 240, fps: int = 12, crf: int = 22, seed: int = 7
) -> dict:
    """Simulate, render, encode; write ``out`` and ``<stem>_gt.json`` beside it; return the ground truth."""
    import pybullet as p

    client = p.connect(p.DIRECT)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            objects = simulate(client, Path(tmp), seed)
            c2ws = orbit(frames)
            images = render_frames(client, c2ws, width, height)
    finally:
        p.disconnect(client)
    encode(images, out, fps, crf)

    f = 0.5 * height / np.tan(np.radians(FOV_Y_DEG) / 2)
    K = [[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]]
    gt = {
        "video": out.name,
        "generator": "tools/make_sample_video.py (PyBullet TinyRenderer, shadows on)",
        "seed": seed,
        "fps": fps,
        "units": "metres",
        "up": [0.0, 0.0, 1.0],
        "camera_convention": "viewmat is world-to-camera, OpenCV axes (x right, y down, z forward)",
        "cameras": [
            {"name": f"frame_{i:04d}", "width": width, "height": height, "K": K, "viewmat": np.linalg.inv(c2w).tolist()}
            for i, c2w in enumerate(c2ws)
        ],
        "objects": objects,
        "ground": {"normal": [0.0, 0.0, 1.0], "offset": 0.0, "half_extent": GROUND_HALF},
        "light": {"direction": list(np.asarray(LIGHT_DIRECTION) / np.linalg.norm(LIGHT_DIRECTION))},
    }
    gt_path = out.with_name(out.stem + "_gt.json")
    gt_path.write_text(_dumps(gt) + "\n")
    return gt


def _dumps(obj) -> str:
    """JSON with one line per camera matrix row and floats rounded to 1e-9 (readable diffs)."""
    import re

    def rnd(o):
        if isinstance(o, float):
            return round(o, 9)
        if isinstance(o, dict):
            return {k: rnd(v) for k, v in o.items()}
        if isinstance(o, list):
            return [rnd(v) for v in o]
        return o

    text = json.dumps(rnd(obj), indent=1)
    return re.sub(r"\[\s*([-0-9.e,\s]+?)\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "assets" / "sample.mp4")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=int, default=12)
    ap.add_argument("--crf", type=int, default=22, help="x264 quality (lower = larger, sharper)")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    make(a.out, a.frames, a.width, a.height, a.fps, a.crf, a.seed)
    print(f"wrote {a.out} ({a.out.stat().st_size / 1024:.0f} KiB) and {a.out.with_name(a.out.stem + '_gt.json')}")


if __name__ == "__main__":
    main()
