"""Rendering below the resolution the splats were fitted at: supersample, then box-filter.

Splats fitted to capture frames carry gsplat's 0.3 px² dilation in *capture* pixels: that is
what gives splats smaller than a pixel their body in the frames they were fitted to. Drawn
for a camera that sees them at a coarser sampling (a lower resolution, or farther away), the
dilation stays 0.3 px² in the new, larger pixels, so every small splat grows and nothing is
filtered: the picture comes out too dense and aliased. On the world-model benchmark's lifted
scenes (fitted at 320x240, scored at 160x120 against TinyRenderer supersampled 2x) the plain
render is 2.3 dB below the same splats drawn at 320x240 and box-filtered (25.98 vs 28.28 dB
mean over 9 views; docs/design.md, Rasterization).

:class:`CaptureSampling` holds how finely the capture cameras sampled the scene (pixels per
metre at a sample of splats: the median over the capture cameras that see each, the pixel size
its fit was a compromise of); :meth:`CaptureSampling.factor` is then the integer supersampling factor
that draws a camera's view at least as finely as the capture did; :func:`resolve` box-filters
the supersampled buffers back to the camera's pixels (pixel centres at ``i + 0.5``: a ``k``-times
camera's ``k x k`` block covers exactly one pixel).

The renderers that draw a scene for its cameras (``World.render``, ``WorldModel``,
``render_gbuffers``, ``hybrid render``) take ``supersample``: ``None`` (the default, "auto",
:meth:`CaptureSampling.factor`), a fixed factor, or 1 (drawn as is). ``render.rasterize`` itself
draws exactly the camera it is given. The viewer's GL compositor draws at window size, without
supersampling (docs/design.md, Rasterization).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scenes import Camera
from scenes.scene import capture_pixels_per_metre

__all__ = [
    "CaptureSampling",
    "scene_sampling",
    "supersample_factor",
    "supersampled",
    "parse_supersample",
    "resolve",
    "resolve_max",
    "MAX_FACTOR",
    "MAX_PIXELS",
]

MAX_FACTOR = 4  # at most 4x4 samples per pixel
MAX_PIXELS = 8_294_400  # a supersampled image has at most this many pixels (four 1920x1080 frames)
SAMPLE_SPLATS = 4096  # splats the sampling is measured at
TOLERANCE = 0.25  # drawn up to 1.25x coarser than the capture before supersampling starts


@dataclass(frozen=True, eq=False)
class CaptureSampling:
    """How finely the capture sampled a sample of the scene's splats (pixels per metre)."""

    index: np.ndarray  # [M] splat indices sampled
    rate: np.ndarray  # [M] focal / depth, the median over the capture cameras that see the splat's centre; 0: none

    @classmethod
    def of(cls, means: np.ndarray, cameras, max_points: int = SAMPLE_SPLATS) -> CaptureSampling | None:
        """The sampling of ``means`` by ``cameras`` (``None`` without cameras or splats)."""
        means = np.asarray(means, np.float64)
        if not len(cameras) or not len(means):
            return None
        index = np.unique(np.linspace(0, len(means) - 1, min(max_points, len(means))).astype(np.int64))
        return cls(index, capture_pixels_per_metre(cameras, means[index]))

    def factor(self, camera: Camera, means: np.ndarray, max_factor: int = MAX_FACTOR,
               max_pixels: int = MAX_PIXELS) -> int:  # fmt: skip
        """The supersampling factor (1..``max_factor``) that draws ``camera`` at least as finely as the capture.

        ``means``: the splats' positions now (``[N, 3]``, the same splats as at :meth:`of`): moved objects
        are measured where they are. The median over the sampled splats in view decides; a view with fewer
        than 16 of them is drawn as is.
        """
        means = np.asarray(means)
        if len(means) <= int(self.index[-1]):
            return 1
        now = camera.pixels_per_metre(means[self.index])
        ok = (now > 0) & (self.rate > 0)
        if int(ok.sum()) < 16:
            return 1
        coarser = float(np.median(self.rate[ok] / now[ok]))  # capture pixels per camera pixel
        k = int(np.clip(np.ceil(coarser - TOLERANCE), 1, max_factor))
        while k > 1 and k * k * camera.width * camera.height > max_pixels:
            k -= 1
        return k


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def scene_sampling(scene) -> CaptureSampling | None:
    """:meth:`CaptureSampling.of` for a scene's splats at rest and its capture cameras (cached per scene)."""
    if scene not in _CACHE:
        _CACHE[scene] = CaptureSampling.of(scene.splats.means, scene.capture_cameras)
    return _CACHE[scene]


def supersample_factor(supersample: int | None, scene, camera: Camera, means: np.ndarray) -> int:
    """The factor to draw ``camera`` at: ``supersample`` as given, or with ``None`` ("auto") as the capture needs."""
    if supersample is not None:
        if not 1 <= int(supersample) <= MAX_FACTOR:
            raise ValueError(f"supersample: 1..{MAX_FACTOR} or None (auto), got {supersample!r}")
        return int(supersample)
    sampling = scene_sampling(scene)
    return 1 if sampling is None else sampling.factor(camera, means)


def supersampled(supersample: int | None, scene, camera: Camera, means: np.ndarray) -> tuple[int, Camera]:
    """``(k, the camera k times finer)`` (:func:`supersample_factor`); draw with it, then :func:`resolve` by ``k``."""
    k = supersample_factor(supersample, scene, camera, means)
    return k, camera.scaled(k) if k > 1 else camera


def parse_supersample(text: str) -> int | None:
    """``--supersample``: ``"auto"`` (None) or a factor ``1``..``4``; raises ``ValueError`` saying what is allowed."""
    t = str(text).strip().lower()
    if t == "auto":
        return None
    if t.isdigit() and 1 <= int(t) <= MAX_FACTOR:
        return int(t)
    raise ValueError(f"--supersample: 'auto' or a factor 1..{MAX_FACTOR}, got {text!r}")


def resolve(x: torch.Tensor, k: int) -> torch.Tensor:
    """``[k H, k W, C]`` -> ``[H, W, C]``: the mean of each ``k x k`` block (a box filter; differentiable)."""
    if k == 1:
        return x
    return F.avg_pool2d(x.permute(2, 0, 1)[None], k)[0].permute(1, 2, 0).contiguous()


def resolve_max(x: torch.Tensor, k: int) -> torch.Tensor:
    """``[k H, k W, C]`` -> ``[H, W, C]``: the largest value of each ``k x k`` block (masks: any sample set)."""
    if k == 1:
        return x
    return F.max_pool2d(x.permute(2, 0, 1)[None], k)[0].permute(1, 2, 0).contiguous()
