"""antimatter15 ``.splat``: 32 bytes a splat, no header.

``x y z`` float32, linear scales float32 x3, RGBA uint8 (colour = 0.5 + C0 * f_dc, alpha = sigmoid(opacity)),
quaternion wxyz uint8 as ``(b - 128) / 128``. No SH beyond the base colour.
"""

from __future__ import annotations

import os

import numpy as np

from scenes.errors import FormatError
from scenes.formats._common import (
    Decoded,
    extra_note,
    finish,
    log_scales_from_linear,
    logit_from_u8,
    rgb_u8_from_sh0,
    sh0_from_rgb_u8,
    to_u8,
    unit_quats,
)
from scenes.splats import Splats

__all__ = ["RECORD", "decode", "write"]

RECORD = np.dtype([("means", "<f4", 3), ("scales", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
assert RECORD.itemsize == 32


def decode(data: bytes | memoryview, source: str = "<bytes>", *, drop_invalid: bool = False) -> Decoded:
    if len(data) % RECORD.itemsize:
        raise FormatError(
            f"{source}: a .splat file is a whole number of 32-byte records, but this one has {len(data)} bytes "
            f"({len(data) // 32} records and {len(data) % 32} bytes left over); truncated or not a .splat"
        )
    rec = np.frombuffer(data, RECORD)
    log_scales, zeros = log_scales_from_linear(rec["scales"])
    notes = [f"{zeros} zero scale(s) clamped to the smallest float32"] if zeros else []
    quats = (rec["rot"].astype(np.float32) - 128.0) / 128.0
    sh = sh0_from_rgb_u8(rec["rgba"][:, :3])[:, None, :]
    return finish(
        source, "splat", rec["means"], quats, log_scales, logit_from_u8(rec["rgba"][:, 3]), sh,
        notes=notes, drop_invalid=drop_invalid,
    )  # fmt: skip


def encode(splats: Splats) -> tuple[np.ndarray, tuple[str, ...]]:
    """The records and a description of what the format could not keep."""
    rec = np.empty(len(splats), RECORD)
    rec["means"] = splats.means
    scales = np.exp(splats.log_scales.astype(np.float64))
    big = int(np.count_nonzero(scales > np.finfo(np.float32).max))
    rec["scales"] = np.minimum(scales, np.finfo(np.float32).max)
    rgb, clipped = rgb_u8_from_sh0(splats.sh[:, 0])
    rec["rgba"][:, :3] = rgb
    rec["rgba"][:, 3] = to_u8(splats.opacities * np.float32(255.0))
    rec["rot"] = to_u8(unit_quats(splats.quats) * np.float32(128.0) + np.float32(128.0))
    lost = ["colour, opacity and rotation quantised to 8 bits"]
    if splats.sh_degree > 0:
        lost.append(f"SH bands 1-{splats.sh_degree} dropped (.splat keeps only the base colour)")
    if clipped:
        lost.append(f"{clipped} colour value(s) outside [0, 1] clipped")
    if big:
        lost.append(f"{big} scale(s) beyond the float32 range clipped")
    lost += extra_note(splats, ".splat")
    return rec, tuple(lost)


def write(splats: Splats, path: str | os.PathLike) -> tuple[str, ...]:
    rec, lost = encode(splats)
    with open(path, "wb") as f:
        f.write(rec.view(np.uint8))
    return lost
