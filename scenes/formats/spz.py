"""Niantic SPZ, versions 1-4 (read) and 2-4 (write), following github.com/nianticlabs/spz.

Versions 1-3: a 16-byte header and the attribute streams concatenated, gzip-compressed as one stream (a raw,
uncompressed stream is read too). Version 4: a 32-byte ``NGSP`` header, optional extension records, a table of
``(compressed, uncompressed)`` u64 sizes and one ZSTD frame per attribute stream. Streams, in order: positions
(24-bit fixed point; float16 in v1), alphas (u8 sigmoid), colours (u8, DC SH scaled by 0.15), scales (u8 log,
``b / 16 - 10``), rotations (v1-2: xyz of the unit quaternion with w >= 0 as u8; v3+: "smallest three" in a u32),
SH (u8 ``(b - 128) / 128``, coefficient-major with the colour innermost).

Coordinates are read and written as stored (the spec's ``UNSPECIFIED`` coordinate system, as splat-transform does):
no axis flip is applied, so a PLY written from an SPZ holds the same numbers as the SPZ.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from scenes._deps import require
from scenes.errors import FormatError
from scenes.formats._common import (
    OTHERS,
    Decoded,
    count_clipped,
    extra_note,
    finish,
    largest_first_positive,
    logit_from_u8,
    need,
    round_half_away,
    sigmoid,
    unit_quats,
)
from scenes.splats import Splats

__all__ = ["decode", "encode", "write", "MAGIC", "COLOR_SCALE"]

MAGIC = 0x5053474E  # "NGSP" little endian
COLOR_SCALE = 0.15
SQRT1_2 = np.float32(0.7071067811865476)
MAX_RATIO = 1024  # decoded bytes a file byte may claim (the reference reader's bound)
GZIP_MAX_RATIO = 1032  # deflate cannot expand more than this
_DIMS = (0, 3, 8, 15, 24)  # SH coefficients beyond DC for degrees 0-4
_STREAMS = ("positions", "alphas", "colors", "scales", "rotations", "sh")
FLAG_ANTIALIASED = 0x1
FLAG_EXTENSIONS = 0x2


def _sizes(n: int, degree: int, version: int) -> list[int]:
    return [n * (6 if version == 1 else 9), n, 3 * n, 3 * n, n * (4 if version >= 3 else 3), 3 * n * _DIMS[degree]]


def _check_header(source: str, version: int, n: int, degree: int, data_len: int, ratio: int | None) -> list[int]:
    if version < 1 or version > 4:
        raise FormatError(f"{source}: SPZ version {version} is not supported (this reader handles versions 1-4)")
    if degree > 4:
        raise FormatError(f"{source}: SPZ SH degree {degree} is invalid (0-4)")
    sizes = _sizes(n, degree, version)
    if ratio is not None and sum(sizes) > max(data_len, 64) * ratio:
        raise FormatError(
            f"{source}: SPZ header claims {n} splats ({sum(sizes)} bytes decoded) but the file has only {data_len} "
            "bytes; corrupt header"
        )
    return sizes


def decode(data: bytes | memoryview, source: str = "<bytes>", *, drop_invalid: bool = False) -> Decoded:
    data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    if len(data) >= 2 and data[0] == 0x1F and data[1] == 0x8B:
        return _decode_legacy(_gunzip(data, source), source, drop_invalid, "gzip")
    if len(data) < 8 or struct.unpack_from("<I", data, 0)[0] != MAGIC:
        raise FormatError(f"{source}: not an SPZ file (neither gzip nor 'NGSP' magic; first bytes {bytes(data[:8])!r})")
    version = struct.unpack_from("<I", data, 4)[0]
    if version >= 4:
        return _decode_v4(data, source, drop_invalid)
    return _decode_legacy(data, source, drop_invalid, "uncompressed")


def _gunzip(data, source: str) -> bytes:
    """Decompress just the bytes the header says the streams need (bounded allocation)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def take(buf: bytes, tail, want: int) -> tuple[bytes, bytes]:
        parts = [buf]
        got = len(buf)
        while got < want and tail:
            chunk = d.decompress(tail, want - got)
            tail = d.unconsumed_tail
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts), tail

    try:
        head, tail = take(b"", bytes(data), 16)
        if len(head) < 16:
            raise FormatError(f"{source}: gzip stream holds {len(head)} bytes, less than the 16-byte SPZ header")
        magic, version, n, degree = struct.unpack_from("<IIIB", head, 0)
        if magic != MAGIC:
            raise FormatError(f"{source}: gzip stream does not start with the SPZ 'NGSP' magic")
        sizes = _check_header(source, version, n, degree, len(data), GZIP_MAX_RATIO)
        total = 16 + sum(sizes)
        out, _ = take(head, tail, total)
    except zlib.error as exc:
        raise FormatError(f"{source}: corrupt gzip stream ({exc})") from exc
    if len(out) < total:
        raise FormatError(
            f"{source}: truncated SPZ: the header declares {n} splats ({total} bytes decompressed) but the gzip "
            f"stream holds only {len(out)} bytes"
        )
    return out


def _decode_legacy(buf, source: str, drop_invalid: bool, how: str) -> Decoded:
    need(source, len(buf), 16, "the SPZ header")
    magic, version, n, degree, fb, flags = struct.unpack_from("<IIIBBB", buf, 0)
    if version >= 4:
        raise FormatError(f"{source}: SPZ version {version} inside a gzip stream; versions >= 4 use the NGSP layout")
    sizes = _check_header(source, version, n, degree, len(buf), None)
    need(source, len(buf), 16 + sum(sizes), f"{n} splats of SPZ v{version}")
    streams, off = [], 16
    for s in sizes:
        streams.append(np.frombuffer(buf, np.uint8, count=s, offset=off))
        off += s
    return _unpack(streams, version, n, degree, fb, flags, source, drop_invalid, [f"SPZ v{version} ({how})"])


def _decode_v4(data, source: str, drop_invalid: bool) -> Decoded:
    zstd = require("zstandard", "reading SPZ v4")
    need(source, len(data), 32, "the SPZ v4 header")
    magic, version, n, degree, fb, flags, num_streams, toc = struct.unpack_from("<IIIBBBBI", data, 0)
    sizes = _check_header(source, version, n, degree, len(data), MAX_RATIO)
    nonempty = [i for i, s in enumerate(sizes) if s > 0]
    if num_streams != len(nonempty):
        raise FormatError(
            f"{source}: SPZ v4 header lists {num_streams} streams; {n} splats of SH degree {degree} "
            f"need {len(nonempty)}"
        )
    if toc < 32:
        raise FormatError(f"{source}: SPZ v4 table of contents offset {toc} lies inside the 32-byte header")
    start = toc + 16 * num_streams
    need(source, len(data), start, "the SPZ v4 table of contents")
    streams: list[np.ndarray] = [np.zeros(0, np.uint8)] * len(sizes)
    dctx = zstd.ZstdDecompressor()
    for j, i in enumerate(nonempty):
        csize, usize = struct.unpack_from("<QQ", data, toc + 16 * j)
        if usize != sizes[i]:
            raise FormatError(f"{source}: SPZ v4 stream {_STREAMS[i]} holds {usize} bytes; {n} splats need {sizes[i]}")
        need(source, len(data), start + csize, f"SPZ v4 stream {_STREAMS[i]}")
        chunk = bytes(data[start : start + csize])
        start += csize
        try:
            declared = zstd.frame_content_size(chunk)
            if declared not in (-1, usize):
                raise FormatError(f"{source}: SPZ v4 stream {_STREAMS[i]} declares {declared} bytes, expected {usize}")
            raw = dctx.decompress(chunk, max_output_size=usize) if declared == -1 else dctx.decompress(chunk)
        except zstd.ZstdError as exc:
            raise FormatError(f"{source}: corrupt ZSTD stream {_STREAMS[i]} in SPZ v4 ({exc})") from exc
        if len(raw) != usize:
            raise FormatError(
                f"{source}: SPZ v4 stream {_STREAMS[i]} decompressed to {len(raw)} bytes, expected {usize}"
            )
        streams[i] = np.frombuffer(raw, np.uint8)
    notes = ["SPZ v4 (zstd)"]
    if flags & FLAG_EXTENSIONS:
        notes.append(f"{toc - 32} bytes of SPZ extension records skipped")
    return _unpack(streams, version, n, degree, fb, flags, source, drop_invalid, notes)


_SCALE_LUT = (np.arange(256, dtype=np.float32) / np.float32(16.0) - np.float32(10.0)).astype(np.float32)
_COLOR_LUT = (
    (np.arange(256, dtype=np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(COLOR_SCALE)
).astype(np.float32)


def _unpack(streams, version, n, degree, fb, flags, source, drop_invalid, notes) -> Decoded:
    pos, alphas, colors, scales, rots, sh_bytes = streams
    if version == 1:
        means = pos.view("<f2").reshape(n, 3).astype(np.float32)
    else:
        b = pos.reshape(n * 3, 3)
        fixed = b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].astype(np.int32) << 16)
        fixed = (fixed ^ 0x800000) - 0x800000
        means = fixed.reshape(n, 3).astype(np.float32) * np.float32(2.0**-fb)
    log_scales = _SCALE_LUT[scales.reshape(n, 3)]
    if version >= 3:
        xyzw = _unpack_smallest_three(rots.view("<u4"))
    else:
        xyz = rots.reshape(n, 3).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        w = np.sqrt(np.maximum(0.0, 1.0 - (xyz * xyz).sum(1))).astype(np.float32)
        xyzw = np.concatenate([xyz, w[:, None]], axis=1)
    quats = xyzw[:, [3, 0, 1, 2]]
    dims = _DIMS[degree]
    keep = min(dims, 15)
    sh = np.empty((n, keep + 1, 3), np.float32)
    sh[:, 0] = _COLOR_LUT[colors.reshape(n, 3)]
    if dims:
        rest = sh[:, 1:]
        np.subtract(sh_bytes.reshape(n, dims, 3)[:, :keep], np.float32(128.0), out=rest, dtype=np.float32)
        rest *= np.float32(1.0 / 128.0)  # exact: (b - 128) / 128
    if dims > keep:
        notes.append("SH band 4 dropped (Splats holds degrees 0-3)")
    if flags & FLAG_ANTIALIASED:
        notes.append("file flags say the splats were trained with antialiasing (mip-splatting); flag not kept")
    return finish(source, "spz", means, quats, log_scales, logit_from_u8(alphas), sh, notes=notes,
                  drop_invalid=drop_invalid)  # fmt: skip


def _unpack_smallest_three(comp: np.ndarray) -> np.ndarray:
    """[N] u32 -> [N, 4] xyzw (spz's ``unpackQuaternionSmallestThree``)."""
    comp = comp.astype(np.uint32)
    largest = (comp >> np.uint32(30)).astype(np.intp)
    vals = []
    for shift in (20, 10, 0):  # the first of the three others sits in the highest bits
        c = (comp >> np.uint32(shift)) & np.uint32(0x3FF)
        mag = (c & np.uint32(0x1FF)).astype(np.float32)
        v = SQRT1_2 * mag / np.float32(511.0)
        vals.append(np.where((c >> np.uint32(9)) & np.uint32(1), -v, v).astype(np.float32))
    three = np.stack(vals, axis=1)
    q = np.empty((len(comp), 4), np.float32)
    rows = np.arange(len(comp))[:, None]
    q[rows, OTHERS[largest]] = three
    q[rows[:, 0], largest] = np.sqrt(np.maximum(0.0, 1.0 - (three * three).sum(1)))
    return q


def _pack_smallest_three(xyzw: np.ndarray) -> np.ndarray:
    """[N, 4] unit xyzw -> [N] u32 (spz's ``packQuaternionSmallestThree``)."""
    largest, q = largest_first_positive(xyzw)
    others = np.take_along_axis(q, OTHERS[largest], axis=1)
    mag = np.minimum(np.float32(511.0) * (np.abs(others) / SQRT1_2) + np.float32(0.5), np.float32(511.0))
    mag = mag.astype(np.uint32)  # truncation, as the reference's cast
    neg = (others < 0).astype(np.uint32)
    comp = largest.astype(np.uint32)
    for j in range(3):
        comp = (comp << np.uint32(10)) | (neg[:, j] << np.uint32(9)) | mag[:, j]
    return comp


def _round_clip_u8(t: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = clamp(round(t), 0, 255)``, in place on the float32 temporary ``t`` (spz's ``toUint8``)."""
    np.add(t, np.copysign(np.float32(0.5), t), out=t)
    np.trunc(t, out=t)
    np.clip(t, 0, 255, out=t)
    out[...] = t


BLOCK = 1 << 15  # splats encoded at a time (keeps the float temporaries in cache)


def encode(splats: Splats, version: int = 4, **options) -> tuple[bytes, tuple[str, ...]]:
    """SPZ bytes of ``splats`` and a description of what was lost (``options`` as :func:`write`)."""
    parts, lost = _encode_parts(splats, version, **options)
    return b"".join(parts), lost


def _encode_parts(
    splats: Splats,
    version: int = 4,
    *,
    sh1_bits: int = 5,
    sh_rest_bits: int = 4,
    fractional_bits: int | None = None,
    level: int | None = None,
) -> tuple[list, tuple[str, ...]]:
    """The pieces of an SPZ file of ``splats`` and a description of what was lost.

    ``sh1_bits`` / ``sh_rest_bits``: bits kept for SH band 1 / bands 2-3 (the reference defaults 5 and 4; 8 keeps
    all the format holds). ``fractional_bits``: position resolution 2^-bits m (default 12, lowered automatically when
    the scene is too large for 24-bit fixed point). ``level``: ZSTD level for v4 or zlib level for v2-3 (default 1
    for both: the reference's level 12 / 6 make files ~1-5% smaller at 5-10 times the cost).
    Quantisation matches the reference encoder byte for byte except, rarely, for values within float32 rounding of
    a rounding tie.
    """
    if version not in (2, 3, 4):
        raise FormatError(f"SPZ version {version!r} cannot be written; choose 2, 3 or 4 (version 1 is read-only)")
    for name, bits in (("sh1_bits", sh1_bits), ("sh_rest_bits", sh_rest_bits)):
        if not isinstance(bits, int) or not 1 <= bits <= 8:
            raise FormatError(f"{name}={bits!r}: SH quantisation bits must be an integer in 1..8")
    n = len(splats)
    degree = splats.sh_degree
    dims = _DIMS[degree]
    lost: list[str] = []
    maxabs = float(np.abs(splats.means).max()) if n else 0.0
    limit = 2**23 - 1
    if fractional_bits is None:
        fractional_bits = 12
        while fractional_bits > 0 and maxabs * 2.0**fractional_bits > limit:
            fractional_bits -= 1
        if fractional_bits < 12:
            lost.append(f"fractional bits lowered to {fractional_bits} so positions up to {maxabs:.1f} m fit 24 bits")
    if not isinstance(fractional_bits, int) or not 0 <= fractional_bits <= 23:
        raise FormatError(f"fractional_bits={fractional_bits!r}: must be an integer in 0..23")
    if maxabs * 2.0**fractional_bits > limit:
        raise FormatError(
            f"positions up to {maxabs:.4g} m do not fit SPZ's 24-bit fixed point at {fractional_bits} fractional bits "
            f"(limit {limit / 2.0**fractional_bits:.4g} m); lower fractional_bits or recentre the scene"
        )
    pos = np.empty((n, 9), np.uint8)
    alphas = np.empty(n, np.uint8)
    colors = np.empty((n, 3), np.uint8)
    scales = np.empty((n, 3), np.uint8)
    rots = np.empty((n, 4 if version >= 3 else 3), np.uint8)
    sh = np.empty((n, dims, 3), np.uint8)
    f32 = np.float32
    for a in range(0, n, BLOCK):
        b = min(n, a + BLOCK)
        t = splats.means[a:b] * f32(2.0**fractional_bits)
        fixed = round_half_away(t.astype(np.float64)).astype("<i4")  # two's complement; keep the low 3 bytes
        pos[a:b] = fixed.view(np.uint8).reshape(b - a, 3, 4)[:, :, :3].reshape(b - a, 9)
        _round_clip_u8(sigmoid(splats.opacity_logits[a:b]) * f32(255.0), alphas[a:b])
        _round_clip_u8(splats.sh[a:b, 0] * f32(COLOR_SCALE * 255.0) + f32(127.5), colors[a:b])
        _round_clip_u8((splats.log_scales[a:b] + f32(10.0)) * f32(16.0), scales[a:b])
        xyzw = unit_quats(splats.quats[a:b])[:, [1, 2, 3, 0]]
        if version >= 3:
            rots[a:b] = _pack_smallest_three(xyzw).astype("<u4").view(np.uint8).reshape(-1, 4)
        else:
            sgn = np.where(xyzw[:, 3:4] < 0, f32(-127.5), f32(127.5))
            _round_clip_u8(xyzw[:, :3] * sgn + f32(127.5), rots[a:b])
        if dims:
            t = splats.sh[a:b, 1:4] * f32(128.0)
            np.add(t, np.copysign(f32(0.5), t), out=t)
            np.trunc(t, out=t)
            t += f32(128.0)
            _bucket(t, sh[a:b, :3], 1 << (8 - sh1_bits))
            if degree > 1:
                t = splats.sh[a:b, 4:] * f32(128.0)
                np.add(t, np.copysign(f32(0.5), t), out=t)
                np.trunc(t, out=t)
                t += f32(128.0)
                _bucket(t, sh[a:b, 3:], 1 << (8 - sh_rest_bits))
    lost.append(f"positions quantised to 2^-{fractional_bits} m")
    lost.append("log-scales quantised to 1/16, opacity and colour to 8 bits")
    lost.append("rotations quantised to " + ("9 bits + sign (smallest three)" if version >= 3 else
                                              "8 bits (xyz, w reconstructed)"))  # fmt: skip
    if degree:
        lost.append(f"SH band 1 quantised to {sh1_bits} bits" + (f", bands 2+ to {sh_rest_bits} bits" if degree > 1
                                                                    else ""))  # fmt: skip
    dc_lim = 127.5 / (COLOR_SCALE * 255.0)
    for what, count in (
        ("SH coefficient(s) outside [-1, 1]", count_clipped(splats.sh[:, 1:], -1.0, 127.0 / 128.0) if degree else 0),
        ("log-scale(s) outside [-10, 5.94]", count_clipped(splats.log_scales, -10.0, 5.96875)),
        (f"base colour SH value(s) outside +-{dc_lim:.2f}", count_clipped(splats.sh[:, 0], -dc_lim, dc_lim)),
    ):
        if count:
            lost.append(f"{count} {what} clipped")
    lost += extra_note(splats, "SPZ")
    streams = [a.reshape(-1) for a in (pos, alphas, colors, scales, rots, sh)]
    if version >= 4:
        zstd = require("zstandard", "writing SPZ v4")
        cctx = zstd.ZstdCompressor(level=1 if level is None else level)
        chunks = [(cctx.compress(a), a.size) for a in streams if a.size]
        header = struct.pack("<IIIBBBBI12x", MAGIC, version, n, degree, fractional_bits, 0, len(chunks), 32)
        toc = b"".join(struct.pack("<QQ", len(c), u) for c, u in chunks)
        return [header, toc, *(c for c, _ in chunks)], tuple(lost)
    header = struct.pack("<IIIBBBB", MAGIC, version, n, degree, fractional_bits, 0, 0)
    comp = zlib.compressobj(1 if level is None else level, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 9)
    return [comp.compress(header), *(comp.compress(a) for a in streams), comp.flush()], tuple(lost)


def _bucket(q: np.ndarray, out: np.ndarray, bucket: int) -> None:
    """spz's ``quantizeSH`` after ``q = round(x * 128) + 128``: round to the nearest bucket centre, clamp to u8."""
    if bucket > 1:  # q holds integers and bucket is a power of two: floor(q / bucket) is exact as below
        q += np.float32(bucket // 2)
        q *= np.float32(1.0 / bucket)
        np.floor(q, out=q)
        q *= np.float32(bucket)
    np.clip(q, 0, 255, out=q)
    out[...] = q


def write(splats: Splats, path: str | os.PathLike, *, version: int = 4, **options) -> tuple[str, ...]:
    """Write SPZ ``version`` 2, 3 or 4 (``options``: ``sh1_bits``, ``sh_rest_bits``, ``fractional_bits``, ``level``;
    see :func:`_encode_parts`). Returns what the format could not keep."""
    parts, lost = _encode_parts(splats, version, **options)
    with open(path, "wb") as f:
        for part in parts:
            f.write(part)
    return lost
