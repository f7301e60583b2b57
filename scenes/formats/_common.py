"""Helpers shared by the splat format readers and writers (quantisation, validation, file IO)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from scenes.errors import FormatError, ShapeError
from scenes.splats import SH_C0, Splats

ALPHA_EPS = 1e-6  # 8-bit alphas of 0 and 255 decode to logit(eps) and logit(1 - eps), as splat-transform does
FLOAT32_TINY = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class Decoded:
    """What a reader returns: the splats and notes about the file (version, flags, dropped data)."""

    splats: Splats
    format: str  # one of scenes.formats.FORMATS
    notes: tuple[str, ...] = field(default_factory=tuple)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole file (readers need it all; the largest files are a few hundred MB)."""
    with open(path, "rb") as f:
        return f.read()


def need(source: str, data_len: int, end: int, what: str) -> None:
    """Raise a :class:`FormatError` when ``end`` bytes are needed but the data has fewer."""
    if end > data_len:
        raise FormatError(
            f"{source}: truncated: {what} needs {end} bytes but the file has {data_len} bytes; "
            "re-export or re-download it"
        )


def sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x.astype(np.float32)))).astype(np.float32)


def logit_from_unit(p: np.ndarray) -> np.ndarray:
    """Logits of values in [0, 1], clamped off 0 and 1 so they stay finite."""
    p = np.clip(p.astype(np.float32), ALPHA_EPS, 1.0 - ALPHA_EPS)
    return np.log(p / (1.0 - p)).astype(np.float32)


_LOGIT_U8 = None


def logit_from_u8(a: np.ndarray) -> np.ndarray:
    """Logits of 8-bit alphas (``a / 255``, clamped off 0 and 1), through a 256-entry table."""
    global _LOGIT_U8
    if _LOGIT_U8 is None:
        _LOGIT_U8 = logit_from_unit(np.arange(256, dtype=np.float32) / np.float32(255.0))
    return _LOGIT_U8[a]


def round_half_away(x: np.ndarray) -> np.ndarray:
    """``std::round`` (halves away from zero), which the reference C++ encoders use."""
    return np.trunc(x + np.copysign(np.asarray(0.5, x.dtype), x))


def to_u8(x: np.ndarray) -> np.ndarray:
    """Round (halves away from zero) and clamp to [0, 255], as spz's ``toUint8``."""
    return np.clip(round_half_away(x), 0, 255).astype(np.uint8)


def count_clipped(x: np.ndarray, lo: float, hi: float) -> int:
    """How many values of ``x`` lie outside [lo, hi] (NaN-free input)."""
    if x.size == 0 or (x.min() >= lo and x.max() <= hi):
        return 0
    return int(np.count_nonzero(x < lo) + np.count_nonzero(x > hi))


def rgb_u8_from_sh0(sh0: np.ndarray) -> tuple[np.ndarray, int]:
    """[N, 3] DC SH -> 8-bit colour (clipped to [0, 1]) and how many values were clipped."""
    rgb = sh0.astype(np.float32) * np.float32(SH_C0) + np.float32(0.5)
    return to_u8(rgb * np.float32(255.0)), count_clipped(rgb, 0.0, 1.0)


def sh0_from_rgb_u8(rgb: np.ndarray) -> np.ndarray:
    return ((rgb.astype(np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(SH_C0)).astype(np.float32)


def log_scales_from_linear(scales: np.ndarray) -> tuple[np.ndarray, int]:
    """Linear standard deviations -> log. Zero (underflowed) scales map to the smallest float32; negative or NaN
    scales become NaN so that validation reports them. Returns the log-scales and the number of zeros clamped."""
    scales = scales.astype(np.float32)
    zero = scales == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(np.where(zero, np.float32(FLOAT32_TINY), scales)).astype(np.float32)
    out[scales < 0] = np.nan
    return out, int(zero.sum())


def finish(
    source: str,
    fmt: str,
    means: np.ndarray,  # [N, 3]
    quats: np.ndarray,  # [N, 4] wxyz
    log_scales: np.ndarray,  # [N, 3]
    opacity_logits: np.ndarray,  # [N]
    sh: np.ndarray,  # [N, K, 3]
    *,
    extra: dict | None = None,
    notes: list[str] | None = None,
    drop_invalid: bool = False,
) -> Decoded:
    """Build validated :class:`Splats`; a file with invalid splats raises :class:`FormatError` (with a count and the
    first index) unless ``drop_invalid``, which drops them with a warning and a note."""
    notes = list(notes or [])
    extra = dict(extra or {})
    with np.errstate(over="ignore", invalid="ignore"):  # garbage input: validation below reports it
        return _finish(source, fmt, means, quats, log_scales, opacity_logits, sh, extra, notes, drop_invalid)


def _finish(source, fmt, means, quats, log_scales, opacity_logits, sh, extra, notes, drop_invalid) -> Decoded:
    try:
        return Decoded(Splats(means, quats, log_scales, opacity_logits, sh, extra), fmt, tuple(notes))
    except ShapeError as exc:
        bad = Splats.invalid_mask(means, quats, log_scales, opacity_logits, sh)
        count = int(bad.sum())
        if count == 0:
            raise FormatError(f"{source}: decoded splats are inconsistent ({exc})") from exc
        first = int(np.argmax(bad))
        if not drop_invalid:
            raise FormatError(
                f"{source}: {count} of {len(bad)} splat(s) have non-finite values or a zero quaternion (first at "
                f"index {first}); pass drop_invalid=True (hybrid convert --drop-invalid) to drop them"
            ) from exc
        msg = f"dropped {count} of {len(bad)} invalid splat(s) (non-finite values or zero quaternion; first at {first})"
        warnings.warn(f"{source}: {msg}", stacklevel=3)
        notes.append(msg)
        keep = ~bad
        kept = {k: np.asarray(v)[keep] for k, v in extra.items()}
        try:
            splats = Splats(means[keep], quats[keep], log_scales[keep], opacity_logits[keep], sh[keep], kept)
        except ShapeError as exc2:  # pragma: no cover - invalid_mask and Splats agree
            raise FormatError(f"{source}: {exc2}") from exc2
        return Decoded(splats, fmt, tuple(notes))


def quats_wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(q[:, [1, 2, 3, 0]])


def quats_xyzw_to_wxyz(q: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(q[:, [3, 0, 1, 2]])


# Smallest-three quaternion packing (2 bits: index of the largest component; 3 x 10 bits: the others).
OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]], dtype=np.intp)


def largest_first_positive(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the largest-magnitude component (first on ties) and ``q`` flipped so that component is >= 0."""
    largest = np.argmax(np.abs(q), axis=1)
    rows = np.arange(len(q))
    sign = np.where(q[rows, largest] < 0, np.float32(-1.0), np.float32(1.0)).astype(np.float32)
    return largest, q * sign[:, None]


def unit_quats(q: np.ndarray) -> np.ndarray:
    q = q.astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def extra_note(splats: Splats, fmt: str, skip: tuple[str, ...] = ()) -> list[str]:
    names = [k for k in splats.extra if k not in skip]
    if not names:
        return []
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return [f"extra per-splat properties dropped ({fmt} cannot store them): {shown}"]
