"""Inria 3DGS PLY: read (any property order and type, extra properties, ascii / big endian) and write.

The standard layout written is ``x y z nx ny nz f_dc_0..2 f_rest_0..M opacity scale_0..2 rot_0..3`` in float32
little endian, followed by any extra per-splat properties kept in ``Splats.extra``. ``f_rest`` is channel-major
(all coefficients of red, then green, then blue).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from scenes.errors import FormatError
from scenes.formats._common import Decoded, finish
from scenes.splats import Splats

__all__ = ["PlyElement", "PlyHeader", "parse_header", "element_arrays", "decode", "write"]

MAX_HEADER_BYTES = 1 << 20
_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_PLY_NAME = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint", "f4": "float",
             "f8": "double"}  # fmt: skip
_ENCODINGS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "="}
_REST = re.compile(r"f_rest_(\d+)$")
_BASE = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
         "rot_0", "rot_1", "rot_2", "rot_3")  # fmt: skip
_NORMALS = ("nx", "ny", "nz")


@dataclass(frozen=True)
class PlyElement:
    name: str
    count: int
    properties: tuple[tuple[str, str], ...]  # (name, numpy type code "f4" ...); list properties have type "list"

    @property
    def has_list(self) -> bool:
        return any(t == "list" for _, t in self.properties)

    def names(self) -> list[str]:
        return [n for n, _ in self.properties]


@dataclass(frozen=True)
class PlyHeader:
    encoding: str  # binary_little_endian, binary_big_endian or ascii
    elements: tuple[PlyElement, ...]
    comments: tuple[str, ...]
    data_offset: int  # byte offset of the first element's data

    def element(self, name: str) -> PlyElement | None:
        for el in self.elements:
            if el.name == name:
                return el
        return None

    def dtype(self, element: PlyElement) -> np.dtype:
        order = _ENCODINGS[self.encoding]
        return np.dtype([(n, order + t) for n, t in element.properties])


def parse_header(data: bytes | memoryview, source: str) -> PlyHeader:
    """Parse a PLY header; raises :class:`FormatError` naming ``source`` for anything malformed."""
    head = bytes(data[: MAX_HEADER_BYTES + 16])
    if not (head.startswith(b"ply\n") or head.startswith(b"ply\r\n")):
        raise FormatError(f"{source}: not a PLY file (it does not start with 'ply'; first bytes {head[:8]!r})")
    end = head.find(b"end_header")
    if end < 0:
        raise FormatError(
            f"{source}: no 'end_header' in the first {min(len(head), MAX_HEADER_BYTES)} bytes "
            "(truncated file or not a PLY)"
        )
    nl = head.find(b"\n", end)
    if nl < 0:
        raise FormatError(f"{source}: truncated PLY header (no newline after 'end_header')")
    text = head[:end].decode("latin-1")  # comments may hold any bytes; keywords are checked below
    encoding = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    comments: list[str] = []
    for lineno, raw in enumerate(text.split("\n")[1:], start=2):
        words = raw.strip().split()
        if not words:
            continue
        key = words[0]
        if key in ("comment", "obj_info"):
            comments.append(raw.strip()[len(key) + 1 :])
        elif key == "format":
            if len(words) != 3 or words[1] not in _ENCODINGS:
                raise FormatError(
                    f"{source}: line {lineno}: unsupported PLY format {raw.strip()!r} "
                    f"(expected one of {', '.join(_ENCODINGS)})"
                )
            encoding = words[1]
        elif key == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise FormatError(f"{source}: line {lineno}: malformed element line {raw.strip()!r}")
            elements.append((words[1], int(words[2]), []))
        elif key == "property":
            if not elements:
                raise FormatError(f"{source}: line {lineno}: property before any element")
            props = elements[-1][2]
            if len(words) == 5 and words[1] == "list":
                if words[2] not in _TYPES or words[3] not in _TYPES:
                    raise FormatError(f"{source}: line {lineno}: unknown list types in {raw.strip()!r}")
                name, typ = words[4], "list"
            elif len(words) == 3 and words[1] in _TYPES:
                name, typ = words[2], _TYPES[words[1]]
            else:
                raise FormatError(
                    f"{source}: line {lineno}: malformed property line {raw.strip()!r} "
                    f"(types: {', '.join(sorted(set(_TYPES)))})"
                )
            if any(n == name for n, _ in props):
                raise FormatError(
                    f"{source}: line {lineno}: duplicate property {name!r} in element {elements[-1][0]!r}"
                )
            props.append((name, typ))
        else:
            raise FormatError(f"{source}: line {lineno}: unexpected PLY header line {raw.strip()!r}")
    if encoding is None:
        raise FormatError(f"{source}: PLY header has no 'format' line")
    return PlyHeader(
        encoding,
        tuple(PlyElement(n, c, tuple(p)) for n, c, p in elements),
        tuple(comments),
        nl + 1,
    )


def element_arrays(data: bytes | memoryview, header: PlyHeader, names: tuple[str, ...], source: str) -> dict:
    """Structured arrays (views into ``data`` for binary files) of the elements ``names``.

    Declared counts are checked against the file size before anything is allocated; a short file raises
    :class:`FormatError` with the expected and actual sizes.
    """
    if header.encoding == "ascii":
        return _ascii_arrays(data, header, names, source)
    out = {}
    offset = header.data_offset
    for el in header.elements:
        if el.name in names:
            if el.has_list:
                raise FormatError(
                    f"{source}: PLY element {el.name!r} has list properties, which splat files do "
                    "not use; it cannot be read"
                )
            dtype = header.dtype(el)
            end = offset + el.count * dtype.itemsize
            if end > len(data):
                raise FormatError(
                    f"{source}: truncated PLY: the header declares {el.count} {el.name!r} rows of {dtype.itemsize} "
                    f"bytes, so the file should have at least {end} bytes (expected size {end}) but it has "
                    f"{len(data)} bytes (actual size); re-export or re-download it"
                )
            out[el.name] = np.frombuffer(data, dtype=dtype, count=el.count, offset=offset)
        if len(out) == len(names):
            break
        if el.has_list:
            missing = [n for n in names if n not in out]
            raise FormatError(
                f"{source}: PLY element(s) {missing} follow an element with list properties "
                f"({el.name!r}); this reader cannot locate them"
            )
        offset += el.count * header.dtype(el).itemsize
    return out


def _ascii_arrays(data, header: PlyHeader, names: tuple[str, ...], source: str) -> dict:
    body = bytes(data[header.data_offset :])
    lines = body.split(b"\n")
    out = {}
    line = 0
    for el in header.elements:
        if el.count > len(lines) - line:
            raise FormatError(
                f"{source}: truncated ascii PLY: element {el.name!r} declares {el.count} rows but "
                f"only {max(len(lines) - line, 0)} lines remain"
            )
        if el.name in names:
            if el.has_list:
                raise FormatError(f"{source}: PLY element {el.name!r} has list properties; it cannot be read")
            tokens = b" ".join(lines[line : line + el.count]).split()
            width = len(el.properties)
            if len(tokens) != el.count * width:
                raise FormatError(
                    f"{source}: ascii PLY element {el.name!r}: expected {el.count} rows of {width} "
                    f"values ({el.count * width} values), found {len(tokens)}"
                )
            try:
                values = (
                    np.array(tokens, dtype=np.float64).reshape(el.count, width)
                    if tokens
                    else np.zeros((el.count, width))
                )
            except ValueError as exc:
                raise FormatError(f"{source}: ascii PLY element {el.name!r} holds a non-number ({exc})") from exc
            arr = np.empty(el.count, dtype=header.dtype(el).newbyteorder("="))
            for j, (name, typ) in enumerate(el.properties):
                col = values[:, j]
                if typ[0] in "iu":
                    info = np.iinfo(typ)
                    if col.size and (np.any(col != np.round(col)) or col.min() < info.min or col.max() > info.max):
                        raise FormatError(f"{source}: ascii PLY property {name!r} has values outside {typ}")
                arr[name] = col
            out[el.name] = arr
            if len(out) == len(names):
                break
        line += el.count
    return out


def is_compressed(header: PlyHeader) -> bool:
    vertex = header.element("vertex")
    return header.element("chunk") is not None and vertex is not None and "packed_position" in vertex.names()


def _rest_columns(names: list[str], source: str) -> list[str]:
    idx = sorted(int(m.group(1)) for n in names if (m := _REST.match(n)))
    if idx != list(range(len(idx))) or len(idx) not in (0, 9, 24, 45):
        raise FormatError(
            f"{source}: PLY has {len(idx)} f_rest properties (indices {idx[:4]}...{idx[-2:] if idx else ''}); "
            "3DGS files have f_rest_0 .. f_rest_M-1 with M in 0, 9, 24, 45 (SH degree 0-3)"
        )
    return [f"f_rest_{i}" for i in idx]


def _vertex_schema(header: PlyHeader, source: str) -> tuple[PlyElement, list[str]]:
    if is_compressed(header):
        raise FormatError(f"{source}: this is a PlayCanvas compressed PLY; read it with format='compressed_ply'")
    vertex = header.element("vertex")
    if vertex is None:
        raise FormatError(f"{source}: PLY has no 'vertex' element (elements: {[e.name for e in header.elements]})")
    names = vertex.names()
    missing = [n for n in _BASE if n not in names]
    if missing:
        raise FormatError(
            f"{source}: PLY vertex element lacks the 3DGS properties {missing} (it has {names[:20]}); "
            "this is not a Gaussian splat PLY"
        )
    return vertex, _rest_columns(names, source)


def _index(positions: list[int]) -> slice | list[int]:
    """A slice when the column positions are consecutive (a cheaper strided copy), else the list."""
    if positions == list(range(positions[0], positions[0] + len(positions))):
        return slice(positions[0], positions[0] + len(positions))
    return positions


class _Sink:
    """Destination arrays of a 3DGS PLY read, filled from [rows, P] float32 blocks of the vertex table."""

    def __init__(self, vertex: PlyElement, rest: list[str]):
        n = vertex.count
        names = vertex.names()
        col = {name: j for j, name in enumerate(names)}
        self.k = len(rest) // 3 + 1
        self.means = np.empty((n, 3), np.float32)
        self.quats = np.empty((n, 4), np.float32)
        self.log_scales = np.empty((n, 3), np.float32)
        self.opacity = np.empty(n, np.float32)
        self.sh = np.empty((n, self.k, 3), np.float32)
        self.fields = [
            (self.means, _index([col[c] for c in ("x", "y", "z")])),
            (self.quats, _index([col[f"rot_{i}"] for i in range(4)])),
            (self.log_scales, _index([col[f"scale_{i}"] for i in range(3)])),
            (self.opacity, col["opacity"]),
            (self.sh[:, 0, :], _index([col[f"f_dc_{i}"] for i in range(3)])),
        ]
        self.rest = _index([col[c] for c in rest]) if rest else None
        std = set(_BASE) | set(rest)
        self.extra = {name: np.empty(n, np.float32) for name in names if name not in std}

    def fill(self, start: int, block: np.ndarray, col: dict[str, int]) -> None:
        stop = start + len(block)
        for dst, idx in self.fields:
            dst[start:stop] = block[:, idx]
        if self.rest is not None:
            m, k = len(block), self.k
            self.sh[start:stop, 1:, :] = block[:, self.rest].reshape(m, 3, k - 1).transpose(0, 2, 1)
        for name, dst in self.extra.items():
            dst[start:stop] = block[:, col[name]]


def _finish(sink: _Sink, source: str, drop_invalid: bool) -> Decoded:
    extra = {k: v for k, v in sink.extra.items() if k not in _NORMALS or np.any(v != 0)}
    return finish(source, "ply", sink.means, sink.quats, sink.log_scales, sink.opacity, sink.sh, extra=extra,
                  drop_invalid=drop_invalid)  # fmt: skip


def decode(data: bytes | memoryview, source: str = "<bytes>", *, drop_invalid: bool = False) -> Decoded:
    """Decode an Inria 3DGS PLY held in memory (any encoding, property order and property types)."""
    header = parse_header(data, source)
    vertex, rest = _vertex_schema(header, source)
    arr = element_arrays(data, header, ("vertex",), source)["vertex"]
    names = vertex.names()
    if header.encoding == "binary_little_endian" and all(t == "f4" for _, t in vertex.properties):
        sink = _Sink(vertex, rest)
        if vertex.count:
            sink.fill(0, arr.view(np.float32).reshape(vertex.count, len(names)), {n: j for j, n in enumerate(names)})
        return _finish(sink, source, drop_invalid)
    # mixed types, big endian or ascii: convert the 3DGS columns, keep extras in their own types
    sink = _Sink(PlyElement("vertex", vertex.count, tuple((n, "f4") for n in _BASE + tuple(rest))), rest)
    table = np.empty((vertex.count, len(_BASE) + len(rest)), np.float32)
    for j, name in enumerate(_BASE + tuple(rest)):
        table[:, j] = arr[name]
    sink.fill(0, table, {})
    std = set(_BASE) | set(rest)
    for name in names:
        if name not in std:
            col = arr[name]
            sink.extra[name] = col.astype(col.dtype.newbyteorder("=")) if col.dtype.byteorder == ">" else col.copy()
    return _finish(sink, source, drop_invalid)


BLOCK_BYTES = 4 << 20  # rows are copied through a cache-sized buffer


def read_path(path: str | os.PathLike, source: str, *, drop_invalid: bool = False) -> Decoded:
    """Read a 3DGS PLY from disk; the common case (binary little endian, all float32) streams through a small buffer
    straight into the destination arrays, anything else goes through :func:`decode`."""
    with open(path, "rb") as f:
        head = f.read(MAX_HEADER_BYTES + 16)
        header = parse_header(head, source)
        vertex, rest = _vertex_schema(header, source)
        fast = (
            header.encoding == "binary_little_endian"
            and all(t == "f4" for _, t in vertex.properties)
            and header.elements[0].name == "vertex"
        )
        if not fast:
            f.seek(0)
            return decode(f.read(), source, drop_invalid=drop_invalid)
        p = len(vertex.properties)
        size = os.fstat(f.fileno()).st_size
        end = header.data_offset + vertex.count * 4 * p
        if end > size:
            raise FormatError(
                f"{source}: truncated PLY: the header declares {vertex.count} 'vertex' rows of {4 * p} bytes, so the "
                f"file should have at least {end} bytes (expected size {end}) but it has {size} bytes (actual size); "
                "re-export or re-download it"
            )
        sink = _Sink(vertex, rest)
        col = {n: j for j, n in enumerate(vertex.names())}
        rows = max(1, BLOCK_BYTES // (4 * p))
        buf = np.empty((rows, p), np.float32)
        f.seek(header.data_offset)
        for start in range(0, vertex.count, rows):
            m = min(rows, vertex.count - start)
            view = memoryview(buf[:m]).cast("B")
            got = f.readinto(view)
            if got != len(view):
                raise FormatError(f"{source}: truncated PLY: short read at vertex {start} (the file shrank?)")
            sink.fill(start, buf[:m], col)
    return _finish(sink, source, drop_invalid)


def _layout(splats: Splats) -> tuple[list[str], dict[str, np.ndarray]]:
    k = splats.sh.shape[1]
    extra = {}
    for name, value in splats.extra.items():
        value = np.asarray(value)
        if name in _NORMALS:
            continue
        if value.ndim != 1 or value.dtype.str[1:] not in _PLY_NAME:
            if value.ndim == 1 and value.dtype.kind in "iufb":
                value = value.astype(np.float32 if value.dtype.kind in "fb" else np.int32)
            else:
                raise FormatError(f"Splats.extra[{name!r}] has shape {value.shape} dtype {value.dtype}; PLY stores "
                                  "one scalar (int8-32/uint8-32/float32/64) per splat")  # fmt: skip
        if name in _BASE or _REST.match(name):
            raise FormatError(f"Splats.extra[{name!r}] clashes with a standard 3DGS property; rename it")
        extra[name] = value
    names = ["x", "y", "z", *_NORMALS, "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names, extra


def _fill(table: np.ndarray, splats: Splats, start: int, stop: int) -> None:
    """Rows ``start:stop`` of the standard float32 layout into ``table`` [stop - start, P]."""
    m = stop - start
    k = splats.sh.shape[1]
    r = 3 * (k - 1)
    table[:, 0:3] = splats.means[start:stop]
    for j, nm in enumerate(_NORMALS):
        table[:, 3 + j] = np.asarray(splats.extra[nm])[start:stop] if nm in splats.extra else 0.0
    table[:, 6:9] = splats.sh[start:stop, 0]
    if r:
        dst = table[:, 9 : 9 + r].reshape(m, 3, k - 1)
        assert m == 0 or np.shares_memory(dst, table)
        dst[...] = splats.sh[start:stop, 1:, :].transpose(0, 2, 1)
    table[:, 9 + r] = splats.opacity_logits[start:stop]
    table[:, 10 + r : 13 + r] = splats.log_scales[start:stop]
    table[:, 13 + r : 17 + r] = splats.quats[start:stop]


def write(splats: Splats, path: str | os.PathLike) -> tuple[str, ...]:
    """Write the standard 3DGS layout (float32 little endian) plus ``Splats.extra``; returns what was lost (nothing)."""
    n = len(splats)
    try:
        names, extra = _layout(splats)
    except FormatError as exc:
        raise FormatError(f"{path}: {exc}") from exc
    p = len(names)
    dtype = np.dtype([(nm, "<f4") for nm in names] + [(nm, "<" + v.dtype.str[1:]) for nm, v in extra.items()])
    lines = [
        "ply",
        "format binary_little_endian 1.0",
        "comment Generated by hybrid-scene-runtime",
        f"element vertex {n}",
    ]
    lines += [f"property {_PLY_NAME[dtype[nm].str[1:]]} {nm}" for nm in dtype.names]
    lines.append("end_header\n")
    with open(path, "wb") as f:
        f.write("\n".join(lines).encode("ascii"))
        if all(v.dtype == np.float32 for v in extra.values()):
            width = p + len(extra)
            rows = max(1, BLOCK_BYTES // (4 * width))
            buf = np.empty((rows, width), np.float32)
            for start in range(0, n, rows):
                stop = min(n, start + rows)
                block = buf[: stop - start]
                _fill(block[:, :p], splats, start, stop)
                for j, v in enumerate(extra.values()):
                    block[:, p + j] = v[start:stop]
                f.write(memoryview(block).cast("B"))
        else:
            out = np.empty(n, dtype)
            table = np.empty((n, p), np.float32)
            _fill(table, splats, 0, n)
            for j, nm in enumerate(names):
                out[nm] = table[:, j]
            for nm, v in extra.items():
                out[nm] = v
            f.write(out.view(np.uint8))
    return ()
