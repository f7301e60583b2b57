"""The appearance world model: relightable splats, moving shadows and a learned residual.

Front door::

    from hybrid.world_model import WorldModel, SplatState, train_world_model
    result = train_world_model(scene)                     # per scene, self-supervised, ~1-3 min on CPU
    scene = scene.with_(weights={**scene.weights, WEIGHTS_NAME: result.weights})
    wm = WorldModel(scene, "full")                        # "off" | "relight" | "full"
    images = wm.images(SplatState.of_world(world), cameras, light_direction=(0.5, 0.2, 0.8))

Viewers that make their own G-buffers call :func:`apply_world_model`.
"""

from hybrid.world_model.bake import bake_light
from hybrid.world_model.gbuffers import GBuffers, SplatState, render_gbuffers
from hybrid.world_model.model import (
    MODES,
    WEIGHTS_NAME,
    WorldModel,
    apply_world_model,
    light_from_weights,
    parse_light_direction,
)
from hybrid.world_model.relight import (
    Relighting,
    ShadowFrame,
    estimate_light,
    observed_colors,
    scene_normals,
    shadow_visibility,
    splat_normals,
)
from hybrid.world_model.residual import ResidualNet, push_pull
from hybrid.world_model.train import TrainConfig, TrainResult, train_world_model, world_model_weights

__all__ = [
    "GBuffers",
    "MODES",
    "Relighting",
    "ResidualNet",
    "ShadowFrame",
    "SplatState",
    "TrainConfig",
    "TrainResult",
    "WEIGHTS_NAME",
    "WorldModel",
    "apply_world_model",
    "bake_light",
    "estimate_light",
    "light_from_weights",
    "parse_light_direction",
    "push_pull",
    "render_gbuffers",
    "shadow_visibility",
    "splat_normals",
    "scene_normals",
    "observed_colors",
    "train_world_model",
    "world_model_weights",
]
