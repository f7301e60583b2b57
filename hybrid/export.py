"""Scene-level export for game engines and import of splat files from other tools.

``export_scene`` writes one of:

- ``glb``: the whole scene (or one object) as one glTF binary (:mod:`scenes.export.gltf`);
- ``ply``, ``spz``, ``splat``, ``compressed-ply``: the splats in that format plus, beside the splat file
  ``OUT``, ``<stem>.colliders/<object>.glb`` (each collider as a glTF Y-up GLB in its object's frame, with
  ``OMI_physics_body`` on its node) and ``<stem>.physics.json`` (masses, friction, restitution, poses,
  ground; format ``hybrid-physics`` version 1, documented in ``docs/engines.md``).

Axes: the splat file is written in the convention its format carries in practice (``FORMAT_AXES``:
glTF and SPZ +Y up, "RUB"; PLY, compressed PLY and ``.splat`` +Y down, "RDF"), SH coefficients rotated
with the positions; colliders and the JSON poses are always in glTF's +Y-up frame, and the JSON gives the
rotation from the splat file's axes to it.

``import_file`` reads any splat file we read (or a glb with ``KHR_gaussian_splatting``) into a
:class:`~scenes.Scene`; a ``<stem>.physics.json`` written by ``export_scene`` beside a splat file brings
its objects, colliders and ground back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenes.errors import FormatError, SceneError
from scenes.export import (
    AXES,
    FORMAT_AXES,
    GLTF_FROM_WORLD,
    axes_matrix,
    matrix_to_quat,
    quat_to_matrix,
    read_scene_glb,
    scene_to_glb,
    transform_splats,
)
from scenes.glb import glb_bytes, parse_glb
from scenes.scene import ColliderMesh, Ground, Light, Scene, SceneObject

__all__ = ["EXPORT_FORMATS", "SUFFIXES", "ExportResult", "export_scene", "import_file", "PHYSICS_FORMAT"]

EXPORT_FORMATS = ("glb", "ply", "spz", "splat", "compressed-ply")
SUFFIXES = {"glb": ".glb", "ply": ".ply", "spz": ".spz", "splat": ".splat", "compressed-ply": ".compressed.ply"}
_FORMATS_NAME = {"ply": "ply", "spz": "spz", "splat": "splat", "compressed-ply": "compressed_ply"}
PHYSICS_FORMAT = "hybrid-physics"
PHYSICS_VERSION = 1


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_scene` wrote."""

    format: str  # one of EXPORT_FORMATS
    path: Path  # the splat file (or the glb)
    files: tuple[Path, ...]  # every file written, the splat file first
    num_splats: int  # splats written
    axes: str  # axes convention of the splat file (a key of scenes.export.AXES)
    lost: tuple[str, ...]  # what the format could not keep (from the writer)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "object"


def _out_path(out: Path, fmt: str, default_stem: str) -> Path:
    """``out`` itself when it ends in the format's suffix, else ``out/<default_stem><suffix>`` (a folder)."""
    suffix = SUFFIXES[fmt]
    if out.name.lower().endswith(suffix):
        return out
    if out.suffix and not out.is_dir():
        raise SceneError(
            f"-o {out}: the name ends in {out.suffix!r}, which is not the {fmt} suffix {suffix!r}; "
            f"name the file *{suffix} or give a folder"
        )
    return out / f"{default_stem}{suffix}"


def _pose_gltf(obj: SceneObject) -> dict:
    C = GLTF_FROM_WORLD
    R = C @ quat_to_matrix(np.asarray(obj.quaternion)) @ C.T
    w, x, y, z = matrix_to_quat(R)
    return {
        "translation": [float(v) for v in C @ np.asarray(obj.position)],
        "rotation_xyzw": [float(x), float(y), float(z), float(w)],
    }


def collider_glb_bytes(
    mesh: ColliderMesh,
    name: str,
    *,
    mass: float | None = None,
    friction: float = 0.6,
    restitution: float = 0.0,
    static: bool = False,
) -> bytes:
    """A collider as a standalone glTF GLB (+Y up, its owner's frame): one node instancing the mesh (a primitive
    per compound part), with ``OMI_physics_body`` (motion when ``mass`` is given, collider shapes) on it."""
    C = GLTF_FROM_WORLD
    v = np.ascontiguousarray(mesh.vertices.astype(np.float64) @ C.T, np.float32)
    parts = mesh.parts if mesh.kind == "compound" and mesh.parts else (np.arange(len(mesh.faces)),)
    blob = bytearray(v.tobytes())
    views = [{"buffer": 0, "byteOffset": 0, "byteLength": v.nbytes, "target": 34962}]
    accessors = [
        {
            "bufferView": 0,
            "componentType": 5126,
            "count": len(v),
            "type": "VEC3",
            "min": [float(a) for a in v.min(0)],
            "max": [float(a) for a in v.max(0)],
        }
    ]
    meshes, shapes = [], []
    kind = "trimesh" if mesh.kind == "mesh" else "convex"
    for k, part in enumerate(parts):
        idx = np.ascontiguousarray(mesh.faces[np.asarray(part, np.int64)].reshape(-1), np.uint32)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": idx.nbytes, "target": 34963})
        blob += idx.tobytes()
        accessors.append(
            {"bufferView": len(views) - 1, "componentType": 5125, "count": int(idx.size), "type": "SCALAR"}
        )
        meshes.append(
            {
                "name": f"{name}.collider.{k}" if len(parts) > 1 else f"{name}.collider",
                "primitives": [{"attributes": {"POSITION": 0}, "indices": len(accessors) - 1, "mode": 4}],
            }
        )
        shapes.append({"type": kind, kind: {"mesh": k}})
    material = {
        "staticFriction": float(friction),
        "dynamicFriction": float(friction),
        "restitution": float(restitution),
        "frictionCombine": "multiply",
        "restitutionCombine": "multiply",
    }
    root: dict = {"name": name, "extras": {"collider": mesh.kind}}
    body: dict = {}
    if mass is not None:
        body["motion"] = {"type": "static" if static else "dynamic", "mass": float(mass)}
    nodes = [root]
    if len(parts) == 1:
        root["mesh"] = 0
        body["collider"] = {"shape": 0, "physicsMaterial": 0}
    else:
        root["children"] = list(range(1, len(parts) + 1))
        for k in range(len(parts)):
            nodes.append(
                {
                    "name": f"{name}.collider.{k}",
                    "mesh": k,
                    "extensions": {"OMI_physics_body": {"collider": {"shape": k, "physicsMaterial": 0}}},
                }
            )
    if body:
        root["extensions"] = {"OMI_physics_body": body}
    gltf = {
        "asset": {"version": "2.0", "generator": "hybrid-scene-runtime", "extras": {"up_axis": "+Y"}},
        "extensionsUsed": ["OMI_physics_body", "OMI_physics_shape"],
        "extensions": {"OMI_physics_body": {"physicsMaterials": [material]}, "OMI_physics_shape": {"shapes": shapes}},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": nodes,
        "meshes": meshes,
        "buffers": [{"byteLength": len(blob) + (-len(blob) % 4)}],
        "bufferViews": views,
        "accessors": accessors,
    }
    return glb_bytes(gltf, bytes(blob))


def read_collider_glb_yup(path: Path) -> ColliderMesh:
    """Read a collider GLB written by :func:`collider_glb_bytes` back into our +Z-up frame."""
    gltf, binary = parse_glb(path.read_bytes(), str(path))
    try:
        acc = gltf["accessors"]
        views = gltf["bufferViews"]

        def read(i: int, dtype, width: int) -> np.ndarray:
            a = acc[i]
            start = int(views[a["bufferView"]].get("byteOffset", 0)) + int(a.get("byteOffset", 0))
            count = int(a["count"])
            if start + count * width * np.dtype(dtype).itemsize > len(binary):
                raise FormatError(f"{path}: accessor {i} runs past the end of the binary chunk")
            return np.frombuffer(binary, dtype, count * width, start).reshape(count, width)

        v = read(0, np.float32, 3).astype(np.float64) @ GLTF_FROM_WORLD  # +Y up -> +Z up (rows)
        faces, parts, n = [], [], 0
        for mesh in gltf["meshes"]:
            for prim in mesh["primitives"]:
                f = read(prim["indices"], np.uint32, 1).astype(np.int64).reshape(-1, 3)
                parts.append(np.arange(n, n + len(f)))
                faces.append(f)
                n += len(f)
        kind = gltf["nodes"][0].get("extras", {}).get("collider", "compound" if len(parts) > 1 else "convex")
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise FormatError(f"{path}: not a collider GLB written by `hybrid export` ({exc!r})") from exc
    return ColliderMesh(v, np.concatenate(faces), kind, tuple(parts) if kind == "compound" else ())


def _group_order(scene: Scene, fmt: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Splat order for a whole-scene file: the background, then each object; ranges ``(start, count)`` per object.

    Compressed PLY keeps each group in Morton order (as SuperSplat writes it) without mixing groups.
    """
    owner = np.full(len(scene.splats), -1, np.int64)
    for i, obj in enumerate(scene.objects):
        idx = obj.splat_indices[owner[obj.splat_indices] == -1]
        owner[idx] = i
    groups = [np.nonzero(owner == -1)[0]] + [np.nonzero(owner == i)[0] for i in range(len(scene.objects))]
    if fmt == "compressed-ply":
        from scenes.formats.compressed_ply import morton_order

        groups = [g[morton_order(scene.splats.means[g])] if g.size > 1 else g for g in groups]
    ranges, start = [], len(groups[0])
    for g in groups[1:]:
        ranges.append((start, int(g.size)))
        start += int(g.size)
    return np.concatenate(groups) if groups else np.zeros(0, np.int64), ranges


def export_scene(
    scene: Scene,
    out: str | Path,
    format: str,
    *,
    object_name: str | None = None,
    axes: str | None = None,
    name: str = "scene",
    sh_degree: int | None = None,
) -> ExportResult:
    """Write ``scene`` (or only ``object_name``) for game engines; see the module docstring for the layout.

    ``out`` is the splat file (ending in the format's suffix) or a folder to put ``<name>.<suffix>`` in.
    ``axes`` overrides the splat file's axis convention (not for ``glb``, which is +Y up by definition).
    ``sh_degree`` truncates or zero-pads the SH (aras-p's Unity importer wants degree 3 PLY files).
    """
    if format not in EXPORT_FORMATS:
        raise SceneError(f"--format: expected one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    if format == "glb" and axes not in (None, "y-up"):
        raise SceneError(f"--axes {axes}: glTF is +Y up by definition; leave --axes out for glb")
    axes = axes or FORMAT_AXES[format]
    A = axes_matrix(axes)
    if sh_degree is not None:
        if sh_degree not in (0, 1, 2, 3):
            raise SceneError(f"--sh-degree: expected 0, 1, 2 or 3, got {sh_degree}")
        scene = scene.with_(splats=scene.splats.with_sh_degree(sh_degree))
    obj = scene.object(object_name) if object_name is not None else None
    path = _out_path(Path(out), format, _safe(object_name) if object_name else name)
    path.parent.mkdir(parents=True, exist_ok=True)

    if format == "glb":
        sub = scene
        if obj is not None:
            idx = np.unique(obj.splat_indices)
            sub = Scene(
                scene.splats.subset(idx),
                (
                    SceneObject(
                        obj.name,
                        np.arange(idx.size),
                        obj.collider,
                        obj.mass,
                        obj.friction,
                        obj.restitution,
                        obj.position,
                        obj.quaternion,
                        obj.static,
                    ),
                ),
                scene.ground,
                scene.light,
                scene.capture_cameras,
                {},
                scene.metadata,
            )
        path.write_bytes(scene_to_glb(sub))
        return ExportResult("glb", path, (path,), len(sub.splats), "y-up", ())

    from scenes.formats import write_splats

    stem = path.name[: -len(SUFFIXES[format])]
    physics: dict = {
        "format": PHYSICS_FORMAT,
        "version": PHYSICS_VERSION,
        "units": "metres",
        "splats": path.name,
        "splat_format": format,
        "splat_axes": axes,
        "frame": "gltf-y-up",
        "splat_to_frame": (GLTF_FROM_WORLD @ A.T).round(12).tolist(),
        "gravity": [0.0, -9.81, 0.0],
        "combine": {"friction": "multiply", "restitution": "multiply"},
        "objects": [],
    }
    files: list[Path] = [path]
    col_dir = path.parent / f"{stem}.colliders"

    def write_collider(o: SceneObject) -> str | None:
        if o.collider is None or not len(o.collider.faces):
            return None
        col_dir.mkdir(exist_ok=True)
        p = col_dir / f"{_safe(o.name)}.glb"
        p.write_bytes(
            collider_glb_bytes(
                o.collider, o.name, mass=o.mass, friction=o.friction, restitution=o.restitution, static=o.static
            )
        )
        files.append(p)
        return f"{col_dir.name}/{p.name}"

    if obj is not None:
        # the object alone, in its own frame: its splats line up with its collider; the pose places it
        R_o = quat_to_matrix(np.asarray(obj.quaternion))
        t_o = np.asarray(obj.position, np.float64)
        local = transform_splats(scene.splats.subset(np.unique(obj.splat_indices)), R_o.T, -(R_o.T @ t_o))
        splats = transform_splats(local, A)
        physics["splats_frame"] = "object"
        ranges = [(0, len(splats))]
        objects = [obj]
    else:
        order, ranges = _group_order(scene, format)
        splats = transform_splats(scene.splats.subset(order), A)
        physics["splats_frame"] = "world"
        objects = list(scene.objects)
    lost = write_splats(
        splats, path, _FORMATS_NAME[format], **({"morton": False} if format == "compressed-ply" else {})
    )
    physics["num_splats"] = len(splats)
    physics["sh_degree"] = splats.sh_degree
    for o, (start, count) in zip(objects, ranges, strict=True):
        physics["objects"].append(
            {
                "name": o.name,
                "mass": o.mass,
                "friction": o.friction,
                "restitution": o.restitution,
                "static": o.static,
                "motion": "static" if o.static else "dynamic",
                **_pose_gltf(o),
                "collider": write_collider(o),
                "collider_kind": o.collider.kind if o.collider is not None else None,
                "splat_range": [start, count],
            }
        )
    if scene.ground is not None:
        g = scene.ground
        entry = {
            "normal": [float(v) for v in GLTF_FROM_WORLD @ np.asarray(g.normal)],
            "offset": g.offset,
            "friction": g.friction,
            "restitution": g.restitution,
            "mesh": None,
        }
        if g.mesh is not None and len(g.mesh.faces):
            col_dir.mkdir(exist_ok=True)
            p = col_dir / "static.glb"
            p.write_bytes(collider_glb_bytes(g.mesh, "static", friction=g.friction, restitution=g.restitution))
            files.append(p)
            entry["mesh"] = f"{col_dir.name}/{p.name}"
        physics["ground"] = entry
    light = scene.light
    physics["light"] = {
        "direction": [float(v) for v in GLTF_FROM_WORLD @ np.asarray(light.direction)],
        "color": list(light.color),
        "intensity": light.intensity,
        "ambient": list(light.ambient),
    }
    jpath = path.parent / f"{stem}.physics.json"
    jpath.write_text(json.dumps(physics, indent=1))
    files.append(jpath)
    return ExportResult(format, path, tuple(files), len(splats), axes, tuple(lost))


# ================================================================================================= import
def _from_gltf_pose(entry: dict) -> tuple[tuple, tuple]:
    C = GLTF_FROM_WORLD
    x, y, z, w = entry.get("rotation_xyzw", (0.0, 0.0, 0.0, 1.0))
    R = C.T @ quat_to_matrix(np.array([w, x, y, z])) @ C
    return tuple(C.T @ np.asarray(entry.get("translation", (0.0, 0.0, 0.0)), np.float64)), tuple(matrix_to_quat(R))


def _physics_beside(path: Path) -> Path | None:
    name = path.name
    for suffix in sorted(SUFFIXES.values(), key=len, reverse=True):
        if name.lower().endswith(suffix):
            p = path.parent / f"{name[: -len(suffix)]}.physics.json"
            return p if p.is_file() else None
    return None


def import_file(path: str | Path, *, axes: str | None = None, format: str | None = None, physics: bool = True) -> Scene:
    """A scene from a splat file (ply, compressed ply, splat, spz, ksplat) or a glTF/GLB with splats.

    ``axes`` is the file's axis convention (default: the format's usual one, ``FORMAT_AXES``). With
    ``physics`` a ``<stem>.physics.json`` beside the file (written by :func:`export_scene`) restores objects.
    """
    path = Path(path)
    if not path.is_file():
        raise SceneError(
            f"{path}: no such file; give a splat file (.ply, .compressed.ply, .splat, .spz, .ksplat) "
            "or a .glb/.gltf with KHR_gaussian_splatting"
        )
    with open(path, "rb") as f:
        head = f.read(4096)
    is_gltf = (
        head[:4] == b"glTF"
        or (format in ("glb", "gltf"))
        or (path.suffix.lower() in (".glb", ".gltf") and format is None)
    )
    if is_gltf:
        if axes not in (None, "y-up"):
            raise SceneError(f"--axes {axes}: glTF files are +Y up by definition; leave --axes out")
        scene = read_scene_glb(path)
        return scene.with_(
            metadata={**scene.metadata, "imported_from": {**scene.metadata["imported_from"], "axes": "y-up"}}
        )
    from scenes.formats import detect_format, format_from_name, read_splats

    fmt = format_from_name(format) if format else detect_format(path, head)
    user_fmt = fmt.replace("_", "-")
    axes = axes or FORMAT_AXES.get(user_fmt, "y-down")
    raw = read_splats(path, fmt)
    A = axes_matrix(axes)
    meta = {"imported_from": {"file": path.name, "format": user_fmt, "axes": axes, "num_splats": len(raw)}}
    jpath = _physics_beside(path) if physics else None
    if jpath is None:
        return Scene(transform_splats(raw, A.T), metadata=meta)
    try:
        phys = json.loads(jpath.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise SceneError(f"{jpath}: not valid JSON ({exc}); remove it or pass --no-physics") from exc
    if not isinstance(phys, dict) or phys.get("format") != PHYSICS_FORMAT:
        raise SceneError(f"{jpath}: not a {PHYSICS_FORMAT} file; remove it or pass --no-physics")
    if int(phys.get("version", 0)) > PHYSICS_VERSION:
        raise SceneError(
            f"{jpath}: version {phys.get('version')} is newer than this runtime reads "
            f"({PHYSICS_VERSION}); upgrade hybrid-scene-runtime"
        )
    if phys.get("splat_axes") and axes != phys["splat_axes"]:
        A = axes_matrix(phys["splat_axes"]) if phys["splat_axes"] in AXES else A
    meta["imported_from"]["physics"] = jpath.name
    splats = transform_splats(raw, A.T)
    root = jpath.parent.resolve()

    def collider(rel) -> ColliderMesh | None:
        if not rel:
            return None
        p = (root / rel).resolve()
        if root not in p.parents:
            raise SceneError(f"{jpath}: collider path {rel!r} escapes its folder")
        if not p.is_file():
            raise SceneError(f"{jpath}: collider file {rel!r} is missing")
        return read_collider_glb_yup(p)

    objects = []
    try:
        entries = phys.get("objects", [])
        for e in entries:
            start, count = (int(v) for v in e.get("splat_range", (0, 0)))
            if start < 0 or start + count > len(splats):
                raise SceneError(
                    f"{jpath}: object {e.get('name')!r} splat_range {[start, count]} is outside the "
                    f"{len(splats)} splats of {path.name}"
                )
            position, quaternion = _from_gltf_pose(e)
            objects.append(
                SceneObject(
                    str(e["name"]),
                    np.arange(start, start + count),
                    collider(e.get("collider")),
                    float(e.get("mass", 1.0)),
                    float(e.get("friction", 0.6)),
                    float(e.get("restitution", 0.0)),
                    position,
                    quaternion,
                    bool(e.get("static", False)),
                )
            )
        if phys.get("splats_frame") == "object" and len(objects) == 1:
            o = objects[0]  # the file holds the object in its own frame: place it at its pose
            splats = transform_splats(splats, quat_to_matrix(np.asarray(o.quaternion)), o.position)
        ground = None
        if phys.get("ground"):
            g = phys["ground"]
            mesh = collider(g.get("mesh"))
            ground = Ground(
                tuple(GLTF_FROM_WORLD.T @ np.asarray(g["normal"], np.float64)),
                float(g["offset"]),
                mesh,
                float(g.get("friction", 0.8)),
                float(g.get("restitution", 0.1)),
            )
        light = Light()
        if isinstance(phys.get("light"), dict):
            lt = phys["light"]
            light = Light(
                tuple(GLTF_FROM_WORLD.T @ np.asarray(lt["direction"], np.float64)),
                tuple(lt.get("color", light.color)),
                float(lt.get("intensity", light.intensity)),
                tuple(lt.get("ambient", light.ambient)),
            )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, SceneError):
            raise
        raise SceneError(f"{jpath}: malformed physics file ({exc!r})") from exc
    return Scene(splats, tuple(objects), ground, light, metadata=meta)
