"""The appearance world model of a scene: ``off``, ``relight`` or ``full`` rendering of any state.

::

    wm = WorldModel(scene, "full")                 # weights from scene.weights["world_model"]
    images = wm.render(SplatState.of_world(world), cameras, light_direction=(0.5, 0.2, 0.8))

- ``off``: the engine alone: splats rasterized with their baked colour (``World.render``);
- ``relight``: the explicit layer: albedo x (ambient + sun x visibility x max(0, n.l)) + the
  view-dependent SH residual, shadows from a shadow map of the current state;
- ``full``: relight plus the learned residual (gated hole filling and colour correction).

A scene without trained weights renders ``full`` as ``relight`` and says so (``wm.notes``); its
capture light is then estimated on the spot (seconds) instead of read from the weights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from hybrid.world_model.gbuffers import GBuffers, SplatState, render_gbuffers
from hybrid.world_model.relight import Relighting, ShadeResult, with_extra
from hybrid.world_model.residual import ResidualNet, residual_output
from scenes.errors import SceneError, ShapeError
from scenes.scene import Camera, Light, Scene

__all__ = ["WorldModel", "MODES", "WEIGHTS_NAME", "apply_world_model", "parse_light_direction", "light_from_weights",
           "FrameOutput", "resolve_mode", "world_model_views"]  # fmt: skip

log = logging.getLogger(__name__)

MODES = ("off", "relight", "full")
WEIGHTS_NAME = "world_model"  # Scene.weights key, saved as weights/world_model.safetensors
WEIGHTS_VERSION = 1


def parse_light_direction(text: str | None) -> tuple[float, float, float] | None:
    """``"x,y,z"`` (from the scene towards the light, world frame) -> a unit 3-tuple; None passes through."""
    if text is None:
        return None
    try:
        values = np.array([float(v) for v in text.split(",")], np.float64)
    except ValueError:
        values = np.zeros(0)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.linalg.norm(values) == 0:
        raise ShapeError(
            f"--light-direction: expected three numbers x,y,z (towards the light, not all 0), got {text!r}"
        )
    return tuple(float(v) for v in values / np.linalg.norm(values))


def light_from_weights(weights: dict) -> Light:
    """The capture light stored beside the network."""
    try:
        return Light(direction=tuple(np.asarray(weights["light.direction"], np.float64)),
                     color=tuple(np.asarray(weights["light.color"], np.float64)),
                     intensity=float(np.asarray(weights["light.intensity"]).reshape(-1)[0]),
                     ambient=tuple(np.asarray(weights["light.ambient"], np.float64)))  # fmt: skip
    except KeyError as exc:
        raise SceneError(f"world-model weights: missing tensor {exc}; retrain with `hybrid world-model train`") from exc


@dataclass(frozen=True, eq=False)
class FrameOutput:
    """One camera's image in every computed mode (``[H, W, 3]`` float32 in [0, 1], background added)."""

    image: np.ndarray  # the requested mode
    gbuffers: GBuffers | None  # None in mode "off"


class WorldModel:
    """Renders a scene's splat state in one of :data:`MODES` (see the module docstring)."""

    def __init__(
        self,
        scene: Scene,
        mode: str = "full",
        *,
        backend: str | None = None,  # render.rasterize backend
        notify: Callable[[str], None] | None = None,  # receives what the model decided (default: log warning)
        relighting: Relighting | None = None,  # a precomputed explicit layer for this scene
        supersample: int | None = None,  # samples per pixel side (render.supersample); None: as the capture needs
    ) -> None:
        if mode not in MODES:
            raise ShapeError(f"--world-model: must be one of {', '.join(MODES)}; got {mode!r}")
        self.scene = scene
        self.backend = backend
        self.supersample = supersample
        self.notes: list[str] = []
        self._notify = notify or log.warning
        weights = scene.weights.get(WEIGHTS_NAME)
        self.net: ResidualNet | None = None
        if mode == "full" and weights is None:
            self._note("the scene has no world-model weights (weights/world_model.safetensors): rendering with "
                       "relight instead of full; train them with `hybrid world-model train SCENE`")  # fmt: skip
            mode = "relight"
        self.mode = mode
        self.relighting = relighting
        if mode != "off" and relighting is None:
            light, strength, static_casts = None, 1.0, None
            if weights is not None:
                light = light_from_weights(weights)
                strength = float(np.asarray(weights.get("light.shadow_strength", [1.0])).reshape(-1)[0])
                # weights from before the flag: static splats cast, as they did then
                static_casts = bool(np.asarray(weights.get("light.static_casts", [1.0])).reshape(-1)[0] > 0.5)
            else:
                self._note("estimating the capture light from the splats (no stored world model)")
            self.relighting = Relighting.fit(scene, light, shadow_strength=strength, static_casts=static_casts,
                                             backend=backend)  # fmt: skip
        if mode == "full":
            width = int(np.asarray(weights.get("config.width", 16)).reshape(-1)[0])
            self.net = ResidualNet.from_arrays(weights, width)

    def _note(self, text: str) -> None:
        self.notes.append(text)
        self._notify(text)

    @property
    def capture_light(self) -> Light | None:
        return None if self.relighting is None else self.relighting.light

    def light(self, direction=None) -> Light | None:
        """The capture light, or the capture light turned to ``direction``."""
        return None if self.relighting is None else self.relighting.with_light(direction)

    def shade(self, state: SplatState, light: Light | None = None) -> ShadeResult:
        """Per-splat lighting of ``state`` (one shadow map; shared by every camera of a frame)."""
        if self.relighting is None:
            raise ShapeError("WorldModel.shade: mode 'off' has no lighting model")
        return self.relighting.shade(state.means, state.quats, state.scales, state.opacities, light,
                                     backend=self.backend, extra=state.extra)  # fmt: skip

    def render(
        self,
        state: SplatState,
        cameras: list[Camera],
        *,
        light_direction=None,  # towards the light, world frame; None keeps the capture light
        background=(0.0, 0.0, 0.0),
        keep_gbuffers: bool = False,
        shade: ShadeResult | None = None,  # this state's lighting when already computed (:meth:`shade`)
    ) -> list[FrameOutput]:
        """Render ``state`` for each camera in this model's mode."""
        bg = torch.tensor(np.asarray(background, np.float32))
        if self.mode == "off":
            return [
                FrameOutput(_plain(self.scene, state, cam, bg, self.backend, self.supersample), None) for cam in cameras
            ]
        shade = shade or self.shade(state, self.light(light_direction))
        out = []
        for cam in cameras:
            gb = render_gbuffers(self.relighting, self.scene, state, cam, shade, backend=self.backend,
                                 supersample=self.supersample)  # fmt: skip
            image = apply_world_model(self.mode, gb, self.net, background)
            out.append(FrameOutput(image, gb if keep_gbuffers else None))
        return out

    def images(self, state: SplatState, cameras: list[Camera], **kwargs) -> list[np.ndarray]:
        """:meth:`render` returning only the images."""
        return [f.image for f in self.render(state, cameras, **kwargs)]


def apply_world_model(
    mode: str,
    gbuffers: GBuffers,
    net: ResidualNet | None = None,
    background=(0.0, 0.0, 0.0),
) -> np.ndarray:  # [H, W, 3] float32 in [0, 1]
    """Turn one camera's G-buffers into the image of ``mode`` ("relight" or "full"; "full" needs ``net``).

    The entry point for renderers that make their own G-buffers (e.g. the viewer): with
    ``mode="relight"`` the relit colour over the background; with ``"full"`` the gated residual.
    """
    bg = torch.tensor(np.asarray(background, np.float32))
    if mode == "relight" or (mode == "full" and net is None):
        color, alpha = gbuffers.relit, gbuffers.alpha
    elif mode == "full":
        res = residual_output(net, gbuffers)
        color, alpha = res.color, res.alpha
    elif mode == "off":
        if gbuffers.baked is None:
            raise ShapeError("apply_world_model: mode 'off' needs G-buffers rendered with baked=True")
        color, alpha = gbuffers.baked, gbuffers.alpha
    else:
        raise ShapeError(f"apply_world_model: mode must be one of {', '.join(MODES)}; got {mode!r}")
    return (color + (1.0 - alpha) * bg).clamp(0.0, 1.0).numpy()


def _plain(scene: Scene, state: SplatState, cam: Camera, bg: torch.Tensor, backend: str | None,
           supersample: int | None = None) -> np.ndarray:  # fmt: skip
    from render.rasterize import rasterize
    from render.supersample import resolve, supersampled

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    m, q, s, o = with_extra(state.means, state.quats, state.scales, state.opacities, state.extra)
    c = state.view_colors(cam.position)
    if len(m) > len(c):  # spawned meshes, their own colour
        c = np.concatenate([c, np.clip(state.extra.colors, 0.0, 1.0)])
    k, big = supersampled(supersample, scene, cam, state.means)
    res = rasterize(t(m), t(q), t(s), t(o), t(c), t(big.viewmat[None]), t(big.K[None]), big.width, big.height,
                    backgrounds=bg[None], backend=backend)  # fmt: skip
    return resolve(res.colors[0], k).clamp(0.0, 1.0).numpy()


def resolve_mode(mode: str | None, light_direction) -> str:
    """The ``--world-model`` to use: as given, else ``full`` with a light edit and ``off`` without."""
    if mode is None:
        return "full" if light_direction is not None else "off"
    if mode not in MODES:
        raise ShapeError(f"--world-model: must be one of {', '.join(MODES)}; got {mode!r}")
    if mode == "off" and light_direction is not None:
        log.warning("--light-direction with --world-model off: the light is baked into the splats, the edit "
                    "changes nothing (use relight or full)")  # fmt: skip
    return mode


def world_model_views(
    scene: Scene,
    cameras: list[Camera],
    mode: str,
    light_direction=None,  # towards the light, world frame
    *,
    background=(0.0, 0.0, 0.0),
    size: tuple[int, int] | None = None,  # (width, height) to render every view at
    backend: str | None = None,
    notify: Callable[[str], None] | None = None,
    supersample: int | None = None,  # render.supersample; None: as the capture needs
):  # -> Iterator[np.ndarray] [H, W, 3] uint8
    """Render the scene at rest from each camera through the world model (``hybrid render``)."""
    wm = WorldModel(scene, mode, backend=backend, notify=notify, supersample=supersample)
    state = SplatState.rest(scene)
    shade = wm.shade(state, wm.light(light_direction)) if wm.mode != "off" else None
    for cam in cameras:
        if size is not None:
            cam = cam.resized(*size)
        image = wm.images(state, [cam], background=background, shade=shade)[0]
        yield (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
