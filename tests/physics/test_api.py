"""The public surface of ``physics`` and the lightness of importing it."""

from __future__ import annotations

import subprocess
import sys

import physics

EXPECTED = {
    "PhysicsWorld", "WorldConfig", "WorldState", "Pick", "SpawnedAsset",
    "Event", "EVENT_TYPES", "EventQueue", "parse_events", "load_events", "check_event_objects",
    "SplatRig", "transform_splats_reference", "rotate_sh", "eval_sh",
    "quat_multiply", "quat_to_matrix", "matrix_to_quat", "pose_compose", "pose_inverse", "pose_relative",
    "MassProperties", "convex_collider", "convex_decomposition", "mesh_collider", "load_mesh", "mass_properties",
    "SegmentConfig", "GroundFit", "ObjectCandidate", "fit_ground", "find_objects", "segment_scene",
}  # fmt: skip


def test_public_names_do_not_vanish():
    assert EXPECTED <= set(physics.__all__)
    for name in physics.__all__:
        assert hasattr(physics, name), name


def test_import_is_light():
    code = "import sys, physics; print(sorted(m for m in ('pybullet', 'trimesh', 'numba', 'render', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
