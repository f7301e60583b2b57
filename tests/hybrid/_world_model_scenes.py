"""Analytic scenes for the world-model tests: a cube over a plane lit by a known directional light.

Splat colours are baked exactly: ``albedo * (ambient + sun * vis * max(0, n . l))`` with the
visibility from a ray-box test, so the true light, albedo and shadow location are known.
"""

from __future__ import annotations

import numpy as np

from scenes import Camera, Ground, Light, Scene, SceneObject, Splats
from scenes.splats import rgb_to_sh0

LIGHT = Light(direction=(0.45, -0.25, 0.86), color=(0.6, 0.6, 0.6), intensity=1.0, ambient=(0.4, 0.4, 0.4))
CUBE_HALF = 0.08
CUBE_CENTER = (0.0, 0.0, 0.2)  # floating: its shadow is a separate blob on the floor
CANOPY_CENTER = (-0.2, 0.25, 0.3)  # a static shelf (not an object): its shadow falls on the floor away from the cube's
CANOPY_HALF = 0.08


def _face_quat(normal) -> np.ndarray:
    """wxyz rotation taking +Z to ``normal`` (the splat's thin axis)."""
    n = np.asarray(normal, float)
    z = np.array([0.0, 0.0, 1.0])
    if np.allclose(n, -z):
        return np.array([0.0, 1.0, 0.0, 0.0])
    q = np.array([1.0 + n @ z, *np.cross(z, n)])
    return q / np.linalg.norm(q)


def _ray_hits_box(points: np.ndarray, direction: np.ndarray, center, half) -> np.ndarray:
    """[N] bool: the ray ``p + t d`` (t > 0) hits the axis-aligned box (slab test)."""
    lo, hi = np.asarray(center) - half, np.asarray(center) + half
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo - points) / direction
        t2 = (hi - points) / direction
    tmin = np.nanmax(np.minimum(t1, t2), axis=1)
    tmax = np.nanmin(np.maximum(t1, t2), axis=1)
    return (tmax >= np.maximum(tmin, 1e-6)) & (tmax > 0)


def cube_over_plane(
    light: Light = LIGHT,
    cube_center=CUBE_CENTER,
    *,
    floor_half: float = 0.6,
    spacing: float = 0.012,
    seed: int = 0,
    textured: bool = True,
    shadow_strength: float = 1.0,  # fraction of the sun the cube's shadow removes (1: the model)
    # a static square of splats (no object) above the floor, on a post: "solid" (the capture shows both their
    # shadows) or "haze"; "floating": solid, but without the post (nothing connects it to the floor)
    canopy: str | None = None,
) -> tuple[Scene, dict]:
    """The scene (splats, one object "cube", capture cameras) and its truth (albedo, visibility, labels)."""
    rng = np.random.default_rng(seed)
    g = np.arange(-floor_half, floor_half + 1e-9, spacing)
    gx, gy = np.meshgrid(g, g)
    floor = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], -1)
    floor_n = np.tile([0.0, 0.0, 1.0], (len(floor), 1))
    # a checker texture on the floor (albedo edges that do not follow the light)
    if textured:
        check = ((np.floor(floor[:, 0] / 0.1) + np.floor(floor[:, 1] / 0.1)) % 2).astype(float)
        floor_alb = np.where(check[:, None] > 0, [0.75, 0.7, 0.6], [0.55, 0.6, 0.7])
    else:
        floor_alb = np.tile([0.7, 0.7, 0.7], (len(floor), 1))
    pts, nrm = [], []
    h = CUBE_HALF
    s = np.arange(-h + spacing / 3, h, spacing / 1.5)
    su, sv = np.meshgrid(s, s)
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u, v = [a for a in range(3) if a != axis]
            face = np.zeros((su.size, 3))
            face[:, u], face[:, v], face[:, axis] = su.ravel(), sv.ravel(), sign * h
            n = np.zeros(3)
            n[axis] = sign
            pts.append(face + np.asarray(cube_center))
            nrm.append(np.tile(n, (su.size, 1)))
    cube = np.concatenate(pts)
    cube_n = np.concatenate(nrm)
    cube_alb = np.tile([0.8, 0.25, 0.2], (len(cube), 1))
    means = np.concatenate([floor, cube])
    normals = np.concatenate([floor_n, cube_n])
    albedo = np.concatenate([floor_alb, cube_alb])
    d = np.asarray(light.direction)
    vis = ~_ray_hits_box(means + normals * 1e-4, d, cube_center, h)
    canopy_idx = np.zeros(0, np.int64)
    if canopy is not None:
        # "solid": a static shelf that casts its shadow in the capture; "haze": the same splats, but the capture
        # shows no shadow of theirs (a lift's floaters: whatever they are, they do not darken the floor)
        cg = np.arange(-CANOPY_HALF, CANOPY_HALF + 1e-9, spacing / 1.5)
        cx, cy = np.meshgrid(cg, cg)
        shelf = np.stack([cx.ravel(), cy.ravel(), np.zeros(cx.size)], -1) + np.asarray(CANOPY_CENTER)
        shelf_n = np.tile([0.0, 0.0, 1.0], (len(shelf), 1))
        post_half = np.array([0.006, 0.006, 0.5 * CANOPY_CENTER[2]])
        post_center = np.array([CANOPY_CENTER[0], CANOPY_CENTER[1], post_half[2]])
        if canopy in ("solid", "floating"):
            vis &= ~_ray_hits_box(means + normals * 1e-4, d, CANOPY_CENTER, np.array([CANOPY_HALF, CANOPY_HALF, 1e-3]))
        if canopy != "floating":  # the post: two columns of splats from the floor up to the shelf
            z = np.arange(spacing / 3, CANOPY_CENTER[2], spacing / 1.5)
            post = np.concatenate([np.stack([np.full_like(z, post_center[0] + dx), np.full_like(z, post_center[1]), z], -1)
                                   for dx in (-post_half[0], post_half[0])])  # fmt: skip
            if canopy == "solid":
                vis &= ~_ray_hits_box(means + normals * 1e-4, d, post_center, post_half)
            shelf = np.concatenate([shelf, post])
            shelf_n = np.concatenate([shelf_n, np.tile([1.0, 0.0, 0.0], (len(post), 1))])
        canopy_idx = np.arange(len(means), len(means) + len(shelf))
        means = np.concatenate([means, shelf])
        normals = np.concatenate([normals, shelf_n])
        albedo = np.concatenate([albedo, np.tile([0.5, 0.6, 0.4], (len(shelf), 1))])
        vis = np.concatenate([vis, np.ones(len(shelf), bool)])
    ndl = np.maximum(normals @ d, 0.0)
    occ = 1.0 - shadow_strength * (1.0 - vis)
    S = np.asarray(light.ambient)[None] + (occ * ndl)[:, None] * (np.asarray(light.color) * light.intensity)[None]
    colors = np.clip(albedo * S, 0, 1)
    n = len(means)
    quats = np.stack([_face_quat(v) for v in normals])
    scales = np.tile([spacing * 0.6, spacing * 0.6, spacing * 0.05], (n, 1))
    scales[len(floor) : len(floor) + len(cube), :2] = spacing * 0.45
    sh = rgb_to_sh0(colors)[:, None, :]
    splats = Splats.from_activated(means, quats, scales, np.full(n, 0.97), sh=sh)
    cube_idx = np.arange(len(floor), len(floor) + len(cube))
    cams = tuple(
        Camera.look_at([1.3 * np.cos(a), 1.3 * np.sin(a), 1.0], [0, 0, 0.05], width=160, height=120, name=f"cap{i}")
        for i, a in enumerate(np.linspace(0, 2 * np.pi, 8, endpoint=False) + 0.3)
    )
    obj = SceneObject("cube", cube_idx, None, mass=1.0, position=tuple(cube_center))
    scene = Scene(splats, objects=(obj,), ground=Ground(), light=Light(), capture_cameras=cams)
    truth = {"albedo": albedo, "vis": vis, "normals": normals, "floor": np.arange(len(floor)), "cube": cube_idx,
             "canopy": canopy_idx, "light": light, "rng": rng}  # fmt: skip
    return scene, truth


def shadow_center_on_floor(cube_center, light: Light) -> np.ndarray:
    """Where the cube's centre projects onto z = 0 along the light: the centre of its shadow."""
    c = np.asarray(cube_center, float)
    d = np.asarray(light.direction, float)
    return c - d * (c[2] / d[2])


def top_camera(center=(0.0, 0.0, 0.0), height: float = 1.5, size: int = 160) -> Camera:
    """A camera looking straight down at ``center`` (image x = world x, image y = -world y)."""
    return Camera.look_at(np.asarray(center) + [0, 0, height], center, up=(0.0, 1.0, 0.0), fov_y_deg=40.0,
                          width=size, height=size, name="top")  # fmt: skip
