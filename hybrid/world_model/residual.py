"""The learned residual: a compact U-Net that corrects the relit image near edits.

Input (``IN_CHANNELS`` = 16 per pixel): the relit colour, the same with holes filled by a
push-pull pyramid, alpha, normalised depth, camera-frame normals, visibility now and at
capture, the moved and disoccluded masks, and the edit gate. Output: a colour correction.

The correction is *gated*: ``out = base + gate * net(x)`` where ``base`` is the relit image with
the holes near edits filled, and ``gate`` is the edit mask dilated by ``gate_radius`` pixels
and softened. Pixels farther than that from any edit are returned exactly as relit, whatever
the weights are (tested). The network works at half resolution (its stem averages 2 x 2
pixels) and its output is upsampled, which keeps it under 30 ms at 320 x 240 on two CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybrid.world_model.gbuffers import GBuffers
from scenes.errors import ShapeError

__all__ = ["ResidualNet", "IN_CHANNELS", "network_input", "push_pull", "edit_gate", "residual_output",
           "ResidualOutput"]  # fmt: skip

IN_CHANNELS = 16


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(cin, cout, 3, padding=1)
        self.b = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.b(F.relu(self.a(x))))


class ResidualNet(nn.Module):
    """A 3-level U-Net at half resolution: ``width``, ``2 width``, ``2 width`` channels; additive skips."""

    def __init__(self, width: int = 16, in_channels: int = IN_CHANNELS) -> None:
        super().__init__()
        self.width = int(width)
        w1, w2 = self.width, 2 * self.width
        self.enc1 = _Block(in_channels, w1)  # H/2
        self.enc2 = _Block(w1, w2)  # H/4
        self.mid = _Block(w2, w2)  # H/8
        self.up2 = nn.Conv2d(w2, w2, 1)
        self.dec2 = nn.Conv2d(w2, w2, 3, padding=1)
        self.up1 = nn.Conv2d(w2, w1, 1)
        self.dec1 = nn.Conv2d(w1, w1, 3, padding=1)
        self.head = nn.Conv2d(w1, 3, 1)
        nn.init.zeros_(self.head.weight)  # starts as the identity: out = base
        nn.init.zeros_(self.head.bias)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W] -> [B, 3, H, W]
        h, w = x.shape[-2:]
        x1 = self.enc1(F.avg_pool2d(x, 2, ceil_mode=True))
        x2 = self.enc2(F.avg_pool2d(x1, 2, ceil_mode=True))
        x3 = self.mid(F.avg_pool2d(x2, 2, ceil_mode=True))
        y2 = F.relu(self.dec2(x2 + self.up2(F.interpolate(x3, size=x2.shape[-2:], mode="nearest"))))
        y1 = F.relu(self.dec1(x1 + self.up1(F.interpolate(y2, size=x1.shape[-2:], mode="nearest"))))
        return F.interpolate(self.head(y1), size=(h, w), mode="bilinear", align_corners=False)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The weights as numpy arrays, named ``net.<param>`` (for ``Scene.weights``)."""
        return {f"net.{k}": v.detach().cpu().numpy().copy() for k, v in self.state_dict().items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], width: int) -> ResidualNet:
        net = cls(width)
        state = {k[4:]: torch.from_numpy(np.asarray(v)) for k, v in arrays.items() if k.startswith("net.")}
        missing = set(net.state_dict()) - set(state)
        if missing:
            raise ShapeError(f"world-model weights: missing tensors {sorted(missing)[:4]} (width {width})")
        net.load_state_dict(state)
        return net.eval()


def push_pull(color: Tensor, alpha: Tensor) -> Tensor:  # [B, 3, H, W] premultiplied, [B, 1, H, W] -> [B, 3, H, W]
    """Fill uncovered pixels from their surroundings: composite each level over the next coarser one."""
    levels = [(color, alpha)]
    while min(levels[-1][1].shape[-2:]) > 1:
        c, a = levels[-1]
        levels.append((F.avg_pool2d(c, 2, ceil_mode=True), F.avg_pool2d(a, 2, ceil_mode=True)))
    c, a = levels[-1]
    fill = c / a.clamp_min(1e-6)
    for c, a in reversed(levels[:-1]):
        up = F.interpolate(fill, size=c.shape[-2:], mode="bilinear", align_corners=False)
        fill = c + (1.0 - a.clamp(0.0, 1.0)) * up
    return fill


def edit_gate(edit: Tensor, radius: int) -> Tensor:  # [B, 1, H, W] -> [B, 1, H, W] in [0, 1]
    """The edit mask grown by ``radius`` pixels then softened over ``radius // 2``: zero farther away."""
    if radius <= 0:
        return edit
    grown = F.max_pool2d(edit, 2 * radius + 1, stride=1, padding=radius)
    soft = max(1, radius // 2)
    blurred = F.avg_pool2d(grown, 2 * soft + 1, stride=1, padding=soft, count_include_pad=False)
    return torch.maximum(blurred, edit).clamp(0.0, 1.0)


def gate_radius(height: int, width: int) -> int:
    """Pixels an edit's influence reaches: 3 % of the larger side (10 px at 320 x 240)."""
    return max(2, round(0.03 * max(height, width)))


def gate_reach(height: int, width: int) -> float:
    """Euclidean distance in pixels beyond which the gate is exactly 0 (square dilation, then the blur)."""
    r = gate_radius(height, width)
    return float(np.sqrt(2.0) * (r + max(1, r // 2)))


def network_input(gb: GBuffers, gate: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(x [1, 16, H, W], base [1, 3, H, W], gate [1, 1, H, W])`` from the G-buffers."""
    ch = lambda t: t.permute(2, 0, 1).unsqueeze(0)  # noqa: E731
    relit, alpha = ch(gb.relit), ch(gb.alpha)
    h, w = gb.size
    if gate is None:
        gate = edit_gate(ch(gb.edit), gate_radius(h, w))
    filled = push_pull(relit, alpha)
    base = relit + gate * (filled - relit)
    depth = ch(gb.depth)
    covered = depth[depth > 0]
    scale = covered.median() if covered.numel() else torch.tensor(1.0)
    x = torch.cat([relit, filled, alpha, depth / scale, ch(gb.normals), ch(gb.vis_now), ch(gb.vis_capture),
                   ch(gb.moved), ch(gb.disoccluded), gate], dim=1)  # fmt: skip
    return x, base, gate


@dataclass(frozen=True, eq=False)
class ResidualOutput:
    """The corrected image and what went into it (``[H, W, C]``, premultiplied)."""

    color: Tensor  # [H, W, 3] corrected colour
    alpha: Tensor  # [H, W, 1] coverage after hole filling
    gate: Tensor  # [H, W, 1] where the residual may act


def residual_output(net: ResidualNet | None, gb: GBuffers) -> ResidualOutput:
    """Apply the gated residual (``net=None``: only the gated hole fill) to one camera's G-buffers."""
    x, base, gate = network_input(gb)
    out = base
    if net is not None:
        with torch.no_grad():
            out = base + gate * net(x)
    alpha = gb.alpha.permute(2, 0, 1).unsqueeze(0)
    alpha = alpha + gate * (1.0 - alpha)
    back = lambda t: t[0].permute(1, 2, 0).clamp_min(0.0)  # noqa: E731
    return ResidualOutput(back(out), back(alpha).clamp(0.0, 1.0), back(gate))
