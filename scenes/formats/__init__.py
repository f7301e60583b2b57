"""Every splat file format the ecosystem uses: read all, write all (``.ksplat`` is read-only).

=================  ==================  =====  =====  ===============================================
format             extension           read   write  what the format cannot keep
=================  ==================  =====  =====  ===============================================
``ply``            ``.ply``            yes    yes    nothing (float32; extra properties kept)
``compressed_ply`` ``.compressed.ply`` yes    yes    11/10/11-bit positions and scales per 256-splat
                                                     chunk, 8-bit colour/opacity/SH, order (Morton)
``splat``          ``.splat``          yes    yes    SH beyond DC, 8-bit colour/opacity/rotation
``spz``            ``.spz``            v1-4   v2-4   24-bit positions, 8-bit scales/colour/opacity,
                                                     5/4-bit SH by default, rotation 8 (v2) or 10 bits
``ksplat``         ``.ksplat``         yes    no     (read-only)
=================  ==================  =====  =====  ===============================================

Writers are our own vectorised numpy code rather than gsplat's ``exporter.export_splats``: gsplat's writers
silently drop non-finite rows (and, through a broadcasting slip, *every* row when one opacity is ``+inf``), drop
low-opacity splats from compressed PLY, loop over splats in Python for ``.splat``, and write an empty ``sh`` element
for SH degree 0 that splat-transform rejects. The tests check our files against gsplat's and splat-transform's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from scenes.errors import FormatError
from scenes.formats import compressed_ply, ksplat, ply, spz
from scenes.formats import splat as splat_format
from scenes.formats._common import Decoded, read_bytes
from scenes.splats import Splats

__all__ = [
    "FORMATS",
    "WRITABLE",
    "ConversionReport",
    "convert_splats",
    "decode_splats",
    "detect_format",
    "format_from_name",
    "output_format",
    "read_splats",
    "write_splats",
]

_DECODERS = {
    "ply": ply.decode,
    "compressed_ply": compressed_ply.decode,
    "splat": splat_format.decode,
    "spz": spz.decode,
    "ksplat": ksplat.decode,
}
_WRITERS = {
    "ply": ply.write,
    "compressed_ply": compressed_ply.write,
    "splat": splat_format.write,
    "spz": spz.write,
}
_OPTIONS = {
    "ply": set(),
    "compressed_ply": {"morton"},
    "splat": set(),
    "spz": {"version", "sh1_bits", "sh_rest_bits", "fractional_bits", "level"},
}
FORMATS = tuple(_DECODERS)
WRITABLE = tuple(_WRITERS)
_ALIASES = {"compressed.ply": "compressed_ply", "compressed-ply": "compressed_ply", "ply_compressed": "compressed_ply"}


def format_from_name(name: str) -> str:
    """Normalise a user-given format name (``ply``, ``compressed_ply`` / ``compressed.ply``, ``splat``, ``spz``,
    ``ksplat``, with or without a leading dot)."""
    key = name.strip().lower().lstrip(".")
    key = _ALIASES.get(key, key)
    if key not in _DECODERS:
        raise FormatError(f"format {name!r} is not known; choose one of {', '.join(FORMATS)}")
    return key


def output_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The writable format for ``path``: ``format`` if given, else from the extension; raises for read-only or
    unknown ones."""
    path = Path(path)
    fmt = format_from_name(format) if format else _from_extension(path)
    if fmt is None:
        raise FormatError(f"{path}: cannot tell the format from the extension {path.suffix!r}; pass format= one of "
                          f"{', '.join(WRITABLE)}")  # fmt: skip
    if fmt not in _WRITERS:
        raise FormatError(f"{path}: {fmt} is read-only; write one of {', '.join(WRITABLE)}")
    return fmt


def _from_extension(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".compressed.ply"):
        return "compressed_ply"
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in _DECODERS else None


def detect_format(path: str | os.PathLike, head: bytes | None = None) -> str:
    """The format of ``path`` from its leading bytes where they tell (PLY, compressed PLY, SPZ), else its extension."""
    path = Path(path)
    if head is None:
        with open(path, "rb") as f:
            head = f.read(ply.MAX_HEADER_BYTES)
    if head.startswith(b"ply\n") or head.startswith(b"ply\r\n"):
        try:
            header = ply.parse_header(head, str(path))
        except FormatError:
            return "ply"  # let the PLY reader report what is wrong
        return "compressed_ply" if ply.is_compressed(header) else "ply"
    if head[:2] == b"\x1f\x8b" or head[:4] == b"NGSP":
        return "spz"
    fmt = _from_extension(path)
    if fmt is None:
        raise FormatError(
            f"{path}: cannot tell the splat format from the extension {path.suffix!r} or the first bytes "
            f"{head[:8]!r}; pass format= one of {', '.join(FORMATS)}"
        )
    return fmt


def decode_splats(data: bytes, format: str, source: str = "<bytes>", *, drop_invalid: bool = False) -> Decoded:
    """Decode bytes already in memory (``format`` as :func:`format_from_name`); returns splats and notes."""
    return _DECODERS[format_from_name(format)](data, source, drop_invalid=drop_invalid)


def _read(path: str | os.PathLike, format: str | None, drop_invalid: bool) -> Decoded:
    fmt = format_from_name(format) if format else detect_format(path)
    if fmt == "ply":
        return ply.read_path(path, str(path), drop_invalid=drop_invalid)
    return _DECODERS[fmt](read_bytes(path), str(path), drop_invalid=drop_invalid)


def read_splats(path: str | os.PathLike, format: str | None = None, *, drop_invalid: bool = False) -> Splats:
    """Read a splat file of any supported format (detected from its first bytes, then its extension).

    Malformed files raise :class:`~scenes.errors.FormatError`. A file with splats that have non-finite values or a
    zero quaternion raises too, unless ``drop_invalid`` (then they are dropped with a warning).
    """
    return _read(path, format, drop_invalid).splats


def write_splats(splats: Splats, path: str | os.PathLike, format: str | None = None, **options) -> tuple[str, ...]:
    """Write ``splats`` in ``format`` (default: from the extension; ``.compressed.ply`` is the PlayCanvas layout).

    ``options`` go to the writer: SPZ takes ``version`` (2, 3, 4; default 4), ``sh1_bits``, ``sh_rest_bits``,
    ``fractional_bits``, ``level``; compressed PLY takes ``morton``. Returns a description of what the format could
    not keep (empty for PLY).
    """
    if not isinstance(splats, Splats):
        raise FormatError(f"write_splats: expected a Splats, got {type(splats).__name__}")
    fmt = output_format(path, format)
    unknown = sorted(set(options) - _OPTIONS[fmt])
    if unknown:
        raise FormatError(
            f"{path}: the {fmt} writer does not take {unknown}; it takes {sorted(_OPTIONS[fmt]) or 'none'}"
        )
    return tuple(_WRITERS[fmt](splats, path, **options))


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert_splats` read and wrote."""

    source: str
    target: str
    source_format: str
    target_format: str
    count: int  # splats written
    sh_degree: int  # SH degree read
    bounds_min: tuple[float, float, float]
    bounds_max: tuple[float, float, float]
    read_notes: tuple[str, ...]  # about the input (version, dropped bands, invalid splats dropped)
    lost: tuple[str, ...]  # what the output format could not keep
    bytes_in: int
    bytes_out: int


def convert_splats(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    in_format: str | None = None,
    format: str | None = None,
    drop_invalid: bool = False,
    **options,
) -> ConversionReport:
    """Read ``src`` and write ``dst`` (formats as :func:`read_splats` / :func:`write_splats`)."""
    fmt = output_format(dst, format)
    decoded = _read(src, in_format, drop_invalid)
    s = decoded.splats
    lost = write_splats(s, dst, fmt, **options)
    lo, hi = s.bounds()
    return ConversionReport(
        str(src), str(dst), decoded.format, fmt, len(s), s.sh_degree,
        tuple(float(v) for v in lo), tuple(float(v) for v in hi), decoded.notes, lost,
        os.path.getsize(src), os.path.getsize(dst),
    )  # fmt: skip
