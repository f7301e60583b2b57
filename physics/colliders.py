"""Collision shapes and mass properties: convex hulls of splat centres, mesh assets, convex decomposition.

All functions return :class:`scenes.ColliderMesh` in the frame of the points given.
Mass properties (volume, centre of mass, inertia) come from the closed collider with
a uniform density; trimesh integrates them over the surface (divergence theorem).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenes._deps import require
from scenes.errors import FormatError, PhysicsError, ShapeError
from scenes.scene import ColliderMesh

__all__ = [
    "MassProperties",
    "convex_collider",
    "collider_parts",
    "mass_properties",
    "load_mesh",
    "mesh_collider",
    "convex_decomposition",
    "compound_collider",
]


@dataclass(frozen=True)
class MassProperties:
    """Mass properties of a rigid body with uniform density, in the collider's frame."""

    mass: float  # kg
    volume: float  # m^3 of the collider
    com: np.ndarray  # [3] centre of mass
    inertia: np.ndarray  # [3, 3] inertia tensor about the centre of mass, kg m^2
    principal_moments: np.ndarray  # [3] eigenvalues of ``inertia``, ascending
    principal_axes: np.ndarray  # [3, 3] columns are the principal axes (a proper rotation)


def _trimesh():
    return require("trimesh", "collision meshes")


def convex_collider(points: np.ndarray, *, what: str = "points") -> ColliderMesh:  # [N, 3] -> hull
    """The convex hull of ``points`` as a ``"convex"`` collider (vertices in the points' frame)."""
    trimesh = _trimesh()
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    if len(pts) < 4 or not np.all(np.isfinite(pts)):
        raise PhysicsError(f"{what}: a convex collider needs at least 4 finite points, got {len(pts)}")
    extent = pts.max(0) - pts.min(0)
    try:
        hull = trimesh.convex.convex_hull(pts)
    except Exception as exc:  # noqa: BLE001 - qhull raises its own error type for flat input
        raise PhysicsError(
            f"{what}: the points are flat or degenerate (extent {extent.round(4).tolist()} m): {exc}"
        ) from exc
    if hull.volume <= 1e-12:
        raise PhysicsError(f"{what}: the convex hull has no volume (extent {extent.round(4).tolist()} m); it is flat")
    return ColliderMesh(hull.vertices, hull.faces, kind="convex")


def collider_parts(collider: ColliderMesh) -> list[tuple[np.ndarray, np.ndarray]]:
    """The convex pieces of a collider as ``(vertices [V, 3], faces [F, 3])``, each re-indexed."""
    if collider.kind != "compound" or not collider.parts:
        return [(np.asarray(collider.vertices, np.float64), collider.faces)]
    out = []
    for part in collider.parts:
        faces = collider.faces[np.asarray(part, np.int64)]
        used, inverse = np.unique(faces, return_inverse=True)
        out.append((np.asarray(collider.vertices[used], np.float64), inverse.reshape(-1, 3)))
    return out


def mass_properties(collider: ColliderMesh, mass: float, *, what: str = "collider") -> MassProperties:
    """Mass properties of ``collider`` filled uniformly with total ``mass``.

    Convex and compound colliders integrate the convex hull of each piece; a ``"mesh"``
    collider is used as it is when watertight, else its convex hull.
    """
    trimesh = _trimesh()
    if not (np.isfinite(mass) and mass > 0):
        raise ShapeError(f"{what}: mass must be > 0 kg, got {mass}")
    pieces = []
    for v, f in collider_parts(collider):
        m = trimesh.Trimesh(v, f, process=True)
        if collider.kind != "mesh" or not m.is_watertight:
            m = m.convex_hull
        pieces.append(m)
    mesh = trimesh.util.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    volume = float(sum(p.volume for p in pieces))
    if not volume > 1e-12:
        raise PhysicsError(f"{what}: the collider has no volume ({volume:.3g} m^3); it is flat or open")
    density = mass / volume
    com = np.asarray(mesh.center_mass, np.float64)
    inertia = np.asarray(mesh.moment_inertia, np.float64) * density  # trimesh: density 1, about the COM
    inertia = 0.5 * (inertia + inertia.T)
    moments, axes = np.linalg.eigh(inertia)
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1
    return MassProperties(float(mass), volume, com, inertia, np.maximum(moments, 1e-12 * mass), axes)


def load_mesh(path: str | Path, *, what: str = "mesh"):
    """Load a GLB/GLTF/OBJ/PLY/STL file as one ``trimesh.Trimesh`` (scenes flattened, transforms applied)."""
    trimesh = _trimesh()
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{what}: the mesh file {str(path)!r} does not exist")
    try:
        mesh = trimesh.load(str(path), force="mesh")
    except Exception as exc:  # noqa: BLE001 - loaders raise many types for malformed files
        raise FormatError(f"{what}: cannot load {str(path)!r} as a mesh ({type(exc).__name__}: {exc})") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or len(mesh.vertices) < 4:
        raise FormatError(f"{what}: {str(path)!r} holds no triangles (GLB, glTF, OBJ, PLY or STL with faces expected)")
    if not np.all(np.isfinite(mesh.vertices)):
        raise FormatError(f"{what}: {str(path)!r} has non-finite vertex coordinates")
    return mesh


def mesh_collider(mesh, *, concave: bool = False, what: str = "mesh") -> ColliderMesh:
    """A dynamic-body collider for a trimesh mesh: its convex hull, or a convex decomposition."""
    if concave:
        return convex_decomposition(np.asarray(mesh.vertices), np.asarray(mesh.faces), what=what)
    return convex_collider(np.asarray(mesh.vertices), what=what)


def convex_decomposition(
    vertices: np.ndarray,  # [V, 3]
    faces: np.ndarray,  # [F, 3]
    *,
    resolution: int = 100_000,  # VHACD voxel resolution
    max_hulls: int = 32,  # upper bound on the number of convex pieces
    what: str = "mesh",
) -> ColliderMesh:
    """Approximate convex decomposition with PyBullet's VHACD, as a ``"compound"`` collider."""
    p = require("pybullet", "convex decomposition (VHACD)")
    trimesh = _trimesh()
    with tempfile.TemporaryDirectory(prefix="vhacd-") as tmp:
        src, dst, log = Path(tmp) / "in.obj", Path(tmp) / "out.obj", Path(tmp) / "log.txt"
        trimesh.Trimesh(vertices, faces, process=False).export(str(src))
        with _quiet_stdout():  # VHACD prints progress from C
            p.vhacd(str(src), str(dst), str(log), resolution=resolution, maxNumVerticesPerCH=64)
        if not dst.is_file():
            raise PhysicsError(f"{what}: VHACD produced no output; see its log for details")
        parts = _read_obj_parts(dst)
    parts = [(v, f) for v, f in parts if len(v) >= 4][:max_hulls]
    if not parts:
        raise PhysicsError(f"{what}: VHACD produced no convex pieces")
    verts, faces_all, part_faces, off, foff = [], [], [], 0, 0
    for v, f in parts:
        hull = trimesh.Trimesh(v, f).convex_hull
        verts.append(hull.vertices)
        faces_all.append(hull.faces + off)
        part_faces.append(np.arange(foff, foff + len(hull.faces)))
        off += len(hull.vertices)
        foff += len(hull.faces)
    return ColliderMesh(np.concatenate(verts), np.concatenate(faces_all), kind="compound", parts=tuple(part_faces))


def compound_collider(pieces: list[np.ndarray], *, what: str = "points") -> ColliderMesh:
    """A ``"compound"`` collider of the convex hulls of point sets ``pieces`` ([V_k, 3] each)."""
    verts, faces_all, part_faces, off, foff = [], [], [], 0, 0
    for k, pts in enumerate(pieces):
        hull = convex_collider(pts, what=f"{what}, piece {k}")
        verts.append(hull.vertices)
        faces_all.append(hull.faces + off)
        part_faces.append(np.arange(foff, foff + len(hull.faces)))
        off += len(hull.vertices)
        foff += len(hull.faces)
    if not verts:
        raise PhysicsError(f"{what}: a compound collider needs at least one piece")
    return ColliderMesh(np.concatenate(verts), np.concatenate(faces_all), kind="compound", parts=tuple(part_faces))


@contextlib.contextmanager
def _quiet_stdout():
    """Silence C-level writes to stdout (file descriptor 1) for the duration."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (captured by a harness): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _read_obj_parts(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The objects (``o`` groups) of an OBJ file with global vertex numbering, re-indexed."""
    verts, groups = [], [[]]
    for line in path.read_text().splitlines():
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "v":
            verts.append([float(x) for x in tok[1:4]])
        elif tok[0] == "o" and groups[-1]:
            groups.append([])
        elif tok[0] == "f":
            groups[-1].append([int(x.split("/")[0]) - 1 for x in tok[1:4]])
    verts = np.asarray(verts, np.float64).reshape(-1, 3)
    out = []
    for g in groups:
        if not g:
            continue
        f = np.asarray(g, np.int64)
        used, inverse = np.unique(f, return_inverse=True)
        out.append((verts[used], inverse.reshape(-1, 3)))
    return out


def write_obj_parts(path: Path, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Write convex pieces as one OBJ with an ``o`` group each (PyBullet loads it as a compound)."""
    lines, off = [], 1
    for k, (v, f) in enumerate(parts):
        lines.append(f"o part{k}")
        lines += [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in v]
        lines += [f"f {a + off} {b + off} {c + off}" for a, b, c in f]
        off += len(v)
    Path(path).write_text("\n".join(lines) + "\n")
