"""physics: the PyBullet bridge. Colliders from splats, the world, interventions, splats that follow bodies.

Front door::

    world = physics.PhysicsWorld(scene)            # one DIRECT client, 240 Hz fixed step
    world.push(point, impulse); world.step(1 / 30)
    poses = world.body_poses()                     # [B, 7] x, y, z, qw, qx, qy, qz
    rig = physics.SplatRig(scene.splats, groups, rest_poses)
    means, quats, sh, opacity_logits = rig.apply(poses)

Depends on ``scenes`` only (never on ``render``). Importing it is light: PyBullet, trimesh
and numba are imported when a feature needs them.
"""

from physics.colliders import (
    MassProperties,
    convex_collider,
    convex_decomposition,
    load_mesh,
    mass_properties,
    mesh_collider,
)
from physics.events import EVENT_TYPES, Event, EventQueue, check_event_objects, load_events, parse_events
from physics.segment import GroundFit, ObjectCandidate, SegmentConfig, find_objects, fit_ground, segment_scene
from physics.transforms import (
    SplatRig,
    eval_sh,
    matrix_to_quat,
    pose_compose,
    pose_inverse,
    pose_relative,
    quat_multiply,
    quat_to_matrix,
    rotate_sh,
    transform_splats_reference,
)
from physics.world import PhysicsWorld, Pick, SpawnedAsset, WorldConfig, WorldState

__all__ = [
    # world
    "PhysicsWorld",
    "WorldConfig",
    "WorldState",
    "Pick",
    "SpawnedAsset",
    # events
    "Event",
    "EVENT_TYPES",
    "EventQueue",
    "parse_events",
    "load_events",
    "check_event_objects",
    # splats following bodies
    "SplatRig",
    "transform_splats_reference",
    "rotate_sh",
    "eval_sh",
    "quat_multiply",
    "quat_to_matrix",
    "matrix_to_quat",
    "pose_compose",
    "pose_inverse",
    "pose_relative",
    # colliders
    "MassProperties",
    "convex_collider",
    "convex_decomposition",
    "mesh_collider",
    "load_mesh",
    "mass_properties",
    # segmentation
    "SegmentConfig",
    "GroundFit",
    "ObjectCandidate",
    "fit_ground",
    "find_objects",
    "segment_scene",
]
