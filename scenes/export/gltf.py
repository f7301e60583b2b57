"""A whole scene as one glTF 2.0 binary (GLB) that engines can load, and back.

What the file holds (all in glTF's +Y-up metres; our +Z-up world is converted with ``AXES["y-up"]``,
SH coefficients rotated with it):

- splats as ``KHR_gaussian_splatting`` POINTS primitives (the Khronos text, "Release Candidate"
  status, editorial revision of 2026-04-15): ``POSITION`` float, ``KHR_gaussian_splatting:ROTATION``
  unit xyzw float, ``:SCALE`` *linear* standard deviations float, ``:OPACITY`` post-sigmoid float,
  ``:SH_DEGREE_l_COEF_n`` float VEC3 for each coefficient, plus a linear ``COLOR_0`` fallback;
  ``kernel: "ellipse"``, ``colorSpace: "srgb_rec709_display"``;
- the static part of the scene (splats of no object) on a ``background`` node; each object on its own
  node whose transform is the object's pose, with its splats in the node's local frame, so an engine can
  move it;
- physics with ``OMI_physics_body`` + ``OMI_physics_shape`` (Godot 4 imports them natively): each object
  node has ``motion`` (``dynamic`` or ``static``, ``mass``) and a ``collider`` (convex hull / trimesh shape
  on the node, or one child collider node per part of a compound) with a physics material
  (friction, restitution, ``multiply`` combine as Bullet does); the ground plane is a large static box,
  a static scene mesh a static trimesh;
- capture cameras as glTF perspective cameras, the light as a ``KHR_lights_punctual`` directional light;
- ``extras.hybrid`` with what the standard fields cannot say (exact intrinsics, the ground plane, the
  ambient term), so :func:`read_scene_glb` restores the scene exactly.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np

from scenes.errors import FormatError, SceneError
from scenes.export.axes import AXES, matrix_to_quat, quat_to_matrix, transform_splats
from scenes.export.sh import rotate_sh
from scenes.glb import glb_bytes, parse_glb
from scenes.scene import Camera, ColliderMesh, Ground, Light, Scene, SceneObject
from scenes.splats import SH_C0, Splats

__all__ = ["scene_to_glb", "write_scene_glb", "read_scene_glb", "read_glb_splats", "SPLAT_EXT", "GLTF_FROM_WORLD"]

SPLAT_EXT = "KHR_gaussian_splatting"
BODY_EXT = "OMI_physics_body"
SHAPE_EXT = "OMI_physics_shape"
LIGHT_EXT = "KHR_lights_punctual"
GLTF_FROM_WORLD = AXES["y-up"]  # our +Z-up world -> glTF +Y-up
_P = SPLAT_EXT + ":"
_FLOAT, _U8, _U16, _U32, _I8, _I16 = 5126, 5121, 5123, 5125, 5120, 5122
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_GROUND_THICKNESS = 1.0  # metres of the static box that stands for the ground plane


# ============================================================================================ writing
class _Buffer:
    """Accumulates the BIN chunk, buffer views and accessors of a glTF document."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(
        self, array: np.ndarray, gltf_type: str, *, target: int | None = _ARRAY_BUFFER, normalized=False, minmax=False
    ) -> int:
        array = np.ascontiguousarray(array)
        ctype = {
            np.dtype(np.float32): _FLOAT,
            np.dtype(np.uint8): _U8,
            np.dtype(np.uint16): _U16,
            np.dtype(np.uint32): _U32,
        }[array.dtype]
        self.blob += b"\0" * (-len(self.blob) % 4)
        view = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": array.nbytes}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        self.blob += array.tobytes()
        acc = {
            "bufferView": len(self.views) - 1,
            "componentType": ctype,
            "count": int(array.shape[0]),
            "type": gltf_type,
        }
        if normalized:
            acc["normalized"] = True
        if minmax:
            flat = array.reshape(array.shape[0], -1)
            acc["min"] = [float(v) for v in flat.min(0)]
            acc["max"] = [float(v) for v in flat.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _splat_primitive(buf: _Buffer, splats: Splats) -> dict:
    """A KHR_gaussian_splatting POINTS primitive for ``splats`` (already in the node's local glTF frame)."""
    n = len(splats)
    q = splats.unit_quats.astype(np.float64)
    q = np.where(q[:, :1] < 0, -q, q)  # same rotation; w >= 0 keeps readers that assume it happy
    rot_xyzw = np.ascontiguousarray(q[:, [1, 2, 3, 0]], np.float32)
    opacity = splats.opacities.astype(np.float32)
    dc = splats.sh[:, 0].astype(np.float64)
    color = np.empty((n, 4), np.uint8)
    color[:, :3] = np.round(_srgb_to_linear(np.clip(dc * SH_C0 + 0.5, 0, 1)) * 255)
    color[:, 3] = np.round(np.clip(opacity, 0, 1) * 255)
    attrs = {
        "POSITION": buf.add(splats.means.astype(np.float32), "VEC3", minmax=True),
        "COLOR_0": buf.add(color, "VEC4", normalized=True),
        _P + "ROTATION": buf.add(rot_xyzw, "VEC4"),
        _P + "SCALE": buf.add(np.exp(splats.log_scales.astype(np.float64)).astype(np.float32), "VEC3"),
        _P + "OPACITY": buf.add(opacity, "SCALAR"),
        _P + "SH_DEGREE_0_COEF_0": buf.add(np.ascontiguousarray(splats.sh[:, 0], np.float32), "VEC3"),
    }
    for l in range(1, splats.sh_degree + 1):
        for c in range(2 * l + 1):
            attrs[f"{_P}SH_DEGREE_{l}_COEF_{c}"] = buf.add(np.ascontiguousarray(splats.sh[:, l * l + c]), "VEC3")
    ext = {
        "kernel": "ellipse",
        "colorSpace": "srgb_rec709_display",
        "projection": "perspective",
        "sortingMethod": "cameraDistance",
    }
    return {"attributes": attrs, "mode": 0, "extensions": {SPLAT_EXT: ext}}


def _collider_mesh(buf: _Buffer, vertices: np.ndarray, faces: np.ndarray, name: str) -> dict:
    v = np.ascontiguousarray(vertices, np.float32)
    idx = np.ascontiguousarray(np.asarray(faces).reshape(-1), np.uint32)
    pos = buf.add(v, "VEC3", minmax=True)
    ind = buf.add(idx, "SCALAR", target=_ELEMENT_ARRAY_BUFFER)
    return {"name": name, "primitives": [{"attributes": {"POSITION": pos}, "indices": ind, "mode": 4}]}


def _xyzw(R: np.ndarray) -> list[float]:
    w, x, y, z = matrix_to_quat(R)
    return [float(x), float(y), float(z), float(w)]


def _frame_with_z(axis: np.ndarray) -> np.ndarray:
    """A rotation whose third column is the unit vector ``axis``."""
    z = axis / np.linalg.norm(axis)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def _partition(scene: Scene) -> tuple[np.ndarray, list[np.ndarray]]:
    """Splat indices of the background and of each object (a splat listed by two objects goes to the first)."""
    owner = np.full(len(scene.splats), -1, np.int64)
    groups = []
    for i, obj in enumerate(scene.objects):
        idx = np.unique(obj.splat_indices)
        idx = idx[owner[idx] == -1]
        owner[idx] = i
        groups.append(idx)
    return np.nonzero(owner == -1)[0], groups


def scene_to_glb(scene: Scene, *, generator: str = "hybrid-scene-runtime") -> bytes:
    """The scene as GLB bytes (see the module docstring for the layout)."""
    C = GLTF_FROM_WORLD
    buf = _Buffer()
    nodes: list[dict] = []
    meshes: list[dict] = []
    shapes: list[dict] = []
    materials: list[dict] = []
    roots: list[int] = []

    def physics_material(friction: float, restitution: float) -> int:
        materials.append(
            {
                "staticFriction": float(friction),
                "dynamicFriction": float(friction),
                "restitution": float(restitution),
                "frictionCombine": "multiply",
                "restitutionCombine": "multiply",
            }
        )
        return len(materials) - 1

    def shape(kind: str, vertices: np.ndarray, faces: np.ndarray, name: str) -> int:
        meshes.append(_collider_mesh(buf, vertices, faces, name))
        shapes.append({"type": kind, kind: {"mesh": len(meshes) - 1}})
        return len(shapes) - 1

    background, groups = _partition(scene)
    if background.size:
        meshes.append(
            {
                "name": "background.splats",
                "primitives": [_splat_primitive(buf, transform_splats(scene.splats.subset(background), C))],
            }
        )
        nodes.append(
            {
                "name": "background",
                "mesh": len(meshes) - 1,
                "extras": {"hybrid": {"role": "background", "splat_count": int(background.size)}},
            }
        )
        roots.append(len(nodes) - 1)

    for obj, idx in zip(scene.objects, groups, strict=True):
        R_o = quat_to_matrix(np.asarray(obj.quaternion))
        t_o = np.asarray(obj.position, np.float64)
        node: dict = {
            "name": obj.name,
            "translation": [float(v) for v in C @ t_o],
            "rotation": _xyzw(C @ R_o @ C.T),
            "extras": {
                "hybrid": {
                    "role": "object",
                    "name": obj.name,
                    "static": bool(obj.static),
                    "mass": float(obj.mass),
                    "friction": float(obj.friction),
                    "restitution": float(obj.restitution),
                    "splat_count": int(idx.size),
                    "collider_kind": obj.collider.kind if obj.collider is not None else None,
                }
            },
        }
        if idx.size:
            local = transform_splats(scene.splats.subset(idx), C @ R_o.T, -(C @ R_o.T @ t_o))
            meshes.append({"name": f"{obj.name}.splats", "primitives": [_splat_primitive(buf, local)]})
            node["mesh"] = len(meshes) - 1
        body: dict = {"motion": {"type": "static" if obj.static else "dynamic", "mass": float(obj.mass)}}
        node["extensions"] = {BODY_EXT: body}
        nodes.append(node)
        roots.append(len(nodes) - 1)
        col = obj.collider
        if col is not None and len(col.faces):
            mat = physics_material(obj.friction, obj.restitution)
            verts = col.vertices.astype(np.float64) @ C.T
            if col.kind == "compound" and col.parts:
                children = []
                for k, part in enumerate(col.parts):
                    faces = col.faces[np.asarray(part, np.int64)]
                    used, inverse = np.unique(faces, return_inverse=True)
                    s = shape("convex", verts[used], inverse.reshape(-1, 3), f"{obj.name}.collider.{k}")
                    nodes.append(
                        {
                            "name": f"{obj.name}.collider.{k}",
                            "extensions": {BODY_EXT: {"collider": {"shape": s, "physicsMaterial": mat}}},
                        }
                    )
                    children.append(len(nodes) - 1)
                node["children"] = children
            else:
                kind = "trimesh" if col.kind == "mesh" else "convex"
                body["collider"] = {
                    "shape": shape(kind, verts, col.faces, f"{obj.name}.collider"),
                    "physicsMaterial": mat,
                }

    if scene.ground is not None:
        g = scene.ground
        n = C @ np.asarray(g.normal)
        lo, hi = scene.splats.bounds()
        size = float(max(100.0, 4.0 * float(np.max(hi - lo)) if len(scene.splats) else 100.0))
        center = C @ (np.asarray(g.normal) * g.offset) - n * (_GROUND_THICKNESS / 2)
        rot = _frame_with_z(n)[:, [0, 2, 1]] * np.array([1.0, 1.0, -1.0])  # local +Y along the normal
        shapes.append({"type": "box", "box": {"size": [size, _GROUND_THICKNESS, size]}})
        nodes.append(
            {
                "name": "ground",
                "translation": [float(v) for v in center],
                "rotation": _xyzw(rot),
                "extensions": {
                    BODY_EXT: {
                        "collider": {
                            "shape": len(shapes) - 1,
                            "physicsMaterial": physics_material(g.friction, g.restitution),
                        }
                    }
                },
                "extras": {
                    "hybrid": {
                        "role": "ground",
                        "normal": list(g.normal),
                        "offset": g.offset,
                        "friction": g.friction,
                        "restitution": g.restitution,
                        "up_axis": "+Z",
                    }
                },
            }
        )
        roots.append(len(nodes) - 1)
        if g.mesh is not None and len(g.mesh.faces):
            s = shape("trimesh", g.mesh.vertices.astype(np.float64) @ C.T, g.mesh.faces, "static.collider")
            nodes.append(
                {
                    "name": "static_collider",
                    "extensions": {BODY_EXT: {"collider": {"shape": s, "physicsMaterial": len(materials) - 1}}},
                    "extras": {"hybrid": {"role": "ground_mesh", "collider_kind": g.mesh.kind}},
                }
            )
            roots.append(len(nodes) - 1)

    cameras = []
    for i, cam in enumerate(scene.capture_cameras):
        fy = cam.K[1, 1]
        cameras.append(
            {
                "type": "perspective",
                "name": cam.name or f"camera_{i}",
                "perspective": {
                    "yfov": float(2 * math.atan(cam.height / (2 * fy))),
                    "aspectRatio": float(cam.width / cam.height),
                    "znear": 0.01,
                },
                "extras": {"hybrid": {"K": cam.K.tolist(), "width": cam.width, "height": cam.height, "name": cam.name}},
            }
        )
        c2w = cam.c2w
        R_gl = C @ c2w[:3, :3] @ np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes -> glTF camera axes
        nodes.append(
            {
                "name": cam.name or f"camera_{i}",
                "camera": i,
                "translation": [float(v) for v in C @ c2w[:3, 3]],
                "rotation": _xyzw(R_gl),
            }
        )
        roots.append(len(nodes) - 1)

    light = scene.light
    peak = max(light.color) if max(light.color) > 1 else 1.0
    lights = [
        {
            "type": "directional",
            "name": "sun",
            "color": [float(c / peak) for c in light.color],
            "intensity": float(light.intensity * peak),
            "extras": {
                "hybrid": {"ambient": list(light.ambient), "color": list(light.color), "intensity": light.intensity}
            },
        }
    ]
    # a directional light shines along its node's local -Z: point local +Z at the light
    nodes.append(
        {
            "name": "sun",
            "rotation": _xyzw(_frame_with_z(C @ np.asarray(light.direction))),
            "extensions": {LIGHT_EXT: {"light": 0}},
        }
    )
    roots.append(len(nodes) - 1)

    used = [LIGHT_EXT]
    if any(SPLAT_EXT in p.get("extensions", {}) for m in meshes for p in m["primitives"]):
        used.insert(0, SPLAT_EXT)
    ext: dict = {LIGHT_EXT: {"lights": lights}}
    if any(BODY_EXT in nd.get("extensions", {}) for nd in nodes):
        used += [BODY_EXT]
        ext[BODY_EXT] = {"physicsMaterials": materials} if materials else {}
    if shapes:
        used += [SHAPE_EXT]
        ext[SHAPE_EXT] = {"shapes": shapes}
    gltf: dict = {
        "asset": {
            "version": "2.0",
            "generator": generator,
            "extras": {
                "hybrid": {
                    "format": "hybrid-scene-glb",
                    "version": 1,
                    "units": "metres",
                    "source_up": "+Z",
                    "metadata": _jsonable(scene.metadata),
                }
            },
        },
        "extensionsUsed": used,
        "extensions": ext,
        "scene": 0,
        "scenes": [{"name": "scene", "nodes": roots}],
        "nodes": nodes,
    }
    if meshes:
        gltf["meshes"] = meshes
    if cameras:
        gltf["cameras"] = cameras
    if buf.accessors:
        gltf["accessors"] = buf.accessors
        gltf["bufferViews"] = buf.views
        gltf["buffers"] = [{"byteLength": len(buf.blob) + (-len(buf.blob) % 4)}]
    return glb_bytes(gltf, bytes(buf.blob))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_scene_glb(scene: Scene, path: str | Path) -> Path:
    """Write :func:`scene_to_glb` to ``path`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(scene_to_glb(scene))
    return path


# ============================================================================================ reading
_COMPONENTS = {_FLOAT: np.float32, _U8: np.uint8, _U16: np.uint16, _U32: np.uint32, _I8: np.int8, _I16: np.int16}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class _Doc:
    """A parsed glTF document with its buffers and bounds-checked accessor reads."""

    def __init__(self, gltf: dict, buffers: list[bytes], where: str) -> None:
        self.gltf, self.buffers, self.where = gltf, buffers, where

    def accessor(self, index: int) -> np.ndarray:
        """Accessor ``index`` as float64 [count, width] (normalised integers mapped to [0, 1] / [-1, 1])."""
        where = f"{self.where}: accessor {index}"
        try:
            acc = self.gltf["accessors"][index]
            dtype = np.dtype(_COMPONENTS[acc["componentType"]]).newbyteorder("<")
            width = _WIDTH[acc["type"]]
            count = int(acc["count"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise FormatError(f"{where}: malformed ({exc!r})") from exc
        if "sparse" in acc:
            raise FormatError(f"{where}: sparse accessors are not supported; densify the file (gltf-transform)")
        if "bufferView" not in acc:
            raise FormatError(f"{where}: has no bufferView (data from a compression extension is not supported)")
        try:
            view = self.gltf["bufferViews"][acc["bufferView"]]
            data = self.buffers[view["buffer"]]
        except (KeyError, IndexError, TypeError) as exc:
            raise FormatError(f"{where}: bad bufferView ({exc!r})") from exc
        start = int(view.get("byteOffset", 0)) + int(acc.get("byteOffset", 0))
        elem = dtype.itemsize * width
        stride = int(view.get("byteStride", 0)) or elem
        end = start + (stride * (count - 1) + elem if count else 0)
        if start < 0 or end > int(view.get("byteOffset", 0)) + int(view["byteLength"]) or end > len(data):
            raise FormatError(f"{where}: needs bytes {start}..{end} beyond its buffer view or buffer; truncated file?")
        if stride == elem:
            arr = np.frombuffer(data, dtype, count * width, start).reshape(count, width)
        else:
            raw = np.frombuffer(data, np.uint8, stride * (count - 1) + elem, start)
            rows = np.lib.stride_tricks.as_strided(raw, (count, elem), (stride, 1))
            arr = np.ascontiguousarray(rows).view(dtype).reshape(count, width)
        out = arr.astype(np.float64)
        if acc.get("normalized"):
            info = np.iinfo(dtype)
            out = out / info.max if info.min == 0 else np.maximum(out / info.max, -1.0)
        return out


def _load(path: str | Path) -> _Doc:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    if data[:4] == b"glTF":
        gltf, binary = parse_glb(data, str(path))
        buffers = []
        for i, b in enumerate(gltf.get("buffers", [])):
            buffers.append(binary if i == 0 and "uri" not in b else _uri(path, b.get("uri"), i))
        return _Doc(gltf, buffers, str(path))
    try:
        import json

        gltf = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: neither a GLB (magic 'glTF') nor glTF JSON ({exc})") from exc
    if not isinstance(gltf, dict):
        raise FormatError(f"{path}: glTF JSON must be an object")
    return _Doc(gltf, [_uri(path, b.get("uri"), i) for i, b in enumerate(gltf.get("buffers", []))], str(path))


def _uri(path: Path, uri, i: int) -> bytes:
    if not isinstance(uri, str):
        raise FormatError(f"{path}: buffer {i} has no data (no uri and not the GLB's BIN chunk)")
    if uri.startswith("data:"):
        try:
            return base64.b64decode(uri.split(",", 1)[1])
        except (IndexError, ValueError) as exc:
            raise FormatError(f"{path}: buffer {i} has a malformed data URI") from exc
    from urllib.parse import unquote

    target = (path.parent / unquote(uri)).resolve()
    if path.parent.resolve() not in target.parents:
        raise FormatError(f"{path}: buffer {i} uri {uri!r} points outside the file's folder; refusing to read it")
    try:
        return target.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{path}: buffer {i} file {uri!r} not found next to it") from None


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], np.float64).reshape(4, 4).T  # column-major in glTF
    M = np.eye(4)
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    M[:3, :3] = quat_to_matrix(np.array([w, x, y, z])) * np.asarray(node.get("scale", (1.0, 1.0, 1.0)))
    M[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
    return M


def _world_matrices(doc: _Doc) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """Global matrices of the nodes of the default scene and each node's parent (-1 for roots)."""
    g = doc.gltf
    nodes = g.get("nodes", [])
    children = {c for nd in nodes for c in nd.get("children", [])}
    scenes = g.get("scenes") or []
    if scenes:
        roots = scenes[int(g.get("scene", 0))].get("nodes", [])
    else:
        roots = [i for i in range(len(nodes)) if i not in children]
    world, parent = {}, {}
    stack = [(int(r), np.eye(4), -1) for r in roots]
    while stack:
        i, P, par = stack.pop()
        if i in world:
            raise FormatError(f"{doc.where}: node {i} is reached twice; the node hierarchy must be a forest")
        try:
            nd = nodes[i]
        except IndexError:
            raise FormatError(f"{doc.where}: scene refers to node {i} but the file has {len(nodes)} nodes") from None
        world[i] = P @ _node_matrix(nd)
        parent[i] = par
        stack += [(int(c), world[i], i) for c in nd.get("children", [])]
    return world, parent


def _decompose(M: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Translation, rotation and per-axis scale of an affine 4x4 (polar decomposition of the 3x3 part)."""
    A = M[:3, :3]
    U, S, Vt = np.linalg.svd(A)
    R = U @ Vt
    if np.linalg.det(R) < 0:
        raise FormatError(f"{where}: node transform mirrors (negative determinant); splat rendering is undefined")
    return M[:3, 3].copy(), R, S


def _primitive_splats(doc: _Doc, prim: dict, where: str) -> Splats:
    ext = prim.get("extensions", {}).get(SPLAT_EXT, {})
    if prim.get("mode", 4) != 0:
        raise FormatError(f"{where}: a {SPLAT_EXT} primitive must have mode POINTS (0), got {prim.get('mode', 4)}")
    if ext.get("kernel", "ellipse") != "ellipse":
        raise FormatError(f"{where}: kernel {ext.get('kernel')!r} is not supported (only 'ellipse')")
    if ext.get("extensions"):
        raise FormatError(
            f"{where}: {SPLAT_EXT} sub-extensions {sorted(ext['extensions'])} are not supported "
            "(e.g. SPZ compression); decompress the file first"
        )
    attrs = prim.get("attributes", {})
    missing = [
        a
        for a in ("POSITION", _P + "ROTATION", _P + "SCALE", _P + "OPACITY", _P + "SH_DEGREE_0_COEF_0")
        if a not in attrs
    ]
    if missing:
        raise FormatError(f"{where}: {SPLAT_EXT} primitive lacks required attribute(s) {missing}")
    pos = doc.accessor(attrs["POSITION"])
    n = len(pos)
    rot = doc.accessor(attrs[_P + "ROTATION"])
    scale = doc.accessor(attrs[_P + "SCALE"])
    opacity = doc.accessor(attrs[_P + "OPACITY"]).reshape(-1)
    coeffs = [doc.accessor(attrs[_P + "SH_DEGREE_0_COEF_0"])]
    degree = 0
    for l in range(1, 4):
        names = [f"{_P}SH_DEGREE_{l}_COEF_{c}" for c in range(2 * l + 1)]
        present = [nm in attrs for nm in names]
        if not any(present):
            break
        if not all(present):
            raise FormatError(
                f"{where}: SH degree {l} is only partially defined; all {2 * l + 1} coefficients are required"
            )
        coeffs += [doc.accessor(attrs[nm]) for nm in names]
        degree = l
    shapes = [(rot, 4), (scale, 3)] + [(c, 3) for c in coeffs]
    if any(a.shape != (n, w) for a, w in shapes) or opacity.shape != (n,):
        raise FormatError(f"{where}: {SPLAT_EXT} attribute counts or types do not match POSITION ({n} splats)")
    sh = np.stack(coeffs, axis=1)
    assert sh.shape[1] == (degree + 1) ** 2
    quats = rot[:, [3, 0, 1, 2]]
    with np.errstate(divide="ignore"):
        log_scales = np.log(np.maximum(scale, float(np.finfo(np.float32).tiny)))
        p = np.clip(opacity, 1e-12, 1.0)
        logits = np.log(p) - np.log1p(-p)
    return Splats(
        pos.astype(np.float32),
        quats.astype(np.float32),
        log_scales.astype(np.float32),
        logits.astype(np.float32),
        sh.astype(np.float32),
    )


def _apply_matrix(splats: Splats, M: np.ndarray, where: str) -> Splats:
    """Splats of a node's local frame moved to the frame of ``M`` (rotation, translation, positive scale)."""
    t, R, S = _decompose(M, where)
    if np.allclose(M, np.eye(4), atol=1e-12):
        return splats
    if np.allclose(S, S[0], rtol=1e-6):
        out = transform_splats(splats, R, t)
        if not np.isclose(S[0], 1.0):
            out = out.with_(means=(out.means - t) * S[0] + t, log_scales=out.log_scales + np.float32(np.log(S[0])))
        return out
    # non-uniform scale: rebuild each covariance A C C^T A^T and re-diagonalise it
    A = M[:3, :3]
    Rq = quat_to_matrix(splats.quats)
    Cm = Rq * np.exp(splats.log_scales.astype(np.float64))[:, None, :]
    L = A @ Cm
    cov = L @ np.swapaxes(L, 1, 2)
    w, V = np.linalg.eigh(cov)
    V[np.linalg.det(V) < 0, :, 0] *= -1
    quats = np.stack([matrix_to_quat(v) for v in V])
    sh = rotate_sh(splats.sh, R) if splats.sh.shape[1] > 1 else splats.sh
    return Splats(splats.means @ A.T + t, quats, 0.5 * np.log(np.maximum(w, 1e-30)), splats.opacity_logits, sh)


def _mesh_splats(doc: _Doc, mesh_index: int) -> list[Splats]:
    try:
        mesh = doc.gltf["meshes"][mesh_index]
    except (KeyError, IndexError, TypeError):
        raise FormatError(f"{doc.where}: node refers to mesh {mesh_index}, which does not exist") from None
    return [
        _primitive_splats(doc, p, f"{doc.where}: meshes[{mesh_index}].primitives[{k}]")
        for k, p in enumerate(mesh.get("primitives", []))
        if SPLAT_EXT in p.get("extensions", {})
    ]


def read_glb_splats(path: str | Path, *, frame: str = "world") -> Splats:
    """All ``KHR_gaussian_splatting`` splats of a glTF/GLB file with their node transforms applied.

    ``frame="world"`` converts glTF's +Y up to our +Z-up world (SH rotated); ``frame="gltf"`` leaves
    the glTF axes.
    """
    if frame not in ("world", "gltf"):
        raise SceneError(f"read_glb_splats: frame must be 'world' or 'gltf', got {frame!r}")
    doc = _load(path)
    world, _ = _world_matrices(doc)
    parts = []
    for i in sorted(world):
        nd = doc.gltf["nodes"][i]
        if "mesh" in nd:
            for s in _mesh_splats(doc, nd["mesh"]):
                parts.append(_apply_matrix(s, world[i], f"{doc.where}: nodes[{i}]"))
    if not parts:
        raise FormatError(f"{doc.where}: no {SPLAT_EXT} primitive in the default scene; nothing to import")
    out = Splats.concat(parts)
    return transform_splats(out, GLTF_FROM_WORLD.T) if frame == "world" else out


def _shape_mesh(doc: _Doc, shape_index: int, where: str) -> tuple[str, np.ndarray, np.ndarray]:
    """An OMI_physics_shape as (kind, vertices [V, 3], faces [F, 3]) in its node's frame."""
    try:
        shp = doc.gltf["extensions"][SHAPE_EXT]["shapes"][shape_index]
        kind = shp["type"]
    except (KeyError, IndexError, TypeError):
        raise FormatError(
            f"{where}: collider refers to {SHAPE_EXT} shape {shape_index}, which does not exist"
        ) from None
    params = shp.get(kind, {})
    if kind in ("convex", "trimesh"):
        try:
            mesh = doc.gltf["meshes"][params["mesh"]]
        except (KeyError, IndexError, TypeError):
            raise FormatError(f"{where}: {kind} shape {shape_index} has no valid mesh") from None
        verts, faces, base = [], [], 0
        for prim in mesh.get("primitives", []):
            v = doc.accessor(prim["attributes"]["POSITION"])
            if prim.get("mode", 4) != 4:
                raise FormatError(f"{where}: shape mesh primitives must be TRIANGLES")
            f = doc.accessor(prim["indices"]).astype(np.int64) if "indices" in prim else np.arange(len(v))[:, None]
            verts.append(v)
            faces.append(f.reshape(-1, 3) + base)
            base += len(v)
        return ("mesh" if kind == "trimesh" else "convex"), np.concatenate(verts), np.concatenate(faces)
    pts = _primitive_points(kind, params, where)
    from scipy.spatial import ConvexHull

    hull = ConvexHull(pts)
    return "convex", pts, hull.simplices.astype(np.int64)


def _primitive_points(kind: str, p: dict, where: str) -> np.ndarray:
    """Points whose convex hull is the OMI primitive (box, sphere, capsule, cylinder; Y is the long axis)."""
    if kind == "box":
        sx, sy, sz = np.asarray(p.get("size", (1.0, 1.0, 1.0)), np.float64) / 2
        return np.array([[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)])
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = np.stack([np.cos(ang), np.zeros_like(ang), np.sin(ang)], 1)
    if kind == "sphere":
        r = float(p.get("radius", 0.5))
        lat = np.linspace(-np.pi / 2, np.pi / 2, 13)
        return np.concatenate(
            [r * np.stack([np.cos(a) * ring[:, 0], np.full(24, np.sin(a)), np.cos(a) * ring[:, 2]], 1) for a in lat]
        )
    if kind in ("cylinder", "capsule"):
        h = float(p.get("height", 2.0 if kind == "cylinder" else 1.0)) / 2
        rb, rt = float(p.get("radiusBottom", 0.5)), float(p.get("radiusTop", 0.5))
        pts = [ring * rb + [0, -h, 0], ring * rt + [0, h, 0]]
        if kind == "capsule":
            for a in np.linspace(0, np.pi / 2, 5)[1:]:
                pts.append(ring * rb * np.cos(a) + [0, -h - rb * np.sin(a), 0])
                pts.append(ring * rt * np.cos(a) + [0, h + rt * np.sin(a), 0])
        return np.concatenate(pts)
    raise FormatError(f"{where}: {SHAPE_EXT} shape type {kind!r} is not supported")


def _ground_from_extras(extras: dict, mesh: ColliderMesh | None) -> Ground:
    return Ground(
        tuple(extras.get("normal", (0.0, 0.0, 1.0))),
        float(extras.get("offset", 0.0)),
        mesh,
        float(extras.get("friction", 0.8)),
        float(extras.get("restitution", 0.1)),
    )


def read_scene_glb(path: str | Path) -> Scene:
    """A :class:`Scene` from a glTF/GLB file with ``KHR_gaussian_splatting`` splats.

    Objects come from nodes with an ``OMI_physics_body`` ``motion`` (their splats are those of the node and
    its descendants, their collider the node's or its descendants' collider shapes); static colliders
    become static objects without splats, except the ground written by :func:`scene_to_glb`. Cameras
    and a directional ``KHR_lights_punctual`` light are read too. Axes are converted to our +Z up.
    """
    doc = _load(path)
    g = doc.gltf
    C = GLTF_FROM_WORLD
    world, parent = _world_matrices(doc)
    nodes = g.get("nodes", [])
    if not isinstance(g.get("extensionsUsed", []), list):
        raise FormatError(f"{doc.where}: extensionsUsed must be a list")

    def hybrid(nd: dict) -> dict:
        ex = nd.get("extras")
        return ex.get("hybrid", {}) if isinstance(ex, dict) and isinstance(ex.get("hybrid"), dict) else {}

    def body(i: int) -> dict:
        b = nodes[i].get("extensions", {}).get(BODY_EXT, {})
        return b if isinstance(b, dict) else {}

    def owner(i: int) -> int:
        """The nearest node at or above ``i`` with a motion (a rigid body), or -1."""
        while i != -1:
            if "motion" in body(i):
                return i
            i = parent[i]
        return -1

    order = sorted(world)
    bodies = [i for i in order if "motion" in body(i)]
    parts: list[Splats] = []
    counts: dict[int, list[np.ndarray]] = {b: [] for b in bodies}
    total = 0
    for i in order:
        nd = nodes[i]
        if "mesh" not in nd:
            continue
        for s in _mesh_splats(doc, nd["mesh"]):
            s = transform_splats(_apply_matrix(s, world[i], f"{doc.where}: nodes[{i}]"), C.T)
            parts.append(s)
            o = owner(i)
            if o != -1:
                counts[o].append(np.arange(total, total + len(s)))
            total += len(s)
    if not parts:
        raise FormatError(
            f"{doc.where}: no {SPLAT_EXT} primitive in the default scene; nothing to import (is this a mesh-only glTF?)"
        )
    splats = Splats.concat(parts)

    materials = g.get("extensions", {}).get(BODY_EXT, {}).get("physicsMaterials", [])

    def material(col: dict) -> tuple[float, float]:
        k = col.get("physicsMaterial", -1)
        m = materials[k] if isinstance(k, int) and 0 <= k < len(materials) else {}
        return float(m.get("dynamicFriction", m.get("staticFriction", 0.6))), float(m.get("restitution", 0.0))

    # colliders, grouped by the body they belong to (-1: static world)
    collider_parts: dict[int, list[tuple[str, np.ndarray, np.ndarray, tuple[float, float]]]] = {}
    ground, ground_mesh_node = None, None
    for i in order:
        col = body(i).get("collider")
        if not isinstance(col, dict) or col.get("shape", -1) in (-1, None):
            continue
        role = hybrid(nodes[i]).get("role")
        if role == "ground":
            ground = hybrid(nodes[i])
            continue
        kind, v, f = _shape_mesh(doc, int(col["shape"]), f"{doc.where}: nodes[{i}]")
        o = owner(i)
        ref = world[o] if o != -1 else np.eye(4)
        rel = np.linalg.inv(ref) @ world[i]
        v = v @ rel[:3, :3].T + rel[:3, 3]
        if role == "ground_mesh":
            ground_mesh_node = (
                kind if hybrid(nodes[i]).get("collider_kind") is None else hybrid(nodes[i])["collider_kind"],
                v,
                f,
            )
            continue
        collider_parts.setdefault(o if o != -1 else -(i + 2), []).append((kind, v, f, material(col)))

    def merge(items, kind_hint: str | None) -> tuple[ColliderMesh, tuple[float, float]]:
        verts, faces, part_ids, base = [], [], [], 0
        for _k, v, f, _m in items:
            part_ids.append(np.arange(len(f)) + sum(len(x) for x in faces))
            verts.append(v @ C)  # node-local glTF axes -> object frame (+Z up)
            faces.append(f + base)
            base += len(v)
        if len(items) > 1:
            kind = "compound"
        else:
            kind = kind_hint if kind_hint in ("convex", "mesh") else items[0][0]
        mesh = ColliderMesh(
            np.concatenate(verts), np.concatenate(faces), kind, tuple(part_ids) if kind == "compound" else ()
        )
        return mesh, items[0][3]

    objects, used_names = [], set()

    def unique(name: str) -> str:
        base, k = name, 1
        while name in used_names:
            name, k = f"{base}_{k}", k + 1
        used_names.add(name)
        return name

    for b in bodies:
        nd, ex = nodes[b], hybrid(nodes[b])
        motion = body(b)["motion"] if isinstance(body(b)["motion"], dict) else {}
        t, R, _ = _decompose(world[b], f"{doc.where}: nodes[{b}]")
        collider, (friction, restitution) = None, (0.6, 0.0)
        if b in collider_parts:
            collider, (friction, restitution) = merge(collider_parts.pop(b), ex.get("collider_kind"))
        idx = np.concatenate(counts[b]) if counts[b] else np.zeros(0, np.int64)
        objects.append(
            SceneObject(
                unique(str(ex.get("name") or nd.get("name") or f"object_{b}")),
                idx,
                collider,
                float(motion.get("mass", 1.0)),
                friction,
                restitution,
                tuple(C.T @ t),
                tuple(matrix_to_quat(C.T @ R @ C)),
                motion.get("type", "dynamic") != "dynamic",
            )
        )
    for key, items in sorted(collider_parts.items(), reverse=True):  # static colliders of the world
        i = -key - 2
        mesh, (friction, restitution) = merge(items, None)
        objects.append(
            SceneObject(
                unique(str(nodes[i].get("name") or f"static_{i}")),
                np.zeros(0, np.int64),
                mesh,
                1.0,
                friction,
                restitution,
                static=True,
            )
        )
    if ground is not None:
        mesh = None
        if ground_mesh_node is not None:
            kind, v, f = ground_mesh_node
            mesh = ColliderMesh(v @ C, f, kind if kind in ("convex", "mesh") else "mesh")
        ground = _ground_from_extras(ground, mesh)

    cameras = []
    for i in order:
        nd = nodes[i]
        if "camera" not in nd:
            continue
        try:
            cam = g["cameras"][nd["camera"]]
        except (KeyError, IndexError, TypeError):
            raise FormatError(f"{doc.where}: nodes[{i}] refers to a missing camera") from None
        if cam.get("type") != "perspective":
            continue
        ex = cam.get("extras", {}).get("hybrid", {}) if isinstance(cam.get("extras"), dict) else {}
        if "K" in ex:
            K, w, h = np.asarray(ex["K"], np.float64), int(ex["width"]), int(ex["height"])
        else:
            per = cam.get("perspective", {})
            h = 720
            w = max(1, round(h * float(per.get("aspectRatio", 16 / 9))))
            f = 0.5 * h / math.tan(float(per["yfov"]) / 2)
            K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
        t, R, _ = _decompose(world[i], f"{doc.where}: nodes[{i}]")
        c2w = np.eye(4)
        c2w[:3, :3] = C.T @ R @ np.diag([1.0, -1.0, -1.0])
        c2w[:3, 3] = C.T @ t
        cameras.append(Camera(K, np.linalg.inv(c2w), w, h, str(ex.get("name", cam.get("name", nd.get("name", ""))))))

    light = Light()
    lights = g.get("extensions", {}).get(LIGHT_EXT, {}).get("lights", [])
    for i in order:
        ref = nodes[i].get("extensions", {}).get(LIGHT_EXT)
        if not isinstance(ref, dict) or not (0 <= int(ref.get("light", -1)) < len(lights)):
            continue
        lt = lights[int(ref["light"])]
        if lt.get("type") != "directional":
            continue
        ex = lt.get("extras", {}).get("hybrid", {}) if isinstance(lt.get("extras"), dict) else {}
        _, R, _ = _decompose(world[i], f"{doc.where}: nodes[{i}]")
        light = Light(
            tuple(C.T @ R[:, 2]),
            tuple(ex.get("color", lt.get("color", (1.0, 1.0, 1.0)))),
            float(ex.get("intensity", lt.get("intensity", 1.0))),
            tuple(ex.get("ambient", Light().ambient)),
        )
        break

    asset_ex = g.get("asset", {}).get("extras", {})
    meta = (
        dict(asset_ex.get("hybrid", {}).get("metadata", {}))
        if isinstance(asset_ex, dict) and isinstance(asset_ex.get("hybrid"), dict)
        else {}
    )
    meta["imported_from"] = {"file": Path(path).name, "format": "glb", "generator": g.get("asset", {}).get("generator")}
    return Scene(splats, tuple(objects), ground, light, tuple(cameras), {}, meta)
