"""From splats to objects: the ground plane, object instances, colliders and masses.

1. :func:`fit_ground`: RANSAC on splat centres weighted by opacity, keeping only planes
   whose normal is within ``max_tilt_deg`` of "up" (against gravity), then a weighted
   least-squares refit on the inliers.
2. :func:`find_objects`: the confident splats standing above the ground are clustered by
   density (DBSCAN on a KD-tree: core splats have ``min_samples`` neighbours within
   ``eps``; connected cores form a cluster, border splats join their nearest core). Tiny
   clusters, floaters (not resting on the ground or on a resting cluster) and clusters as
   wide as the scene (background structure) are not objects. With the splats' colours, a
   cluster that is a stack (its horizontal footprint drops sharply above some height, the
   top of the lower object, and the part above differs in chromaticity) is split into its
   objects. ``seeds`` (``--object x,y,z``) choose clusters explicitly and split a cluster
   that holds several seeds. With capture cameras, a cluster they only graze (triangulated
   far worse than the best-seen cluster, in frame in few cameras) is not an object, nor is a
   cluster of a lift's haze (large splats, sparse, a few cm above the ground).
3. :func:`segment_scene`: a collider per object (convex hull of its splat centres, its
   lowest band extended down to the ground plane so that it rests where it stood; an
   object resting on another starts at that one's top), volume, mass from a density,
   friction and restitution defaults, in a new :class:`scenes.Scene`. A resting object
   whose :class:`HeightField` (the columns under its seen top surface) fills much less
   than its hull (a U, an L, a bowl) gets a compound collider of the height field's pieces.
4. :func:`settle_objects` (the end of :func:`segment_scene`): PyBullet runs the new scene with
   no edit; an object that its collider moves a little (a lifted hull that does not sit flat)
   gets its collider turned to where it came to rest, so that a simulation starts at rest.

Every step is numpy/scipy; nothing here renders. Refinement with rendered per-pixel splat
ids lives in ``hybrid.objects.refine_with_views`` (physics never imports render).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np

from physics.colliders import convex_collider, mass_properties
from physics.transforms import plane_basis
from scenes.errors import PhysicsError, SceneError, ShapeError
from scenes.scene import ColliderMesh, Ground, Scene, SceneObject, capture_pixels_per_metre
from scenes.splats import Splats

__all__ = ["SegmentConfig", "GroundFit", "ObjectCandidate", "fit_ground", "find_objects", "segment_scene",
           "build_object", "merge_objects", "rename_object", "settle_objects", "settle_notes", "not_object_notes",
           "static_mesh", "HeightField", "height_field", "observation"]  # fmt: skip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentConfig:
    """Knobs of the segmentation; ``None`` means "derive from the scene's scale"."""

    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81)  # world gravity; the ground faces against it
    max_tilt_deg: float = 30.0  # the ground normal may lean at most this far from "up"
    min_opacity: float = 0.3  # fainter splats are ignored (haze, floaters)
    ground_threshold: float | None = (
        None  # m from the plane counted as ground (None: 4 sigma of the ground's thickness, <= 0.5% of the scene)
    )
    ground_iterations: int = 300  # RANSAC hypotheses
    min_height: float | None = None  # m above the ground for an object splat (None: 2 * ground_threshold)
    eps: float | None = None  # clustering radius, m (None: 2.5 x the median distance to the 8th neighbour)
    min_samples: int = 8  # neighbours within eps that make a splat a cluster core
    min_splats: int = 50  # fewer splats: not an object
    min_size: float = 0.02  # m; a cluster whose largest extent is smaller is not an object
    max_size_fraction: float = 0.6  # a cluster wider than this fraction of the scene is static background
    support_gap: float | None = None  # m; a cluster further than this from the ground or a support floats (None: 3 eps)
    density: float = 500.0  # kg/m^3 for the mass (roughly wood or filled plastic)
    friction: float = 0.6  # Coulomb friction of new objects
    restitution: float = 0.1  # bounciness of new objects
    seed: int = 0  # RANSAC randomness
    stack_footprint_ratio: float = 2.0  # a stack: the lower object's top band is this many times wider than the rest
    stack_color_distance: float = 0.08  # ... and the parts' median chromaticities differ by this much (0: no splits)
    concave_ratio: float = 0.75  # height-field volume / hull volume below which a resting object is concave (0: never)
    concave_cells: int = 24  # height-field cells across an object's widest horizontal extent
    # in an object's lowest band (``skirt_band`` of its height, at least 2 eps), splats more than this many times
    # larger than the object's median splat and outside its footprint are lift debris beside it (0: keep all)
    skirt_scale: float = 2.0
    skirt_band: float = 0.3
    # ... and splats of that band that are not density-connected to the object's body at its own splat spacing
    # (clustered again with a radius of ``skirt_density`` times the cluster's median distance to the
    # ``min_samples``-th neighbour, when that is tighter than ``eps``) are floaters a chain of sparse splats
    # joined to it (0: keep all)
    skirt_density: float = 2.0
    # a cluster that falls apart at that radius into parts of at least ``min_splats`` splats whose footprints
    # (horizontal hulls) do not overlap is as many objects: boxes a few dm apart that floaters between them
    # joined at ``eps`` (no effect with seeds, which choose the objects themselves)
    split_apart: bool = True
    # with capture cameras: a cluster whose centre the cameras triangulate this many times worse than the best
    # observed cluster's, seen in frame by under ``observation_coverage`` of the cameras that see that one, lies
    # where the cameras only graze (a lift's bumps far out on the ground): not an object (0: keep all)
    observation_ratio: float = 5.0
    observation_coverage: float = 0.5
    # a cluster of a lift's haze: its median splat is this many times the median splat of all the clusters (in
    # capture pixels where there are capture cameras, else in metres) and it is this sparse (splats per m² of its
    # footprint, against the densest cluster's): large splats the lift left a few cm above the ground where the
    # cameras see it at a grazing angle; not an object (0: keep all)
    haze_size_ratio: float = 1.4
    haze_density_ratio: float = 0.15
    # objects are settled when made: PyBullet runs this long with no edit, and an object whose collider moves it
    # (a lifted hull that does not sit flat: a box on a bumpy top tips by a few degrees) by at most
    # ``settle_max_shift`` / ``settle_max_angle`` gets its collider turned to where it came to rest; its splats do
    # not move (the capture shows them at rest). Larger moves are left alone with a warning (0 s: no settling)
    settle_time: float = 1.0  # s
    settle_max_shift: float = 0.05  # m
    settle_max_angle: float = 15.0  # degrees

    def __post_init__(self) -> None:
        if not (0 < self.max_tilt_deg < 90):
            raise ShapeError(f"SegmentConfig.max_tilt_deg: expected (0, 90) degrees, got {self.max_tilt_deg}")
        if not (self.density > 0 and math.isfinite(self.density)):
            raise ShapeError(f"SegmentConfig.density: expected kg/m^3 > 0, got {self.density}")
        for name in ("settle_time", "settle_max_shift", "settle_max_angle", "skirt_density"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ShapeError(f"SegmentConfig.{name}: expected a finite number >= 0, got {v}")
        for name in ("ground_threshold", "min_height", "eps", "support_gap"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ShapeError(f"SegmentConfig.{name}: expected None or metres > 0, got {v}")


@dataclass(frozen=True)
class GroundFit:
    """A fitted ground plane: points ``x`` on it satisfy ``normal . x = offset``."""

    normal: np.ndarray  # [3] unit, pointing up (against gravity)
    offset: float
    inliers: np.ndarray  # [N] bool: splats within ``threshold`` of the plane
    threshold: float  # m
    tilt_deg: float  # angle between the normal and "up"
    support: float  # fraction of the (opacity-weighted) splats that are inliers

    def height(self, points: np.ndarray) -> np.ndarray:  # [N, 3] -> [N]
        """Signed height of points above the plane."""
        return np.asarray(points, np.float64) @ self.normal - self.offset


@dataclass(frozen=True)
class ObjectCandidate:
    """A cluster of splats found to be an object."""

    indices: np.ndarray  # [M] int64 splat indices (into the full splat set)
    centroid: np.ndarray  # [3] opacity-weighted mean of the splat centres
    bottom: float  # lowest splat height above the ground, m
    supported: bool  # rests on the ground (or on another object)


def _up(gravity) -> np.ndarray:
    g = np.asarray(gravity, np.float64).reshape(3)
    n = np.linalg.norm(g)
    if n == 0 or not np.isfinite(n):
        raise ShapeError(f"gravity: expected a non-zero finite vector, got {g.tolist()}")
    return -g / n


def _extent(points: np.ndarray) -> float:
    """Robust size of a point set: the largest 2-98 percentile range over the axes."""
    lo, hi = np.percentile(points, [2, 98], axis=0)
    return float(np.max(hi - lo))


def _plane_lsq(points: np.ndarray, weights: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, float]:
    w = weights / weights.sum()
    c = w @ points
    d = points - c
    cov = (d * w[:, None]).T @ d
    normal = np.linalg.eigh(cov)[1][:, 0]
    if normal @ up < 0:
        normal = -normal
    return normal, float(normal @ c)


def fit_ground(
    means: np.ndarray,  # [N, 3]
    weights: np.ndarray,  # [N] opacity (or any non-negative confidence)
    config: SegmentConfig | None = None,
) -> GroundFit:
    """Robust plane fit for the ground: opacity-weighted RANSAC restricted to near-horizontal planes."""
    cfg = config or SegmentConfig()
    means = np.asarray(means, np.float64)
    weights = np.asarray(weights, np.float64).reshape(-1)
    if means.ndim != 2 or means.shape[1] != 3 or len(weights) != len(means):
        raise ShapeError(f"fit_ground: expected means [N, 3] and weights [N], got {means.shape} and {weights.shape}")
    keep = np.isfinite(means).all(1) & np.isfinite(weights) & (weights > 0)
    if keep.sum() < 3:
        raise SceneError(f"fit_ground: only {int(keep.sum())} usable splats; need at least 3 to find a ground plane")
    up = _up(cfg.gravity)
    rng = np.random.default_rng(cfg.seed)
    pts, w = means[keep], weights[keep]
    scale = _extent(pts)
    thr = cfg.ground_threshold or max(0.005 * scale, 1e-4)
    # score on a weighted subsample; hypotheses from opacity-weighted triples
    prob = w / w.sum()
    sub = rng.choice(len(pts), size=min(len(pts), 20_000), replace=False, p=prob) if len(pts) > 20_000 else None
    spts, sw = (pts[sub], np.ones(len(sub))) if sub is not None else (pts, w)
    tri = rng.choice(len(pts), size=(cfg.ground_iterations, 3), p=prob)
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    normals = np.cross(b - a, c - a)
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-12
    normals[ok] /= norms[ok, None]
    normals *= np.where(normals @ up < 0, -1.0, 1.0)[:, None]
    cos_tilt = math.cos(math.radians(cfg.max_tilt_deg))
    ok &= normals @ up >= cos_tilt
    if not ok.any():
        raise SceneError(
            f"no ground plane within {cfg.max_tilt_deg} degrees of horizontal (gravity {list(cfg.gravity)}); "
            "is the scene upside down, or is gravity wrong? (SegmentConfig.gravity / max_tilt_deg)"
        )
    normals, offsets = normals[ok], np.einsum("ij,ij->i", normals[ok], a[ok])
    best, best_score = -1, -1.0
    for start in range(0, len(normals), 64):  # chunks of hypotheses x subsample
        dist = np.abs(spts @ normals[start : start + 64].T - offsets[start : start + 64])
        score = (dist < thr).astype(np.float64).T @ sw
        k = int(np.argmax(score))
        if score[k] > best_score:
            best, best_score = start + k, float(score[k])
    normal, offset = normals[best], float(offsets[best])
    for _ in range(3):  # weighted least-squares refit on the inliers
        inl = np.abs(pts @ normal - offset) < thr
        if inl.sum() < 3:
            break
        normal, offset = _plane_lsq(pts[inl], w[inl], up)
        if cfg.ground_threshold is None:  # tighten to the measured thickness of the ground (4 robust sigmas)
            resid = pts[inl] @ normal - offset
            sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
            thr = float(np.clip(4 * sigma, 1e-4 * scale, thr))
    tilt = math.degrees(math.acos(min(1.0, float(normal @ up))))
    if tilt > cfg.max_tilt_deg:
        raise SceneError(f"the best ground plane is tilted {tilt:.1f} degrees from horizontal (> {cfg.max_tilt_deg})")
    dist_all = np.abs(means @ normal - offset)
    inliers = keep & (dist_all < thr)
    support = float(weights[inliers].sum() / weights[keep].sum())
    if support < 0.02:
        raise SceneError(f"no ground plane found: the best plane holds only {100 * support:.1f}% of the splats")
    return GroundFit(normal, offset, inliers, thr, tilt, support)


def _dbscan(points: np.ndarray, eps: float, min_samples: int) -> np.ndarray:  # [N, 3] -> [N] labels, -1 noise
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(points)
    labels = np.full(n, -1, np.int64)
    if n == 0:
        return labels
    tree = cKDTree(points)
    counts = tree.query_ball_point(points, eps, return_length=True)
    core = np.nonzero(counts >= min_samples)[0]
    if core.size == 0:
        return labels
    core_tree = cKDTree(points[core])
    pairs = core_tree.query_pairs(eps, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(core.size, core.size))
    _, comp = connected_components(graph, directed=False)
    labels[core] = comp
    border = np.setdiff1d(np.arange(n), core)
    if border.size:
        d, j = core_tree.query(points[border], k=1, distance_upper_bound=eps)
        hit = np.isfinite(d)
        labels[border[hit]] = comp[j[hit]]
    return labels


def _auto_eps(points: np.ndarray, rng: np.random.Generator) -> float:
    from scipy.spatial import cKDTree

    tree = cKDTree(points)
    sample = points[rng.choice(len(points), size=min(len(points), 5000), replace=False)]
    d, _ = tree.query(sample, k=min(9, len(points)))
    return float(2.5 * np.median(d[:, -1]))


def find_objects(
    means: np.ndarray,  # [N, 3]
    weights: np.ndarray,  # [N] opacity
    ground: GroundFit,
    config: SegmentConfig | None = None,
    seeds: np.ndarray | None = None,  # [S, 3] world points, one per wanted object
    colors: np.ndarray | None = None,  # [N, 3] RGB of the splats: with them, stacked objects are split
    sizes: np.ndarray | None = None,  # [N] largest scale of each splat: with them, debris at a base is dropped
) -> list[ObjectCandidate]:
    """Cluster the confident splats above the ground into objects (see the module docstring)."""
    return _find(means, weights, ground, config or SegmentConfig(), seeds, colors, sizes)[0]


def _find(
    means: np.ndarray,
    weights: np.ndarray,
    ground: GroundFit,
    cfg: SegmentConfig,
    seeds: np.ndarray | None,
    colors: np.ndarray | None = None,
    sizes: np.ndarray | None = None,
) -> tuple[list[ObjectCandidate], np.ndarray]:
    """``(objects, background splat indices)``: the background is the clusters too wide to be objects.

    With seeds only the seeded clusters are kept, and there is no background.
    """
    means = np.asarray(means, np.float64)
    weights = np.asarray(weights, np.float64).reshape(-1)
    rng = np.random.default_rng(cfg.seed)
    height = ground.height(means)
    min_h = cfg.min_height or 2 * ground.threshold
    cand = np.nonzero((weights >= cfg.min_opacity) & (height > min_h) & np.isfinite(height))[0]
    none = np.zeros(0, np.int64)
    if cand.size < cfg.min_samples:
        if seeds is not None and len(seeds):
            raise SceneError(f"no confident splats stand above the ground (found {cand.size}); the seeds match nothing")
        return [], none
    pts = means[cand]
    eps = cfg.eps or _auto_eps(pts, rng)
    labels = _dbscan(pts, eps, cfg.min_samples)
    gap = cfg.support_gap or 3 * eps
    scene_size = _extent(means[weights >= cfg.min_opacity]) if (weights >= cfg.min_opacity).any() else _extent(means)
    up = ground.normal
    background: list[int] = []
    seeded = seeds is not None and len(seeds) > 0
    if seeded:
        labels = _apply_seeds(pts, labels, np.asarray(seeds, np.float64).reshape(-1, 3), eps)
    clusters = {}
    for lab in np.unique(labels):
        if lab < 0:
            continue
        m = labels == lab
        if not seeded:
            p = pts[m]
            ext = p.max(0) - p.min(0)
            if m.sum() < cfg.min_splats or ext.max() < cfg.min_size:
                continue
            horiz = ext - (ext @ up) * up
            if np.linalg.norm(horiz) > cfg.max_size_fraction * scene_size:
                log.info("cluster of %d splats spans %.2f m: static background, not an object", m.sum(), ext.max())
                background.append(int(lab))
                continue
        clusters[int(lab)] = m
    uv = pts @ plane_basis(up)[:2].T  # on the ground: footprints
    if not seeded and cfg.split_apart and cfg.skirt_density > 0:
        clusters = _split_each(clusters, len(pts), lambda i: _apart_parts(pts[i], uv[i], eps, cfg), "side by side")
    if colors is not None and not seeded and cfg.stack_color_distance > 0:
        chroma, h = _chroma(np.asarray(colors)[cand]), height[cand]
        clusters = _split_each(clusters, len(pts), lambda i: _split_stack(uv[i], h[i], chroma[i], cfg), "in a stack")
    if sizes is not None and cfg.skirt_scale > 0:
        clusters = {lab: _drop_skirt(m, uv, height[cand], np.asarray(sizes, np.float64)[cand], eps, cfg)
                    for lab, m in clusters.items()}  # fmt: skip
    if cfg.skirt_density > 0:
        clusters = {lab: _drop_loose(m, pts, uv, height[cand], eps, cfg) for lab, m in clusters.items()}
    # support: on the ground, on the background, or close to a supported cluster (stacks); the rest float
    from scipy.spatial import cKDTree

    bottoms = {lab: float(height[cand[m]].min()) for lab, m in clusters.items()}
    supported = {lab for lab, b in bottoms.items() if b <= min_h + gap}
    trees = {lab: cKDTree(pts[m]) for lab, m in clusters.items()}
    bg_mask = np.isin(labels, background) if background else np.zeros(len(pts), bool)
    if bg_mask.any():
        trees[-2] = cKDTree(pts[bg_mask])
        supported.add(-2)
    grew = True
    while grew:
        grew = False
        for lab in set(clusters) - supported:
            for s in list(supported):
                if np.isfinite(trees[s].query(pts[clusters[lab]], k=1, distance_upper_bound=gap)[0]).any():
                    supported.add(lab)
                    grew = True
                    break
    out = []
    for lab, m in sorted(clusters.items()):
        if not seeded and lab not in supported:
            log.info("cluster of %d splats floats %.3f m above the ground: not an object", m.sum(), bottoms[lab])
            continue
        idx = cand[m]
        w = weights[idx]
        out.append(ObjectCandidate(idx, (w @ means[idx]) / w.sum(), bottoms[lab], lab in supported))
    if not seeded:  # deterministic order; with seeds, the seeds' order (labels are seed indices)
        out.sort(key=lambda o: tuple(np.round(o.centroid, 6)))
    return out, cand[bg_mask]


def _drop_skirt(m: np.ndarray, uv: np.ndarray, height: np.ndarray, size: np.ndarray, eps: float,
                cfg: SegmentConfig) -> np.ndarray:  # fmt: skip
    """Cluster mask ``m`` without the large splats of its lowest band that lie outside its footprint.

    A lift reconstructs the ground beside an object's base poorly (most views see it at a grazing
    angle or not at all): a few large, flat splats float there a few cm up and join the object's
    cluster through its lowest splats. They stretch its collider and outline well past the object
    (on the sample video's thin slab: 5-10 cm splats 10-20 cm outside the box). They are told
    apart by all three: in the lowest band, larger than ``skirt_scale`` times the object's median
    splat, and centred outside the horizontal hull of its ordinary-sized splats. On sample lifts
    the slab's IoU with its true silhouette went from 0.64-0.79 (4 lifts) to 0.73-0.81 (8 lifts;
    0.78-0.86 after :func:`hybrid.objects.refine_with_views`, which gives back any such splat the
    views show on it).
    """
    from scipy.spatial import ConvexHull, QhullError

    idx = np.nonzero(m)[0]
    if idx.size < 20:
        return m
    size = size[idx]
    big = _low_band(height[idx], eps, cfg) & (size > cfg.skirt_scale * float(np.median(size)))
    if not big.any() or (~big).sum() < 10:
        return m
    try:
        eq = ConvexHull(uv[idx[~big]]).equations
    except QhullError:
        return m
    outside = _beyond(uv[idx[big]], eq) > 0.0
    out = m.copy()
    out[idx[np.nonzero(big)[0][outside]]] = False
    return out


def _low_band(h: np.ndarray, eps: float, cfg: SegmentConfig) -> np.ndarray:
    """[M] bool: an object's lowest band (``skirt_band`` of its height ``h`` [M] above the ground, at least 2 eps)."""
    lo, hi = float(h.min()), float(h.max())
    return h <= lo + max(cfg.skirt_band * (hi - lo), 2.0 * eps)


def _beyond(uv: np.ndarray, eq: np.ndarray) -> np.ndarray:
    """[P] how far points ``uv`` [P, 2] lie outside a 2-D convex hull (its ``equations``): > 0 outside, <= 0 in."""
    return np.max(uv @ eq[:, :2].T + eq[:, 2], axis=1)


def _drop_loose(m: np.ndarray, pts: np.ndarray, uv: np.ndarray, height: np.ndarray, eps: float,
                cfg: SegmentConfig) -> np.ndarray:  # fmt: skip
    """Cluster mask ``m`` without the splats of its lowest band that hang on it by a sparse chain.

    The clustering radius is set by the whole scene's splat spacing; a lift's floaters beside an
    object's base (ordinary-sized splats a few cm above the ground, where most views graze) chain
    onto the object through a few sparse splats at that radius. Clustered again at the object's
    own spacing (``skirt_density`` times its median distance to the ``min_samples``-th neighbour),
    the object's body is its components of at least ``min_splats`` splats; splats of the lowest
    band (as in :func:`_drop_skirt`) neither in it nor within that radius of it, and outside its
    horizontal footprint by more than the radius, are dropped (a side the lift drew sparsely lies
    inside the footprint and stays). On one lift of the sample video the crate kept a clump of 28
    such splats 7-25 cm outside the box and its hull collider reached 20-25 cm past two of its
    sides. On 28 lifts with known boxes (85 objects) the hulls' reach past the true boxes went
    from 8.6 cm on average (46 objects over 5 cm) to 2.6 cm (6 over 5 cm); 0.35 % of the splats
    were dropped.
    """
    from scipy.spatial import ConvexHull, QhullError, cKDTree

    idx = np.nonzero(m)[0]
    if idx.size < 20:
        return m
    p = pts[idx]
    labels, radius = _own_components(p, eps, cfg)
    if labels is None:
        return m
    counts = np.bincount(labels[labels >= 0])
    body = np.isin(labels, np.nonzero(counts >= min(cfg.min_splats, counts.max()))[0])
    d, _ = cKDTree(p[body]).query(p, k=1, distance_upper_bound=radius)
    drop = _low_band(height[idx], eps, cfg) & ~body & ~np.isfinite(d)
    if not drop.any():
        return m
    try:  # and only outside the body's footprint: a sparse side within it is the object's own
        eq = ConvexHull(uv[idx[body]]).equations
    except QhullError:
        return m
    drop &= _beyond(uv[idx], eq) > radius
    if not drop.any():
        return m
    log.debug("dropped %d loose splats at an object's base", int(drop.sum()))
    out = m.copy()
    out[idx[drop]] = False
    return out


def _own_components(p: np.ndarray, eps: float, cfg: SegmentConfig) -> tuple[np.ndarray | None, float]:
    """``(labels, radius)``: a cluster's points [M, 3] clustered at its own spacing; ``(None, radius)`` when
    that radius (``skirt_density`` times the median distance to the ``min_samples``-th neighbour) is not
    tighter than ``eps`` or nothing is dense at it."""
    from scipy.spatial import cKDTree

    k = min(cfg.min_samples, len(p) - 1)
    radius = cfg.skirt_density * float(np.median(cKDTree(p).query(p, k=k + 1)[0][:, -1]))
    if not (0 < radius < eps):
        return None, radius
    labels = _dbscan(p, radius, cfg.min_samples)
    return (labels if (labels >= 0).any() else None), radius


def _apart_parts(p: np.ndarray, uv: np.ndarray, eps: float, cfg: SegmentConfig) -> list[np.ndarray]:
    """Index arrays into one cluster's points ``p`` [M, 3] (``uv`` [M, 2] on the ground) of each object side by side.

    Objects side by side join at ``eps`` through floaters between them. At the cluster's own
    spacing (:func:`_own_components`) such a cluster falls apart into parts of at least
    ``min_splats`` splats whose horizontal hulls do not overlap (at most 5 % of either part's
    splats inside the other's hull). Parts whose footprints overlap stay one object (a top face
    the lift drew apart from its sides; a stack, which :func:`_split_stack` splits by colour).
    Every splat of the cluster goes to the part with the nearest splat; the floaters that joined
    them are then dropped with the other loose splats (:func:`_drop_loose`). On 27 lifts of box
    worlds (81 boxes), 4 clusters held two boxes 17-38 cm apart.
    """
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import ConvexHull, QhullError, cKDTree

    whole = [np.arange(len(p))]
    if len(p) < 2 * cfg.min_splats:
        return whole
    labels = _own_components(p, eps, cfg)[0]
    if labels is None:
        return whole
    counts = np.bincount(labels[labels >= 0])
    big = [np.nonzero(labels == b)[0] for b in np.nonzero(counts >= cfg.min_splats)[0]]
    if len(big) < 2:
        return whole
    hulls = []
    for b in big:
        try:
            hulls.append(ConvexHull(uv[b]).equations)
        except QhullError:  # a degenerate footprint: it overlaps everything
            hulls.append(None)
    touch = np.eye(len(big), dtype=bool)  # parts whose footprints overlap stay together
    for i in range(len(big)):
        for j in range(i + 1, len(big)):
            if hulls[i] is None or hulls[j] is None:
                touch[i, j] = touch[j, i] = True
                continue
            in_j = np.mean(_beyond(uv[big[i]], hulls[j]) <= 0)
            in_i = np.mean(_beyond(uv[big[j]], hulls[i]) <= 0)
            touch[i, j] = touch[j, i] = max(in_i, in_j) > 0.05
    n, group = connected_components(touch, directed=False)
    if n < 2:
        return whole
    members = [np.concatenate([big[i] for i in np.nonzero(group == g)[0]]) for g in range(n)]
    near = np.argmin(np.stack([cKDTree(p[g]).query(p, k=1)[0] for g in members], 1), axis=1)
    return sorted((np.nonzero(near == g)[0] for g in range(n)), key=len, reverse=True)


def _chroma(rgb: np.ndarray) -> np.ndarray:  # [N, 3] -> [N, 3] colour without brightness (shading)
    c = np.clip(np.asarray(rgb, np.float64), 0.0, 1.0)
    return c / np.maximum(c.sum(1, keepdims=True), 1e-3)


def _split_each(clusters: dict[int, np.ndarray], n: int, parts_of, what: str) -> dict[int, np.ndarray]:
    """Each cluster (mask [n]) replaced by its parts: ``parts_of(indices)`` gives index arrays into them (the first
    keeps the cluster's label); ``what`` says how in the log ("in a stack")."""
    out, next_label = {}, max(clusters, default=-1) + 1
    for lab, m in clusters.items():
        idx = np.nonzero(m)[0]
        parts = parts_of(idx)
        if len(parts) > 1:
            log.info("cluster of %d splats holds %d objects %s: split", idx.size, len(parts), what)
        for k, part in enumerate(parts):
            mask = np.zeros(n, bool)
            mask[idx[part]] = True
            out[lab if k == 0 else next_label] = mask
            next_label += k > 0
    return out


def _split_stack(
    uv: np.ndarray,  # [M, 2] horizontal coordinates
    h: np.ndarray,  # [M] height above the ground
    chroma: np.ndarray,  # [M, 3]
    cfg: SegmentConfig,
    depth: int = 0,
) -> list[np.ndarray]:
    """Index arrays of the objects in one cluster, bottom first: the cluster itself unless it is a stack.

    A stack shows as a sharp drop of the horizontal footprint with height (the top face of
    the lower object, then only the narrower object on it) whose upper part also differs in
    colour from the lower part; a one-piece object with a step (an L) keeps one colour.
    """
    from scipy.spatial import ConvexHull, QhullError

    whole = [np.arange(len(h))]
    lo, hi = np.percentile(h, [1, 99]) if len(h) else (0.0, 0.0)
    if depth > 3 or len(h) < 2 * cfg.min_splats or hi - lo < 2 * cfg.min_size:
        return whole
    centred = uv - uv.mean(0)
    axes = np.linalg.eigh(centred.T @ centred)[1]
    q = centred @ axes

    def area(mask):
        if mask.sum() < cfg.min_splats // 2:
            return 0.0
        r = np.percentile(q[mask], [5, 95], axis=0)
        return float(np.prod(r[1] - r[0]))

    dz = (hi - lo) / 16
    best, best_ratio = None, cfg.stack_footprint_ratio
    for cut in np.arange(lo + 2 * dz, hi - 2 * dz, dz / 2):
        upper = h > cut
        if upper.sum() < cfg.min_splats or np.ptp(h[upper]) < cfg.min_size:
            continue
        band = (h > cut - 2 * dz) & ~upper
        a_up, a_band = area(upper), area(band)
        if a_up > 0 and a_band / a_up > best_ratio:
            best, best_ratio = cut, a_band / a_up
    if best is None:
        return whole
    upper = h > best
    # the upper object's sides reach down into the cut band: band splats inside its footprint are its own. The
    # footprint is its body's, above the band: the lower top face's noisiest splats stand above the cut too, and
    # a hull through them took in the whole face (see _stray_top)
    body = upper & (h > best + 2 * dz)
    use_body = body.sum() >= max(cfg.min_splats // 2, 4)
    try:
        planes = ConvexHull(uv[body if use_body else upper]).equations
    except QhullError:  # a flat or degenerate upper part: not an object
        return whole
    inside = _beyond(uv, planes) <= 0.2 * dz
    upper |= inside & (h > best - 2 * dz)
    lower = ~upper
    if lower.sum() < cfg.min_splats:
        return whole
    c_up, c_low = np.median(chroma[upper], 0), np.median(chroma[lower], 0)
    distance = float(np.linalg.norm(c_up - c_low))
    if distance < cfg.stack_color_distance:
        return whole
    if use_body:
        upper &= ~_stray_top(upper & ~body & ~inside, chroma, c_up, c_low)
        lower = ~upper
    low, up_idx = np.nonzero(lower)[0], np.nonzero(upper)[0]
    lower_parts = [low[p] for p in _split_stack(uv[low], h[low], chroma[low], cfg, depth + 1)]
    upper_parts = [up_idx[p] for p in _split_stack(uv[up_idx], h[up_idx], chroma[up_idx], cfg, depth + 1)]
    if len(upper_parts) > 1:
        # the upper part took the lower object's top face under its footprint; split again, that patch is a
        # thin slab under it: it belongs to the lower object (seen on lifts of the sample: a 7 cm "object"
        # between the crate and the cube)
        extent = [float(np.ptp(np.percentile(h[p], [2, 98]))) for p in upper_parts]
        if extent[0] < 0.5 * min(extent[1:]):
            lower_parts[-1] = np.concatenate([lower_parts[-1], upper_parts.pop(0)])
    return lower_parts + upper_parts


def _stray_top(outside: np.ndarray, chroma: np.ndarray, c_up: np.ndarray, c_low: np.ndarray) -> np.ndarray:
    """[M] bool: the splats of ``outside`` that are the lower object's top face, not the upper object's.

    A lift draws the lower object's top face with a few cm of noise: its highest splats stand
    above the cut and join the upper part even far outside the upper object's footprint.
    ``outside`` holds the upper part's splats in the cut band (under ``cut + 2 dz``) and outside
    the horizontal hull of its body (its splats above that band) by more than ``0.2 dz``; of
    those, the ones nearer the lower part's median chromaticity ``c_low`` than the upper's
    ``c_up`` go back. On the sample video's lift (2026-11-23) 7 of the crate's top splats 5-12 cm
    outside the cube went with the cube, and its hull collider reached 12.2 cm past the true cube.
    """
    return outside & (np.linalg.norm(chroma - c_low, axis=1) < np.linalg.norm(chroma - c_up, axis=1))


def static_mesh(
    points: np.ndarray,  # [N, 3] splat centres of static structure (walls, furniture too big to move)
    *,
    voxel: float,  # m, edge of the voxels
    max_voxels: int = 20_000,  # the voxel size grows until the structure fits in this many
) -> ColliderMesh | None:
    """A blocky, watertight triangle mesh of the voxels the points occupy (only faces between full and empty)."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    if len(pts) == 0:
        return None
    while True:
        keys = np.unique(np.floor(pts / voxel).astype(np.int64), axis=0)
        if len(keys) <= max_voxels:
            break
        voxel *= 1.5
    verts, tris = _voxel_surface(keys)
    return ColliderMesh(verts * voxel, tris, kind="mesh")


def _voxel_surface(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(corners [V, 3] int, triangles [T, 3])``: the outer faces of unit voxels ``keys`` [K, 3] int."""
    lookup = {tuple(k) for k in keys.tolist()}
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)])
    # each face: direction and its 4 corners (indices into ``corners``) counter-clockwise seen from outside
    faces_def = {
        (-1, 0, 0): (0, 1, 3, 2), (1, 0, 0): (4, 6, 7, 5), (0, -1, 0): (0, 4, 5, 1),
        (0, 1, 0): (2, 3, 7, 6), (0, 0, -1): (0, 2, 6, 4), (0, 0, 1): (1, 5, 7, 3),
    }  # fmt: skip
    quads = []
    for d, quad in faces_def.items():
        nb = keys + np.asarray(d)
        open_side = np.array([tuple(k) not in lookup for k in nb.tolist()], bool)
        if open_side.any():
            quads.append(keys[open_side][:, None, :] + corners[list(quad)][None])
    if not quads:  # no voxels (a height field whose columns all round to no layer): no surface
        return np.zeros((0, 3), np.int64), np.zeros((0, 3), np.int64)
    quads = np.concatenate(quads)  # [Q, 4, 3] integer corners
    verts, inverse = np.unique(quads.reshape(-1, 3), axis=0, return_inverse=True)
    q = inverse.reshape(-1, 4)
    return verts, np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])


@dataclass(frozen=True)
class HeightField:
    """The solid under an object's visible top surface: a column per horizontal cell from the ground up.

    Cameras see a resting object from above and around, never from below, so its splats
    cover its top and sides; the column under each cell's highest splat is what a
    height map of the object can hold. Concave shapes seen from above (a U, a bowl, an
    L) keep their notches, which the convex hull fills; overhangs are filled down.
    """

    basis: np.ndarray  # [3, 3] rows: two horizontal axes, then the ground normal
    origin: np.ndarray  # [3] world position of cell (0, 0) at ground level
    cell: np.ndarray  # [3] m, edges of a cell along the basis (the grid spans the points' extent exactly)
    top: np.ndarray  # [A, B] height above the ground of each column, m; 0 where empty

    @property
    def volume(self) -> float:
        return float(self.top.sum()) * float(self.cell[0] * self.cell[1])

    def voxels(self) -> np.ndarray:  # -> [K, 3] int keys (cell a, cell b, layer)
        layers = np.rint(self.top / self.cell[2]).astype(np.int64)
        a, b = np.nonzero(layers > 0)
        n = layers[a, b]
        rep = np.repeat(np.arange(len(a)), n)
        k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        return np.stack([a[rep], b[rep], k], -1)

    def pieces(self, max_pieces: int = 32) -> list[np.ndarray]:
        """Convex pieces ([V, 3] world corner points each) whose union holds the columns.

        Column heights are grouped into bands (levels within ``tol`` layers of a band's lowest
        share it; ``tol`` starts at a tenth of the tallest column and grows until at most
        ``max_pieces`` remain). Each band's pieces are the connected groups of columns reaching
        into it, as prisms of their cells' convex hull from the band's floor to its top: exact
        for stepped shapes (a U, an L, stairs), at most ``tol`` layers over elsewhere.
        """
        from scipy.ndimage import label

        layers = np.rint(self.top / self.cell[2]).astype(np.int64)
        levels = np.unique(layers[layers > 0])
        if levels.size == 0:
            return []
        tol = max(1, int(round(0.1 * levels[-1])))
        while True:
            bands, k = [], 0
            while k < len(levels):
                j = int(np.searchsorted(levels, levels[k] + tol, side="right"))
                bands.append(int(levels[j - 1]))
                k = j
            out, floor = [], 0
            for top in bands:
                comps, n = label(layers > floor, structure=np.ones((3, 3), bool))
                for c in range(1, n + 1):
                    a, b = np.nonzero(comps == c)
                    corners = np.stack([np.concatenate([a, a + 1, a, a + 1]), np.concatenate([b, b, b + 1, b + 1])], -1)
                    corners = np.unique(corners, axis=0) * self.cell[:2]
                    z = np.repeat([floor * self.cell[2], top * self.cell[2]], len(corners))
                    local = np.concatenate([np.tile(corners, (2, 1)), z[:, None]], 1)
                    out.append(self.origin + local @ self.basis)
                floor = top
            if len(out) <= max_pieces:
                return out
            tol = int(tol * 1.5) + 1

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """``(vertices [V, 3] world, faces [F, 3])`` of the columns as a watertight voxel surface."""
        corners, tris = _voxel_surface(self.voxels())
        return self.origin + (corners * self.cell) @ self.basis, tris


def height_field(
    points: np.ndarray,  # [N, 3] an object's splat centres
    normal: np.ndarray,  # [3] ground normal (up)
    offset: float,  # ground plane offset
    cell: float,  # m, about the edge of a cell (adjusted so that whole cells span the points)
) -> HeightField:
    """The :class:`HeightField` of ``points``: per cell the highest point, one-cell gaps closed (see the class)."""
    from scipy.ndimage import binary_closing, binary_fill_holes, binary_opening, grey_dilation

    basis = plane_basis(np.asarray(normal, np.float64))
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    local = pts @ basis.T
    h = np.maximum(local[:, 2] - offset, 0.0)
    lo, hi = local[:, :2].min(0), local[:, :2].max(0)
    n = np.maximum(np.rint((hi - lo) / cell), 1).astype(np.int64)
    size = np.maximum(hi - lo, 1e-9) / n
    ij = np.minimum(np.floor((local[:, :2] - lo) / size).astype(np.int64), n - 1) + 1  # one empty cell of margin
    shape = tuple(n + 2)
    top = np.zeros(shape)
    np.maximum.at(top, (ij[:, 0], ij[:, 1]), h)
    occ = np.zeros(shape, bool)
    occ[ij[:, 0], ij[:, 1]] = True
    square = np.ones((3, 3), bool)
    footprint = binary_closing(occ, structure=square) | occ  # sparse splats leave one-cell gaps
    footprint = binary_opening(footprint, structure=square)  # stray splats: spurs thinner than 3 cells
    footprint = binary_fill_holes(footprint)  # enclosed holes: hidden under something, e.g. a stacked object
    known = occ & footprint
    top[~footprint] = 0.0
    missing = footprint & ~known
    while missing.any():  # unseen cells take the highest neighbouring column, growing inwards
        grown = grey_dilation(np.where(known, top, 0.0), footprint=square)
        new = missing & (grown > 0)
        if not new.any():
            break
        top[new] = grown[new]
        known |= new
        missing &= ~new
    origin = (lo[0] - size[0]) * basis[0] + (lo[1] - size[1]) * basis[1] + offset * basis[2]
    return HeightField(basis, origin, np.array([size[0], size[1], float(size.mean())]), top)


def _apply_seeds(pts: np.ndarray, labels: np.ndarray, seeds: np.ndarray, eps: float) -> np.ndarray:
    """Keep the clusters hit by seeds; split a cluster hit by several seeds between them (nearest seed)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(pts)
    radius = max(10 * eps, 0.05)
    out = np.full(len(pts), -1, np.int64)
    hit: dict[int, list[int]] = {}
    for s, seed in enumerate(seeds):
        d, j = tree.query(seed, k=1)
        if d > radius:
            raise SceneError(f"seed {s} at {seed.round(3).tolist()}: no object splat within {radius:.3f} m "
                             f"(nearest at {d:.3f} m); give a point on the object")  # fmt: skip
        lab = labels[j]
        if lab < 0:
            raise SceneError(f"seed {s} at {seed.round(3).tolist()}: the nearest splats are noise, not a dense cluster")
        hit.setdefault(int(lab), []).append(s)
    for lab, seed_ids in hit.items():
        m = np.nonzero(labels == lab)[0]
        if len(seed_ids) == 1:
            out[m] = seed_ids[0]
            continue
        d = np.linalg.norm(pts[m, None, :] - seeds[None, seed_ids, :], axis=2)
        out[m] = np.asarray(seed_ids)[np.argmin(d, axis=1)]
    return out


def build_object(
    name: str,
    splats: Splats,
    indices: np.ndarray,  # [M] splat indices
    ground: GroundFit | Ground | None,
    config: SegmentConfig | None = None,
    *,
    floor: float | None = None,  # m above the ground: the top of the object this one rests on
) -> SceneObject:
    """A :class:`SceneObject` for a set of splats: convex-hull collider, mass from density, frame at the COM.

    With ``floor`` (an object resting on another), splats below that height are raised onto
    it: the two objects' splats mingle where they touch, and colliders must not overlap.
    """
    cfg = config or SegmentConfig()
    idx = np.unique(np.asarray(indices, np.int64))
    pts = splats.means[idx].astype(np.float64)
    op = splats.opacities[idx]
    if (op >= cfg.min_opacity).sum() >= 4:
        pts = pts[op >= cfg.min_opacity]
    if floor is not None and ground is not None:
        normal = np.asarray(ground.normal, np.float64)
        below = np.minimum(pts @ normal - ground.offset - floor, 0.0)
        pts = pts - np.outer(below, normal)
    raw, resting = pts, False
    if ground is not None:
        normal = np.asarray(ground.normal, np.float64)
        h = pts @ normal - ground.offset
        threshold = ground.threshold if isinstance(ground, GroundFit) else 0.005 * _extent(pts)
        min_h = cfg.min_height or 2 * threshold
        eps_band = max(min_h, 0.05 * float(np.ptp(h)))
        resting = h.min() <= min_h + (cfg.support_gap or 3 * min_h)
        if resting:  # rests on the ground: extend the lowest band down to it
            low = pts[h <= h.min() + eps_band]
            pts = np.concatenate([pts, low - np.outer(low @ normal - ground.offset, normal)])
    collider = convex_collider(pts, what=f"object {name!r}")
    if resting and cfg.concave_ratio > 0:
        collider = _concave_collider(name, raw, ground, cfg) or collider
    props = mass_properties(collider, 1.0, what=f"object {name!r}")
    mass = max(cfg.density * props.volume, 1e-3)
    centred = type(collider)(collider.vertices - props.com, collider.faces, collider.kind, collider.parts)
    return SceneObject(name, idx, centred, mass=float(mass), friction=cfg.friction, restitution=cfg.restitution,
                       position=tuple(props.com))  # fmt: skip


def _rest_on_supports(
    objects: list[SceneObject], splats: Splats, fit: GroundFit, cfg: SegmentConfig
) -> list[SceneObject]:
    """Rebuild objects whose colliders dip into an object under them (stacks) to stand on its top."""
    if len(objects) < 2:
        return objects
    basis = plane_basis(fit.normal)
    world = [np.asarray(o.collider.vertices, np.float64) + o.position for o in objects]  # frames are unrotated
    heights = [fit.height(v) for v in world]
    boxes = [(v @ basis[:2].T).min(0) for v in world], [(v @ basis[:2].T).max(0) for v in world]
    out = list(objects)
    for i, o in enumerate(objects):
        floor = None
        for j in range(len(objects)):
            below = heights[j].max() < heights[i].max() and heights[j].min() < heights[i].min()
            overlap = np.all(boxes[0][i] < boxes[1][j]) and np.all(boxes[0][j] < boxes[1][i])
            if j != i and below and overlap and heights[j].max() > heights[i].min():
                floor = max(floor or 0.0, float(heights[j].max()))
        if floor is not None:
            log.info("object %r rests on another: its collider starts at %.3f m", o.name, floor)
            out[i] = build_object(o.name, splats, o.splat_indices, fit, cfg, floor=floor)
    return out


def _concave_collider(
    name: str, pts: np.ndarray, ground: GroundFit | Ground, cfg: SegmentConfig
) -> ColliderMesh | None:
    """A compound collider (pieces of the height-field solid) when the hull overfills the object, else None.

    Concave means either that the convex hull's top stands well above the seen top surface over
    the object's footprint (a U, a bowl, a step), or that the footprint itself is far from
    convex (an L lying flat). Cells are at least 1.5 splat spacings wide so that sparse
    splats do not look like notches.
    """
    import trimesh
    from scipy.spatial import ConvexHull, cKDTree

    from physics.colliders import compound_collider

    normal = np.asarray(ground.normal, np.float64)
    horiz = pts - np.outer(pts @ normal, normal)
    spacing = float(np.median(cKDTree(pts).query(pts, k=min(5, len(pts)))[0][:, -1]))
    cell = max(float(np.max(np.ptp(horiz, axis=0))) / cfg.concave_cells, 1.5 * spacing, 1e-3)
    field = height_field(pts, normal, ground.offset, cell)
    verts, faces = field.mesh()
    if len(faces) == 0:
        return None
    local = (verts - field.origin) @ field.basis.T
    hull = trimesh.convex.convex_hull(local)
    up = hull.face_normals[:, 2] > 1e-6  # the hull's top: the lowest of its upward-facing planes
    n, d = hull.face_normals[up], np.einsum("ij,ij->i", hull.face_normals[up], hull.triangles[up][:, 0])
    a, b = np.nonzero(field.top > 0)
    centres = np.stack([(a + 0.5) * field.cell[0], (b + 0.5) * field.cell[1]], -1)
    roof = np.min((d[None] - centres @ n[:, :2].T) / n[None, :, 2], axis=1)
    vertical = float(field.top[a, b].sum() / np.maximum(roof, 0).sum())
    footprint = len(a) * field.cell[0] * field.cell[1] / float(ConvexHull(local[:, :2]).volume)  # 2-D: area
    if vertical >= cfg.concave_ratio and footprint >= cfg.concave_ratio:
        return None
    log.info("object %r: top %.0f%% and footprint %.0f%% of its hull's: concave, compound collider"
             , name, 100 * vertical, 100 * footprint)  # fmt: skip
    try:
        return compound_collider(field.pieces(), what=f"object {name!r}")
    except PhysicsError as exc:
        log.warning("object %r: %s; keeping its convex hull", name, exc)
        return None


def segment_scene(
    scene: Scene,
    config: SegmentConfig | None = None,
    seeds: np.ndarray | None = None,  # [S, 3] world points; when given only these objects are made
    *,
    names: list[str] | None = None,  # object names, in the seeds' order when seeded (default object_0, ...)
) -> Scene:
    """Find the ground and the objects of ``scene`` and give each a collider and mass; returns a new scene."""
    cfg = config or SegmentConfig()
    splats = scene.splats
    if len(splats) < 10:
        raise SceneError(f"segment_scene: the scene has only {len(splats)} splats")
    weights = splats.opacities.astype(np.float64)
    fit = fit_ground(splats.means, weights, cfg)
    found, background = _find(splats.means, weights, fit, cfg, seeds, splats.colors, splats.scales.max(axis=1))
    not_objects: list[dict] = []  # clusters found like objects but judged not to be (for people: not_object_notes)
    if seeds is None or not len(seeds):
        found = _drop_poorly_observed(found, splats.means, weights, scene.capture_cameras, cfg, not_objects)
        found = _drop_haze(found, splats.means, splats.scales.max(axis=1), fit.normal, scene.capture_cameras, cfg,
                           not_objects)  # fmt: skip
    if names is not None and len(names) != len(found):
        raise SceneError(f"segment_scene: {len(names)} names given for {len(found)} objects found")
    objects = []
    for k, cand in enumerate(found):
        name = names[k] if names is not None else f"object_{k}"
        try:
            objects.append(build_object(name, splats, cand.indices, fit, cfg))
        except PhysicsError as exc:
            log.warning("skipping a cluster of %d splats: %s", cand.indices.size, exc)
    objects = _rest_on_supports(objects, splats, fit, cfg)
    mesh = None
    if background.size:  # static structure beside the ground plane: a voxel mesh at a few cm
        bg = splats.means[background].astype(np.float64)
        mesh = static_mesh(bg, voxel=max(0.01 * _extent(bg), 0.02))
    ground = Ground(tuple(fit.normal), fit.offset, mesh=mesh)
    settled, report = settle_objects(scene.with_(objects=tuple(objects), ground=ground), cfg)
    objects = settled.objects
    meta = dict(scene.metadata)
    meta["segmentation"] = {
        "ground": {"normal": fit.normal.tolist(), "offset": fit.offset, "tilt_deg": fit.tilt_deg,
                   "inlier_fraction": fit.support, "threshold": fit.threshold},
        "objects": [{"name": o.name, "splats": int(o.splat_indices.size), "mass": o.mass,
                     "position": list(o.position)} for o in objects],
        "config": {k: v for k, v in cfg.__dict__.items()},
        "settled": report,
        "not_objects": not_objects,
    }  # fmt: skip
    return settled.with_(metadata=meta)


def settle_objects(scene: Scene, config: SegmentConfig | None = None, names=None) -> tuple[Scene, dict]:
    """Objects whose colliders do not rest where their splats stand, turned to where they come to rest.

    PyBullet runs the scene for ``settle_time`` with no edit. An object that moves by more than
    0.5 mm or 0.1 degrees and by at most ``settle_max_shift`` / ``settle_max_angle``, and is at
    rest at the end, keeps its splats: its collider is moved to the pose it came to rest in (the
    frame moves to its new centre of mass, the collider turns inside it), so the next
    simulation starts at rest. ``names`` limits this to some objects (the others stay as they
    are). Returns the new scene and, per object that moved, ``{"shift_m", "angle_deg",
    "settled"}``.
    """
    from physics.transforms import quat_angle_deg, quat_to_matrix
    from physics.world import PhysicsWorld, WorldConfig

    cfg = config or SegmentConfig()
    movable = [
        o for o in scene.objects if not o.static and o.collider is not None and (names is None or o.name in names)
    ]
    if cfg.settle_time <= 0 or not movable:
        return scene, {}
    try:
        with PhysicsWorld(scene, WorldConfig(gravity=cfg.gravity)) as world:
            world.step_to(cfg.settle_time)
            end = {o.name: (world.pose(o.name), *world.velocity(o.name)) for o in movable}
    except PhysicsError as exc:  # a diverging scene is still a scene: its objects are kept as they are
        log.warning("objects not settled: %s", exc)
        return scene, {}
    report, out = {}, {o.name: o for o in scene.objects}
    for o in movable:
        pose, lin, ang = end[o.name]
        q0 = np.asarray(o.quaternion, np.float64)
        shift = float(np.linalg.norm(pose[:3] - np.asarray(o.position)))
        angle = quat_angle_deg(pose[3:], q0)
        if shift <= 5e-4 and angle <= 0.1:
            continue
        at_rest = float(np.linalg.norm(lin)) < 0.02 and float(np.linalg.norm(ang)) < 0.2
        ok = at_rest and shift <= cfg.settle_max_shift and angle <= cfg.settle_max_angle
        report[o.name] = {"shift_m": shift, "angle_deg": angle, "settled": ok}
        if not ok:
            log.warning("object %r does not rest on its collider: it moves %.0f mm and %.1f degrees when the "
                        "simulation starts%s; kept as it is (fix its collider, or merge it with what it stands on)",
                        o.name, 1000 * shift, angle, "" if at_rest else " and is still moving")  # fmt: skip
            continue
        log.info("object %r settles by %.1f mm and %.2f degrees on its collider: collider turned to rest there",
                 o.name, 1000 * shift, angle)  # fmt: skip
        turn = quat_to_matrix(q0).T @ quat_to_matrix(pose[3:])  # R0^T R1: the collider in the rest frame, turned
        c = o.collider
        out[o.name] = replace(o, collider=ColliderMesh(c.vertices.astype(np.float64) @ turn.T, c.faces, c.kind, c.parts),
                              position=tuple(float(v) for v in pose[:3]))  # fmt: skip
    return scene.with_(objects=tuple(out[o.name] for o in scene.objects)), report


def settle_notes(report: dict) -> list[str]:
    """One line per object of a :func:`settle_objects` report, for people."""
    out = []
    for name, r in report.items():
        what = ("its collider turned to where it comes to rest (its splats stay)" if r["settled"] else
                "left as it is: fix its collider, or merge it with what it stands on")  # fmt: skip
        out.append(f"{name} does not rest on its collider (it moves {1000 * r['shift_m']:.1f} mm and "
                   f"{r['angle_deg']:.1f} degrees when simulated): {what}")  # fmt: skip
    return out


def observation(centre: np.ndarray, cameras) -> tuple[float, int]:
    """``(sd, cameras)``: how well the cameras that see ``centre`` in frame pin it down, and how many do.

    ``sd`` is the largest standard deviation, in metres, of a point triangulated from those
    cameras' rays with one pixel of noise each (inverse of the Fisher information
    ``sum_i (I - d_i d_i^T) / (dist_i / f_i)^2``); ``inf`` when fewer than two cameras see it.
    """
    info = np.zeros((3, 3))
    n = 0
    for cam in cameras:
        u, v, z = (float(a[0]) for a in cam.project(centre[None]))
        if z <= 1e-6 or not (0.0 <= u < cam.width and 0.0 <= v < cam.height):
            continue
        ray = np.asarray(cam.position, np.float64) - centre
        dist = float(np.linalg.norm(ray))
        ray /= max(dist, 1e-12)
        info += (np.eye(3) - np.outer(ray, ray)) * (cam.K[0, 0] / max(dist, 1e-12)) ** 2
        n += 1
    if n < 2:
        return math.inf, n
    eig = np.linalg.eigvalsh(info)
    return (1.0 / math.sqrt(eig[0]) if eig[0] > 0 else math.inf), n


def _drop_haze(found: list, means: np.ndarray, sizes: np.ndarray, up: np.ndarray, cameras, cfg: SegmentConfig,
               dropped: list | None = None) -> list:  # fmt: skip
    """``found`` without the clusters of a lift's haze (``SegmentConfig.haze_size_ratio``, ``haze_density_ratio``).

    Where the cameras see the ground at a grazing angle (far out, beyond the objects) a lift
    leaves a few dozen large, opaque splats a few cm above it. They cluster like an object: on 8
    lifts of box worlds (``tools/tiny_world.py``, 2026-11-23) 4 made one false object each, 55-103
    splats spread over 0.4-1.1 m, a hull of 6-48 kg. Their median splat was 1.5-3.9x the
    clusters' median in capture pixels (the 24 boxes: 0.92-1.22x) and they held 190-384 splats
    per m² of footprint against 4300-11000 for the boxes. Both together tell them apart: a
    real object drawn with larger splats (a plain surface) is as large but dense, one farther
    away is as sparse but not larger in capture pixels.
    """
    from scipy.spatial import ConvexHull, QhullError

    if cfg.haze_size_ratio <= 0 or len(found) < 2:
        return found
    means = np.asarray(means, np.float64)
    every = np.concatenate([c.indices for c in found])
    size = np.asarray(sizes, np.float64)[every]
    if cameras:
        rate = capture_pixels_per_metre(cameras, means[every])
        if (rate > 0).mean() > 0.5:
            size = np.where(rate > 0, size * rate, np.nan)  # splats no capture camera sees have no pixel size
    ref = float(np.nanmedian(size))
    basis = plane_basis(np.asarray(up, np.float64))[:2].T
    density, ratio = [], []
    for c, own in zip(found, np.split(size, np.cumsum([c.indices.size for c in found])[:-1]), strict=True):
        try:
            area = ConvexHull(means[c.indices] @ basis).volume  # a 2-D hull's "volume" is its area
        except QhullError:
            area = 0.0
        density.append(c.indices.size / max(area, 1e-9))
        own = own[np.isfinite(own)]
        ratio.append(float(np.median(own)) / max(ref, 1e-12) if own.size else 1.0)
    densest = max(density)
    keep = []
    for cand, d, r in zip(found, density, ratio, strict=True):
        if r >= cfg.haze_size_ratio and d <= cfg.haze_density_ratio * densest:
            _reject(cand, f"haze: large, sparse splats, {r:.1f}x the clusters' median size, {d:.0f} splats per m² "
                          f"of footprint against {densest:.0f}", dropped)  # fmt: skip
            continue
        log.debug("cluster of %d splats at %s: splats %.2fx the objects' median, %.2f of the densest's density",
                  cand.indices.size, np.round(cand.centroid, 2).tolist(), r, d / densest)  # fmt: skip
        keep.append(cand)
    return keep


def _reject(cand: ObjectCandidate, why: str, dropped: list | None) -> None:
    """Log that ``cand`` is not an object and why; record it in ``dropped`` (segment_scene's ``not_objects``)."""
    log.info("cluster of %d splats at %s: %s: not an object", cand.indices.size, np.round(cand.centroid, 2).tolist(),
             why)  # fmt: skip
    if dropped is not None:
        dropped.append({"splats": int(cand.indices.size), "centre": [round(float(v), 3) for v in cand.centroid],
                        "why": why})  # fmt: skip


def not_object_notes(records: list[dict], scene: str = "SCENE", most: int = 3) -> list[str]:
    """Lines for people on the clusters :func:`segment_scene` found but judged not to be objects: the ``most``
    largest, one line each, then how many more there are and where they are listed."""
    lines = [f"a cluster of {r['splats']} splats at {', '.join(f'{v:.2f}' for v in r['centre'])} is not an object "
             f"({r['why']}); to make it one: hybrid objects {scene} --object "
             f"{','.join(f'{v:.2f}' for v in r['centre'])}"
             for r in sorted(records, key=lambda r: -r["splats"])[:most]]  # fmt: skip
    if len(records) > most:
        lines.append(f"... and {len(records) - most} more clusters that are not objects (scene.json: "
                     "metadata.segmentation.not_objects)")  # fmt: skip
    return lines


def _drop_poorly_observed(found: list, means, weights, cameras, cfg: SegmentConfig,
                          dropped: list | None = None) -> list:  # fmt: skip
    """``found`` without the clusters the capture cameras only graze (``SegmentConfig.observation_ratio``).

    On the bundled sample lifted with more densification, the ground under the camera ring (seen
    only from the far side of the orbit, at 25 degrees) came out in 20 cm bumps that clustered like
    objects: triangulated 7.6x worse than the real boxes (12 mm against 1.6-1.9 mm), in frame in 22
    of 60 cameras against 60 of 60.
    """
    if cfg.observation_ratio <= 0 or len(found) < 2 or not cameras:
        return found
    obs = [observation(np.average(means[c.indices], axis=0, weights=np.maximum(weights[c.indices], 1e-9)),
                       cameras) for c in found]  # fmt: skip
    best = int(np.argmin([sd for sd, _ in obs]))
    sd0, n0 = obs[best]
    if not math.isfinite(sd0):
        return found
    keep = []
    for cand, (sd, n) in zip(found, obs, strict=True):
        if sd > cfg.observation_ratio * sd0 and n < cfg.observation_coverage * n0:
            _reject(cand, f"the cameras only graze it: triangulated to {sd * 1e3:.1f} mm, {sd / sd0:.1f}x the best "
                          f"object's; in frame in {n} cameras against {n0}", dropped)  # fmt: skip
            continue
        keep.append(cand)
    return keep


def merge_objects(
    scene: Scene, names: list[str], new_name: str | None = None, config: SegmentConfig | None = None
) -> Scene:
    """Merge objects into one (new collider and mass from the union of their splats)."""
    if len(names) < 2:
        raise SceneError(f"merge_objects: give at least two object names, got {names}")
    parts = [scene.object(n) for n in names]
    idx = np.concatenate([o.splat_indices for o in parts])
    merged = build_object(new_name or names[0], scene.splats, idx, scene.ground, config)
    keep = [o for o in scene.objects if o.name not in names]
    return settle_objects(scene.with_(objects=(*keep, merged)), config, names=[merged.name])[0]


def rename_object(scene: Scene, old: str, new: str) -> Scene:
    """The same scene with object ``old`` called ``new``."""
    obj = scene.object(old)
    if any(o.name == new for o in scene.objects):
        raise SceneError(f"rename_object: an object named {new!r} already exists")
    return scene.with_(objects=tuple(replace(o, name=new) if o is obj else o for o in scene.objects))
