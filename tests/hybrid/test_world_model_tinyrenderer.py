"""The capture light estimated from splats of a box world that PyBullet's TinyRenderer drew (its coefficients known)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from hybrid.world_model import Relighting

ROOT = Path(__file__).resolve().parents[2]


def test_sun_and_ambient_from_the_box_faces_match_tinyrenderers_coefficients():
    """The benchmark's scene 0 with splats built from the known geometry, colours fitted to the capture frames.

    TinyRenderer lights with ambient 0.35 and diffuse 0.65 (``tools/tiny_world.py``): sun / ambient
    1.857. Along a box edge a splat's fitted colour mixes both faces, which pulled the estimate to
    1.64 (the light edit then lost 0.04 dB); the faces' insides give it back.
    """
    sys.path.insert(0, str(ROOT / "tools"))
    from tiny_world import AMBIENT, DIFFUSE, L0, TinyScene, build_scene, capture_orbit

    with tempfile.TemporaryDirectory() as tmp:
        tiny = TinyScene(0, Path(tmp))
        try:
            captures = capture_orbit(tiny)
            scene = build_scene(tiny, captures, 0, colour_steps=100)
        finally:
            tiny.close()
    rel = Relighting.fit(scene, light_direction=tuple(L0))
    ratio = np.asarray(rel.light.color) / np.asarray(rel.light.ambient)
    assert np.allclose(ratio, DIFFUSE / AMBIENT, rtol=0.05), ratio


def test_a_true_box_moves_as_the_detected_object_matched_to_it_moved(tmp_path):
    """The benchmark's truth for detected objects: each true box follows its object's rigid motion since rest.

    A detected object has its own frame (a hull's centroid, settled), not the box's. Move it by a known
    rotation about a tilted axis and a shift: every point of the true box must move by that same motion
    (checked on the box's corners, through PyBullet's own pose), and an object at rest leaves its box
    where it stood.
    """
    sys.path.insert(0, str(ROOT / "tools"))
    from scipy.spatial.transform import Rotation
    from tiny_world import TinyScene

    from physics.transforms import quat_to_matrix
    from scenes import Scene, SceneObject, Splats

    tiny = TinyScene(0, tmp_path)
    try:
        box = tiny.boxes[1]
        # the object's frame: off the box's centre and turned from it, as a lifted hull's would be
        rest_pos = box["position"] + [0.03, -0.02, -0.01]
        rest_q = Rotation.from_euler("z", 0.7).as_quat(scalar_first=True)
        splats = Splats(means=np.zeros((1, 3), np.float32), quats=np.array([[1, 0, 0, 0]], np.float32),
                        log_scales=np.full((1, 3), -4.0, np.float32), opacity_logits=np.ones(1, np.float32),
                        sh=np.zeros((1, 1, 3), np.float32))  # fmt: skip
        obj = SceneObject(box["name"], np.array([0]), None, position=tuple(rest_pos), quaternion=tuple(rest_q))
        scene = Scene(splats, objects=(obj,))
        at_rest = tiny.follow(scene, {box["name"]: {"position": rest_pos, "quaternion": rest_q}})
        np.testing.assert_allclose(at_rest[box["name"]]["position"], box["position"], atol=1e-9)
        motion = Rotation.from_rotvec(0.9 * np.array([0.3, -0.2, 0.93]) / np.linalg.norm([0.3, -0.2, 0.93]))
        shift = np.array([0.4, -0.25, 0.1])
        now_pos = motion.apply(rest_pos) + shift
        now_q = (motion * Rotation.from_quat(rest_q, scalar_first=True)).as_quat(scalar_first=True)
        pose = tiny.follow(scene, {box["name"]: {"position": now_pos, "quaternion": now_q}})[box["name"]]
        tiny.set_poses({box["name"]: pose})
        pos, q = tiny.p.getBasePositionAndOrientation(box["id"], physicsClientId=tiny.client)
        corners = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T * box["half"]
        before = corners @ quat_to_matrix(box["quaternion"]).T + box["position"]
        after = corners @ Rotation.from_quat(q).as_matrix().T + np.asarray(pos)  # PyBullet's xyzw
        np.testing.assert_allclose(after, motion.apply(before) + shift, atol=1e-6)
    finally:
        tiny.close()
