"""Shared pieces of the export/import tests: a small analytic scene and the Node.js tools they call.

The Node.js tools (Khronos glTF validator, three.js, splat-transform, playwright-core) are installed
into ``.node/`` at the project root (git-ignored) with::

    npm install --prefix .node --no-audit --no-fund gltf-validator@2.0.0-dev.3.10 three@0.187.0 \
        @playcanvas/splat-transform@3.7.0 playwright-core@1.65.1

Tests that need them skip with that command as the reason when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from scenes import Camera, ColliderMesh, Ground, Light, Scene, SceneObject, Splats
from scenes.export import quat_to_matrix

ROOT = Path(__file__).resolve().parents[2]
NODE_TOOLS = Path(os.environ.get("HYBRID_NODE_TOOLS", ROOT / ".node"))
NPM_INSTALL = (
    "npm install --prefix .node --no-audit --no-fund gltf-validator@2.0.0-dev.3.10 three@0.187.0 "
    "@playcanvas/splat-transform@3.7.0 playwright-core@1.65.1"
)


def node_module(name: str) -> Path:
    """Path of an npm package in ``.node/node_modules``; skips the test when it or ``node`` is missing."""
    if shutil.which("node") is None:
        pytest.skip("node (Node.js >= 20) is not installed")
    path = NODE_TOOLS / "node_modules" / name
    if not path.is_dir():
        pytest.skip(f"npm package {name} not installed; run: {NPM_INSTALL}")
    return path


def run_node(script: str, *args: str, timeout: float = 120.0) -> str:
    """Run a Node.js ES module given as text (``NODE_TOOLS`` in its environment); returns stdout."""
    env = dict(os.environ, NODE_TOOLS=str(NODE_TOOLS), NODE_PATH=str(NODE_TOOLS / "node_modules"))
    proc = subprocess.run(
        ["node", "--input-type=module", "-", *args],
        input=script,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"node failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


VALIDATE_JS = """
import fs from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(process.env.NODE_TOOLS + '/package.json');
const validator = require('gltf-validator');
const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])), {maxIssues: 0});
console.log(JSON.stringify(report));
"""


def validate_gltf(path: Path) -> dict:
    """The Khronos glTF validator's report of ``path`` (npm gltf-validator)."""
    node_module("gltf-validator")
    return json.loads(run_node(VALIDATE_JS, str(path)))


def rot_z(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([np.cos(a / 2), 0.0, 0.0, np.sin(a / 2)])


def box_mesh(half) -> tuple[np.ndarray, np.ndarray]:
    hx, hy, hz = half
    v = np.array([[x, y, z] for x in (-hx, hx) for y in (-hy, hy) for z in (-hz, hz)], np.float32)
    f = np.array(
        [
            [0, 2, 3],
            [0, 3, 1],
            [4, 5, 7],
            [4, 7, 6],
            [0, 1, 5],
            [0, 5, 4],
            [2, 6, 7],
            [2, 7, 3],
            [0, 4, 6],
            [0, 6, 2],
            [1, 3, 7],
            [1, 7, 5],
        ]
    )
    return v, f


def random_splats(rng: np.random.Generator, n: int, center, spread, degree: int = 3, color=None) -> Splats:
    means = np.asarray(center) + rng.uniform(-1, 1, (n, 3)) * np.asarray(spread)
    quats = rng.normal(size=(n, 4))
    log_scales = np.log(rng.uniform(0.01, 0.05, (n, 3)))
    logits = rng.uniform(-1, 4, n)
    sh = rng.normal(0, 0.15, (n, (degree + 1) ** 2, 3))
    sh[:, 0] = (np.asarray(color if color is not None else rng.uniform(0.2, 0.8, 3)) - 0.5) / 0.28209479177387814
    sh[:, 0] += rng.normal(0, 0.1, (n, 3))
    return Splats(means, quats, log_scales, logits, sh)


def make_scene(seed: int = 0, degree: int = 3) -> Scene:
    """Background on a floor plus three objects (convex, compound, static mesh), ground with a wall, 2 cameras."""
    rng = np.random.default_rng(seed)
    floor = random_splats(rng, 400, (0, 0, 0), (1.5, 1.5, 0.01), degree, (0.55, 0.5, 0.45))
    crate_pose = (np.array([0.4, 0.3, 0.2]), rot_z(30))
    crate_local = random_splats(rng, 150, (0, 0, 0), (0.2, 0.2, 0.2), degree, (0.8, 0.3, 0.2))
    R = quat_to_matrix(crate_pose[1])
    crate = crate_local.with_(means=crate_local.means @ R.T + crate_pose[0])  # the splats are stored at the pose
    ball = random_splats(rng, 120, (-0.5, -0.2, 0.15), (0.15, 0.15, 0.15), degree, (0.2, 0.4, 0.9))
    pillar = random_splats(rng, 80, (0.0, 0.9, 0.5), (0.1, 0.1, 0.5), degree, (0.9, 0.9, 0.9))
    splats = Splats.concat([floor, crate, ball, pillar])
    n0, n1, n2 = len(floor), len(floor) + len(crate), len(floor) + len(crate) + len(ball)
    bv, bf = box_mesh((0.2, 0.2, 0.2))
    a, af = box_mesh((0.15, 0.15, 0.08))
    b = a + np.array([0, 0, 0.1], np.float32)
    compound = ColliderMesh(
        np.concatenate([a - [0, 0, 0.05], b]),
        np.concatenate([af, af + 8]),
        "compound",
        (np.arange(12), np.arange(12, 24)),
    )
    pv, pf = box_mesh((0.1, 0.1, 0.5))
    objects = (
        SceneObject(
            "crate",
            np.arange(n0, n1),
            ColliderMesh(bv, bf, "convex"),
            2.0,
            0.5,
            0.2,
            tuple(crate_pose[0]),
            tuple(crate_pose[1]),
        ),
        SceneObject("ball", np.arange(n1, n2), compound, 0.7, 0.9, 0.6, (-0.5, -0.2, 0.15)),
        SceneObject(
            "pillar",
            np.arange(n2, len(splats)),
            ColliderMesh(pv, pf, "mesh"),
            10.0,
            0.7,
            0.0,
            (0.0, 0.9, 0.5),
            tuple(rot_z(-15)),
            static=True,
        ),
    )
    wv, wf = box_mesh((1.5, 0.05, 0.3))
    ground = Ground((0, 0, 1), 0.0, ColliderMesh(wv + np.array([0, -1.5, 0.3], np.float32), wf, "mesh"), 0.8, 0.1)
    cams = (
        Camera.look_at((2.0, -2.0, 1.5), (0, 0, 0.2), width=160, height=120, fov_y_deg=50, name="cam_a"),
        Camera.look_at((-1.5, -2.5, 1.0), (0, 0, 0.3), width=160, height=120, fov_y_deg=60, name="cam_b"),
    )
    light = Light((0.3, -0.4, 0.866), (1.0, 0.95, 0.9), 1.5, (0.3, 0.3, 0.35))
    return Scene(splats, objects, ground, light, cams, metadata={"source": "test", "seed": seed})
