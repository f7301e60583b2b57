"""Per-scene self-supervised training of the residual, with augmentations that imitate edits.

Truth is what the capture shows: the scene rendered unedited at its capture cameras (or the
capture frames themselves when given). Each training sample edits the scene where that truth
still holds:

- **blob removal**: splats inside a few random balls vanish and are marked as moved, as if an
  object had left; where coverage was lost the target is the unedited picture, so the network
  learns to fill holes from their context (elsewhere the target is its input: revealed real
  geometry must stay);
- **shadow perturbation**: the capture visibility is recomputed from a light turned by a few
  degrees, so the albedo carries shadow-edge errors like those a real estimate leaves; the
  target is the unedited picture, so the network learns to clean halos along shadow edges.

The network sees exactly what it sees at run time (:func:`hybrid.world_model.residual.network_input`).

By default (``TrainConfig.init = "prior"``, ``steps`` unset) none of this runs: the light is fitted
and the residual is the shipped prior (:mod:`hybrid.world_model.prior`), trained on simulated
interventions where the truth after an edit is known. Fine-tuning it on these samples made the
benchmark's pushes worse (docs/world-model.md), so it is opt-in (``steps > 0``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from hybrid.world_model.gbuffers import SplatState, render_gbuffers
from hybrid.world_model.model import WEIGHTS_VERSION
from hybrid.world_model.relight import Relighting, dc_colors, shading, shadow_visibility
from hybrid.world_model.residual import ResidualNet, network_input
from scenes.errors import SceneError, ShapeError
from scenes.scene import Camera, Light, Scene

__all__ = ["TrainConfig", "TrainResult", "train_world_model", "world_model_weights"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How the residual is trained: by default the shipped prior is kept as is (``steps`` 0); from scratch,
    500 steps take about 20 s on two CPU cores for the sample scene."""

    steps: int | None = None  # optimiser steps on the capture's samples; None: 0 from the prior, 500 from scratch
    views: int = 12  # capture cameras used (evenly spread)
    scale: float = 0.5  # training images are the capture cameras scaled by this
    samples_per_view: int = 3  # augmented edits per view
    crop: int = 64  # training crop side, pixels
    batch: int = 8  # crops per step
    lr: float = 3e-3  # Adam learning rate (cosine decay)
    width: int = 16  # network width (channels of the first level)
    blob_radius: tuple[float, float] = (0.5, 1.3)  # removed balls' radius, in object half-sizes
    shadow_jitter_deg: tuple[float, float] = (2.0, 6.0)  # light turned by this much for shadow perturbation
    threads: int = 1  # torch CPU threads while training (on a shared 2-core machine 1 is several times faster)
    seed: int = 0
    init: str = "prior"  # "prior": start from the shipped prior (hybrid/world_model/prior.safetensors); "scratch"

    @property
    def train_steps(self) -> int:
        """The optimiser steps this config runs (``steps``, or the init's default)."""
        return self.steps if self.steps is not None else (0 if self.init == "prior" else 500)


@dataclass(frozen=True, eq=False)
class TrainResult:
    """The trained weights (for ``Scene.weights["world_model"]``) and how training went."""

    weights: dict  # tensor name -> np.ndarray
    relighting: Relighting
    net: ResidualNet
    losses: tuple[float, ...]  # mean gated L1 of the training crops per 10 % of the steps
    baseline_loss: float  # gated L1 over the whole training samples with the network off (hole fill only)
    seconds: float
    samples: int
    fitted_loss: float = float("nan")  # the same with the trained network
    network_used: bool = True  # False: it did not beat the hole fill and was switched off (zero output)
    init: str = "scratch"  # what training started from: "prior" or "scratch"


def world_model_weights(net: ResidualNet, light: Light, shadow_strength: float = 1.0,
                        static_casts: bool = True) -> dict[str, np.ndarray]:  # fmt: skip
    """The tensors saved as ``weights/world_model.safetensors``."""
    w = net.state_arrays()
    w["light.shadow_strength"] = np.asarray([shadow_strength], np.float64)
    w["light.static_casts"] = np.asarray([1.0 if static_casts else 0.0], np.float64)
    w["light.direction"] = np.asarray(light.direction, np.float64)
    w["light.color"] = np.asarray(light.color, np.float64)
    w["light.ambient"] = np.asarray(light.ambient, np.float64)
    w["light.intensity"] = np.asarray([light.intensity], np.float64)
    w["config.width"] = np.asarray([net.width], np.int64)
    w["config.version"] = np.asarray([WEIGHTS_VERSION], np.int64)
    return w


def _object_half_size(scene: Scene) -> float:
    sizes = []
    for obj in scene.objects:
        if obj.splat_indices.size:
            pts = scene.splats.means[obj.splat_indices]
            sizes.append(float(np.linalg.norm(pts.max(0) - pts.min(0)) / 2))
    if sizes:
        return float(np.median(sizes))
    lo, hi = np.percentile(scene.splats.means, [2, 98], axis=0)
    return float(0.05 * np.linalg.norm(hi - lo))


def _visible(means: np.ndarray, cam: Camera) -> np.ndarray:
    u, v, z = cam.project(means)
    return (z > 0.05) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)


def train_world_model(
    scene: Scene,
    config: TrainConfig | None = None,
    *,
    light: Light | None = None,  # the capture light when known; estimated otherwise
    relighting: Relighting | None = None,  # a precomputed explicit layer
    targets: list[np.ndarray] | None = None,  # capture frames [H, W, 3] in [0, 1], one per capture camera
    backend: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,  # (stage, done, total)
) -> TrainResult:
    """Fit the explicit layer (unless given) and train the residual on edit-imitating augmentations."""
    config = config or TrainConfig()
    start = time.perf_counter()
    if config.init not in ("prior", "scratch"):
        raise ShapeError(f"TrainConfig.init: 'prior' or 'scratch', got {config.init!r}")
    if targets is not None and len(targets) != len(scene.capture_cameras):
        raise SceneError(f"train_world_model: {len(targets)} target frames for {len(scene.capture_cameras)} cameras")
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    report = progress or (lambda stage, done, total: None)
    if relighting is None:
        relighting = Relighting.fit(scene, light, backend=backend, seed=config.seed,
                                    progress=lambda d, t: report("light", d, t))  # fmt: skip
    rel = relighting
    init = _initial_network(config)
    if init is None and config.init == "prior" and config.steps is None:  # no usable prior: train as from scratch
        config = replace(config, steps=TrainConfig(init="scratch").train_steps)
    if init is not None and config.train_steps == 0:  # the prior as shipped: nothing to fit on the capture
        weights = world_model_weights(init, rel.light, rel.shadow_strength, rel.static_casts)
        log.info("world model: light fitted, the residual is the shipped prior (not fine-tuned)")
        nan = float("nan")
        return TrainResult(weights, rel, init, (), nan, time.perf_counter() - start, 0, nan, True, "prior")
    if not scene.capture_cameras:
        raise SceneError("train_world_model: the scene has no capture cameras to train the residual on (an "
                         "imported splat file?); use the shipped prior as it is (--init prior, no --steps)")  # fmt: skip
    rest = SplatState.rest(scene)
    s = scene.splats
    shade_rest = rel.shade(rest.means, rest.quats, rest.scales, rest.opacities, backend=backend)
    normals_rest = rel.normals(rest.quats)
    dc = dc_colors(s.sh)
    half = _object_half_size(scene)
    n_cams = len(scene.capture_cameras)
    pick = np.unique(np.linspace(0, n_cams - 1, min(config.views, n_cams)).round().astype(int))
    total = len(pick) * config.samples_per_view
    samples = []
    for v, ci in enumerate(pick):
        cam = scene.capture_cameras[ci].scaled(config.scale)
        truth = render_gbuffers(rel, scene, rest, cam, shade_rest, backend=backend)
        if targets is not None:
            frame = torch.from_numpy(np.asarray(targets[ci], np.float32))
            frame = F.interpolate(frame.permute(2, 0, 1)[None], size=(cam.height, cam.width), mode="area")[0]
            target_full, target_alpha = frame.permute(1, 2, 0), torch.ones_like(truth.alpha)
        else:
            target_full, target_alpha = truth.relit, truth.alpha
        vis_ids = np.nonzero(_visible(s.means, cam) & (rest.opacities > 0.3))[0]
        for k in range(config.samples_per_view):
            kind = ("blob", "shadow", "both")[(v * config.samples_per_view + k) % 3]
            state, model = rest, rel
            if kind in ("blob", "both") and len(vis_ids):
                removed = np.zeros(len(s), bool)
                for _ in range(int(rng.integers(1, 4))):
                    c = s.means[rng.choice(vis_ids)]
                    r = half * rng.uniform(*config.blob_radius)
                    removed |= np.linalg.norm(s.means - c, axis=1) < r
                state = replace(rest, opacities=np.where(removed, 0.0, rest.opacities).astype(np.float32),
                                moved=removed)  # fmt: skip
            if kind in ("shadow", "both"):
                model = _perturbed(rel, s, normals_rest, dc, rng, config.shadow_jitter_deg, backend)
            gb = render_gbuffers(model, scene, state, cam, shade_rest, backend=backend)
            x, base, gate = network_input(gb)
            ch = lambda t: t.permute(2, 0, 1).unsqueeze(0)  # noqa: E731
            lost = ((ch(target_alpha) - ch(gb.alpha)) / ch(target_alpha).clamp_min(1e-3)).clamp(0.0, 1.0)
            lost = torch.where(ch(gb.disoccluded) > 0.05, lost, torch.zeros_like(lost))
            relit_in = ch(gb.relit)
            if kind == "blob":
                target = relit_in + lost * (ch(target_full) - relit_in)
            else:  # the shading is wrong everywhere the gate is open: the unedited picture is the truth there
                keep = torch.where(ch(gb.moved) > 0.5, torch.zeros_like(lost), torch.ones_like(lost))
                target = relit_in + torch.maximum(lost, keep * gate) * (ch(target_full) - relit_in)
            samples.append((x, base, gate, target))
            report("samples", len(samples), total)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, config.threads))
    try:
        net, losses = fit_residual(samples, config, rng, report, net=init)
    finally:
        torch.set_num_threads(threads)
    net.eval()
    baseline = gated_l1(samples)
    fitted = gated_l1(samples, net)
    used = fitted < baseline
    if not used:  # worse than the hole fill even on the views it was trained on: the network is switched off
        with torch.no_grad():
            net.head.weight.zero_()
            net.head.bias.zero_()
        log.warning("the residual network (gated L1 %.4f) does not beat the hole fill (%.4f) on its training views: "
                    "it is switched off, `full` renders relight with the hole fill", fitted, baseline)  # fmt: skip
    weights = world_model_weights(net, rel.light, rel.shadow_strength, rel.static_casts)
    seconds = time.perf_counter() - start
    log.info("world model trained in %.1f s: gated L1 on the training views %.4f with the network, %.4f hole fill only",
             seconds, fitted, baseline)  # fmt: skip
    return TrainResult(weights, rel, net, tuple(losses), baseline, seconds, len(samples), fitted, used,
                       "scratch" if init is None else "prior")  # fmt: skip


def _initial_network(config: TrainConfig) -> ResidualNet | None:
    """The shipped prior when ``config.init == "prior"`` and it fits ``config.width``; None: random weights."""
    if config.init != "prior":
        return None
    from hybrid.world_model.prior import load_prior

    net = load_prior()
    if net is not None and net.width != config.width:
        log.warning("the world-model prior has width %d, training asks for %d: training from random weights",
                    net.width, config.width)  # fmt: skip
        return None
    return net


def gated_l1(samples: list, net: ResidualNet | None = None) -> float:
    """Mean gated L1 over whole samples: of the base image (hole fill) alone, or with the network's correction."""
    vals = []
    with torch.no_grad():
        for x, b, g, t in samples:
            out = b if net is None else b + g * net(x)
            vals.append(((out - t).abs() * g).sum().item() / max(g.sum().item(), 1.0))
    return float(np.mean(vals))


def fit_residual(
    samples: list, config: TrainConfig, rng: np.random.Generator, report, net: ResidualNet | None = None
) -> tuple[ResidualNet, list[float]]:
    """Train ``net`` (a new one of ``config.width`` when None) on ``(x, base, gate, target)`` samples: gated L1 on crops."""
    net = ResidualNet(config.width) if net is None else net
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, config.train_steps))
    losses, window = [], []
    for step in range(config.train_steps):
        xs, bs, gs, ts = [], [], [], []
        for _ in range(config.batch):
            x, base, gate, target = samples[int(rng.integers(len(samples)))]
            y0, x0 = _crop_origin(gate, config.crop, rng)
            sl = (..., slice(y0, y0 + config.crop), slice(x0, x0 + config.crop))
            xs.append(x[sl])
            bs.append(base[sl])
            gs.append(gate[sl])
            ts.append(target[sl])
        x, base, gate, target = (torch.cat(a) for a in (xs, bs, gs, ts))
        out = base + gate * net(x)
        loss = ((out - target).abs() * gate).sum() / gate.sum().clamp_min(1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        window.append(float(loss.detach()))
        if len(window) >= max(1, config.train_steps // 10):
            losses.append(float(np.mean(window)))
            window = []
        report("train", step + 1, config.train_steps)
    if window:
        losses.append(float(np.mean(window)))
    return net, losses


def _crop_origin(gate: torch.Tensor, crop: int, rng: np.random.Generator) -> tuple[int, int]:
    h, w = gate.shape[-2:]
    crop_h, crop_w = min(crop, h), min(crop, w)
    ys, xs = torch.nonzero(gate[0, 0] > 0.5, as_tuple=True)
    if len(ys) and rng.random() < 0.85:
        i = int(rng.integers(len(ys)))
        cy, cx = int(ys[i]), int(xs[i])
    else:
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0 = int(np.clip(cy - crop_h // 2, 0, h - crop_h))
    x0 = int(np.clip(cx - crop_w // 2, 0, w - crop_w))
    return y0, x0


def _perturbed(rel: Relighting, splats, normals, dc, rng, jitter_deg, backend) -> Relighting:
    """The explicit layer with its capture visibility taken from a light turned by a few degrees."""
    d = np.asarray(rel.light.direction, np.float64)
    axis = np.cross(d, rng.normal(size=3))
    axis /= np.linalg.norm(axis)
    ang = np.radians(rng.uniform(*jitter_deg))
    d2 = d * np.cos(ang) + np.cross(axis, d) * np.sin(ang)
    if d2[2] < 0.05:
        d2 = d
    vis = shadow_visibility(splats.means, splats.unit_quats, splats.scales, splats.opacities, normals, d2, rel.frame,
                            backend=backend, groups=rel.shadow_groups, static_casts=rel.static_casts)  # fmt: skip
    S = shading(normals, vis, rel.light, rel.shadow_strength)
    albedo = np.clip(dc / np.maximum(S, 1e-3), 0.0, 4.0).astype(np.float32)
    return replace(rel, albedo=albedo, vis_capture=vis, shading_capture=S, vis_map_capture=vis)
