"""The scene folder: a versioned JSON manifest plus standard files, saved atomically.

Layout::

    SCENE/
      scene.json                 manifest (format "hybrid-scene", version 1)
      splats.ply                 all splats, standard Inria 3DGS PLY
      segmentation.safetensors   per-object splat index arrays (int64), one tensor per object
      colliders/<object>.glb     object colliders in the object frame; static.glb for the static scene
      weights/<model>.safetensors  learned weights (e.g. the residual world model)
      ...                        anything else (reports, PNGs) is kept across saves

Saving writes a complete new folder beside the old one and swaps them with one atomic
``renameat2(RENAME_EXCHANGE)`` (or two renames with recovery on load where that call is
missing), so a crash or a full disk mid-save leaves the previous scene loadable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np

from scenes.errors import FormatError, SceneError
from scenes.glb import read_collider_glb, write_collider_glb
from scenes.scene import Camera, Ground, Light, Scene, SceneObject

__all__ = ["save_scene", "load_scene", "MANIFEST", "SCHEMA_VERSION"]

MANIFEST = "scene.json"
SCHEMA_VERSION = 1
FORMAT_NAME = "hybrid-scene"


# --------------------------------------------------------------------------------------------- save
def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "object"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _write_folder(scene: Scene, root: Path) -> None:
    from safetensors.numpy import save_file

    from scenes.formats import write_splats

    root.mkdir(parents=True)
    write_splats(scene.splats, root / "splats.ply", format="ply")
    manifest: dict = {
        "format": FORMAT_NAME,
        "version": SCHEMA_VERSION,
        "splats": "splats.ply",
        "num_splats": len(scene.splats),
        "sh_degree": scene.splats.sh_degree,
        "units": "metres",
        "up": [0.0, 0.0, 1.0],
        "light": scene.light.to_dict(),
        "capture_cameras": [c.to_dict() for c in scene.capture_cameras],
        "objects": [],
        "metadata": scene.metadata,
    }
    if scene.objects:
        (root / "colliders").mkdir()
        tensors, used = {}, set()
        for obj in scene.objects:
            stem = _safe_name(obj.name)
            while stem in used:
                stem += "_"
            used.add(stem)
            entry = {
                "name": obj.name,
                "mass": obj.mass,
                "friction": obj.friction,
                "restitution": obj.restitution,
                "position": list(obj.position),
                "quaternion": list(obj.quaternion),
                "static": obj.static,
                "splat_count": int(obj.splat_indices.size),
                "collider": None,
            }
            tensors[obj.name] = np.ascontiguousarray(obj.splat_indices, np.int64)
            if obj.collider is not None:
                rel = f"colliders/{stem}.glb"
                write_collider_glb(root / rel, obj.collider)
                entry["collider"] = rel
                entry["collider_kind"] = obj.collider.kind
            manifest["objects"].append(entry)
        save_file(tensors, str(root / "segmentation.safetensors"))
        manifest["segmentation"] = "segmentation.safetensors"
    if scene.ground is not None:
        g = scene.ground
        manifest["ground"] = {
            "normal": list(g.normal),
            "offset": g.offset,
            "friction": g.friction,
            "restitution": g.restitution,
            "mesh": None,
        }
        if g.mesh is not None:
            (root / "colliders").mkdir(exist_ok=True)
            write_collider_glb(root / "colliders" / "static.glb", g.mesh)
            manifest["ground"]["mesh"] = "colliders/static.glb"
    if scene.weights:
        (root / "weights").mkdir()
        manifest["weights"] = {}
        for model, tensors in scene.weights.items():
            rel = f"weights/{_safe_name(model)}.safetensors"
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(root / rel))
            manifest["weights"][model] = rel
    _write_json(root / MANIFEST, manifest)
    for dirpath, _dirs, files in os.walk(root):  # everything on disk before the swap makes it visible
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _carry_over(old: Path, new: Path) -> None:
    """Keep files of the old folder that the new save did not write (reports, PNGs, user files)."""
    for entry in old.iterdir():
        target = new / entry.name
        if entry.name.startswith(".hybrid-") or target.exists() or entry.is_symlink():
            continue
        if entry.is_dir():
            shutil.copytree(entry, target, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, target)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    rc = fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    return rc == 0


def save_scene(scene: Scene, path: str | Path) -> Path:
    """Write ``scene`` to the folder ``path`` atomically; returns the folder path.

    Files in an existing folder that this save does not write are kept.
    """
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise SceneError(f"{path}: exists and is not a folder; choose another output path")
    if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST).exists():
        raise SceneError(
            f"{path}: is a non-empty folder without {MANIFEST}; refusing to replace it (choose an empty path)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.hybrid-tmp-{uuid.uuid4().hex[:8]}"
    try:
        _write_folder(scene, tmp)
        if path.exists():
            _carry_over(path, tmp)
            if _exchange(tmp, path):
                _fsync_dir(path.parent)
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous scene
                return path
            old = path.parent / f".{path.name}.hybrid-old"
            if old.exists():
                shutil.rmtree(old)
            os.rename(path, old)
            os.rename(tmp, path)
            _fsync_dir(path.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
            _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# --------------------------------------------------------------------------------------------- load
def _inside(root: Path, rel, what: str) -> Path:
    if not isinstance(rel, str) or not rel:
        raise SceneError(f"{root / MANIFEST}: {what}: expected a relative path string, got {rel!r}")
    p = (root / rel).resolve()
    if p != root and root not in p.parents:
        raise SceneError(f"{root / MANIFEST}: {what} path {rel!r} escapes the scene folder; paths must stay inside it")
    return p


def load_scene(path: str | Path, *, load_weights: bool = True) -> Scene:
    """Read a scene folder written by :func:`save_scene`."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from scenes.formats import read_splats

    root = Path(path).absolute()
    old = root.parent / f".{root.name}.hybrid-old"
    if not root.exists() and old.is_dir():  # a save died between its two renames: the old scene is intact
        os.rename(old, root)
    mpath = root / MANIFEST
    if not mpath.exists():
        raise SceneError(
            f"{root}: not a scene folder (no {MANIFEST}); create one with `hybrid lift` or `hybrid import`"
        )
    root = root.resolve()
    try:
        m = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SceneError(f"{mpath}: not valid JSON ({exc})") from exc
    if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
        raise SceneError(
            f"{mpath}: not a hybrid scene manifest (format {m.get('format') if isinstance(m, dict) else m!r})"
        )
    version = m.get("version")
    if not isinstance(version, int) or version < 1 or version > SCHEMA_VERSION:
        raise SceneError(
            f"{mpath}: manifest version {version!r} is not supported; this runtime reads versions 1..{SCHEMA_VERSION}"
            " (a newer version was written by a newer release: upgrade hybrid-scene-runtime)"
        )
    try:
        splats = read_splats(_inside(root, m.get("splats"), "splats"))
        seg = {}
        if m.get("segmentation"):
            try:
                seg = load_file(str(_inside(root, m["segmentation"], "segmentation")))
            except (SafetensorError, OSError) as exc:
                raise SceneError(f"{root}: cannot read segmentation ({exc})") from exc
        objects = []
        for i, o in enumerate(m.get("objects", [])):
            if not isinstance(o, dict) or "name" not in o:
                raise SceneError(f"{mpath}: objects[{i}] needs a 'name'")
            if o["name"] not in seg:
                raise SceneError(f"{mpath}: object {o['name']!r} has no splat index set in the segmentation file")
            collider = (
                read_collider_glb(_inside(root, o["collider"], f"objects[{i}].collider")) if o.get("collider") else None
            )
            objects.append(
                SceneObject(
                    o["name"],
                    seg[o["name"]],
                    collider,
                    float(o.get("mass", 1.0)),
                    float(o.get("friction", 0.6)),
                    float(o.get("restitution", 0.1)),
                    tuple(o.get("position", (0, 0, 0))),
                    tuple(o.get("quaternion", (1, 0, 0, 0))),
                    bool(o.get("static", False)),
                )
            )
        ground = None
        if m.get("ground"):
            g = m["ground"]
            mesh = read_collider_glb(_inside(root, g["mesh"], "ground.mesh")) if g.get("mesh") else None
            ground = Ground(
                tuple(g.get("normal", (0, 0, 1))),
                float(g.get("offset", 0.0)),
                mesh,
                float(g.get("friction", 0.8)),
                float(g.get("restitution", 0.1)),
            )
        weights = {}
        if load_weights:
            for model, rel in (m.get("weights") or {}).items():
                try:
                    weights[model] = load_file(str(_inside(root, rel, f"weights.{model}")))
                except (SafetensorError, OSError) as exc:
                    raise SceneError(f"{root}: cannot read weights {rel!r} ({exc})") from exc
        return Scene(
            splats,
            tuple(objects),
            ground,
            Light.from_dict(m.get("light", {})),
            tuple(Camera.from_dict(c) for c in m.get("capture_cameras", [])),
            weights,
            m.get("metadata", {}),
        )
    except (KeyError, TypeError) as exc:
        raise SceneError(f"{mpath}: malformed manifest ({exc!r})") from exc
    except FormatError as exc:
        raise SceneError(f"{root}: {exc}") from exc
