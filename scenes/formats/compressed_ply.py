"""PlayCanvas / SuperSplat compressed PLY (``.compressed.ply``): 256-splat chunks with bounds.

Elements: ``chunk`` (float32 min/max of position, log-scale and, in newer files, colour per 256 splats),
``vertex`` (four uint32 a splat: position 11/10/11 bits and log-scale 11/10/11 bits within the chunk bounds,
rotation "smallest three" 2+10+10+10 bits over wxyz, colour RGBA 8 bits each with alpha = sigmoid(opacity)) and an
optional ``sh`` element (uint8 ``f_rest_i`` in the 3DGS channel-major order, ``(b + 0.5) / 256 * 8 - 4``).
Following splat-transform's writer, splats are stored in Morton order unless ``morton=False``.
"""

from __future__ import annotations

import math
import os

import numpy as np

from scenes.errors import FormatError
from scenes.formats._common import (
    OTHERS,
    Decoded,
    count_clipped,
    extra_note,
    finish,
    largest_first_positive,
    logit_from_unit,
)
from scenes.formats.ply import PlyHeader, element_arrays, is_compressed, parse_header
from scenes.splats import SH_C0, Splats

__all__ = ["CHUNK", "decode", "encode", "write", "morton_order"]

CHUNK = 256
_BOUNDS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
           "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z")  # fmt: skip
_COLOR_BOUNDS = ("min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
_PACKED = ("packed_position", "packed_rotation", "packed_scale", "packed_color")


def _check_schema(header: PlyHeader, source: str) -> tuple[int, bool, int]:
    chunk, vertex, sh = header.element("chunk"), header.element("vertex"), header.element("sh")
    if not is_compressed(header) or chunk is None or vertex is None:
        raise FormatError(f"{source}: not a PlayCanvas compressed PLY (needs 'chunk' and 'vertex' elements with "
                          "packed_position ...)")  # fmt: skip
    ctypes, vtypes = dict(chunk.properties), dict(vertex.properties)
    bad = [p for p in _BOUNDS if ctypes.get(p) != "f4"] + [p for p in _PACKED if vtypes.get(p) != "u4"]
    has_color = "min_r" in ctypes
    if has_color:
        bad += [p for p in _COLOR_BOUNDS if ctypes.get(p) != "f4"]
    if bad:
        raise FormatError(f"{source}: compressed PLY lacks (or mistypes) {bad}; chunk bounds must be float and "
                          "packed_* uint")  # fmt: skip
    n = vertex.count
    if chunk.count != math.ceil(n / CHUNK):
        raise FormatError(f"{source}: compressed PLY has {chunk.count} chunks for {n} splats; expected "
                          f"ceil({n} / {CHUNK}) = {math.ceil(n / CHUNK)}")  # fmt: skip
    rest = 0
    if sh is not None:
        rest = len(sh.properties)
        names = [f"f_rest_{i}" for i in range(rest)]
        if rest not in (9, 24, 45) or sh.names() != names or any(t != "u1" for _, t in sh.properties):
            raise FormatError(f"{source}: compressed PLY 'sh' element must hold uchar f_rest_0 .. f_rest_M-1 with M "
                              f"in 9, 24, 45; it has {sh.names()[:5]}... ({rest} properties)")  # fmt: skip
        if sh.count != n:
            raise FormatError(f"{source}: compressed PLY has {sh.count} SH rows for {n} splats")
    return n, has_color, rest


def _unorm(v: np.ndarray, shift: int, bits: int) -> np.ndarray:
    mask = (1 << bits) - 1
    return ((v >> np.uint32(shift)) & np.uint32(mask)).astype(np.float64) / mask


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) * (1.0 - t) + b.astype(np.float64) * t


def decode(data: bytes | memoryview, source: str = "<bytes>", *, drop_invalid: bool = False) -> Decoded:
    with np.errstate(over="ignore", invalid="ignore"):  # corrupt bounds give inf / NaN, reported by validation
        return _decode(data, source, drop_invalid)


def _decode(data, source: str, drop_invalid: bool) -> Decoded:
    header = parse_header(data, source)
    n, has_color, rest = _check_schema(header, source)
    names = ("chunk", "vertex", "sh") if rest else ("chunk", "vertex")
    arrays = element_arrays(data, header, names, source)
    chunk, vertex = arrays["chunk"], arrays["vertex"]
    ci = np.arange(n) // CHUNK
    c = {name: chunk[name][ci] for name in chunk.dtype.names if name in _BOUNDS + _COLOR_BOUNDS}
    pp = vertex["packed_position"].astype(np.uint32)
    means = np.stack([
        _lerp(c["min_x"], c["max_x"], _unorm(pp, 21, 11)),
        _lerp(c["min_y"], c["max_y"], _unorm(pp, 11, 10)),
        _lerp(c["min_z"], c["max_z"], _unorm(pp, 0, 11)),
    ], axis=1).astype(np.float32)  # fmt: skip
    ps = vertex["packed_scale"].astype(np.uint32)
    log_scales = np.stack([
        _lerp(c["min_scale_x"], c["max_scale_x"], _unorm(ps, 21, 11)),
        _lerp(c["min_scale_y"], c["max_scale_y"], _unorm(ps, 11, 10)),
        _lerp(c["min_scale_z"], c["max_scale_z"], _unorm(ps, 0, 11)),
    ], axis=1).astype(np.float32)  # fmt: skip
    pr = vertex["packed_rotation"].astype(np.uint32)
    three = np.stack([(_unorm(pr, s, 10) - 0.5) * math.sqrt(2.0) for s in (20, 10, 0)], axis=1)
    largest = (pr >> np.uint32(30)).astype(np.intp)
    quats = np.empty((n, 4), np.float64)
    rows = np.arange(n)
    quats[rows[:, None], OTHERS[largest]] = three
    quats[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - (three * three).sum(1)))
    pc = vertex["packed_color"].astype(np.uint32)
    rgb = [_unorm(pc, s, 8) for s in (24, 16, 8)]
    if has_color:
        rgb = [_lerp(c[f"min_{ch}"], c[f"max_{ch}"], t) for ch, t in zip("rgb", rgb, strict=True)]
    k = rest // 3 + 1
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0] = ((np.stack(rgb, axis=1) - 0.5) / SH_C0).astype(np.float32)
    if rest:
        b = arrays["sh"].view(np.uint8).reshape(n, rest) if n else np.zeros((0, rest), np.uint8)
        t = (b.astype(np.float32) + np.float32(0.5)) / np.float32(256.0)
        t[b == 0] = 0.0
        t[b == 255] = 1.0
        sh[:, 1:] = ((t - np.float32(0.5)) * np.float32(8.0)).reshape(n, 3, k - 1).transpose(0, 2, 1)
    opacity = logit_from_unit(_unorm(pc, 0, 8))
    notes = ["compressed PLY" + ("" if has_color else " (old layout without chunk colour bounds)")]
    return finish(source, "compressed_ply", means, quats.astype(np.float32), log_scales, opacity, sh, notes=notes,
                  drop_invalid=drop_invalid)  # fmt: skip


def _part1by2(v: np.ndarray) -> np.ndarray:
    """Spread the low 21 bits of ``v`` (uint64) to every third bit."""
    v = v & np.uint64(0x1FFFFF)
    for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                        (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249)):  # fmt: skip
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def morton_order(means: np.ndarray) -> np.ndarray:
    """[N] indices sorting ``means`` [N, 3] along a 3D Morton (Z-order) curve over their bounding box (21 bits/axis)."""
    if len(means) == 0:
        return np.zeros(0, np.intp)
    lo, hi = means.min(0).astype(np.float64), means.max(0).astype(np.float64)
    extent = np.where(hi > lo, hi - lo, 1.0)
    cells = np.clip((means - lo) / extent * (2**21 - 1), 0, 2**21 - 1).astype(np.uint64)
    code = _part1by2(cells[:, 0]) | (_part1by2(cells[:, 1]) << np.uint64(1)) | (_part1by2(cells[:, 2]) << np.uint64(2))
    return np.argsort(code, kind="stable")


def _pack_unorm(v: np.ndarray, bits: int) -> np.ndarray:
    t = (1 << bits) - 1
    return np.clip(np.floor(v * t + 0.5), 0, t).astype(np.uint32)


def _normalize(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """splat-transform's ``normalize``: 0 at or below lo, 1 at or above hi, 0 for a degenerate range."""
    span = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(span < 1e-5, 0.0, (x - lo) / np.where(span > 0, span, 1.0))
    return np.where(x <= lo, 0.0, np.where(x >= hi, 1.0, t))


def encode(splats: Splats, *, morton: bool = True) -> tuple[bytes, tuple[str, ...]]:
    """Compressed PLY bytes and a description of what was lost. ``morton``: store in Morton order (as SuperSplat
    and splat-transform do, for tight chunk bounds); ``False`` keeps the input order (looser bounds, larger errors)."""
    n = len(splats)
    lost: list[str] = []
    order = morton_order(splats.means) if morton else np.arange(n)
    if morton and n > 1 and np.any(order != np.arange(n)):
        lost.append("splat order changed to Morton order (as SuperSplat writes)")
    chunks = math.ceil(n / CHUNK)
    idx = order[np.minimum(np.arange(chunks * CHUNK), max(n - 1, 0))] if n else np.zeros(0, np.intp)

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[idx].astype(np.float64).reshape(chunks, CHUNK, *a.shape[1:])

    def bounds(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return b.min(axis=1), b.max(axis=1)

    pos = blocks(splats.means)
    pmin, pmax = bounds(pos)
    scl = blocks(splats.log_scales)
    smin, smax = bounds(scl)
    smin, smax = np.clip(smin, -20, 20), np.clip(smax, -20, 20)
    rgb = blocks((splats.sh[:, 0].astype(np.float64) * SH_C0 + 0.5).astype(np.float32))
    cmin, cmax = bounds(rgb)

    def pack3(b, lo, hi, bits=(11, 10, 11)) -> np.ndarray:
        t = _normalize(b, lo[:, None, :], hi[:, None, :])
        x, y, z = (_pack_unorm(t[..., j], bits[j]) for j in range(3))
        return (x << np.uint32(21)) | (y << np.uint32(11)) | z

    packed = np.empty((chunks, CHUNK, 4), np.uint32)
    packed[..., 0] = pack3(pos, pmin, pmax)
    q = blocks(splats.quats)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    largest, q = largest_first_positive(q.reshape(-1, 4))
    others = np.take_along_axis(q, OTHERS[largest], axis=1)
    p = _pack_unorm(others * (math.sqrt(2.0) * 0.5) + 0.5, 10)
    packed[..., 1] = ((largest.astype(np.uint32) << np.uint32(30)) | (p[:, 0] << np.uint32(20))
                      | (p[:, 1] << np.uint32(10)) | p[:, 2]).reshape(chunks, CHUNK)  # fmt: skip
    packed[..., 2] = pack3(scl, smin, smax)
    t = _normalize(rgb, cmin[:, None, :], cmax[:, None, :])
    alpha = 1.0 / (1.0 + np.exp(-np.clip(blocks(splats.opacity_logits), -700, 700)))
    packed[..., 3] = ((_pack_unorm(t[..., 0], 8) << np.uint32(24)) | (_pack_unorm(t[..., 1], 8) << np.uint32(16))
                      | (_pack_unorm(t[..., 2], 8) << np.uint32(8)) | _pack_unorm(alpha, 8))  # fmt: skip
    chunk_data = np.concatenate([pmin, pmax, smin, smax, cmin, cmax], axis=1).astype("<f4")
    k = splats.sh.shape[1]
    rest = 3 * (k - 1)
    lines = ["ply", "format binary_little_endian 1.0", "comment Generated by hybrid-scene-runtime",
             f"element chunk {chunks}", *(f"property float {p}" for p in _BOUNDS[:6]),
             *(f"property float {p}" for p in _BOUNDS[6:]), *(f"property float {p}" for p in _COLOR_BOUNDS),
             f"element vertex {n}", *(f"property uint {p}" for p in _PACKED)]  # fmt: skip
    parts = [chunk_data.tobytes(), packed.reshape(-1, 4)[:n].astype("<u4").tobytes()]
    if rest:
        lines += [f"element sh {n}", *(f"property uchar f_rest_{i}" for i in range(rest))]
        sh_rest = splats.sh[order, 1:].transpose(0, 2, 1).reshape(n, rest).astype(np.float64)
        parts.append(np.clip(np.trunc((sh_rest / 8.0 + 0.5) * 256.0), 0, 255).astype(np.uint8).tobytes())
        clipped = count_clipped(sh_rest, -4.0, 4.0)
        lost.append("SH coefficients quantised to 8 bits in [-4, 4]" + (f" ({clipped} clipped)" if clipped else ""))
    lines.append("end_header\n")
    step = float(((pmax - pmin) / np.array([2047.0, 1023.0, 2047.0])).max()) if n else 0.0
    lost.insert(0, f"positions quantised to 11/10/11 bits of each {CHUNK}-splat chunk (worst step {step:.3g} m); "
                   "log-scales likewise (bounds clamped to [-20, 20]); colour and opacity to 8 bits; rotations to "
                   "10-bit smallest three")  # fmt: skip
    big = count_clipped(splats.log_scales, -20.0, 20.0)
    if big:
        lost.append(f"{big} log-scale(s) outside [-20, 20] clipped")
    lost += extra_note(splats, "compressed PLY")
    return "\n".join(lines).encode("ascii") + b"".join(parts), tuple(lost)


def write(splats: Splats, path: str | os.PathLike, *, morton: bool = True) -> tuple[str, ...]:
    data, lost = encode(splats, morton=morton)
    with open(path, "wb") as f:
        f.write(data)
    return lost
