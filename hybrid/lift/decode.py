"""Decode a video or an image folder into the frames the lift uses.

Steps: decode with PyAV (rotation metadata applied, as players do), downscale to a size
cap, drop near-duplicates (frozen or repeated frames of generated videos) and frames much
blurrier than their neighbours, and cap the count by keeping the sharpest frame of each
equal slice of time. A stream that stops decoding part-way (a broken header or a truncated
file) keeps what decoded and says so in :attr:`FrameSet.notes`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybrid.lift.errors import LiftError
from scenes._deps import require
from scenes.errors import FormatError

__all__ = [
    "SelectOptions",
    "FrameSet",
    "IMAGE_EXTS",
    "VIDEO_EXTS",
    "decode_video",
    "read_image_folder",
    "load_image",
    "sharpness",
    "select_frames",
]

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".gif")


@dataclass(frozen=True)
class SelectOptions:
    """How frames are chosen from a video (and capped for an image folder)."""

    max_frames: int = 150  # keep at most this many frames (sharpest of equal time slices)
    max_size: int = 960  # longest image side in pixels; larger frames are downscaled (0: keep the size)
    dedup: float = 0.004  # mean absolute difference (0-1) to the last kept frame below which a frame is a repeat
    blur: float = 0.4  # drop frames sharper than less than this fraction of their neighbours' median (0: keep all)
    stride: int = 0  # decode every n-th frame only (0: automatic, so that about 4 x max_frames are looked at)


@dataclass(frozen=True, eq=False)
class FrameSet:
    """Selected frames, in time order."""

    images: np.ndarray  # [T, H, W, 3] uint8 RGB, rotation applied
    names: tuple[str, ...]  # [T] unique file names for the frames (e.g. "frame_00012.png")
    source_indices: np.ndarray  # [T] index of each frame in the decoded stream (or the folder listing)
    source: str  # the input path
    fps: float | None = None  # frames per second of the video (None for images)
    rotation: int = 0  # clockwise degrees applied to the decoded frames (0, 90, 180, 270)
    scale: float = 1.0  # resize factor applied to the source frames
    counts: dict = field(default_factory=dict)  # decoded, duplicates, blurry, capped, kept
    notes: tuple[str, ...] = ()  # things a person should know (stream ended early, ...)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return int(self.images.shape[2]), int(self.images.shape[1])


# ------------------------------------------------------------------------------------- metrics
def _grey(img: np.ndarray) -> np.ndarray:  # [H, W, 3] uint8 -> [H, W] float32 in [0, 1]
    return (img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0


def sharpness(img: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (higher is sharper)."""
    g = _grey(img)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def _thumb(img: np.ndarray, size: int = 64) -> np.ndarray:
    """Grey thumbnail with the longest side ``size`` (block mean), float32 in [0, 1]."""
    g = _grey(img)
    step = max(1, max(g.shape) // size)
    h, w = (g.shape[0] // step) * step, (g.shape[1] // step) * step
    return g[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return img
    from PIL import Image

    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.LANCZOS if scale < 1 else Image.BICUBIC))


def _fit_scale(width: int, height: int, max_size: int) -> float:
    longest = max(width, height)
    return 1.0 if max_size <= 0 or longest <= max_size else max_size / longest


# ------------------------------------------------------------------------------------- selection
def select_frames(
    images: list[np.ndarray], indices: list[int], opts: SelectOptions, *, video: bool = True
) -> tuple[list[int], dict]:
    """Positions (into ``images``) of the frames to keep, and the counts of what was dropped.

    Near-duplicates are dropped first (a frame almost equal to the last kept one), then, for
    videos, frames whose sharpness is below ``opts.blur`` times the median of their 15
    neighbours, then the rest is capped to ``opts.max_frames`` by keeping the sharpest frame
    of each equal slice of time.
    """
    counts = {"decoded": len(images), "duplicates": 0, "blurry": 0, "capped": 0}
    keep: list[int] = []
    last = None
    for i, img in enumerate(images):
        th = _thumb(img)
        if last is not None and th.shape == last.shape and float(np.abs(th - last).mean()) < opts.dedup:
            counts["duplicates"] += 1
            continue
        keep.append(i)
        last = th
    sharp = np.array([sharpness(images[i]) for i in keep])
    if video and opts.blur > 0 and len(keep) >= 5:
        ok = np.ones(len(keep), bool)
        for j in range(len(keep)):
            lo, hi = max(0, j - 7), min(len(keep), j + 8)
            ok[j] = sharp[j] >= opts.blur * np.median(sharp[lo:hi])
        counts["blurry"] = int((~ok).sum())
        keep = [k for k, o in zip(keep, ok) if o]
        sharp = sharp[ok]
    if opts.max_frames > 0 and len(keep) > opts.max_frames:
        edges = np.linspace(0, len(keep), opts.max_frames + 1).round().astype(int)
        chosen = [int(a + np.argmax(sharp[a:b])) for a, b in zip(edges[:-1], edges[1:]) if b > a]
        counts["capped"] = len(keep) - len(chosen)
        keep = [keep[c] for c in chosen]
    counts["kept"] = len(keep)
    return keep, counts


# ------------------------------------------------------------------------------------- video
def _rotation_of(frame) -> int:
    """Clockwise degrees to rotate a decoded frame for display (0, 90, 180 or 270)."""
    ccw = getattr(frame, "rotation", 0) or 0  # PyAV: counter-clockwise angle of the display matrix
    return int(round(-float(ccw) / 90.0)) % 4 * 90


def decode_video(path: str | Path, opts: SelectOptions | None = None) -> FrameSet:
    """Decode ``path`` with PyAV and select frames (see :func:`select_frames`).

    Raises :class:`~scenes.errors.FormatError` when the file is empty, not a video, or no
    frame decodes; a stream that fails part-way keeps the frames decoded before the failure.
    """
    av = require("av", "video decoding")
    opts = opts or SelectOptions()
    path = Path(path)
    if not path.is_file():
        raise LiftError(f"input video not found: {path}")
    if path.stat().st_size == 0:
        raise FormatError(f"{path}: the file is empty (0 bytes); give a video file (mp4, webm, mov, avi)")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise FormatError(
            f"{path}: not a readable video ({exc.strerror or exc}); give an mp4/webm/mov/avi file, "
            "a folder of images or a transforms.json"
        ) from exc
    notes: list[str] = []
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise FormatError(f"{path}: the file has no video stream (streams: {', '.join(kinds)})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        claimed = int(stream.frames or 0)
        stride = opts.stride
        if stride <= 0:
            stride = max(1, claimed // (4 * opts.max_frames)) if opts.max_frames > 0 else 1
        fps = float(stream.average_rate) if stream.average_rate else None
        images: list[np.ndarray] = []
        indices: list[int] = []
        rotation, scale, decoded = 0, 1.0, 0
        try:
            for n, frame in enumerate(container.decode(stream)):
                decoded = n + 1
                if n == 0:
                    rotation = _rotation_of(frame)
                    w, h = (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)
                    scale = _fit_scale(w, h, opts.max_size)
                if n % stride:
                    continue
                img = frame.to_ndarray(format="rgb24")
                if rotation:
                    img = np.ascontiguousarray(np.rot90(img, k=-rotation // 90))
                images.append(_resize(img, scale))
                indices.append(n)
        except av.FFmpegError as exc:
            notes.append(f"decoding stopped after {len(images)} frame(s) with an error ({exc}); kept what decoded")
        except (MemoryError, KeyboardInterrupt):
            raise
    if not images:
        raise FormatError(f"{path}: no frame could be decoded from the video stream ({stream.codec_context.name})")
    if claimed and decoded < 0.9 * claimed:
        notes.append(f"the header claims {claimed} frames but only {decoded} decoded; lifting those")
    keep, counts = select_frames(images, indices, opts, video=True)
    counts["decoded"] = decoded
    counts["stride"] = stride
    for note in notes:
        log.warning("%s: %s", path.name, note)
    return FrameSet(
        images=np.stack([images[k] for k in keep]),
        names=tuple(f"frame_{indices[k]:05d}.png" for k in keep),
        source_indices=np.array([indices[k] for k in keep], np.int64),
        source=str(path),
        fps=fps,
        rotation=rotation,
        scale=scale,
        counts=counts,
        notes=tuple(notes),
    )


# ------------------------------------------------------------------------------------- images
def load_image(path: str | Path, *, background: tuple[float, float, float] | None = None) -> np.ndarray:
    """[H, W, 3] uint8 RGB of an image file (EXIF orientation applied; alpha composited on ``background``).

    Without ``background`` an alpha channel is dropped.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = np.asarray(im.convert("RGBA"), np.float32) / 255.0
                if background is None:
                    return (rgba[..., :3] * 255).round().astype(np.uint8)
                a = rgba[..., 3:]
                rgb = rgba[..., :3] * a + np.asarray(background, np.float32) * (1 - a)
                return (rgb * 255).round().clip(0, 255).astype(np.uint8)
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise LiftError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise FormatError(f"{path}: not a readable image ({exc})") from exc


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def read_image_folder(path: str | Path, opts: SelectOptions | None = None) -> FrameSet:
    """All images of a folder in natural name order, downscaled to ``opts.max_size`` and capped.

    Every image must have the same size (one shared camera is estimated for them).
    """
    opts = opts or SelectOptions()
    path = Path(path)
    files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS), key=_natural_key)
    if not files:
        raise FormatError(f"{path}: the folder holds no images ({', '.join(IMAGE_EXTS)})")
    images = [load_image(f) for f in files]
    sizes = {im.shape[:2] for im in images}
    if len(sizes) > 1:
        raise FormatError(
            f"{path}: the images have different sizes {sorted((w, h) for h, w in sizes)}; "
            "resize them to one size (one shared camera is estimated)"
        )
    h, w = images[0].shape[:2]
    scale = _fit_scale(w, h, opts.max_size)
    images = [_resize(im, scale) for im in images]
    keep, counts = select_frames(images, list(range(len(images))), opts, video=False)
    return FrameSet(
        images=np.stack([images[k] for k in keep]),
        names=tuple(files[k].stem + ".png" for k in keep),
        source_indices=np.array(keep, np.int64),
        source=str(path),
        scale=scale,
        counts=counts,
    )
