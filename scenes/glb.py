"""Minimal binary glTF (GLB) for collider meshes: one mesh, one triangle primitive per part.

Colliders are stored as GLB so that any engine or trimesh can open them. glTF is Y-up;
collider files of a scene folder hold the object-frame coordinates unchanged (+Z up)
and say so in ``asset.extras.up_axis``. The engine export converts axes separately.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from scenes.errors import FormatError
from scenes.scene import ColliderMesh

__all__ = ["write_collider_glb", "read_collider_glb", "glb_bytes", "parse_glb"]

_MAGIC = 0x46546C67  # "glTF"
_JSON = 0x4E4F534A
_BIN = 0x004E4942


def glb_bytes(gltf: dict, binary: bytes) -> bytes:
    """Pack a glTF JSON document and its binary buffer into GLB bytes (4-byte aligned chunks)."""
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    binary = binary + b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(js) + (8 + len(binary) if binary else 0)
    out = struct.pack("<III", _MAGIC, 2, total) + struct.pack("<II", len(js), _JSON) + js
    if binary:
        out += struct.pack("<II", len(binary), _BIN) + binary
    return out


def parse_glb(data: bytes, where: str = "GLB") -> tuple[dict, bytes]:
    """Split GLB bytes into the JSON document and the BIN chunk, with bounds checks."""
    if len(data) < 20:
        raise FormatError(f"{where}: {len(data)} bytes is too short for a GLB file")
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != _MAGIC or version != 2:
        raise FormatError(f"{where}: not a glTF 2.0 binary (magic {magic:#x}, version {version})")
    if total > len(data):
        raise FormatError(f"{where}: header says {total} bytes, file has {len(data)} (truncated)")
    gltf, binary, off = None, b"", 12
    while off + 8 <= total:
        length, kind = struct.unpack_from("<II", data, off)
        chunk = data[off + 8 : off + 8 + length]
        if len(chunk) != length:
            raise FormatError(f"{where}: chunk at byte {off} claims {length} bytes, {len(chunk)} remain")
        if kind == _JSON:
            try:
                gltf = json.loads(chunk)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise FormatError(f"{where}: JSON chunk is not valid JSON ({exc})") from exc
        elif kind == _BIN:
            binary = chunk
        off += 8 + length
    if not isinstance(gltf, dict):
        raise FormatError(f"{where}: no JSON chunk")
    return gltf, binary


def write_collider_glb(path: str | Path, mesh: ColliderMesh) -> None:
    """Write a collider mesh as GLB (positions float32, indices uint32; a primitive per compound part)."""
    v = np.ascontiguousarray(mesh.vertices, np.float32)
    parts = mesh.parts if mesh.kind == "compound" and mesh.parts else (np.arange(len(mesh.faces)),)
    blob = bytearray(v.tobytes())
    views = [{"buffer": 0, "byteOffset": 0, "byteLength": v.nbytes, "target": 34962}]
    accessors = [
        {
            "bufferView": 0,
            "componentType": 5126,
            "count": len(v),
            "type": "VEC3",
            "min": (v.min(0) if len(v) else np.zeros(3)).tolist(),
            "max": (v.max(0) if len(v) else np.zeros(3)).tolist(),
        }
    ]
    prims = []
    for part in parts:
        idx = np.ascontiguousarray(mesh.faces[np.asarray(part, np.int64)].reshape(-1), np.uint32)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": idx.nbytes, "target": 34963})
        blob += idx.tobytes()
        accessors.append(
            {"bufferView": len(views) - 1, "componentType": 5125, "count": int(idx.size), "type": "SCALAR"}
        )
        prims.append({"attributes": {"POSITION": 0}, "indices": len(accessors) - 1, "mode": 4})
    gltf = {
        "asset": {"version": "2.0", "generator": "hybrid-scene-runtime", "extras": {"up_axis": "+Z"}},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": prims, "extras": {"collider": mesh.kind}}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": views,
        "accessors": accessors,
    }
    Path(path).write_bytes(glb_bytes(gltf, bytes(blob)))


def _accessor(gltf: dict, binary: bytes, index: int, where: str) -> np.ndarray:
    try:
        acc = gltf["accessors"][index]
        view = gltf["bufferViews"][acc["bufferView"]]
        dtype = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}[acc["componentType"]]
        width = {"SCALAR": 1, "VEC3": 3}[acc["type"]]
        count = int(acc["count"])
        start = int(view.get("byteOffset", 0)) + int(acc.get("byteOffset", 0))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise FormatError(f"{where}: malformed accessor {index} ({exc!r})") from exc
    nbytes = count * width * np.dtype(dtype).itemsize
    if start < 0 or count < 0 or start + nbytes > len(binary):
        raise FormatError(f"{where}: accessor {index} needs bytes {start}..{start + nbytes}, buffer has {len(binary)}")
    return (
        np.frombuffer(binary, dtype, count * width, start).reshape(count, width)
        if width > 1
        else np.frombuffer(binary, dtype, count, start)
    )


def read_collider_glb(path: str | Path) -> ColliderMesh:
    """Read a collider written by :func:`write_collider_glb` (or any single-mesh triangle GLB)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: collider file not found") from None
    gltf, binary = parse_glb(data, str(path))
    try:
        mesh = gltf["meshes"][0]
        prims = mesh["primitives"]
    except (KeyError, IndexError, TypeError) as exc:
        raise FormatError(f"{path}: no mesh in the GLB") from exc
    verts, faces, parts, base = [], [], [], 0
    for prim in prims:
        if prim.get("mode", 4) != 4 or "indices" not in prim:
            raise FormatError(f"{path}: only indexed triangle primitives are supported for colliders")
        v = _accessor(gltf, binary, prim["attributes"]["POSITION"], str(path)).astype(np.float32)
        f = _accessor(gltf, binary, prim["indices"], str(path)).astype(np.int64).reshape(-1, 3)
        shared = verts and prim["attributes"]["POSITION"] == prims[0]["attributes"]["POSITION"]
        if not shared:
            verts.append(v)
            offset = base
            base += len(v)
        else:
            offset = 0
        parts.append(np.arange(len(f)) + sum(len(x) for x in faces))
        faces.append(f + offset)
    kind = mesh.get("extras", {}).get("collider", "convex" if len(prims) == 1 else "compound")
    all_faces = np.concatenate(faces) if faces else np.zeros((0, 3), np.int64)
    return ColliderMesh(np.concatenate(verts), all_faces, kind, tuple(parts) if kind == "compound" else ())
