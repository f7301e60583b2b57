"""Opaque triangle meshes for the GL renderer: the data, loading with trimesh, simple shapes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenes._deps import require
from scenes.errors import FormatError, ShapeError

__all__ = ["Mesh", "load_mesh", "box_mesh", "plane_mesh", "transform_bounds"]


@dataclass(frozen=True, eq=False)
class Mesh:
    """An opaque triangle mesh in its own frame; its pose (model matrix) is held by the renderer.

    Colours are albedos in [0, 1], in the same (display) space as the splat colours.
    """

    vertices: np.ndarray  # [V, 3] positions in the mesh frame, metres
    faces: np.ndarray  # [F, 3] vertex indices
    normals: np.ndarray | None = None  # [V, 3] per-vertex normals; None: flat shading from the faces
    color: np.ndarray = (0.8, 0.8, 0.8)  # [3] albedo, or [V, 3] one per vertex
    lit: bool = True  # False: drawn in its colour, unshaded (gizmos, collider wireframes)
    wireframe: bool = False  # draw the triangle edges only
    cast_shadows: bool = True  # drawn into the shadow map

    def __post_init__(self) -> None:
        v = np.ascontiguousarray(np.asarray(self.vertices, np.float32))
        if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
            raise ShapeError(f"Mesh.vertices: expected finite [V, 3], got shape {v.shape}")
        f = np.asarray(self.faces)
        if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
            raise ShapeError(f"Mesh.faces: expected integer [F, 3], got shape {f.shape} dtype {f.dtype}")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ShapeError(f"Mesh.faces: indices must lie in [0, {len(v)}), got [{f.min()}, {f.max()}]")
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", np.ascontiguousarray(f, np.int64))
        if self.normals is not None:
            n = np.asarray(self.normals, np.float32)
            if n.shape != v.shape:
                raise ShapeError(f"Mesh.normals: expected shape {v.shape}, got {n.shape}")
            object.__setattr__(self, "normals", np.ascontiguousarray(n))
        c = np.asarray(self.color, np.float32)
        if c.shape not in ((3,), v.shape):
            raise ShapeError(f"Mesh.color: expected [3] or [V={len(v)}, 3], got shape {c.shape}")
        object.__setattr__(self, "color", c)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds of the vertices in the mesh frame, ``(min [3], max [3])``."""
        if len(self.vertices) == 0:
            return np.zeros(3, np.float32), np.zeros(3, np.float32)
        return self.vertices.min(0), self.vertices.max(0)

    def triangle_soup(self) -> np.ndarray:  # [3F, 9] position, normal, colour per corner
        """Per-corner vertex data as the GL renderer draws it (flat normals where none are given)."""
        corners = self.faces.reshape(-1)
        pos = self.vertices[corners]
        if self.normals is None:
            tri = self.vertices[self.faces]
            fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            length = np.linalg.norm(fn, axis=1, keepdims=True)
            fn = np.divide(fn, length, out=np.zeros_like(fn), where=length > 0)
            nrm = np.repeat(fn, 3, axis=0)
        else:
            nrm = self.normals[corners]
        col = np.broadcast_to(self.color, (len(corners), 3)) if self.color.ndim == 1 else self.color[corners]
        return np.ascontiguousarray(np.concatenate([pos, nrm, col], axis=1), np.float32)

    @classmethod
    def from_trimesh(cls, tm, color=None, smooth: bool = False, **kwargs) -> Mesh:
        """From a ``trimesh.Trimesh``: its vertex colours (or texture sampled at the vertices) unless ``color``;
        flat shading unless ``smooth`` (area-weighted vertex normals)."""
        if color is None:
            color = (0.8, 0.8, 0.8)
            visual = getattr(tm, "visual", None)
            try:
                if visual is None or visual.kind is None:
                    vc = None
                elif visual.kind == "texture":
                    vc = visual.to_color().vertex_colors
                else:
                    vc = visual.vertex_colors
            except Exception:  # noqa: BLE001 - trimesh visuals raise assorted errors for odd materials
                vc = None
            if vc is not None and len(vc) == len(tm.vertices):
                color = np.asarray(vc, np.float32)[:, :3] / 255.0
        normals = np.asarray(tm.vertex_normals, np.float32) if smooth else None
        return cls(np.asarray(tm.vertices), np.asarray(tm.faces), normals=normals, color=color, **kwargs)


def load_mesh(path: str | Path, color=None, smooth: bool = False, **kwargs) -> Mesh:
    """Load a GLB/glTF/OBJ/PLY/STL mesh with trimesh (all parts concatenated, in the file's frame).

    See :meth:`Mesh.from_trimesh` for ``color`` and ``smooth``; other keywords go to :class:`Mesh`.
    """
    trimesh = require("trimesh", "loading meshes")
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"load_mesh: no such file {path}")
    try:
        tm = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many types for bad files
        raise FormatError(f"load_mesh: could not read {path} as a mesh ({exc})") from exc
    if not hasattr(tm, "faces") or len(tm.faces) == 0:
        raise FormatError(f"load_mesh: {path} has no triangles")
    return Mesh.from_trimesh(tm, color=color, smooth=smooth, **kwargs)


def box_mesh(extents=(1.0, 1.0, 1.0), center=(0.0, 0.0, 0.0), color=(0.8, 0.8, 0.8), **kwargs) -> Mesh:
    """An axis-aligned box with flat faces (12 triangles, outward winding)."""
    e = np.asarray(extents, np.float64) / 2
    c = np.asarray(center, np.float64)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64) * e + c
    # corner index = 4 * (x > 0) + 2 * (y > 0) + (z > 0)
    faces = np.array(
        [
            [0, 1, 3], [0, 3, 2],  # -x
            [4, 6, 7], [4, 7, 5],  # +x
            [0, 4, 5], [0, 5, 1],  # -y
            [2, 3, 7], [2, 7, 6],  # +y
            [0, 2, 6], [0, 6, 4],  # -z
            [1, 5, 7], [1, 7, 3],  # +z
        ]
    )  # fmt: skip
    return Mesh(corners, faces, color=color, **kwargs)


def plane_mesh(size=(1.0, 1.0), center=(0.0, 0.0, 0.0), color=(0.8, 0.8, 0.8), **kwargs) -> Mesh:
    """A horizontal rectangle (normal +Z) of ``size`` (x, y) metres centred at ``center``."""
    sx, sy = np.asarray(size, np.float64) / 2
    c = np.asarray(center, np.float64)
    v = np.array([[-sx, -sy, 0], [sx, -sy, 0], [sx, sy, 0], [-sx, sy, 0]]) + c
    return Mesh(v, np.array([[0, 1, 2], [0, 2, 3]]), color=color, **kwargs)


def transform_bounds(lo: np.ndarray, hi: np.ndarray, model: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World bounds of the box ``lo..hi`` (mesh frame) under the model matrix ``model [4, 4]``."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    w = corners @ model[:3, :3].T + model[:3, 3]
    return w.min(0), w.max(0)
