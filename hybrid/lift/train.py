"""Optimise Gaussian splats to a set of posed images.

Loss ``(1 - l) * L1 + l * (1 - SSIM)`` over the pixels not masked as overlays, with an
optional per-frame affine colour correction (a 3x4 matrix per training frame, kept near
the identity) that absorbs exposure and colour flicker of generated videos so it is not
baked into the splats. Densification follows the 3DGS recipe as gsplat's
``DefaultStrategy`` does (our own implementation on CPU; gsplat's own on CUDA when it is
installed): screen-space gradients accumulated over ``refine_every`` steps; small splats
with large gradients are cloned, large ones split in two; transparent (and, later, huge)
ones pruned. The SH degree grows by one every ``sh_interval`` steps. Early steps run at a
lower resolution (cheap on CPU, and coarse structure first).

Everything random draws from one seeded ``torch.Generator``; a checkpoint (safetensors +
JSON, never pickle) holds the parameters, the optimiser moments, the densification
statistics and the generator state, so ``--resume`` continues the same run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hybrid.lift.errors import Interrupted, LiftError
from scenes.scene import Camera
from scenes.splats import Splats, num_sh_coeffs, rgb_to_sh0

__all__ = [
    "TrainOptions",
    "TrainData",
    "TrainResult",
    "Trainer",
    "Interrupted",
    "ssim",
    "psnr",
    "photometric_loss",
    "init_from_points",
    "split_heldout",
]

log = logging.getLogger(__name__)

PARAM_NAMES = ("means", "scales", "quats", "opacities", "sh0", "shN")


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings (learning rates follow gsplat's simple_trainer)."""

    steps: int = 2000  # optimisation steps (one training image each)
    sh_degree: int = 1  # highest SH degree
    sh_interval: int = 500  # raise the SH degree by one every this many steps
    ssim_lambda: float = 0.2  # weight of (1 - SSIM) in the loss
    lowres_until: float = 0.3  # fraction of the steps run at half resolution (0: none)
    lr_means: float = 1.6e-4  # times the scene scale, decays exponentially to 1% at the end
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    init_opacity: float = 0.1
    init_scale: float = 1.0  # times the mean distance to the 3 nearest points
    refine_start: int = 100  # first densification step
    refine_stop: float = 0.7  # fraction of the steps after which the splat set is frozen
    refine_every: int = 100  # densify/prune interval in steps
    reset_every: int = 3000  # opacity reset interval (steps); only when the run is long enough
    grow_grad2d: float = 2e-4  # mean NDC gradient above which a splat is cloned or split
    grow_scale3d: float = 0.01  # splats smaller than this times the scene scale are cloned, larger split
    prune_opacity: float = 0.005  # splats more transparent than this are removed
    prune_scale3d: float = 0.1  # after a reset, splats larger than this times the scene scale are removed
    max_splats: int = 400_000  # no growth beyond this
    appearance: bool = True  # learn a per-frame affine colour correction
    appearance_lr: float = 1e-3
    appearance_reg: float = 1e-2  # pull of the correction towards the identity
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # colour behind the splats
    seed: int = 0
    backend: str | None = None  # rasterizer backend (None: best for the device)
    device: str = "cpu"


@dataclass(frozen=True, eq=False)
class TrainData:
    """Posed training and held-out images."""

    images: np.ndarray  # [T, H, W, 3] uint8
    cameras: tuple[Camera, ...]  # [T]
    train: np.ndarray  # [Tt] indices of the training frames
    heldout: np.ndarray  # [Th] indices of the held-out frames
    mask: np.ndarray | None = None  # [H, W] bool, True where pixels are ignored (overlays)


@dataclass(frozen=True, eq=False)
class TrainResult:
    """The optimised splats and what happened."""

    splats: Splats
    steps: int
    seconds: float
    history: list = field(default_factory=list)  # [(step, loss, psnr, num_splats)] every 50 steps
    color_correction: np.ndarray | None = None  # [Tt, 3, 4] learned per-frame affine (training frames)


def split_heldout(T: int, every: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``(train, heldout)`` indices: every ``every``-th frame (0, 8, 16, ...) is held out."""
    idx = np.arange(T)
    if T < 2:
        return idx, idx[:0]
    held = idx[idx % every == 0] if every > 0 else idx[:0]
    return idx[idx % every != 0] if every > 0 else idx, held


# ------------------------------------------------------------------------------------- metrics
_WINDOWS: dict = {}


def _gauss_1d(size: int = 11, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(a: Tensor, b: Tensor) -> Tensor:
    """Per-pixel SSIM (11x11 Gaussian window, sigma 1.5) of [H, W, 3] images in [0, 1] -> [H, W].

    The five local moments are filtered in one separable pass (15 channels, 11 + 11 taps).
    """
    key = (a.device, a.dtype)
    if key not in _WINDOWS:
        g = _gauss_1d().to(a)
        _WINDOWS[key] = (g.view(1, 1, -1, 1).repeat(15, 1, 1, 1), g.view(1, 1, 1, -1).repeat(15, 1, 1, 1))
    wv, wh = _WINDOWS[key]
    x = a.permute(2, 0, 1)
    y = b.permute(2, 0, 1)
    stack = torch.cat([x, y, x * x, y * y, x * y])[None]  # [1, 15, H, W]
    pad = wv.shape[2] // 2
    stack = F.pad(stack, (pad, pad, pad, pad), mode="reflect")
    m = F.conv2d(F.conv2d(stack, wv, groups=15), wh, groups=15)[0]
    mu_x, mu_y, exx, eyy, exy = m.split(3)
    sxx, syy, sxy = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean(0)


def ssim(a: Tensor, b: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean SSIM of two [H, W, 3] images in [0, 1] over the ``valid`` [H, W] pixels."""
    m = ssim_map(a, b)
    return m.mean() if valid is None else m[valid].mean()


def psnr(a: Tensor, b: Tensor, valid: Tensor | None = None) -> float:
    """PSNR in dB of [H, W, 3] images in [0, 1] over the ``valid`` [H, W] pixels."""
    d = (a.clamp(0, 1) - b) ** 2
    mse = d.mean() if valid is None else d[valid].mean()
    return float(-10.0 * torch.log10(mse.clamp_min(1e-12)))


def photometric_loss(pred: Tensor, target: Tensor, valid: Tensor | None, ssim_lambda: float) -> Tensor:
    """``(1 - l) * L1 + l * (1 - SSIM)`` of [H, W, 3] images over the ``valid`` [H, W] pixels.

    Invalid pixels of the target are replaced by the (detached) prediction, so they add no error
    and the SSIM windows around them see no trace of what was masked.
    """
    if valid is not None:
        target = torch.where(valid[..., None], target, pred.detach())
    l1 = (pred - target).abs()
    l1 = l1.mean() if valid is None else l1[valid].mean()
    return (1 - ssim_lambda) * l1 + ssim_lambda * (1 - ssim(pred, target, valid))


# ------------------------------------------------------------------------------------- init
def init_from_points(
    points: np.ndarray,  # [P, 3]
    colors: np.ndarray,  # [P, 3] in [0, 1]
    opts: TrainOptions,
) -> dict[str, Tensor]:
    """Initial parameters: one isotropic splat per point, sized by the distance to its neighbours."""
    from scipy.spatial import cKDTree

    P = len(points)
    if P < 4:
        raise LiftError(f"only {P} initial points; the splats need at least 4 (a reconstruction with more texture)")
    tree = cKDTree(points)
    d, _ = tree.query(points, k=4)
    dist = np.sqrt((d[:, 1:] ** 2).mean(1)).clip(1e-7)
    K = num_sh_coeffs(opts.sh_degree)
    sh0 = rgb_to_sh0(np.clip(colors, 0, 1)).astype(np.float32)[:, None, :]
    return {
        "means": torch.tensor(points, dtype=torch.float32),
        "scales": torch.log(torch.tensor(dist * opts.init_scale, dtype=torch.float32))[:, None].repeat(1, 3),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(P, 1),
        "opacities": torch.full((P,), math.log(opts.init_opacity / (1 - opts.init_opacity))),
        "sh0": torch.from_numpy(sh0),
        "shN": torch.zeros(P, K - 1, 3),
    }


def _scene_scale(cameras) -> float:
    centres = np.array([c.position for c in cameras])
    return float(1.1 * np.linalg.norm(centres - centres.mean(0), axis=1).max()) or 1.0


def _quat_to_rotmat(q: Tensor) -> Tensor:  # [N, 4] wxyz -> [N, 3, 3]
    q = F.normalize(q, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(-1, 3, 3)  # fmt: skip


# ------------------------------------------------------------------------------------- densification
class CpuStrategy:
    """Clone / split / prune as 3DGS does (the behaviour of gsplat's DefaultStrategy), for any device."""

    def __init__(self, opts: TrainOptions, scene_scale: float, steps: int) -> None:
        self.o = opts
        self.scene_scale = scene_scale
        self.refine_stop = int(opts.refine_stop * steps)
        self.reset_every = opts.reset_every if opts.reset_every < self.refine_stop else 0

    def initialize_state(self, n: int) -> dict[str, Tensor]:
        return {"grad2d": torch.zeros(n), "count": torch.zeros(n)}

    def step_post_backward(self, params, optimizers, state, step: int, info: dict, generator) -> dict:
        """Accumulate gradient statistics; refine at the interval. Returns counts of what changed."""
        if step >= self.refine_stop:
            return {}
        grads = info["means2d"].grad
        if grads is not None:
            g = grads.detach().clone()
            g[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
            g[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
            visible = (info["radii"] > 0).all(-1)  # [C, N]
            norms = g.norm(dim=-1)  # [C, N]
            state["grad2d"] += (norms * visible).sum(0).to(state["grad2d"])
            state["count"] += visible.sum(0).to(state["count"])
        out = {}
        if step > self.o.refine_start and step % self.o.refine_every == 0:
            out = self._refine(params, optimizers, state, step, generator)
            state["grad2d"] = torch.zeros(len(params["means"]))
            state["count"] = torch.zeros(len(params["means"]))
        if self.reset_every and step > 0 and step % self.reset_every == 0:
            self._reset_opacity(params, optimizers)
        return out

    @torch.no_grad()
    def _refine(self, params, optimizers, state, step: int, generator) -> dict:
        o = self.o
        n = len(params["means"])
        avg = state["grad2d"] / state["count"].clamp_min(1)
        high = avg > o.grow_grad2d
        big = torch.exp(params["scales"]).max(-1).values > o.grow_scale3d * self.scene_scale
        clone = high & ~big
        split = high & big
        if n + int(clone.sum()) + int(split.sum()) > o.max_splats:
            clone[:] = False
            split[:] = False
        n_clone, n_split = int(clone.sum()), int(split.sum())
        if n_clone:
            _append(params, optimizers, {k: params[k][clone] for k in PARAM_NAMES})
        if n_split:
            sel = torch.nonzero(split).squeeze(1)
            scales = torch.exp(params["scales"][sel])
            R = _quat_to_rotmat(params["quats"][sel])
            noise = torch.randn(2, len(sel), 3, generator=generator)
            offsets = torch.einsum("nij,bnj->bni", R, scales[None] * noise)  # [2, S, 3]
            new = {k: params[k][sel].repeat(2, *([1] * (params[k].dim() - 1))) for k in PARAM_NAMES}
            new["means"] = (params["means"][sel][None] + offsets).reshape(-1, 3)
            new["scales"] = torch.log(scales / 1.6).repeat(2, 1)
            keep = torch.ones(len(params["means"]), dtype=torch.bool)
            keep[sel] = False
            _select(params, optimizers, keep)
            _append(params, optimizers, new)
        opac = torch.sigmoid(params["opacities"])
        prune = opac < o.prune_opacity
        if self.reset_every and step > self.reset_every:
            prune |= torch.exp(params["scales"]).max(-1).values > o.prune_scale3d * self.scene_scale
        n_prune = int(prune.sum())
        if n_prune:
            _select(params, optimizers, ~prune)
        return {"cloned": n_clone, "split": n_split, "pruned": n_prune}

    @torch.no_grad()
    def _reset_opacity(self, params, optimizers) -> None:
        limit = 2 * self.o.prune_opacity
        params["opacities"].data.clamp_(max=math.log(limit / (1 - limit)))
        st = optimizers["opacities"].state.get(params["opacities"])
        if st:
            st["exp_avg"].zero_()
            st["exp_avg_sq"].zero_()


def _replace(params, optimizers, name: str, new_value: Tensor, transform_state: Callable[[Tensor], Tensor]) -> None:
    old = params[name]
    p = torch.nn.Parameter(new_value.contiguous(), requires_grad=True)
    opt = optimizers[name]
    st = opt.state.pop(old, None)
    opt.param_groups[0]["params"] = [p]
    if st is not None:
        opt.state[p] = {k: (transform_state(v) if k != "step" else v) for k, v in st.items()}
    params[name] = p


def _select(params, optimizers, keep: Tensor) -> None:
    for k in PARAM_NAMES:
        _replace(params, optimizers, k, params[k].data[keep], lambda s, keep=keep: s[keep])


def _append(params, optimizers, new: dict[str, Tensor]) -> None:
    for k in PARAM_NAMES:
        extra = new[k]
        _replace(
            params,
            optimizers,
            k,
            torch.cat([params[k].data, extra]),
            lambda s, extra=extra: torch.cat([s, torch.zeros_like(extra)]),
        )


# ------------------------------------------------------------------------------------- trainer
class Trainer:
    """One optimisation run; :meth:`run` trains, :meth:`save_checkpoint` / :meth:`load_checkpoint` persist it."""

    def __init__(self, data: TrainData, init: dict[str, Tensor], opts: TrainOptions) -> None:
        self.o = opts
        self.data = data
        self.device = torch.device(opts.device)
        self.generator = torch.Generator().manual_seed(opts.seed)
        torch.manual_seed(opts.seed)
        self.scene_scale = _scene_scale([data.cameras[i] for i in data.train])
        self.params = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(v.to(self.device).contiguous()) for k, v in init.items()}
        )
        lrs = {
            "means": opts.lr_means * self.scene_scale, "scales": opts.lr_scales, "quats": opts.lr_quats,
            "opacities": opts.lr_opacities, "sh0": opts.lr_sh0, "shN": opts.lr_shN,
        }  # fmt: skip
        self.optimizers = {
            k: torch.optim.Adam([{"params": self.params[k], "lr": lrs[k], "name": k}], eps=1e-15) for k in PARAM_NAMES
        }
        self.means_lr0 = lrs["means"]
        n_train = len(data.train)
        self.color = torch.nn.Parameter(torch.eye(3, 4).repeat(n_train, 1, 1).to(self.device))  # [Tt, 3, 4]
        self.color_opt = torch.optim.Adam([self.color], lr=opts.appearance_lr)
        self.gsplat_strategy = None
        if self.device.type == "cuda" and (opts.backend in (None, "gsplat")):
            self.gsplat_strategy = _gsplat_strategy(opts, steps=opts.steps)
        self.strategy = CpuStrategy(opts, self.scene_scale, opts.steps)
        n = len(self.params["means"])
        if self.gsplat_strategy is not None:
            self.strategy_state = self.gsplat_strategy.initialize_state(scene_scale=self.scene_scale)
        else:
            self.strategy_state = self.strategy.initialize_state(n)
        self.step = 0
        self.history: list = []
        self.seconds = 0.0
        self._images = torch.from_numpy(data.images).to(self.device)  # uint8, converted per step
        self._valid = None if data.mask is None else torch.from_numpy(~data.mask).to(self.device)
        self._order: list[int] = []

    # ---------------------------------------------------------------- rendering
    def _camera_tensors(self, idx: int, factor: int) -> tuple[Tensor, Tensor, int, int]:
        cam = self.data.cameras[idx]
        V = torch.tensor(cam.viewmat, dtype=torch.float32, device=self.device)[None]
        K = torch.tensor(cam.K, dtype=torch.float32, device=self.device)
        W, H = cam.width, cam.height
        if factor > 1:
            K = K.clone()
            K[:2] /= factor
            W, H = W // factor, H // factor
        return V, K[None], W, H

    def render(self, idx: int, factor: int = 1, sh_degree: int | None = None):
        """Render frame ``idx`` (its camera) at 1/``factor`` resolution -> the rasterizer's result."""
        from render import rasterize

        p = self.params
        V, K, W, H = self._camera_tensors(idx, factor)
        sh = torch.cat([p["sh0"], p["shN"]], 1)
        bg = torch.tensor([self.o.background], dtype=torch.float32, device=self.device)
        degree = self.o.sh_degree if sh_degree is None else sh_degree
        return rasterize(
            p["means"],
            F.normalize(p["quats"], dim=-1),
            torch.exp(p["scales"]),
            torch.sigmoid(p["opacities"]),
            sh,
            V,
            K,
            W,
            H,
            sh_degree=degree,
            backgrounds=bg,
            backend=self.o.backend,
        )

    def _target(self, idx: int, factor: int) -> tuple[Tensor, Tensor | None]:
        img = self._images[idx].float() / 255.0
        valid = self._valid
        if factor > 1:
            H, W = img.shape[0] // factor * factor, img.shape[1] // factor * factor
            img = img[:H, :W].reshape(H // factor, factor, W // factor, factor, 3).mean((1, 3))
            if valid is not None:
                valid = valid[:H, :W].reshape(H // factor, factor, W // factor, factor).all(-1).all(1)
        return img, valid

    # ---------------------------------------------------------------- training
    def _next_frame(self) -> int:
        if not self._order:
            perm = torch.randperm(len(self.data.train), generator=self.generator).tolist()
            self._order = perm
        return self._order.pop()

    def run(self, progress: Callable[[dict], None] | None = None) -> TrainResult:
        """Train to ``opts.steps``; on Ctrl-C raise :class:`Interrupted` after the caller saved (see lift)."""
        o = self.o
        t_start = time.perf_counter() - self.seconds
        lowres_end = int(o.lowres_until * o.steps)
        last = {}
        while self.step < o.steps:
            step = self.step
            k = self._next_frame()
            idx = int(self.data.train[k])
            factor = 2 if step < lowres_end else 1
            degree = min(step // max(o.sh_interval, 1), o.sh_degree)
            # learning-rate schedule of the means: exponential decay to 1 %
            for g in self.optimizers["means"].param_groups:
                g["lr"] = self.means_lr0 * 0.01 ** (step / max(o.steps, 1))
            res = self.render(idx, factor, degree)
            if self.gsplat_strategy is not None:
                info = _gsplat_info(res)
                self.gsplat_strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, info)
            else:
                res.means2d.retain_grad()
            pred = res.colors[0]
            if o.appearance:
                A = self._corrections()[k]
                pred = pred @ A[:, :3].T + A[:, 3]
            target, valid = self._target(idx, factor)
            loss = photometric_loss(pred, target, valid, o.ssim_lambda)
            if o.appearance:
                loss = loss + o.appearance_reg * ((A - torch.eye(3, 4, device=self.device)) ** 2).sum()
            loss.backward()
            for opt in self.optimizers.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
            if o.appearance:
                self.color_opt.step()
                self.color_opt.zero_grad(set_to_none=True)
            info = {"means2d": res.means2d, "radii": res.radii, "width": res.colors.shape[2],
                    "height": res.colors.shape[1], "n_cameras": 1}  # fmt: skip
            if self.gsplat_strategy is not None:
                self.gsplat_strategy.step_post_backward(
                    self.params, self.optimizers, self.strategy_state, step, _gsplat_info(res), packed=False
                )
            else:
                changed = self.strategy.step_post_backward(
                    self.params, self.optimizers, self.strategy_state, step, info, self.generator
                )
                if changed:
                    log.debug("step %d: %s", step, changed)
            self.step += 1
            self.seconds = time.perf_counter() - t_start
            with torch.no_grad():
                last = {"step": self.step, "steps": o.steps, "loss": float(loss), "psnr": psnr(pred.detach(), target, valid),
                        "splats": len(self.params["means"]), "seconds": self.seconds}  # fmt: skip
            if self.step % 50 == 0 or self.step == o.steps:
                self.history.append([last["step"], round(last["loss"], 5), round(last["psnr"], 3), last["splats"]])
            if progress is not None:
                progress(last)
        return TrainResult(self.splats(), self.step, self.seconds, list(self.history),
                           self._corrections().detach().cpu().numpy() if o.appearance else None)  # fmt: skip

    def _corrections(self) -> Tensor:
        """[Tt, 3, 4] per-frame colour corrections, centred: their mean over the training frames is the identity.

        A correction common to every frame and the splats' colours trade off freely (the loss sees only
        their product), so uncentred the splats drift from the frames' colours by whatever the corrections
        took up early on, and every view drawn without a correction (held-out frames, novel views) shows
        it: a lifted TinyRenderer orbit rendered 4.7 % too dark at its own capture views (docs/lift.md).
        Centred, the splats hold the frames' average exposure and a correction is only how a frame differs.
        """
        return self.color - self.color.mean(0, keepdim=True) + torch.eye(3, 4, device=self.device)

    # ---------------------------------------------------------------- outputs
    @torch.no_grad()
    def splats(self) -> Splats:
        p = {k: v.detach().cpu().numpy() for k, v in self.params.items()}
        return Splats(p["means"], p["quats"], p["scales"], p["opacities"], np.concatenate([p["sh0"], p["shN"]], 1))

    @torch.no_grad()
    def render_image(self, idx: int) -> np.ndarray:
        """[H, W, 3] float32 render of frame ``idx`` in [0, 1] (no colour correction)."""
        return self.render(idx).colors[0].clamp(0, 1).cpu().numpy()

    @torch.no_grad()
    def evaluate(self, indices) -> dict:
        """Mean PSNR and SSIM over ``indices`` (no colour correction, overlays excluded)."""
        ps, ss = [], []
        for i in indices:
            pred = self.render(int(i)).colors[0].clamp(0, 1)
            target, valid = self._target(int(i), 1)
            ps.append(psnr(pred, target, valid))
            ss.append(float(ssim(pred, target, valid)))
        return {"psnr": float(np.mean(ps)) if ps else float("nan"), "ssim": float(np.mean(ss)) if ss else float("nan"),
                "frames": len(ps), "per_frame_psnr": [round(p, 3) for p in ps]}  # fmt: skip

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self, folder: Path) -> Path:
        """Write ``folder/checkpoint.safetensors`` + ``checkpoint.json`` (atomically, via temporary names)."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"param.{k}": v.detach().cpu().contiguous() for k, v in self.params.items()}
        for k, opt in self.optimizers.items():
            st = opt.state.get(self.params[k])
            if st:
                tensors[f"adam.{k}.exp_avg"] = st["exp_avg"].cpu().contiguous()
                tensors[f"adam.{k}.exp_avg_sq"] = st["exp_avg_sq"].cpu().contiguous()
                tensors[f"adam.{k}.step"] = torch.as_tensor(st["step"]).reshape(1).float().cpu()
        tensors["color"] = self.color.detach().cpu().contiguous()
        cst = self.color_opt.state.get(self.color)
        if cst:
            tensors["adam.color.exp_avg"] = cst["exp_avg"].cpu().contiguous()
            tensors["adam.color.exp_avg_sq"] = cst["exp_avg_sq"].cpu().contiguous()
            tensors["adam.color.step"] = torch.as_tensor(cst["step"]).reshape(1).float().cpu()
        for k, v in self.strategy_state.items():
            if isinstance(v, Tensor):
                tensors[f"strategy.{k}"] = v.detach().cpu().contiguous()
        tensors["rng"] = self.generator.get_state()
        meta = {
            "step": self.step,
            "seconds": self.seconds,
            "history": self.history,
            "order": self._order,
            "options": asdict(self.o),
            "num_splats": len(self.params["means"]),
            "strategy_scalars": {k: v for k, v in self.strategy_state.items() if not isinstance(v, Tensor)},
        }
        tmp = folder / "checkpoint.safetensors.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(folder / "checkpoint.safetensors")
        tmpj = folder / "checkpoint.json.tmp"
        tmpj.write_text(json.dumps(meta, default=_json_default))
        tmpj.replace(folder / "checkpoint.json")
        return folder / "checkpoint.safetensors"

    def load_checkpoint(self, folder: Path) -> None:
        """Restore a run saved by :meth:`save_checkpoint`."""
        from safetensors.torch import load_file

        meta = json.loads((folder / "checkpoint.json").read_text())
        t = load_file(str(folder / "checkpoint.safetensors"))
        for k in PARAM_NAMES:
            p = torch.nn.Parameter(t[f"param.{k}"].to(self.device).contiguous())
            opt = self.optimizers[k]
            opt.state.pop(self.params[k], None)
            opt.param_groups[0]["params"] = [p]
            self.params[k] = p
            if f"adam.{k}.exp_avg" in t:
                opt.state[p] = {"step": t[f"adam.{k}.step"][0].clone(), "exp_avg": t[f"adam.{k}.exp_avg"].to(self.device),
                                "exp_avg_sq": t[f"adam.{k}.exp_avg_sq"].to(self.device)}  # fmt: skip
        with torch.no_grad():
            self.color.copy_(t["color"].to(self.device))
        if "adam.color.exp_avg" in t:
            self.color_opt.state[self.color] = {"step": t["adam.color.step"][0].clone(),
                                                "exp_avg": t["adam.color.exp_avg"].to(self.device),
                                                "exp_avg_sq": t["adam.color.exp_avg_sq"].to(self.device)}  # fmt: skip
        self.strategy_state = {
            k[len("strategy.") :]: v.to(self.device) for k, v in t.items() if k.startswith("strategy.")
        }
        self.strategy_state.update(meta.get("strategy_scalars", {}))
        self.generator.set_state(t["rng"])
        self.step = int(meta["step"])
        self.seconds = float(meta["seconds"])
        self.history = meta["history"]
        self._order = list(meta["order"])


def _json_default(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"not JSON serialisable: {type(v)}")


# ------------------------------------------------------------------------------------- gsplat (CUDA)
def _gsplat_strategy(opts: TrainOptions, steps: int):
    """gsplat's own DefaultStrategy with our thresholds, or None when gsplat is not installed."""
    try:
        from gsplat.strategy import DefaultStrategy
    except ImportError:
        return None
    refine_stop = int(opts.refine_stop * steps)
    return DefaultStrategy(
        prune_opa=opts.prune_opacity, grow_grad2d=opts.grow_grad2d, grow_scale3d=opts.grow_scale3d,
        prune_scale3d=opts.prune_scale3d, refine_start_iter=opts.refine_start, refine_stop_iter=refine_stop,
        reset_every=opts.reset_every if opts.reset_every < refine_stop else steps + 1,
        refine_every=opts.refine_every, verbose=False,
    )  # fmt: skip


def _gsplat_info(res) -> dict:
    return {"means2d": res.means2d, "radii": res.radii, "width": res.colors.shape[2], "height": res.colors.shape[1],
            "n_cameras": res.colors.shape[0]}  # fmt: skip
