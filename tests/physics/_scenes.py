"""Small scenes of primitives for the physics tests (built directly, no lifting)."""

from __future__ import annotations

import numpy as np

from scenes import ColliderMesh, Ground, Scene, SceneObject, Splats

G = 9.81


def box_collider(size) -> ColliderMesh:
    """An axis-aligned box centred on the origin, ``size`` = full extents (x, y, z)."""
    sx, sy, sz = np.asarray(size, float) / 2
    v = np.array([[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)])
    import trimesh

    hull = trimesh.convex.convex_hull(v)
    return ColliderMesh(hull.vertices, hull.faces)


def box_scene(
    size=(0.2, 0.2, 0.1), position=(0.0, 0.0, 0.05), mass=2.0, friction=0.5, ground_friction=1.0, ground=True
) -> Scene:
    obj = SceneObject("box", np.zeros(0, np.int64), box_collider(size), mass=mass, friction=friction,
                      restitution=0.0, position=position)  # fmt: skip
    g = Ground(friction=ground_friction, restitution=0.0) if ground else None
    return Scene(Splats.empty(), objects=(obj,), ground=g)


def _box_surface(size, center, spacing, rng) -> np.ndarray:
    """Points on the five visible faces of a box standing on z = center_z - size_z / 2 (no bottom face)."""
    sx, sy, sz = size
    pts = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            if axis == 2 and sign < 0:
                continue  # the bottom face is hidden against the ground
            u, v = [a for a in range(3) if a != axis]
            nu, nv = max(2, int(size[u] / spacing)), max(2, int(size[v] / spacing))
            gu, gv = np.meshgrid(np.linspace(-0.5, 0.5, nu) * size[u], np.linspace(-0.5, 0.5, nv) * size[v])
            face = np.zeros((gu.size, 3))
            face[:, u], face[:, v] = gu.ravel(), gv.ravel()
            face[:, axis] = sign * size[axis] / 2
            pts.append(face)
    return np.concatenate(pts) + np.asarray(center) + rng.normal(scale=spacing * 0.05, size=(1, 3)) * 0


def _sphere_surface(radius, center, spacing, rng) -> np.ndarray:
    n = int(4 * np.pi * radius**2 / spacing**2)
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (1 + 5**0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1) * radius + np.asarray(center)


# the true primitives of the splat scene: (name, kind, size or radius, centre)
PRIMITIVES = (
    ("box_a", "box", (0.2, 0.2, 0.1), (-0.4, 0.0, 0.05)),
    ("box_b", "box", (0.12, 0.3, 0.16), (0.3, 0.35, 0.08)),
    ("ball", "sphere", 0.08, (0.2, -0.4, 0.08)),
)


def primitive_splats(seed: int = 0, spacing: float = 0.006, ground_half: float = 1.0) -> tuple[Splats, dict]:
    """Splats sampled on a ground square and on PRIMITIVES, plus haze and floaters; returns (splats, labels).

    ``labels`` maps each primitive name (and "ground", "floater", "haze") to its splat indices.
    """
    rng = np.random.default_rng(seed)
    parts, labels, n = [], {}, 0

    def add(name, pts, opacity):
        nonlocal n
        parts.append((pts, np.full(len(pts), opacity)))
        labels[name] = np.arange(n, n + len(pts))
        n += len(pts)

    g = np.arange(-ground_half, ground_half, spacing * 1.5)
    gx, gy = np.meshgrid(g, g)
    ground = np.stack([gx.ravel(), gy.ravel(), rng.normal(scale=5e-4, size=gx.size)], -1)
    add("ground", ground, 0.95)
    for name, kind, size, center in PRIMITIVES:
        pts = _box_surface(size, center, spacing, rng) if kind == "box" else _sphere_surface(size, center, spacing, rng)
        add(name, pts + rng.normal(scale=5e-4, size=pts.shape), 0.9)
    add("floater", rng.normal(scale=0.01, size=(80, 3)) + [0.0, -0.2, 0.7], 0.9)  # a dense blob in the air
    add("haze", rng.uniform([-1, -1, 0], [1, 1, 1], size=(400, 3)), 0.05)
    means = np.concatenate([p for p, _ in parts])
    opac = np.concatenate([o for _, o in parts])
    quats = rng.normal(size=(n, 4))
    scales = np.full((n, 3), spacing * 0.6)
    colors = rng.uniform(0.2, 0.8, size=(n, 3))
    return Splats.from_activated(means, quats, scales, opac, colors), labels


def union_surface(boxes, spacing: float) -> np.ndarray:
    """Points on the outer surface of a union of axis-aligned boxes ``(lo, hi)`` standing on z = 0.

    Faces on the ground (z = 0) and parts of faces inside or against another box are left out,
    as a camera around the object would see it.
    """
    boxes = [(np.asarray(lo, float), np.asarray(hi, float)) for lo, hi in boxes]
    rng = np.random.default_rng(0)
    faces = [_box_surface(hi - lo, (lo + hi) / 2, spacing, rng) for lo, hi in boxes]
    owner = np.repeat(np.arange(len(boxes)), [len(f) for f in faces])
    pts = np.concatenate(faces)
    keep = pts[:, 2] > 1e-9
    for k, (lo, hi) in enumerate(boxes):  # hidden: in (or on) a box other than the one it was sampled on
        keep &= ~(np.all((pts >= lo - 1e-9) & (pts <= hi + 1e-9), axis=1) & (owner != k))
    return pts[keep]
