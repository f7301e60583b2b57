"""GaussianSplats3D ``.ksplat`` (read only), following mkkellogg/GaussianSplats3D's ``SplatBuffer``.

A 4096-byte header (version 0.1+, counts, compression level 0-2, SH range), ``maxSections`` 1024-byte section
headers, then per section: partial-bucket sizes, bucket centres and the splat records. Level 0 stores float32; levels
1-2 store positions as uint16 offsets from bucket centres and scales/rotations as float16; colour is RGBA uint8
(linear scales, alpha = sigmoid(opacity)); SH (degree <= 2 in practice) are float32, float16 or uint8 over the
header's [min, max], band by band with the channel outer.
"""

from __future__ import annotations

import struct

import numpy as np

from scenes.errors import FormatError
from scenes.formats._common import Decoded, finish, log_scales_from_linear, logit_from_u8, need, sh0_from_rgb_u8

__all__ = ["decode"]

MAIN_HEADER = 4096
SECTION_HEADER = 1024
# level -> (bytes of centre, scale, rotation, colour, one SH value; default quantisation range)
_LEVELS = {0: (12, 12, 16, 4, 4, 1), 1: (6, 6, 8, 4, 2, 32767), 2: (6, 6, 8, 4, 1, 32767)}
_SH_COUNT = (0, 9, 24, 45)


def _sh_columns(count: int) -> np.ndarray:
    """For each stored SH value i, its (coefficient, channel) in our [K - 1, 3] layout (beyond DC)."""
    coeff, chan = np.zeros(count, np.intp), np.zeros(count, np.intp)
    start, base = 0, 0
    for width in (3, 5, 7):  # bands 1, 2, 3: channel outer, coefficient inner
        if start >= count:
            break
        for i in range(3 * width):
            chan[start + i], coeff[start + i] = i // width, base + i % width
        start += 3 * width
        base += width
    return np.stack([coeff, chan], axis=1)


def decode(data: bytes | memoryview, source: str = "<bytes>", *, drop_invalid: bool = False) -> Decoded:
    size = len(data)
    need(source, size, MAIN_HEADER, "the .ksplat header")
    major, minor = data[0], data[1]
    if major != 0 or minor < 1:
        raise FormatError(f"{source}: .ksplat version {major}.{minor} is not supported (0.1 and later 0.x)")
    max_sections, _sections, _max_splats, num_splats = struct.unpack_from("<IIII", data, 4)
    level = struct.unpack_from("<H", data, 20)[0]
    sh_min, sh_max = struct.unpack_from("<ff", data, 36)
    sh_min = sh_min if sh_min else -1.5
    sh_max = sh_max if sh_max else 1.5
    if level not in _LEVELS:
        raise FormatError(f"{source}: .ksplat compression level {level} is invalid (0, 1 or 2)")
    cb, sb, rb, colb, hb, default_range = _LEVELS[level]
    need(source, size, MAIN_HEADER + max_sections * SECTION_HEADER, f"{max_sections} .ksplat section headers")
    sections = []
    degree = 0
    for s in range(max_sections):
        h = MAIN_HEADER + s * SECTION_HEADER
        count, max_count, capacity, buckets = struct.unpack_from("<IIII", data, h)
        block = struct.unpack_from("<f", data, h + 16)[0]
        bucket_bytes = struct.unpack_from("<H", data, h + 20)[0]
        qrange = struct.unpack_from("<I", data, h + 24)[0] or default_range
        full, partial = struct.unpack_from("<II", data, h + 32)
        sdeg = struct.unpack_from("<H", data, h + 40)[0]
        if sdeg > 3:
            raise FormatError(f"{source}: .ksplat section {s} has SH degree {sdeg} (0-3)")
        if count > max_count or full + partial > buckets or (level and full * capacity > count):
            raise FormatError(f"{source}: .ksplat section {s} header is inconsistent ({count} of {max_count} splats, "
                              f"{full} full + {partial} partial of {buckets} buckets of {capacity})")  # fmt: skip
        if count:
            degree = max(degree, sdeg)
        sections.append((count, max_count, capacity, buckets, block, bucket_bytes, qrange, full, partial, sdeg))
    if sum(sec[0] for sec in sections) != num_splats:
        raise FormatError(f"{source}: .ksplat header declares {num_splats} splats but its sections hold "
                          f"{sum(sec[0] for sec in sections)}")  # fmt: skip
    k = {0: 1, 1: 4, 2: 9, 3: 16}[degree]
    out_means, out_scales, out_rot, out_rgba, out_sh = [], [], [], [], []
    offset = MAIN_HEADER + max_sections * SECTION_HEADER
    for s, (count, max_count, capacity, buckets, block, bucket_bytes, qrange, full, partial, sdeg) in enumerate(
        sections
    ):
        nsh = _SH_COUNT[sdeg]
        per = cb + sb + rb + colb + nsh * hb
        meta = partial * 4
        bucket_total = bucket_bytes * buckets + meta
        need(source, size, offset + bucket_total + per * max_count, f".ksplat section {s} ({max_count} splats)")
        rec = np.frombuffer(data, np.uint8, count=per * count, offset=offset + bucket_total).reshape(count, per)
        if level == 0:
            means = rec[:, 0:12].copy().view("<f4")
            scales = rec[:, 12:24].copy().view("<f4")
            rot = rec[:, 24:40].copy().view("<f4")
        else:
            if bucket_bytes < 12 and buckets:
                raise FormatError(f"{source}: .ksplat section {s} bucket storage of {bucket_bytes} bytes < 12")
            sizes = np.frombuffer(data, "<u4", count=partial, offset=offset)
            bucket_of = np.full(count, -1, np.intp)
            nfull = min(full * capacity, count)
            bucket_of[:nfull] = np.arange(nfull) // max(capacity, 1)
            if partial:
                if int(sizes.astype(np.int64).sum()) != count - nfull:
                    raise FormatError(f"{source}: .ksplat section {s} partial buckets hold {int(sizes.sum())} splats, "
                                      f"expected {count - nfull}")  # fmt: skip
                bucket_of[nfull:] = np.repeat(np.arange(full, full + partial), sizes.astype(np.intp))
            elif nfull != count:
                raise FormatError(f"{source}: .ksplat section {s}: {count - nfull} splats belong to no bucket")
            centres = np.frombuffer(data, np.uint8, count=bucket_bytes * buckets, offset=offset + meta)
            centres = centres.reshape(buckets, bucket_bytes)[:, :12].copy().view("<f4")
            scale = np.float32(block / 2.0 / qrange)
            q = rec[:, 0:6].copy().view("<u2").astype(np.float32)
            means = (q - np.float32(qrange)) * scale + centres[bucket_of] if count else np.zeros((0, 3), np.float32)
            scales = rec[:, 6:12].copy().view("<f2").astype(np.float32)
            rot = rec[:, 12:20].copy().view("<f2").astype(np.float32)
        c0 = cb + sb + rb
        rgba = rec[:, c0 : c0 + 4]
        sh = np.zeros((count, k - 1, 3), np.float32)
        if nsh:
            raw = rec[:, c0 + 4 : c0 + 4 + nsh * hb]
            if level == 0:
                vals = raw.copy().view("<f4")
            elif level == 1:
                vals = raw.copy().view("<f2").astype(np.float32)
            else:
                vals = np.float32(sh_min) + raw.astype(np.float32) / np.float32(255.0) * np.float32(sh_max - sh_min)
            cols = _sh_columns(nsh)
            sh[:, cols[:, 0], cols[:, 1]] = vals
        out_means.append(means.reshape(count, 3))
        out_scales.append(scales.reshape(count, 3))
        out_rot.append(rot.reshape(count, 4))
        out_rgba.append(rgba)
        out_sh.append(sh)
        offset += bucket_total + per * max_count
    means = np.concatenate(out_means) if out_means else np.zeros((0, 3), np.float32)
    log_scales, zeros = log_scales_from_linear(np.concatenate(out_scales) if out_scales else np.zeros((0, 3)))
    rgba = np.concatenate(out_rgba) if out_rgba else np.zeros((0, 4), np.uint8)
    sh = np.concatenate([sh0_from_rgb_u8(rgba[:, :3])[:, None, :], np.concatenate(out_sh) if out_sh else
                         np.zeros((0, k - 1, 3), np.float32)], axis=1)  # fmt: skip
    notes = [f".ksplat v{major}.{minor}, compression level {level}"]
    if zeros:
        notes.append(f"{zeros} zero scale(s) clamped to the smallest float32")
    quats = np.concatenate(out_rot) if out_rot else np.zeros((0, 4), np.float32)
    return finish(source, "ksplat", means, quats, log_scales, logit_from_u8(rgba[:, 3]), sh, notes=notes,
                  drop_invalid=drop_invalid)  # fmt: skip
