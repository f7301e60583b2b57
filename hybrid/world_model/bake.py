"""Bake the world model's relighting into a scene's splat colours (for exports under a new light)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hybrid.world_model.gbuffers import SplatState
from hybrid.world_model.model import WorldModel
from scenes import Scene
from scenes.splats import rgb_to_sh0

__all__ = ["bake_light"]


def bake_light(
    scene: Scene,
    light_direction,  # [3] towards the light, world frame
    *,
    backend: str | None = None,
    notify: Callable[[str], None] | None = None,  # receives what the world model decided (e.g. no weights)
) -> Scene:
    """``scene`` with its splats' colours relit under the capture light turned to ``light_direction``.

    Each splat's base colour (SH degree 0) becomes ``albedo x (ambient + sun x visibility x max(0, n.l))``
    under the new light, with the shadows every object casts at rest; the view-dependent SH bands
    are kept. Rendered plainly (any splat renderer, any engine), the result is what
    ``--world-model relight`` draws. The scene's light turns with it; the capture light is the one
    stored with the world model's weights (estimated from the splats when there are none).
    """
    wm = WorldModel(scene, "relight", backend=backend, notify=notify)
    light = wm.light(light_direction)
    shade = wm.shade(SplatState.rest(scene), light)
    base = np.clip(wm.relighting.albedo * shade.shading, 0.0, None)
    sh = np.array(scene.splats.sh, copy=True)
    sh[:, 0, :] = rgb_to_sh0(base)
    return scene.with_(splats=scene.splats.with_(sh=sh.astype(scene.splats.sh.dtype)), light=light)
