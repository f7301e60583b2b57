"""Screenshots (PNG + a JSON description of the view) and MP4 recording with PyAV, frame by frame."""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from scenes._deps import require
from scenes.errors import ShapeError

__all__ = ["save_screenshot", "VideoRecorder", "next_path"]


def next_path(folder: str | Path, stem: str, suffix: str) -> Path:
    """``folder/stem-YYYYmmdd-HHMMSS-mmm[-k].suffix`` (milliseconds) that does not exist yet; folder created."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{int(now * 1000) % 1000:03d}"
    path, k = folder / f"{base}{suffix}", 1
    while path.exists():
        path, k = folder / f"{base}-{k}{suffix}", k + 1
    return path


def save_screenshot(path: str | Path, image: np.ndarray, info: dict | None = None) -> Path:
    """Write ``image [H, W, 3] uint8`` as PNG and, with ``info``, ``<same name>.json`` beside it."""
    pil = require("PIL.Image", "saving screenshots")
    path = Path(path)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ShapeError(f"save_screenshot: expected [H, W, 3] uint8, got {image.shape} {image.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.fromarray(image).save(path)
    if info is not None:
        path.with_suffix(".json").write_text(json.dumps(info, indent=1))
    return path


class VideoRecorder:
    """An H.264 MP4 written one frame at a time, each at the wall-clock time it was shown (variable rate)."""

    def __init__(self, path: str | Path, crf: int = 18) -> None:
        self._av = require("av", "recording MP4 video")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = self._av.open(str(self.path), mode="w")
        self._stream = None
        self._crf = crf
        self._t0: float | None = None
        self._last_pts = -1
        self.count = 0  # frames written

    @property
    def duration(self) -> float:
        """Seconds since the first frame."""
        return 0.0 if self._t0 is None else time.perf_counter() - self._t0

    def add(self, frame: np.ndarray, t: float | None = None) -> None:
        """Append ``frame [H, W, 3] uint8`` shown at ``t`` seconds (default: now); odd sizes are cropped."""
        av = self._av
        now = time.perf_counter() if t is None else float(t)
        if self._t0 is None:
            self._t0 = now
        pts = int(round((now - self._t0) * 1000))
        if pts <= self._last_pts:  # two frames in the same millisecond: keep the first
            return
        h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
        if self._stream is None:
            if h == 0 or w == 0:
                raise ShapeError(f"VideoRecorder: frame size {frame.shape[1]}x{frame.shape[0]} is too small")
            stream = self._container.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
            stream.options = {"crf": str(self._crf)}
            self._stream = stream
        elif (w, h) != (self._stream.width, self._stream.height):
            raise ShapeError(
                f"VideoRecorder: frame {self.count} is {w}x{h}, the video is {self._stream.width}x{self._stream.height}; "
                "stop and start recording again after a resize"
            )
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="rgb24")
        vf.pts = pts
        vf.time_base = Fraction(1, 1000)
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self._last_pts = pts
        self.count += 1

    def close(self) -> Path:
        """Flush and close the file; returns its path."""
        if self._container is not None:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            self._container.close()
            self._container = None
        return self.path
