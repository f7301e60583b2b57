"""Static overlays of generated videos: watermarks, logos, UI badges, burnt-in captions.

While the camera moves, every scene edge moves across the image; the edges of an overlay
stay at the same pixels. So, per pixel, the temporal mean of the signed image gradient is
nearly as long as the mean of its length for an overlay (coherence near 1) and much
shorter for the scene (gradients of different content average out). This holds for opaque
and semi-transparent overlays alike. Pixels whose gradients are coherent and strong are
overlay edges; the overlay is their neighbourhood closed and hole-filled, grown into the
nearby pixels whose colour does not change in time (the flat inside of an opaque badge).

The mask is excluded from feature extraction (SIFT) and from the training loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["OverlayOptions", "OverlayResult", "detect_static_overlay", "static_share"]


@dataclass(frozen=True)
class OverlayOptions:
    """Thresholds of :func:`detect_static_overlay`."""

    coherence: float = 0.75  # |mean gradient| / mean |gradient| above which an edge is static
    min_gradient: float = 0.015  # minimum |mean gradient| (grey levels in 0-1 per pixel) of an overlay edge
    max_fraction: float = 0.3  # a mask larger than this fraction of the image means the camera is static: no mask
    min_frames: int = 24  # fewer frames than this: no detection (a centred object on a plain background can
    # keep its silhouette edges in place across a few views)
    static_share: float = 0.1  # more textured pixels than this share with static edges: a static camera, no mask
    min_area: int = 12  # connected overlay parts smaller than this many pixels are ignored
    margin: int = 2  # pixels added around the mask (compression ringing)


@dataclass(frozen=True, eq=False)
class OverlayResult:
    """What :func:`detect_static_overlay` found."""

    mask: np.ndarray  # [H, W] bool, True on overlay pixels (excluded from matching and the loss)
    fraction: float  # share of the image covered by the mask
    boxes: tuple[tuple[int, int, int, int], ...]  # (x0, y0, x1, y1) of each overlay part, exclusive ends
    note: str = ""  # why nothing was detected, when detection was skipped

    @property
    def found(self) -> bool:
        return bool(self.mask.any())

    def to_dict(self) -> dict:
        return {
            "found": self.found,
            "fraction": round(self.fraction, 5),
            "boxes": [list(b) for b in self.boxes],
            "note": self.note,
        }


def _grey(frames: np.ndarray) -> np.ndarray:  # [T, H, W, 3] uint8 -> [T, H, W] float32
    return (frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0


def _stats(frames: np.ndarray, max_frames: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel: |mean gradient|, mean |gradient|, coherence and the largest channel's temporal std."""
    T, H, W = frames.shape[:3]
    pick = np.linspace(0, T - 1, min(T, max_frames)).round().astype(int)
    sum_g = np.zeros((H, W, 2), np.float64)
    sum_abs = np.zeros((H, W), np.float64)
    sum_v = np.zeros((H, W, 3), np.float64)
    sum_v2 = np.zeros((H, W, 3), np.float64)
    for t in pick:
        g = _grey(frames[t : t + 1])[0]
        gx = np.zeros_like(g)
        gy = np.zeros_like(g)
        gx[:, 1:-1] = 0.5 * (g[:, 2:] - g[:, :-2])
        gy[1:-1] = 0.5 * (g[2:] - g[:-2])
        sum_g[..., 0] += gx
        sum_g[..., 1] += gy
        sum_abs += np.hypot(gx, gy)
        f = frames[t].astype(np.float64) / 255.0
        sum_v += f
        sum_v2 += f * f
    n = len(pick)
    mean_g = np.hypot(sum_g[..., 0], sum_g[..., 1]) / n
    mean_abs = sum_abs / n
    coherence = mean_g / (mean_abs + 1e-6)
    std = np.sqrt(np.maximum(sum_v2 / n - (sum_v / n) ** 2, 0)).max(axis=-1)
    return mean_g, mean_abs, coherence, std


def static_share(frames: np.ndarray, opts: OverlayOptions | None = None) -> float:
    """Share of the textured pixels whose edges never move (near 0 for a moving camera, large for a static one)."""
    opts = opts or OverlayOptions()
    _, mean_abs, coherence, _ = _stats(frames)
    textured = mean_abs > opts.min_gradient
    if textured.sum() < 100:
        return 0.0
    return float((coherence[textured] > opts.coherence).mean())


def detect_static_overlay(
    frames: np.ndarray,  # [T, H, W, 3] uint8 frames of a moving camera
    opts: OverlayOptions | None = None,
) -> OverlayResult:
    """Find pixels covered by a static overlay (see the module docstring)."""
    from scipy import ndimage

    opts = opts or OverlayOptions()
    T, H, W = frames.shape[:3]
    empty = np.zeros((H, W), bool)
    if T < opts.min_frames:
        return OverlayResult(empty, 0.0, (), f"only {T} frames; overlay detection needs {opts.min_frames}")
    mean_g, mean_abs, coherence, std = _stats(frames)
    textured = mean_abs > opts.min_gradient
    if textured.sum() > 0.05 * H * W and (coherence[textured] > opts.coherence).mean() > opts.static_share:
        return OverlayResult(empty, 0.0, (), "much of the image does not move (static camera?): no overlay mask")

    edges = (coherence > opts.coherence) & (mean_g > opts.min_gradient)
    edges = ndimage.binary_opening(edges, np.ones((1, 2), bool)) | ndimage.binary_opening(edges, np.ones((2, 1), bool))
    if not edges.any():
        return OverlayResult(empty, 0.0, ())
    near = ndimage.binary_dilation(edges, iterations=2)
    mask = ndimage.binary_closing(near, np.ones((5, 5), bool), iterations=2)
    mask = ndimage.binary_fill_holes(mask)
    # Grow into unchanging pixels near the edges (the flat inside of an opaque overlay).
    still = std < 0.5 * np.median(std)
    grown = ndimage.binary_dilation(mask, iterations=6) & still
    mask |= grown
    labels, count = ndimage.label(mask)
    if count:
        areas = ndimage.sum(mask, labels, index=np.arange(1, count + 1))
        edge_counts = ndimage.sum(edges, labels, index=np.arange(1, count + 1))
        keep_ids = np.nonzero((areas >= opts.min_area) & (edge_counts >= 4))[0] + 1
        mask = np.isin(labels, keep_ids)
    if opts.margin:
        mask = ndimage.binary_dilation(mask, iterations=opts.margin)
    fraction = float(mask.mean())
    if fraction > opts.max_fraction:
        return OverlayResult(
            empty, 0.0, (), f"{fraction:.0%} of the image looks static (static camera?): no overlay mask"
        )
    labels, count = ndimage.label(mask)
    boxes = []
    for sl in ndimage.find_objects(labels):
        if sl is not None:
            boxes.append((int(sl[1].start), int(sl[0].start), int(sl[1].stop), int(sl[0].stop)))
    return OverlayResult(mask, fraction, tuple(boxes))
