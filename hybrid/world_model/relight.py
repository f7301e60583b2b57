"""Explicit relighting of splats: normals, a shadow map made with ``render.rasterize``, light and albedo.

The capture's lighting is baked into each splat's colour. We factor it as::

    colour_i(view) = albedo_i * S_i + v_i(view),   S_i = ambient + sun * vis_i * max(0, n_i . l)

with ``l`` the direction towards a directional light, ``vis_i`` the splat's visibility from the
light (a shadow map: the splats' depth rendered from the light with :func:`render.rasterize`,
tested per splat with 3 x 3 percentage-closer filtering), ``n_i`` the splat's shortest axis
oriented towards the capture cameras, and ``v_i`` the view-dependent part of the SH (the full SH
colour minus the DC colour). The light (direction, per-channel sun and ambient, shadow
strength) is estimated from the splats themselves (:func:`estimate_light`): the direction whose
cast shadows best explain dark steps between neighbouring splats of one surface; albedo is
then the DC colour divided by the capture shading. After an edit (objects moved, light
changed), ``S`` is recomputed with the new geometry and light: moved objects cast moved
shadows, the old shadows go, and the relit colour without an edit equals the baked one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from physics.transforms import plane_basis, quat_to_matrix
from scenes.errors import ShapeError
from scenes.scene import Camera, Light, Scene
from scenes.splats import SH_C0, Splats

__all__ = [
    "ShadowFrame",
    "Relighting",
    "splat_normals",
    "scene_normals",
    "shadow_visibility",
    "shadow_depth_map",
    "estimate_light",
    "shading",
    "dc_colors",
    "observed_colors",
    "hemisphere_directions",
    "refine_visibility",
]

log = logging.getLogger(__name__)

# The light direction's faces (``_FaceShading``) without their edge band (this fraction of the face's extent from
# another face of the object), and without the faces that are all edge (a lifted hull's bevel facets along the
# boxes' dark drawn edges, 0.2-1.2 darker in log luminance than their object's faces). Measured on 27 lifts with known
# lights (the bench's 3, the corpus's 24): error mean 7.2 -> 6.4 degrees, median 5.8 -> 3.7 (18 better, 9 worse);
# the sample video's lift on an AVX-512 EPYC 12.4 -> 4.2 (BENCHMARKS.md, session 12).
FACE_EDGE, FACE_THIN = 0.1, "drop"
GROUND, STATIC = -2, -1  # shadow groups of splats that are not an object's: the ground plane, other static splats
FLOATING = -3  # static splats not connected to the ground (a lift's floaters): they never cast a shadow


# ----------------------------------------------------------------------------------------- geometry
def observed_colors(
    splats: Splats,
    cameras: list[Camera] | tuple[Camera, ...],
    *,
    max_width: int = 640,
    max_cameras: int = 24,
    backend: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # colours [N, 3] float32, pixel counts [N] int64
    """What the capture shows of each splat: the mean rendered colour of the pixels it dominates.

    Lifted splats do not each carry the colour of the surface they sit on: inner splats of an
    object's shell are dark, and a face's splats blend with those behind them. Light estimation
    needs the colours a camera sees, so each splat gets the mean colour (full SH, seen from
    that camera) of the pixels where it is the dominant splat (``render.rasterize``'s
    ``splat_ids``) over the capture cameras, rendered at most ``max_width`` wide (coarser
    renders blur the colours: at 200 of 320 pixels the benchmark's blue sun/ambient ratio came
    out 1.4 instead of 1.9). Splats that dominate no pixel get their DC colour and a count of 0.
    """
    import torch

    from render.rasterize import rasterize

    n = len(splats)
    acc = np.zeros((n, 3))
    cnt = np.zeros(n, np.int64)
    cams = list(cameras)
    if n and cams:
        pick = np.unique(np.linspace(0, len(cams) - 1, min(max_cameras, len(cams))).round().astype(int))
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        tm, tq, ts, to, tsh = t(splats.means), t(splats.unit_quats), t(splats.scales), t(splats.opacities), t(splats.sh)
        for ci in pick:
            cam = cams[ci]
            cam = cam.scaled(min(1.0, max_width / cam.width))
            res = rasterize(tm, tq, ts, to, tsh, t(cam.viewmat[None]), t(cam.K[None]), cam.width, cam.height,
                            sh_degree=splats.sh_degree, backend=backend)  # fmt: skip
            ids = res.splat_ids[0].numpy().reshape(-1)
            col = res.colors[0].numpy().reshape(-1, 3)
            m = ids >= 0
            for ch in range(3):
                acc[:, ch] += np.bincount(ids[m], weights=col[m, ch], minlength=n)
            cnt += np.bincount(ids[m], minlength=n)
    out = dc_colors(splats.sh).astype(np.float64) if n else np.zeros((0, 3))
    seen = cnt > 0
    out[seen] = acc[seen] / cnt[seen, None]
    return out.astype(np.float32), cnt


def with_extra(means, quats, scales, opacities, extra: Splats | None) -> tuple[np.ndarray, ...]:
    """``(means, quats, scales, opacities)`` with ``extra``'s splats (spawned meshes) appended; as given without."""
    if extra is None or not len(extra):
        return means, quats, scales, opacities
    return (np.concatenate([means, extra.means]), np.concatenate([quats, extra.unit_quats]),
            np.concatenate([scales, extra.scales]), np.concatenate([opacities, extra.opacities]))  # fmt: skip


def dc_colors(sh: np.ndarray) -> np.ndarray:  # [N, K, 3] -> [N, 3]
    """The view-independent colour of each splat as the rasterizer evaluates it: max(0.5 + C0 sh_0, 0)."""
    return np.maximum(np.asarray(sh[:, 0], np.float32) * np.float32(SH_C0) + np.float32(0.5), 0.0)


def splat_normals(
    means: np.ndarray,  # [N, 3]
    quats: np.ndarray,  # [N, 4] wxyz
    scales: np.ndarray,  # [N, 3] standard deviations
    cameras: list[Camera] | tuple[Camera, ...] = (),
    opacities: np.ndarray | None = None,  # [N] in [0, 1]: with it, only cameras that see a splat vote
    *,
    backend: str | None = None,
    max_cameras: int = 24,  # cameras used for the visibility test (evenly spread)
    max_width: int = 200,  # the visibility test renders each camera at most this wide
) -> np.ndarray:  # [N, 3] float32 unit normals
    """Each splat's shortest axis, flipped to face the cameras that see its front (+Z without cameras).

    The sign is the majority vote of ``sign(n . (c - mu))`` over the cameras that *see* the splat
    (its centre within a tolerance of the depth rendered from that camera with ``render.rasterize``):
    a camera behind a box face would vote for the inside, and off-centre boxes have more of the
    orbit behind a face than in front of it. Without ``opacities`` (or for splats no camera
    sees) all cameras vote.
    """
    means = np.asarray(means, np.float64)
    R = quat_to_matrix(np.asarray(quats, np.float64))  # [N, 3, 3], columns = splat axes
    k = np.argmin(np.asarray(scales), axis=1)
    n = R[np.arange(len(means)), :, k]  # [N, 3]
    if len(cameras):
        facing = np.stack([np.sign(np.einsum("nc,nc->n", n, cam.position[None] - means)) for cam in cameras])
        votes = facing.sum(axis=0)
        if opacities is not None and len(means):
            cams = list(cameras)
            pick = np.unique(np.linspace(0, len(cams) - 1, min(max_cameras, len(cams))).round().astype(int))
            seen_votes = np.zeros(len(means))
            seen_any = np.zeros(len(means), bool)
            for ci in pick:
                seen = _seen_by(means, n, quats, scales, opacities, cams[ci], max_width, backend)
                seen_votes += np.where(seen, facing[ci], 0.0)
                seen_any |= seen
            votes = np.where(seen_any & (seen_votes != 0), seen_votes, votes)
            n = np.where((votes < 0)[:, None], -n, n)
            return _propagate_orientation(means, n, np.where(seen_any, np.abs(seen_votes), 0.0)).astype(np.float32)
        flip = votes < 0
    else:
        flip = n[:, 2] < 0
    n[flip] *= -1.0
    return n.astype(np.float32)


def scene_normals(
    scene: Scene,
    *,
    backend: str | None = None,
    ground_band: float | None = None,  # static splats up to this far above the ground plane are ground (metres)
    collider_band: float = 0.35,  # object splats this close to their collider's surface (x object half-size)
    band_slope: float = 0.2,  # the ground band widens by this many metres per metre beyond the objects' region
    round_ratio: float = 0.5,  # a static splat is round (has no surface direction) above this shortest/middle axis
) -> tuple[np.ndarray, np.ndarray]:  # normals [N, 3] float32, source [N] int8 (0 own, 1 ground, 2 collider, 3 round)
    """Per-splat normals that use what the scene knows about its geometry.

    A lifted splat is often a blob whose shortest axis says little about the surface it helps
    draw (on lifts of the benchmark scenes, 35-40 % of splats' axes are > 30 degrees off the
    true surface). The scene knows better in two places: static splats on the ground take the
    ground plane's normal, and an object's splats take the outward normal of the nearest face
    of the object's collider. Everything else keeps its shortest axis, oriented towards the
    cameras that see it (:func:`splat_normals`).

    ``ground_band`` defaults to half the median object half-size (5 % of the splats' extent
    without objects) and widens by ``band_slope`` per metre of horizontal distance beyond the
    objects' region: on lifts, the far ground is seen by few grazing views and its splats spread
    in height (on the benchmark lifts, the 95th percentile of ground heights grows from 0.12 m
    within 1.5 m of the centre to 0.66 m at 3 m). Splats below the plane count as ground too
    (they fill it from below).

    Static splats above the band that are round (shortest axis over ``round_ratio`` of the middle
    one) have no surface direction to take: a lift's floaters are such blobs, and lit by their
    arbitrary shortest axis they flicker between bright and dark under a new light (on the
    benchmark lifts, turned light: their shading changed by x0.4 to x2.4 where the ground's
    changed by x0.93). They take the ground plane's normal too (source 3): they mostly carry the
    colour of the ground behind them. So do static splats of any shape that float (no chain of
    splats connects them to the ground, :func:`floating_static`): a lift's flat floaters, whose
    own axis is as arbitrary. Without a ground plane they keep their own axis.
    """
    return _scene_normals(scene, backend=backend, ground_band=ground_band, collider_band=collider_band,
                          band_slope=band_slope, round_ratio=round_ratio)[:2]  # fmt: skip


def _scene_normals(scene: Scene, *, backend: str | None = None, ground_band: float | None = None,
                   collider_band: float = 0.35, band_slope: float = 0.2, round_ratio: float = 0.5):  # fmt: skip
    """:func:`scene_normals`, and which splats float (:func:`floating_static`, [N] bool) for Relighting.fit."""
    s = scene.splats
    n = splat_normals(s.means, s.unit_quats, s.scales, scene.capture_cameras, s.opacities, backend=backend)
    source = np.zeros(len(s), np.int8)
    floating = np.zeros(len(s), bool)
    if len(s) == 0:
        return n, source, floating
    means = s.means.astype(np.float64)
    static = np.ones(len(s), bool)
    sizes = []
    for obj in scene.objects:
        idx = obj.splat_indices
        static[idx] = False
        if obj.collider is None or idx.size == 0:
            continue
        R = quat_to_matrix(np.asarray(obj.quaternion, np.float64))
        local = (means[idx] - np.asarray(obj.position)) @ R  # world -> object rest frame
        nl, dist, half = _collider_normals(local, obj.collider)
        if nl is None:
            continue
        sizes.append(half)
        near = dist <= collider_band * half
        n[idx[near]] = (nl[near] @ R.T).astype(np.float32)
        source[idx[near]] = 2
    if scene.ground is None:  # e.g. an imported splat file: no plane to take normals from
        return n, source, floating
    g = np.asarray(scene.ground.normal, np.float64)
    if ground_band is None:
        if sizes:
            ground_band = 0.5 * float(np.median(sizes))
        else:
            lo, hi = np.percentile(means, [2, 98], axis=0)
            ground_band = 0.05 * float(np.linalg.norm(hi - lo))
    height = means @ g - scene.ground.offset
    # a lift's ground thickens away from where the cameras look (fewer, more grazing views): the band
    # widens by band_slope per metre beyond the objects' region
    core = ~static if (~static).any() else np.ones(len(means), bool)
    centre = means[core].mean(axis=0)
    flat = (means - centre) - np.outer((means - centre) @ g, g)
    rho = np.linalg.norm(flat, axis=1)
    rho0 = float(np.percentile(rho[core], 90))
    band = ground_band + band_slope * np.maximum(rho - rho0, 0.0)
    on_ground = static & (height <= band)
    n[on_ground] = g.astype(np.float32)
    source[on_ground] = 1
    axes = np.sort(np.asarray(s.scales, np.float64), axis=1)
    blob = static & ~on_ground & (axes[:, 0] > round_ratio * np.maximum(axes[:, 1], 1e-12))
    n[blob] = g.astype(np.float32)
    source[blob] = 3
    # floaters: static splats that no chain of splats connects to the ground (floating_static) are no surface
    # either, whatever their shape. Lit by their own axis, a floater's albedo (its colour over a grazing capture
    # shading) blew up and it glowed once the light turned: on bench lift 0, 190 such splats of 34k cost 1 dB
    groups = np.where(on_ground, GROUND, STATIC).astype(np.int32)
    groups[~static] = 0
    floating = floating_static(means, groups)
    n[floating & ~blob] = g.astype(np.float32)
    source[floating & ~blob] = 3
    return n, source, floating


def floating_static(means: np.ndarray, groups: np.ndarray, link: float = 3.0) -> np.ndarray:  # [N] bool
    """Static splats not connected to the ground: no chain of splats ``link`` spacings apart reaches it.

    A real static caster (a wall, a shelf on its wall, a lamp post) stands on the ground or hangs
    from something that does; a lift's floaters hang in the air. On the sample video's lift all
    167 static splats float (2 are connected at 3 spacings), and the capture's shadow steps were
    *explained* by them (a score of 52 against 0): under a near-overhead light a floater's shadow
    falls on the patch of ground it copies. Turned to a side light they drew long dark smudges
    over the far ground. The spacing is the median nearest-neighbour distance of the splats.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    groups = np.asarray(groups)
    static = np.nonzero(groups == STATIC)[0]
    ground = np.nonzero(groups == GROUND)[0]
    out = np.zeros(len(groups), bool)
    if len(static) == 0 or len(ground) == 0:
        return out
    means = np.asarray(means, np.float64)
    spacing = float(np.median(cKDTree(means).query(means[:: max(len(means) // 20000, 1)], k=2)[0][:, 1]))
    reach = link * spacing
    # components of the static splats alone; one that has a member within reach of a ground splat stands on it
    pairs = cKDTree(means[static]).query_pairs(reach, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(static), len(static)))
    _, label = connected_components(graph, directed=False)
    touching = np.isfinite(cKDTree(means[ground]).query(means[static], distance_upper_bound=reach)[0])
    out[static] = ~np.isin(label, label[touching])
    return out


REVEAL_INSET = 0.02  # metres: ground splats this far inside an object's footprint are hidden by it at rest
CONTACT_BAND = 0.03  # metres: an object's splats this close to the ground plane (or below it) make its footprint


def covered_ground(scene: Scene, groups: np.ndarray, inset: float = REVEAL_INSET,
                   contact: float = CONTACT_BAND) -> np.ndarray:  # fmt: skip  # [N] int32
    """For each ground splat that an object standing on the ground hides at rest, that object's index; else -1.

    Hidden means inside the object's footprint: the convex hull, on the ground plane, of its
    splats within ``contact`` of the plane (or below it), shrunk by ``inset`` (the hull's border
    is seen at grazing angles). An object with no splat that low does not stand on the ground
    and hides nothing: the floor under a floating or stacked thing was seen. No capture camera
    saw the floor under a box on the ground, so the lift's colours there are guesses: on the
    benchmark lifts, dark blotches of the box's underside and contact shadow that stay on the
    floor when the box is pushed away (:func:`revealed_albedo` replaces them once it moves).
    """
    from scipy.spatial import ConvexHull, QhullError

    groups = np.asarray(groups)
    cover = np.full(len(groups), -1, np.int32)
    ground = np.nonzero(groups == GROUND)[0]
    if scene.ground is None or len(ground) == 0:
        return cover
    normal = np.asarray(scene.ground.normal, np.float64)
    means = np.asarray(scene.splats.means, np.float64)
    height = means @ normal - scene.ground.offset
    uv = means @ plane_basis(normal)[:2].T
    for k, obj in enumerate(scene.objects):
        idx = np.asarray(obj.splat_indices)
        low = idx[height[idx] <= contact]
        if low.size < 3:
            continue
        try:
            hull = ConvexHull(uv[low])
        except QhullError:  # a degenerate footprint (a line of splats) hides nothing
            continue
        inside = np.all(uv[ground] @ hull.equations[:, :2].T + hull.equations[:, 2] <= -inset, axis=1)
        cover[ground[inside & (cover[ground] < 0)]] = k
    return cover


def revealed_albedo(means: np.ndarray, albedo: np.ndarray, groups: np.ndarray, cover: np.ndarray, normal,
                    k: int = 32) -> np.ndarray:  # fmt: skip
    """Albedo for the hidden ground splats (``cover >= 0``): the inverse-distance mean of the ``k`` nearest
    ground splats that no object hides, along the ground plane (other splats keep theirs).

    The floor an object covered is unknown; its surroundings are the best guess, and the network
    refines it. Measured on the benchmark's lifted pushes (relight, the floor under the pushed
    box's footprint, MSE x 1e3 over the changed pixels): 1.96 with the lift's colours, 0.77 with
    these (``BENCHMARKS.md``, session 11).
    """
    from scipy.spatial import cKDTree

    out = np.array(albedo, np.float32, copy=True)
    hidden = np.nonzero(cover >= 0)[0]
    source = np.nonzero((np.asarray(groups) == GROUND) & (cover < 0))[0]
    if len(hidden) == 0 or len(source) == 0:
        return out
    uv = np.asarray(means, np.float64) @ plane_basis(normal)[:2].T
    k = min(k, len(source))
    d, j = cKDTree(uv[source]).query(uv[hidden], k=k)
    d, j = d.reshape(len(hidden), k), j.reshape(len(hidden), k)
    w = 1.0 / np.maximum(d, 1e-3)
    out[hidden] = (np.asarray(albedo, np.float64)[source[j]] * w[..., None]).sum(axis=1) / w.sum(axis=1)[:, None]
    return out


def _collider_normals(points: np.ndarray, collider) -> tuple[np.ndarray | None, np.ndarray, float]:
    """Outward normal of the nearest collider face for points in the collider's frame, the distance, half-size.

    Convex parts: the face plane with the largest signed distance (exact inside the part, a
    close proxy outside); a compound collider's part is the one whose surface is nearest; a
    triangle mesh uses trimesh's closest point.
    """
    v = np.asarray(collider.vertices, np.float64)
    f = np.asarray(collider.faces, np.int64)
    if len(f) == 0:
        return None, np.zeros(len(points)), 0.0
    half = float(np.linalg.norm(v.max(0) - v.min(0)) / 2)
    if collider.kind == "mesh":
        import trimesh

        mesh = trimesh.Trimesh(v, f, process=False)
        closest, dist, tri = trimesh.proximity.closest_point(mesh, points)
        fn = mesh.face_normals[tri]
        out = np.einsum("nc,nc->n", fn, points - closest) < 0  # turn towards the point's side
        fn = np.where(out[:, None], -fn, fn)
        return fn, dist, half
    parts = collider.parts if collider.kind == "compound" and collider.parts else (np.arange(len(f)),)
    best_n = np.zeros((len(points), 3))
    best_d = np.full(len(points), np.inf)
    for part in parts:
        pf = f[np.asarray(part, np.int64)]
        tri = v[pf]  # [F, 3, 3]
        fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        ln = np.linalg.norm(fn, axis=1)
        ok = ln > 1e-12
        if not ok.any():
            continue
        fn, tri = fn[ok] / ln[ok, None], tri[ok]
        centre = v[np.unique(pf)].mean(axis=0)
        fn = np.where((np.einsum("fc,fc->f", fn, tri[:, 0] - centre) < 0)[:, None], -fn, fn)  # outward
        off = np.einsum("fc,fc->f", fn, tri[:, 0])
        sd = points @ fn.T - off  # [P, F] signed distances to the face planes
        k = np.argmax(sd, axis=1)
        d = np.abs(sd[np.arange(len(points)), k])
        better = d < best_d
        best_d[better] = d[better]
        best_n[better] = fn[k[better]]
    return best_n, best_d, half


def _propagate_orientation(means: np.ndarray, n: np.ndarray, conf: np.ndarray, k: int = 12, rounds: int = 2):
    """Splats with little evidence (seen by < 3 cameras, or whose votes tie) take the side of their surface.

    Neighbours with a nearly parallel axis vote with their confidence (the number of cameras
    that saw them); a face's edge or a rarely seen corner then follows the rest of the face.
    """
    from scipy.spatial import cKDTree

    weak = np.nonzero(conf < 3)[0]
    if len(weak) == 0 or len(means) < 2:
        return n
    _, idx = cKDTree(means).query(means[weak], k=min(k, len(means)))
    conf = conf.astype(np.float64).copy()
    for _ in range(rounds):
        nb = n[idx]  # [W, k, 3]
        dots = np.einsum("wkc,wc->wk", nb, n[weak])
        w = np.where(np.abs(dots) > 0.7, conf[idx], 0.0)
        score = (w * np.sign(dots)).sum(axis=1)
        flip = score < -conf[weak]
        n[weak[flip]] *= -1.0
        conf[weak] = np.maximum(conf[weak], np.abs(score) / max(k, 1))
    return n


def _seen_by(means, axes, quats, scales, opacities, cam: Camera, max_width: int, backend) -> np.ndarray:  # [N] bool
    """Splats whose surface ``cam`` sees: in view, at the rendered depth, and with the rendered normal.

    Each splat's axis, turned towards the camera, is rendered as a colour with its depth
    (``render.rasterize``, "RGB+ED"); a splat counts as seen where the pixel under its centre
    shows its depth (within a pixel footprint) and its own normal: near a box's far top edge
    the side face's splats sit at the top face's depth, but the pixel shows the top's normal.
    """
    import torch

    from render.rasterize import rasterize

    f = min(1.0, max_width / cam.width)
    w, h = max(int(round(cam.width * f)), 8), max(int(round(cam.height * f)), 8)
    K = cam.K.astype(np.float64).copy()
    K[0] *= w / cam.width
    K[1] *= h / cam.height
    to_cam = cam.position[None] - means
    oriented = np.where((np.einsum("nc,nc->n", axes, to_cam) < 0)[:, None], -axes, axes)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    res = rasterize(t(means), t(quats), t(scales), t(opacities), t(0.5 + 0.5 * oriented), t(cam.viewmat[None]),
                    t(K[None]), w, h, render_mode="RGB+ED", backend=backend)  # fmt: skip
    alpha = res.alphas[0, ..., 0].numpy()
    normal_img = (res.colors[0].numpy().astype(np.float64) / np.maximum(alpha[..., None], 1e-6) - 0.5) * 2.0
    depth = res.depths[0, ..., 0].numpy().astype(np.float64)
    p = means @ cam.viewmat[:3, :3].T + cam.viewmat[:3, 3]
    z = p[:, 2]
    ok = z > 1e-3
    zs = np.where(ok, z, 1.0)
    u = np.floor(K[0, 0] * p[:, 0] / zs + K[0, 2]).astype(np.int64)
    v = np.floor(K[1, 1] * p[:, 1] / zs + K[1, 2]).astype(np.int64)
    ok &= (u >= 0) & (u < w) & (v >= 0) & (v < h)
    seen = np.zeros(len(means), bool)
    i = np.nonzero(ok)[0]
    d = depth[v[i], u[i]]
    nr = normal_img[v[i], u[i]]
    agree = np.einsum("nc,nc->n", nr, oriented[i]) > 0.8 * np.maximum(np.linalg.norm(nr, axis=1), 1e-6)
    tol = 2.0 * z[i] / K[0, 0] + 2.0 * np.asarray(scales)[i].max(axis=1) + 0.01 * z[i]
    seen[i] = (alpha[v[i], u[i]] > 0.5) & (np.abs(z[i] - d) <= tol) & agree
    return seen


def hemisphere_directions(n: int, min_elevation_deg: float = 10.0) -> np.ndarray:  # [n, 3]
    """``n`` well-spread unit directions above ``min_elevation_deg`` (a Fibonacci spiral on the cap)."""
    zmin = np.sin(np.radians(min_elevation_deg))
    i = np.arange(n) + 0.5
    z = 1.0 - (1.0 - zmin) * i / n
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (1 + 5**0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)


# ----------------------------------------------------------------------------------------- shadow map
@dataclass(frozen=True)
class ShadowFrame:
    """Where the shadow map looks: a sphere around what casts and receives shadows, and its resolution."""

    center: tuple[float, float, float]  # world centre of the shadowed region, metres
    radius: float  # radius of the shadowed region, metres
    resolution: int = 512  # shadow map texels per side
    distance_factor: float = 50.0  # the light camera stands this many radii away (nearly orthographic)

    @classmethod
    def around(cls, means: np.ndarray, resolution: int = 512, percentile: float = 98.0) -> ShadowFrame:
        """A frame around the bulk of ``means`` (the outer ``100 - percentile`` % are left out)."""
        means = np.asarray(means, np.float64)
        if len(means) == 0:
            return cls((0.0, 0.0, 0.0), 1.0, resolution)
        lo, hi = np.percentile(means, 100 - percentile, axis=0), np.percentile(means, percentile, axis=0)
        center = (lo + hi) / 2
        radius = float(max(np.linalg.norm(hi - lo) / 2, 1e-3))
        return cls(tuple(float(v) for v in center), radius, int(resolution))

    @classmethod
    def for_scene(cls, scene: Scene, resolution: int = 512) -> ShadowFrame:
        """Around the objects and the ground their shadows can reach; around all splats without objects."""
        idx = [o.splat_indices for o in scene.objects if o.splat_indices.size]
        if not idx:
            return cls.around(scene.splats.means, resolution)
        pts = scene.splats.means[np.concatenate(idx)].astype(np.float64)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        center = (lo + hi) / 2
        radius = float(np.linalg.norm(hi - lo) / 2)
        height = float(hi[2] - lo[2])
        # a shadow reaches about 2.5 heights from its caster (light 22 degrees above the horizon)
        return cls(tuple(float(v) for v in center), 1.1 * radius + 2.5 * height + 0.05, int(resolution))

    @property
    def texel(self) -> float:
        """World size of one texel at the centre, metres."""
        return 2.0 * self.radius / self.resolution

    def camera(self, direction) -> tuple[np.ndarray, np.ndarray]:  # -> viewmat [4, 4], K [3, 3]
        """The light's pinhole camera (OpenCV axes) looking along ``-direction`` at the centre."""
        d = np.asarray(direction, np.float64)
        d = d / np.linalg.norm(d)
        dist = self.distance_factor * self.radius
        eye = np.asarray(self.center) + d * dist
        cam = Camera.look_at(eye, self.center, up=(0.0, 0.0, 1.0), width=self.resolution, height=self.resolution)
        f = 0.5 * self.resolution * dist / self.radius
        K = np.array([[f, 0, self.resolution / 2], [0, f, self.resolution / 2], [0, 0, 1.0]])
        return cam.viewmat, K


def shadow_depth_map(
    means: np.ndarray,  # [N, 3]
    quats: np.ndarray,  # [N, 4]
    scales: np.ndarray,  # [N, 3]
    opacities: np.ndarray,  # [N] in [0, 1]
    direction,  # [3] towards the light
    frame: ShadowFrame,
    *,
    backend: str | None = None,
) -> tuple[np.ndarray, ...]:  # depth [R, R], alpha [R, R], viewmat, K, ids [R, R] (dominant splat, -1 none)
    """The splats' expected depth seen from the light (``render.rasterize`` in "ED" mode), coverage, dominant splat."""
    import torch

    from render.rasterize import rasterize

    viewmat, K = frame.camera(direction)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    n = len(means)
    res = rasterize(t(means), t(quats), t(scales), t(opacities), torch.zeros((n, 3)), t(viewmat[None]), t(K[None]),
                    frame.resolution, frame.resolution, render_mode="ED", backend=backend,
                    near_plane=0.5 * frame.distance_factor * frame.radius)  # fmt: skip
    return res.depths[0, ..., 0].numpy(), res.alphas[0, ..., 0].numpy(), viewmat, K, res.splat_ids[0].numpy()


def shadow_visibility(
    means: np.ndarray,  # [N, 3]
    quats: np.ndarray,  # [N, 4]
    scales: np.ndarray,  # [N, 3]
    opacities: np.ndarray,  # [N]
    normals: np.ndarray,  # [N, 3] unit, for the slope-scaled bias
    direction,  # [3] towards the light
    frame: ShadowFrame,
    *,
    backend: str | None = None,
    depth_map: tuple | None = None,  # a precomputed shadow_depth_map(...) result for these splats and light
    groups: np.ndarray | None = None,  # [N] int: GROUND, STATIC, FLOATING or an object index (below); None: all cast
    static_casts: bool = True,  # with groups: whether STATIC splats cast shadows (see Relighting.static_casts)
) -> np.ndarray:  # [N] float32 in [0, 1]: fraction of the 3 x 3 shadow-map taps that see the light
    """Visibility of each splat centre from the light: 1 lit, 0 in shadow, fractions on shadow edges.

    With ``groups``, ground splats (``GROUND``) cast no shadow: a plane does not shadow itself,
    and a lifted ground is a slab a few centimetres thick whose lower splats its upper ones would
    put in shadow. A splat is not shadowed by its own group (a texel whose dominant splat is of
    the same object, or both static): a convex body's self-shadow is ``n . l < 0``, and a lifted
    object is a shell a few splats thick whose inner splats its outer ones would put in shadow.
    With ``static_casts`` False, static splats cast no shadow either (a lift's floaters);
    ``FLOATING`` splats (static splats not connected to the ground, :func:`floating_static`) never do.
    """
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    if depth_map is None:
        opac = opacities
        if groups is not None:
            silent = (groups == GROUND) | (groups == FLOATING) | ((groups == STATIC) & (not static_casts))
            opac = np.where(silent, 0.0, opacities).astype(np.float32)
        depth_map = shadow_depth_map(means, quats, scales, opac, d, frame, backend=backend)
    depth, alpha, viewmat, K, ids = depth_map
    r = frame.resolution
    occ_depth = np.where(alpha > 0.5, depth, np.inf).astype(np.float32)
    pts = np.asarray(means, np.float64) @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = pts[:, 2]
    u = K[0, 0] * pts[:, 0] / z + K[0, 2]
    v = K[1, 1] * pts[:, 1] / z + K[1, 2]
    ndl = np.clip(np.asarray(normals, np.float64) @ d, 0.05, 1.0)
    tan = np.sqrt(np.maximum(1.0 - ndl * ndl, 0.0)) / ndl
    bias = frame.texel * (1.5 + np.minimum(tan, 8.0)) + 1.5 * np.asarray(scales).min(axis=1)
    vis = np.zeros(len(means), np.float64)
    iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    if groups is not None:
        groups = np.asarray(groups)
        texel_group = np.where(ids >= 0, groups[np.maximum(ids, 0)], GROUND)
    for du in (-1, 0, 1):
        for dv in (-1, 0, 1):
            x, y = iu + du, iv + dv
            inside = (x >= 0) & (x < r) & (y >= 0) & (y < r)
            occ = np.full(len(means), np.inf)
            occ[inside] = occ_depth[y[inside], x[inside]]
            if groups is not None:
                own = np.zeros(len(means), bool)
                own[inside] = texel_group[y[inside], x[inside]] == groups[inside]
                occ[own] = np.inf
            vis += z <= occ + bias
    return (vis / 9.0).astype(np.float32)


def shading(
    normals: np.ndarray,  # [N, 3]
    vis: np.ndarray,  # [N]
    light: Light,
    shadow_strength: float = 1.0,  # 1: a shadow removes all the sun; 0.2: it removes a fifth of it
) -> np.ndarray:  # [N, 3] float32: ambient + sun * max(0, n . l) * (1 - k (1 - vis))
    """The diffuse shading term of each splat under ``light`` (sun = colour x intensity).

    With ``shadow_strength`` k = 1 this is ``ambient + sun * vis * max(0, n.l)``; k < 1 lets some of
    the sun into shadows (sky light, inter-reflections, or a renderer that darkens shadows only
    partly), estimated with the light.
    """
    d = np.asarray(light.direction, np.float64)
    occ = 1.0 - float(shadow_strength) * (1.0 - np.asarray(vis, np.float64))
    ndl = np.maximum(np.asarray(normals, np.float64) @ d, 0.0) * occ
    sun = np.asarray(light.color) * light.intensity
    return (np.asarray(light.ambient)[None] + ndl[:, None] * sun[None]).astype(np.float32)


def refine_visibility(
    means: np.ndarray,  # [N, 3]
    colors: np.ndarray,  # [N, 3] baked colours
    normals: np.ndarray,  # [N, 3]
    vis: np.ndarray,  # [N] shadow-map visibility
    light: Light,
    *,
    k: int = 16,
    shadow_strength: float = 1.0,
) -> np.ndarray:  # [N] float32
    """Visibility near shadow edges re-read from the colours themselves.

    A shadow map places an edge to within a splat or two; a splat put on the wrong side gets an
    albedo off by the full shadow ratio and would glow (or stay dark) once the shadow moves.
    Where the map is unsure (a partial value, or neighbours on both sides of an edge) we pick
    the visibility in [0, 1] whose albedo agrees best with the median albedo of the confident
    neighbours.
    """
    from scipy.spatial import cKDTree

    vis = np.asarray(vis, np.float32).copy()
    n = len(vis)
    if n < 2:
        return vis
    k = min(k, n)
    tree = cKDTree(means)
    _, idx = tree.query(means, k=k)
    nv = vis[idx]
    unsure = ((vis > 0.01) & (vis < 0.99)) | (nv.max(axis=1) - nv.min(axis=1) > 0.5)
    d = np.asarray(light.direction, np.float64)
    lit = np.maximum(np.asarray(normals, np.float64) @ d, 0.0) > 0.05
    unsure &= lit
    if not unsure.any():
        return vis
    colors = np.maximum(np.asarray(colors, np.float64), 1e-3)
    albedo = np.log(colors / np.maximum(shading(normals, vis, light, shadow_strength), 1e-3))
    confident = ~unsure
    rows = np.nonzero(unsure)[0]
    nb = idx[rows]  # [U, k]
    ok = confident[nb]
    ref = np.where(ok[..., None], albedo[nb], np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref = np.nanmedian(ref, axis=1)  # [U, 3]
    has_ref = np.all(np.isfinite(ref), axis=1)
    rows, ref = rows[has_ref], ref[has_ref]
    grid = np.linspace(0.0, 1.0, 11)
    err = np.stack([np.abs(np.log(colors[rows] / np.maximum(shading(normals[rows], np.full(len(rows), g), light,
                                                                  shadow_strength),
                                                          1e-3)) - ref).sum(axis=1) for g in grid])  # fmt: skip
    vis[rows] = grid[np.argmin(err, axis=0)]
    return vis


# ----------------------------------------------------------------------------------------- estimation
def _neighbour_pairs(means: np.ndarray, max_anchors: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of nearby splats a few spacings apart (neighbour ranks 8-23 of random anchors).

    Pairs of immediate neighbours would make the criterion hinge on shadow edges being placed
    to within one splat; a few spacings apart, a slightly misplaced shadow edge still counts.
    """
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    anchors = np.arange(len(means))
    if len(anchors) > max_anchors:
        anchors = np.sort(rng.choice(len(anchors), max_anchors, replace=False))
    tree = cKDTree(means)
    k = min(24, len(means))
    dist, idx = tree.query(means[anchors], k=k)
    lo = min(8, k - 1)
    spacing = np.median(dist[:, 1]) if k > 1 else 1.0
    i = np.repeat(anchors, k - lo)
    j = idx[:, lo:].reshape(-1)
    ok = dist[:, lo:].reshape(-1) < 12.0 * spacing
    return i[ok], j[ok]


def _object_faces(groups, normals: np.ndarray, weights: np.ndarray, min_splats: int, min_face: int,
                  up=(0.0, 0.0, 1.0)) -> list[tuple[int, np.ndarray, np.ndarray]]:  # fmt: skip
    """``(object, splat indices, unit normal)`` of each visible face of objects with 2 or more faces.

    An object's splats are clustered by normal (collider faces, see :func:`scene_normals`);
    clusters of fewer than ``min_face`` splats or none of ``weights`` (capture pixels) are
    dropped, and so are faces looking down (the cameras see the ground there, not the object).
    One face alone says nothing about the light: its object's albedo absorbs it.
    """
    up = np.asarray(up, np.float64)
    out = []
    for o, idx in enumerate(groups or []):
        idx = np.asarray(idx, np.int64)
        if len(idx) < min_splats:
            continue
        key = np.round(normals[idx] * 2.0).astype(np.int64)  # coarse normal clusters
        _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
        rows = []
        for c in np.nonzero(counts >= min_face)[0]:
            sel = idx[inv.reshape(-1) == c]
            n = normals[sel].mean(axis=0)
            n = n / max(np.linalg.norm(n), 1e-12)
            if n @ up >= -0.3 and weights[sel].sum() > 0:
                rows.append((o, sel, n))
        if len(rows) >= 2:
            out += rows
    return out


def _face_interiors(faces: list, means: np.ndarray, weights: np.ndarray, edge: float, thin: str = "keep") -> list:
    """``faces`` (see :func:`_object_faces`) without each face's splats within ``edge`` of its extent from
    another face of its object: along an edge a splat's colour mixes both faces (and a lifted box's drawn
    dark edge lines). A face too thin to have an inside (fewer than 10 splats left) keeps its edges
    (``thin="keep"``) or is dropped (``"drop"``: a hull's bevel facet along an edge is all edge).
    """
    from scipy.spatial import cKDTree

    kept = []
    for f, (o, sel, n) in enumerate(faces):
        other = [s2 for f2, (o2, s2, _) in enumerate(faces) if o2 == o and f2 != f]
        if other:
            d, _ = cKDTree(means[np.concatenate(other)]).query(means[sel])
            inner = sel[d > edge * np.ptp(means[sel], axis=0).max()]
            if len(inner) >= 10 and weights[inner].sum() > 0:
                sel = inner
            elif thin == "drop":
                continue
        kept.append((o, sel, n))
    return kept


def _face_ratio(groups, normals, g, logc, ratios, weights: np.ndarray | None = None,
                means: np.ndarray | None = None, edge: float = 0.1) -> list[float] | None:  # fmt: skip
    """Per-channel sun / ambient ratio from the colours of the objects' faces.

    The faces of one object share a texture (statistically), so the differences of their log
    colours (the median over the capture pixels each face fills, see :class:`_FaceShading`) are
    shading differences: ``log(1 + r g_f)`` up to a per-object constant; faces count by the
    square root of their pixels.

    With ``means``, a face's splats within ``edge`` of its extent from another face of the object
    are left out: along an edge a splat's colour mixes both faces. On the geometry-built benchmark
    scenes the faces gave 1.64 with their edges and 1.88 without (truth 1.86; the capture images'
    face interiors give 1.87-1.89), and the turned light's relight gained 0.04 dB a scene.
    """
    weights = np.ones(len(g)) if weights is None else np.asarray(weights, np.float64)
    faces = _object_faces(groups, normals, weights, 100, 40)
    if not faces:
        return None
    if means is not None and edge > 0:
        faces = _face_interiors(faces, means, weights, edge)
    obj = np.array([o for o, _, _ in faces])
    gf = np.array([_weighted_median(g[sel], weights[sel]) for _, sel, _ in faces])
    mf = np.array([[_weighted_median(logc[sel, ch], weights[sel]) for ch in range(3)] for _, sel, _ in faces])
    wf = np.sqrt([weights[sel].sum() for _, sel, _ in faces])
    if np.ptp(gf) < 0.2:
        return None
    out = []
    for ch in range(3):
        res = mf[None, :, ch] - np.log1p(ratios[:, None] * gf[None])  # [R, F]
        for o in np.unique(obj):
            res[:, obj == o] -= np.median(res[:, obj == o], axis=1, keepdims=True)
        out.append(float(ratios[int(np.argmin((np.abs(res) * wf[None]).sum(axis=1)))]))
    return out


class _FaceShading:
    """The light direction from the brightness of objects' faces (photometric stereo, one albedo per object).

    The visible splats of each object are clustered by normal (collider faces, see
    :func:`scene_normals`); each face's log luminance (the median over the capture pixels its splats
    fill: each splat weighted by its pixel count) is ``a_o + log(1 + r max(0, n_f . l))`` with one
    unknown ``a_o`` per object. A direction is scored by the L1 residual after removing each
    object's median, minimised over the sun/ambient ratio ``r``. Measured: 2.4-10.3 degrees on 7
    lifts of the sample video, 0.6-8.1 on the benchmark lifts, where the cast shadows of lifted
    objects (blobby, short under a high sun) pointed 78 degrees away on the sample.
    """

    def __init__(self, groups, normals: np.ndarray, lum: np.ndarray, ratios: np.ndarray, min_faces: int = 4,
                 weights: np.ndarray | None = None, up=(0.0, 0.0, 1.0), means: np.ndarray | None = None,
                 edge: float = FACE_EDGE, thin: str = FACE_THIN) -> None:  # fmt: skip
        self.ratios = ratios[ratios > 0]
        weights = np.ones(len(lum)) if weights is None else np.asarray(weights, np.float64)
        faces = _object_faces(groups, normals, weights, 30, 15, up)
        if means is not None and edge > 0:
            faces = _face_interiors(faces, np.asarray(means, np.float64), weights, edge, thin)
        obj = [o for o, _, _ in faces]
        nrm = [n for _, _, n in faces]
        med = [_weighted_median(lum[sel], weights[sel]) for _, sel, _ in faces]
        wts = [float(weights[sel].sum()) for _, sel, _ in faces]
        self.count = len(obj)
        self.obj, self.n, self.m = np.asarray(obj), np.asarray(nrm).reshape(-1, 3), np.asarray(med)
        # a face counts by how much of the capture it fills (hull bevels and rims are small and noisy)
        self.w = np.sqrt(np.asarray(wts, np.float64))
        # faces must look different ways (a lone wall says little about a light above it)
        spread = float(np.linalg.svd(self.n - self.n.mean(0), compute_uv=False)[1]) if self.count >= 3 else 0.0
        self.ok = self.count >= min_faces and spread > 0.3

    def cost(self, d: np.ndarray) -> float:
        g = np.maximum(self.n @ d, 0.0)
        res = self.m[None] - np.log1p(self.ratios[:, None] * g[None])  # [R, F]
        for o in np.unique(self.obj):
            sel = self.obj == o
            res[:, sel] -= np.median(res[:, sel], axis=1, keepdims=True)
        return float((np.abs(res) * self.w[None]).sum(axis=1).min())

    def best_direction(self, coarse: int = 2000) -> np.ndarray:
        dirs = hemisphere_directions(coarse, 5.0)
        best = dirs[int(np.argmin([self.cost(d) for d in dirs]))]
        for spread in (4.0, 1.5):
            cands = _cap_directions(best, np.radians(spread), 48)
            best = cands[int(np.argmin([self.cost(d) for d in cands]))]
        return best


class _ShadowPairs:
    """Scores a candidate light by how well its cast shadows explain dark steps in the captured colours.

    Fixed anchors (splats off the objects, and more than 4 spacings from them: contact rims are
    dark for reasons other than the light) are paired with neighbours 4-400 ranks away on the same
    surface. For a candidate's visibility, pairs of an anchor in its cast shadow and a lit
    neighbour should differ by the shadow's log step ``delta`` (their median, < 0): the score is
    the L1 improvement ``sum(|x| - |x - delta|)``, which grows with every pair the shadow
    explains and shrinks with every pair it contradicts (a shadow drawn on lit ground).
    """

    def __init__(self, means, lum, normals, inside, groups, seed: int, anchors: int = 20000) -> None:
        from scipy.spatial import cKDTree

        rng = np.random.default_rng(seed)
        cand = np.nonzero(inside)[0] if inside.sum() > 100 else np.arange(len(means))
        tree = cKDTree(means)
        spacing = float(np.median(tree.query(means[cand[:: max(len(cand) // 2000, 1)]], k=2)[0][:, 1]))
        obj = np.concatenate([np.asarray(g, np.int64) for g in groups]) if groups else np.zeros(0, np.int64)
        if len(obj):
            d, _ = cKDTree(means[obj]).query(means[cand])
            cand = cand[d > 4.0 * spacing]
        self.ok = len(cand) >= 50
        if not self.ok:
            return
        self.S = np.sort(rng.choice(cand, min(anchors, len(cand)), replace=False))
        k = min(400, len(means))
        _, idx = tree.query(means[self.S], k=k)
        self.idx = idx[:, 4::10].astype(np.int32)  # ~40 neighbours, up to ~11 spacings away
        self.same = np.abs(np.einsum("skc,sc->sk", normals[self.idx], normals[self.S])) > 0.95
        self.x = (lum[self.S][:, None] - lum[self.idx]).astype(np.float32)

    def __call__(self, vis: np.ndarray, ndl: np.ndarray) -> float:
        if not self.ok:
            return 0.0
        m = ((vis[self.S] < 0.05) & (ndl[self.S] > 0.2))[:, None] & (vis[self.idx] > 0.95) & self.same
        if m.sum() < 50:
            return 0.0
        x = self.x[m]
        delta = float(np.median(x))
        if delta >= 0:
            return 0.0
        return float((np.abs(x) - np.abs(x - delta)).sum())


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    """The value below which half of the total weight ``w`` lies (the plain median when all weights are 0)."""
    w = np.maximum(np.asarray(w, np.float64), 0.0)
    if w.sum() <= 0:
        return float(np.median(x))
    order = np.argsort(x, kind="stable")
    cw = np.cumsum(w[order])
    return float(np.asarray(x)[order][np.searchsorted(cw, 0.5 * cw[-1])])


def _cap_directions(centre: np.ndarray, spread: float, count: int) -> list[np.ndarray]:
    """``centre`` and ``count - 1`` directions spread over a cap of angular radius ``spread`` around it."""
    up = np.array([0.0, 0.0, 1.0]) if abs(centre[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
    a = np.cross(centre, up)
    a /= np.linalg.norm(a)
    b = np.cross(centre, a)
    out = [centre]
    for m in range(1, count):
        rad = spread * np.sqrt(m / count)
        phi = m * np.pi * (3 - 5**0.5)
        v = centre + np.tan(rad) * (np.cos(phi) * a + np.sin(phi) * b)
        v /= np.linalg.norm(v)
        if v[2] > 0.05:
            out.append(v)
    return out


def _shadow_strength(means, lum, normals, vis, ndl, ratio: float, seed: int, anchors: int = 4000,
                     min_samples: int = 50) -> float | None:  # fmt: skip
    """Fraction of the sun a cast shadow removes, from shadowed splats against lit ones nearby.

    For splats in shadow (visibility ~0, facing the light) the log luminance minus the median of
    lit splats on the same surface within a few spacings is the shadow's log contrast plus a
    texture difference of median ~0; each anchor gives ``k`` from
    ``log(1 + r n.l (1 - k)) - log(1 + r n.l)``, and the median over anchors is returned (None
    with fewer than ``min_samples`` anchors: no usable cast shadow).
    """
    from scipy.spatial import cKDTree

    if ratio <= 1e-6:
        return None
    shadowed = np.nonzero((vis < 0.05) & (ndl > 0.2))[0]
    if len(shadowed) < min_samples:
        return None
    rng = np.random.default_rng(seed)
    if len(shadowed) > anchors:
        shadowed = rng.choice(shadowed, anchors, replace=False)
    tree = cKDTree(means)
    dist, _ = tree.query(means[shadowed], k=2)
    radius = 8.0 * float(np.median(dist[:, 1]))
    ks = []
    for a, js in zip(shadowed, tree.query_ball_point(means[shadowed], radius), strict=True):
        js = np.asarray(js, np.int64)
        js = js[(vis[js] > 0.95) & (np.abs(normals[js] @ normals[a]) > 0.95)]
        if len(js) < 3:
            continue
        d = lum[a] - np.median(lum[js])
        g = ratio * ndl[a]
        ks.append(1.0 - (np.exp(d) * (1.0 + g) - 1.0) / g)
    if len(ks) < min_samples:
        return None
    return float(np.clip(np.median(ks), 0.05, 1.0))


def _static_casts(gain: _ShadowPairs, ndl: np.ndarray, visibility: Callable[[bool], np.ndarray]
                  ) -> tuple[bool, np.ndarray]:  # fmt: skip
    """Whether static splats cast shadows, and the visibility chosen: the capture's shadow steps decide.

    ``visibility(cast)`` is the evidence splats' visibility with and without static casters; they cast
    when the cast-shadow score (:class:`_ShadowPairs`) is higher with them.
    """
    vis = {cast: visibility(cast) for cast in (True, False)}
    score = {cast: gain(v, ndl) for cast, v in vis.items()}
    cast = score[True] > score[False]
    log.info("static splats cast shadows: %s (the capture's shadow steps explain %.1f with them, %.1f without)",
             cast, score[True], score[False])  # fmt: skip
    return cast, vis[cast]


def _static_shadows_seen(splats: Splats, normals, groups, direction, frame: ShadowFrame, scene: Scene, backend,
                         seed: int) -> bool:  # fmt: skip
    """Whether the capture shows the shadows static splats would cast under a given light (see estimate_light)."""
    if groups is None or not np.any(groups == STATIC) or not scene.capture_cameras:
        return True
    observed, counts = observed_colors(splats, scene.capture_cameras, backend=backend)
    obs = np.nonzero(counts >= 2)[0]
    if len(obs) < 50:
        return True
    means = splats.means.astype(np.float64)[obs]
    lum = np.log(np.maximum(observed[obs] @ np.array([0.299, 0.587, 0.114]), 0.02))
    n64 = np.asarray(normals, np.float64)[obs]
    pos = np.full(len(splats), -1)
    pos[obs] = np.arange(len(obs))
    objs = [pos[o.splat_indices][pos[o.splat_indices] >= 0] for o in scene.objects]
    inside = np.linalg.norm(means - np.asarray(frame.center), axis=1) < frame.radius
    gain = _ShadowPairs(means, lum, n64, inside, objs, seed)
    if not gain.ok:
        return True
    d = np.asarray(direction, np.float64) / np.linalg.norm(direction)
    ndl = np.maximum(n64 @ d, 0.0)
    q, sc, op = splats.unit_quats, splats.scales, splats.opacities
    return _static_casts(
        gain,
        ndl,
        lambda cast: shadow_visibility(
            splats.means, q, sc, op, normals, d, frame, backend=backend, groups=groups, static_casts=cast
        )[obs],
    )[0]


@dataclass(frozen=True)
class LightEstimate:
    """What :func:`estimate_light` found, with its evidence."""

    light: Light  # direction, sun colour (intensity 1) and ambient, normalised so that ambient + sun = 1
    ratio: tuple[float, float, float]  # sun / ambient per channel
    cost: float  # mean absolute log-colour residual over neighbour pairs at the optimum
    cost_flat: float  # the same with no directional light at all (how much the light explains)
    shadow_strength: float = 1.0  # fraction of the sun a shadow removes (see :func:`shading`)
    static_casts: bool = True  # whether static splats cast shadows (the capture shows theirs)


def estimate_light(
    splats: Splats,
    normals: np.ndarray,  # [N, 3]
    frame: ShadowFrame,
    *,
    directions: int = 128,  # coarse candidates on the hemisphere
    refine: int = 16,  # candidates around each of the best coarse ones
    top: int = 3,  # coarse candidates refined
    coarse_resolution: int = 192,
    seed: int = 0,
    backend: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    direction=None,  # the light direction when known: only the sun / ambient ratio is estimated
    groups: list[np.ndarray] | None = None,  # splat indices of each object (their faces help fit the ratio)
    shadow_groups: np.ndarray | None = None,  # [N] int: who shadows whom (see shadow_visibility)
    # with a direction from the objects' faces: shadow-scored candidates around it (0: the faces' answer). Off:
    # on lifts cast shadows are blobby, and refining within 6 degrees moved the answer away from the truth
    # (7 sample-video lifts: mean 6.2 -> 7.8 degrees, worst 10.3 -> 15.3; bench lifts 0.6/8.1/2.2 -> 5.8/8.7/7.8;
    # geometry-built bench scenes 1.1/1.3/0.4 -> 3.0/4.3/0.4)
    face_refine: int = 0,
    face_refine_deg: float = 6.0,  # ... within this many degrees
    colors: np.ndarray | None = None,  # [N, 3] the colours the capture shows per splat (default: the DC colours)
    usable: np.ndarray | None = None,  # [N] bool: splats whose colour is evidence (default: all)
    pixel_counts: np.ndarray | None = None,  # [N] capture pixels each splat dominates (weights the faces)
) -> LightEstimate:
    """Estimate a directional light (direction, per-channel sun/ambient ratio, shadow strength) from the splats.

    The evidence is ``colors`` of the ``usable`` splats (by default every splat's DC colour):
    :meth:`Relighting.fit` passes what the capture shows of each splat (:func:`observed_colors`).
    The direction is the one whose cast shadows best explain dark steps in those colours
    (:class:`_ShadowPairs`), searched on a hemisphere grid with a coarse shadow map, then in
    caps around the best few on the full map. The Retinex pair cost (for neighbouring splat
    pairs, ``log c_i - log c_j`` explained by ``log S_i - log S_j`` up to sparse albedo edges,
    L1) breaks ties and, with the objects' faces, fits the sun / ambient ratio; the shadow
    strength is measured across the shadow boundaries (:func:`_shadow_strength`).
    """
    all_means = splats.means.astype(np.float64)
    all_normals = np.asarray(normals, np.float64)
    quats, scales, opac = splats.unit_quats, splats.scales, splats.opacities
    obs = np.arange(len(all_means)) if usable is None or np.sum(usable) < 50 else np.nonzero(usable)[0]
    colors = (dc_colors(splats.sh) if colors is None else np.asarray(colors))[obs].astype(np.float64)
    means = all_means[obs]
    if groups is not None:  # object splat lists as positions among the usable splats
        pos = np.full(len(all_means), -1)
        pos[obs] = np.arange(len(obs))
        groups = [pos[np.asarray(gi, np.int64)][pos[np.asarray(gi, np.int64)] >= 0] for gi in groups]
    lum = np.log(np.maximum(colors @ np.array([0.299, 0.587, 0.114]), 0.02))
    logc = np.log(np.maximum(colors, 0.02))
    inside = np.linalg.norm(means - np.asarray(frame.center), axis=1) < frame.radius  # where shadows are computed
    sub = np.nonzero(inside)[0] if inside.sum() > 100 else np.arange(len(means))
    i, j = _neighbour_pairs(means[sub], 20_000, seed)
    i, j = sub[i], sub[j]
    d = lum[i] - lum[j]
    ratios = np.concatenate([[0.0], np.geomspace(0.1, 5.0, 29)])  # sun / ambient candidates, 15 % apart
    normals64 = all_normals[obs]

    d32 = d.astype(np.float32)

    def costs(g: np.ndarray) -> np.ndarray:  # g [N] = vis * max(0, n.l) -> [R] costs per ratio
        L = np.log1p(ratios[:, None] * g[None]).astype(np.float32)  # [R, N]
        return np.array([np.abs(d32 - (row[i] - row[j])).mean() for row in L])

    shadow_gain = _ShadowPairs(means, lum, normals64, inside, groups, seed)
    coarse = ShadowFrame(frame.center, frame.radius, coarse_resolution, frame.distance_factor)
    rounds = ((15.0, refine), (5.0, max(refine // 2, 2)))  # refinement caps: spread (degrees), candidates
    total = directions + sum(n for _, n in rounds)
    done = 0
    best = (-np.inf, np.inf, None, None)  # (shadow gain, pair cost, direction, g)
    _last_score: list = [None]  # (gain, -pair cost, direction) of the last candidate tried

    def try_dir(dirv, fr) -> None:
        nonlocal best, done
        vis = shadow_visibility(all_means, quats, scales, opac, all_normals, dirv, fr, backend=backend,
                                groups=shadow_groups)[obs]  # fmt: skip
        ndl = np.maximum(normals64 @ dirv, 0.0)
        g = vis * ndl
        c = float(costs(g).min())
        gain = shadow_gain(vis, ndl)
        _last_score[0] = (gain, -c, tuple(dirv))
        # cast shadows decide (the pair cost hardly varies with the direction on textured scenes); the pair
        # cost breaks ties, e.g. where no candidate predicts a shadow the capture shows
        if (gain, -c) > (best[0], -best[1]):
            best = (gain, c, dirv, g)
        done += 1
        if progress:
            progress(done, total)

    faces = (_FaceShading(groups, normals64, lum, ratios, weights=None if pixel_counts is None else
                          np.asarray(pixel_counts)[obs], means=means) if direction is None else None)  # fmt: skip
    if direction is not None:
        total = 1
        dirv = np.asarray(direction, np.float64) / np.linalg.norm(direction)
        try_dir(dirv, frame)
    elif faces is not None and faces.ok:
        # objects' faces under different angles: the direction that explains their brightness (photometric
        # stereo with one albedo per object); optionally cast shadows refine it within a few degrees
        dirv = faces.best_direction()
        log.info("light direction from %d object faces: %s", faces.count, np.round(dirv, 3).tolist())
        cands = _cap_directions(dirv, np.radians(face_refine_deg), face_refine) if face_refine > 1 else [dirv]
        total = len(cands) + 1
        for cand in cands:
            try_dir(cand, frame)
        if best[0] <= 0.0 and len(cands) > 1:  # no cast shadow explains anything there: the faces' answer
            best = (-np.inf, np.inf, None, None)
            try_dir(dirv, frame)
    else:
        scored = []
        for dirv in hemisphere_directions(directions):
            try_dir(dirv, coarse)
            scored.append(_last_score[0])
        # the coarse map blurs shadows: refine around the best few coarse candidates (>= 10 degrees apart)
        seeds: list[np.ndarray] = []
        for _, _, dv in sorted(scored, reverse=True):
            dv = np.asarray(dv)
            if all(np.degrees(np.arccos(np.clip(dv @ o, -1, 1))) >= 10.0 for o in seeds):
                seeds.append(dv)
            if len(seeds) == top:
                break
        best = (-np.inf, np.inf, None, None)
        total += (len(seeds) - 1) * rounds[0][1]
        for centre in seeds:
            for dirv in _cap_directions(centre, np.radians(rounds[0][0]), rounds[0][1]):
                try_dir(dirv, frame)
        for spread_deg, count in rounds[1:]:  # finer caps around the best so far, on the full-resolution map
            centre = best[2]
            best = (-np.inf, np.inf, None, None)
            for dirv in _cap_directions(centre, np.radians(spread_deg), count):
                try_dir(dirv, frame)
    if progress:
        progress(total, total)
    _, cost, dirv, g = best
    best = (cost, dirv, g)
    cost, dirv, g = best
    static_casts = True
    if shadow_groups is not None and shadow_gain.ok and np.any(np.asarray(shadow_groups) == STATIC):
        # Static splats (neither ground nor an object) cast shadows only where the capture shows them: on
        # lifts they are mostly floaters, large and above the ground, and they drew shadows on 18 % of the
        # ground that the capture does not have (a benchmark lift: 4404 false shadowed ground splats, 174 true).
        ndl = np.maximum(normals64 @ dirv, 0.0)
        static_casts, vis = _static_casts(shadow_gain, ndl, lambda cast: shadow_visibility(
            all_means, quats, scales, opac, all_normals, dirv, frame, backend=backend, groups=shadow_groups,
            static_casts=cast)[obs])  # fmt: skip
        g = vis * ndl
    flat = float(np.abs(d).mean())
    strengths = np.array([0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0])
    ndl = np.maximum(normals64 @ dirv, 0.0)
    vis_best = np.where(ndl > 1e-9, g / np.maximum(ndl, 1e-9), 1.0)

    def fit(dpairs: np.ndarray, ks) -> tuple[float, float]:
        best_rk = (np.inf, 0.0, 1.0)
        for kk in ks:
            gg = ndl * (1.0 - kk * (1.0 - vis_best))
            L = np.log1p(ratios[:, None] * gg[None]).astype(np.float32)
            c = [np.abs(dpairs - (row[i] - row[j])).mean() for row in L]
            m = int(np.argmin(c))
            if c[m] < best_rk[0]:
                best_rk = (c[m], float(ratios[m]), float(kk))
        return best_rk[1], best_rk[2]

    r_pairs, strength = fit(d32, strengths)
    faces = _face_ratio(groups, normals64, ndl * (1.0 - strength * (1.0 - vis_best)), logc, ratios,
                        None if pixel_counts is None else np.asarray(pixel_counts, np.float64)[obs], means)  # fmt: skip
    per_channel = []
    for ch in range(3):
        if faces is not None:  # objects' faces under different angles pin the sun / ambient ratio down
            per_channel.append(faces[ch])
        else:
            per_channel.append(fit((logc[i, ch] - logc[j, ch]).astype(np.float32), [strength])[0])
    if faces is not None:  # the shadow contrast (ratio x strength) from the pairs, with the faces' ratio
        strength = float(np.clip(r_pairs * strength / max(float(np.mean(per_channel)), 1e-6), 0.05, 1.0))
    direct = _shadow_strength(means, lum, normals64, vis_best, ndl, float(np.mean(per_channel)), seed)
    if direct is not None:  # measured across the shadow boundaries themselves: preferred when there are enough
        strength = direct
    r = np.asarray(per_channel)
    ambient = 1.0 / (1.0 + r)
    sun = r / (1.0 + r)
    light = Light(direction=tuple(dirv), color=tuple(sun), intensity=1.0, ambient=tuple(ambient))
    log.info("estimated light: direction %s, sun/ambient %s, shadow strength %.2f (cost %.4f vs %.4f without light)",
             np.round(dirv, 3).tolist(), r.tolist(), strength, cost, flat)  # fmt: skip
    return LightEstimate(light, tuple(float(v) for v in r), cost, flat, strength, static_casts)


# ----------------------------------------------------------------------------------------- the model
@dataclass(frozen=True, eq=False)
class Relighting:
    """The explicit layer of the world model for one scene: light, normals, albedo and capture shading."""

    light: Light  # the capture light (estimated or given)
    frame: ShadowFrame  # shadow-map placement (fixed, so unedited splats get identical visibility)
    normals_local: np.ndarray  # [N, 3] each splat's normal in its own (rotated) frame: follows its quaternion
    albedo: np.ndarray  # [N, 3] float32
    vis_capture: np.ndarray  # [N] float32 visibility from the capture light (refined near shadow edges)
    shading_capture: np.ndarray  # [N, 3] float32
    vis_map_capture: np.ndarray  # [N] float32 the shadow map's own capture visibility (before refinement)
    shadow_strength: float = 1.0  # fraction of the sun a shadow removes (estimated with the light)
    shadow_groups: np.ndarray | None = None  # [N] int32: GROUND, STATIC, FLOATING or object index (shadow_visibility)
    normal_source: np.ndarray | None = None  # [N] int8: 0 own axis, 1 ground plane, 2 collider face, 3 round static
    static_casts: bool = True  # static splats (neither ground nor object) cast shadows: the capture shows them
    cover: np.ndarray | None = None  # [N] int32: the object that hides a ground splat at rest (covered_ground), or -1
    albedo_revealed: np.ndarray | None = None  # [N, 3] float32 albedo once that object has moved (revealed_albedo)

    @classmethod
    def fit(
        cls,
        scene: Scene,
        light: Light | None = None,  # the capture light when known; estimated from the splats otherwise
        *,
        shadow_strength: float = 1.0,  # with a given light: the fraction of the sun its shadows remove
        static_casts: bool | None = None,  # with a given light: whether static splats cast (None: the capture says)
        light_direction=None,  # with light=None: the capture light's direction when known (the rest is estimated)
        resolution: int = 512,
        backend: str | None = None,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> Relighting:
        """Normals, light (unless given), capture visibility and albedo for ``scene`` at rest."""
        s = scene.splats
        if len(s) == 0:
            raise ShapeError("Relighting.fit: the scene has no splats")
        quats = s.unit_quats
        normals, source, floating = _scene_normals(scene, backend=backend)
        groups = np.full(len(s), STATIC, np.int32)
        groups[source == 1] = GROUND
        for k, obj in enumerate(scene.objects):
            groups[obj.splat_indices] = k
        groups[floating] = FLOATING  # the static splats no chain reaches the ground from (scene_normals)
        frame = ShadowFrame.for_scene(scene, resolution)
        if light is None:
            observed, counts = observed_colors(s, scene.capture_cameras, backend=backend)
            est = estimate_light(s, normals, frame, seed=seed, backend=backend, progress=progress,
                                 colors=observed, usable=counts >= 2, pixel_counts=counts,
                                 direction=light_direction, groups=[o.splat_indices for o in scene.objects],
                                 shadow_groups=groups)  # fmt: skip
            light, shadow_strength, static_casts = est.light, est.shadow_strength, est.static_casts
        elif static_casts is None:
            static_casts = _static_shadows_seen(s, normals, groups, light.direction, frame, scene, backend, seed)
        raw = shadow_visibility(s.means, quats, s.scales, s.opacities, normals, light.direction, frame, backend=backend,
                                groups=groups, static_casts=static_casts)  # fmt: skip
        vis = refine_visibility(s.means, dc_colors(s.sh), normals, raw, light, shadow_strength=shadow_strength)
        S = shading(normals, vis, light, shadow_strength)
        albedo = np.clip(dc_colors(s.sh) / np.maximum(S, 1e-3), 0.0, 4.0).astype(np.float32)
        R = quat_to_matrix(quats.astype(np.float64))
        local = np.einsum("nji,nj->ni", R, normals).astype(np.float32)  # R^T n
        cover = covered_ground(scene, groups)
        revealed = None
        if (cover >= 0).any():
            revealed = revealed_albedo(s.means, albedo, groups, cover, scene.ground.normal)
        return cls(light, frame, local, albedo, vis, S, raw, float(shadow_strength), groups, source, bool(static_casts),
                   cover, revealed)  # fmt: skip

    def normals(self, quats: np.ndarray) -> np.ndarray:  # [N, 4] current quaternions -> [N, 3]
        """World normals of the splats at their current rotations."""
        R = quat_to_matrix(np.asarray(quats, np.float64))
        return np.einsum("nij,nj->ni", R, self.normals_local).astype(np.float32)

    def with_light(self, direction=None) -> Light:
        """The capture light with a new direction (towards the light, world frame)."""
        if direction is None:
            return self.light
        return Light(direction=tuple(float(v) for v in direction), color=self.light.color,
                     intensity=self.light.intensity, ambient=self.light.ambient)  # fmt: skip

    def shade(
        self,
        means: np.ndarray,  # [N, 3] current positions
        quats: np.ndarray,  # [N, 4] current rotations
        scales: np.ndarray,  # [N, 3]
        opacities: np.ndarray,  # [N] current opacities (removed objects: 0)
        light: Light | None = None,  # default: the capture light
        *,
        backend: str | None = None,
        extra: Splats | None = None,  # spawned meshes as surface splats: they cast shadows and are lit too
    ) -> ShadeResult:
        """Visibility, normals and shading of every splat in its current state under ``light``."""
        light = light or self.light
        n = len(self.albedo)
        if np.asarray(means).shape != (n, 3):
            raise ShapeError(f"Relighting.shade: means must be [{n}, 3] (the scene's splats), got {np.shape(means)}")
        normals = self.normals(quats)
        groups = self.shadow_groups
        k = 0 if extra is None else len(extra)
        if k:  # one shadow map for everything; a mesh's normal is its splats' z axis
            extra_normals = quat_to_matrix(extra.unit_quats.astype(np.float64))[:, :, 2].astype(np.float32)
            normals = np.concatenate([normals, extra_normals])
            if groups is not None:  # the assets are one more object: a convex mesh's self-shadow is n . l < 0
                groups = np.concatenate([groups, np.full(k, max(int(groups.max(initial=0)) + 1, 0))])
        means, quats, scales, opacities = with_extra(means, quats, scales, opacities, extra)
        vis = shadow_visibility(means, quats, scales, opacities, normals, light.direction, self.frame, backend=backend,
                                groups=groups, static_casts=self.static_casts)  # fmt: skip
        extra_fields = {}
        if k:
            vis_x, normals_x = vis[n:], normals[n:]
            vis, normals = vis[:n], normals[:n]
            extra_fields = dict(extra_normals=normals_x, extra_vis=vis_x,
                                extra_shading=shading(normals_x, vis_x, light, self.shadow_strength))  # fmt: skip
        if np.allclose(light.direction, self.light.direction, atol=1e-9):
            # where the shadow map says what it said at capture, keep the refined capture visibility
            same = np.abs(vis - self.vis_map_capture) < 1e-6
            vis = np.where(same, self.vis_capture, vis).astype(np.float32)
        return ShadeResult(normals, vis, shading(normals, vis, light, self.shadow_strength), light, **extra_fields)

    def colors(self, shade: ShadeResult, view_colors: np.ndarray, dc: np.ndarray,
               moved: np.ndarray | None = None) -> np.ndarray:  # fmt: skip  # -> [N, 3]
        """Relit colour: albedo x shading now, plus the view-dependent part of the baked colour.

        With ``moved`` ([N] bool, the splats that moved), the ground that a moved object hid at
        rest takes its revealed albedo (:func:`revealed_albedo`) and loses its view-dependent
        part (fitted to nothing a camera saw).
        """
        albedo, view = self.albedo, view_colors - dc
        hidden = self.revealed(moved)
        if hidden is not None:
            albedo = np.where(hidden[:, None], self.albedo_revealed, albedo)
            view = np.where(hidden[:, None], 0.0, view)
        return np.maximum(albedo * shade.shading + view, 0.0).astype(np.float32)

    def revealed(self, moved: np.ndarray | None) -> np.ndarray | None:  # [N] bool moved -> [N] bool, or None
        """The ground splats hidden at rest by an object that has moved (None when there are none)."""
        if moved is None or self.cover is None or self.albedo_revealed is None or self.shadow_groups is None:
            return None
        moved = np.asarray(moved, bool)
        n_obj = int(self.shadow_groups.max(initial=-1)) + 1
        if n_obj <= 0 or not moved.any():
            return None
        obj = self.shadow_groups >= 0
        gone = np.bincount(self.shadow_groups[obj & moved], minlength=n_obj) > 0
        hidden = (self.cover >= 0) & gone[np.maximum(self.cover, 0)]
        return hidden if hidden.any() else None


@dataclass(frozen=True, eq=False)
class ShadeResult:
    """Per-splat lighting now (see :meth:`Relighting.shade`)."""

    normals: np.ndarray  # [N, 3] world normals
    vis: np.ndarray  # [N] visibility from the light
    shading: np.ndarray  # [N, 3] ambient + sun * vis * max(0, n.l)
    light: Light
    extra_normals: np.ndarray | None = None  # [K, 3] the same for spawned assets' splats (``shade(extra=...)``)
    extra_vis: np.ndarray | None = None  # [K]
    extra_shading: np.ndarray | None = None  # [K, 3]
