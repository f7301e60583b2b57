"""Objects of a scene for people: a contact sheet outlining each one, seeds from clicked pixels, and the
refinement of found objects with the capture views.

Rendering goes through ``render.rasterize`` (CPU backend by default) with per-pixel splat ids:
an object's outline is the boundary of the pixels whose dominant splat belongs to it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from scenes.errors import SceneError, ShapeError
from scenes.scene import Camera, Scene

__all__ = ["render_ids", "overview_camera", "object_camera", "contact_sheet", "click_seed", "object_table",
           "refine_with_views"]  # fmt: skip

_PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240],
    [240, 50, 230], [210, 245, 60], [250, 190, 190], [0, 128, 128], [230, 190, 255], [170, 110, 40], [128, 0, 0],
], np.uint8)  # fmt: skip


def render_ids(scene: Scene, camera: Camera, *, backend: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """``(image [H, W, 3] uint8, splat_ids [H, W] int64, -1 where empty)`` of the scene at rest."""
    import torch

    from render.rasterize import rasterize

    s = scene.splats
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    res = rasterize(t(s.means), t(s.unit_quats), t(s.scales), t(s.opacities), t(s.sh), t(camera.viewmat[None]),
                    t(camera.K[None]), camera.width, camera.height, backend=backend)  # fmt: skip
    image = (res.colors[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    return image, res.splat_ids[0].numpy().astype(np.int64)


def _bounds(scene: Scene) -> tuple[np.ndarray, float]:
    """Centre and radius of what matters: the objects (else the splats), robustly."""
    idx = np.concatenate([o.splat_indices for o in scene.objects]) if scene.objects else np.arange(len(scene.splats))
    pts = scene.splats.means[idx].astype(np.float64)
    if len(pts) == 0:
        raise SceneError("the scene has no splats to look at")
    lo, hi = np.percentile(pts, [1, 99], axis=0)
    return (lo + hi) / 2, max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)


def overview_camera(scene: Scene, width: int = 384, height: int = 288) -> Camera:
    """The first capture camera (scaled to ``width``), else a camera 35 degrees above the objects."""
    if scene.capture_cameras:
        cam = scene.capture_cameras[0]
        return cam.scaled(width / cam.width)
    center, radius = _bounds(scene)
    eye = center + 2.4 * radius * np.array([0.6, -0.55, 0.58])
    return Camera.look_at(eye, center, width=width, height=height, fov_y_deg=50.0)


def object_camera(scene: Scene, name: str, view: Camera, width: int = 256, height: int = 192) -> Camera:
    """A camera looking at object ``name`` from the direction of ``view``, framing its splats."""
    obj = scene.object(name)
    pts = scene.splats.means[obj.splat_indices].astype(np.float64)
    if len(pts) == 0:
        raise SceneError(f"object {name!r} has no splats to look at")
    center = (pts.min(0) + pts.max(0)) / 2
    radius = max(float(np.linalg.norm(pts.max(0) - pts.min(0))) / 2, 1e-3)
    direction = view.position - center
    direction /= max(np.linalg.norm(direction), 1e-9)
    dist = radius / np.tan(np.radians(40.0) / 2) * 1.15
    return Camera.look_at(center + dist * direction, center, width=width, height=height, fov_y_deg=40.0)


def _outline(mask: np.ndarray) -> np.ndarray:  # [H, W] bool -> [H, W] bool, 2 px thick
    from scipy.ndimage import binary_dilation, binary_erosion

    edge = mask & ~binary_erosion(mask)
    return binary_dilation(edge, iterations=1)


def _label(image: np.ndarray, text: str, color) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, 7 * len(text) + 6, 14], fill=(0, 0, 0))
    draw.text((3, 1), text, fill=tuple(int(c) for c in color))
    return np.asarray(im)


def contact_sheet(scene: Scene, path: str | Path, *, backend: str = "cpu", columns: int = 4) -> Path:
    """Write a PNG: an overview with every object outlined in its colour, then one framed tile per object."""
    from PIL import Image

    if not scene.objects:
        raise SceneError("the scene has no objects to show; find them first (hybrid objects SCENE --detect)")
    view = overview_camera(scene)
    image, ids = render_ids(scene, view, backend=backend)
    owner = np.full(len(scene.splats) + 1, -1, np.int64)  # splat -> object index; ids of -1 map to the last slot
    for k, o in enumerate(scene.objects):
        owner[o.splat_indices] = k
    who = owner[ids]
    overview = image.copy()
    for k in range(len(scene.objects)):
        overview[_outline(who == k)] = _PALETTE[k % len(_PALETTE)]
    tiles = [_label(overview, "all objects", (255, 255, 255))]
    for k, o in enumerate(scene.objects):
        cam = object_camera(scene, o.name, view)
        tile, tids = render_ids(scene, cam, backend=backend)
        tile = tile.copy()
        tile[_outline(owner[tids] == k)] = _PALETTE[k % len(_PALETTE)]
        tiles.append(_label(tile, f"{o.name}  {o.mass:.2f} kg", _PALETTE[k % len(_PALETTE)]))
    th, tw = 192, 256
    tiles = [np.asarray(Image.fromarray(t).resize((tw, th), Image.NEAREST)) for t in tiles]  # keeps outline colours
    rows = (len(tiles) + columns - 1) // columns
    sheet = np.zeros((rows * th, min(columns, len(tiles)) * tw, 3), np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = t
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path)
    return path


def click_seed(scene: Scene, camera_index: int, u: float, v: float, *, backend: str = "cpu") -> np.ndarray:
    """The world point under pixel ``(u, v)`` of capture camera ``camera_index``: its dominant splat's centre."""
    cams = scene.capture_cameras
    if not cams:
        raise SceneError("--click needs the scene's capture cameras, and this scene has none; use --object x,y,z")
    if not 0 <= camera_index < len(cams):
        raise ShapeError(
            f"--click: camera index {camera_index} out of range; the scene has {len(cams)} capture cameras"
        )
    cam = cams[camera_index]
    if not (0 <= u < cam.width and 0 <= v < cam.height):
        raise ShapeError(
            f"--click: pixel ({u}, {v}) is outside capture camera {camera_index} ({cam.width}x{cam.height})"
        )
    factor = min(1.0, 640 / cam.width)
    small = cam.scaled(factor)
    _, ids = render_ids(scene, small, backend=backend)
    col = min(int(u * factor), small.width - 1)
    row = min(int(v * factor), small.height - 1)
    sid = int(ids[row, col])
    if sid < 0:
        raise SceneError(f"--click: pixel ({u}, {v}) of capture camera {camera_index} shows no splat")
    return scene.splats.means[sid].astype(np.float64)


def object_table(scene: Scene) -> list[dict]:
    """One row per object: name, splats, mass, position, size (collider extent), friction, restitution, static."""
    rows = []
    for o in scene.objects:
        size = np.ptp(o.collider.vertices, axis=0).tolist() if o.collider is not None else None
        rows.append({"name": o.name, "splats": int(o.splat_indices.size), "mass": o.mass, "position": list(o.position),
                     "size": size, "friction": o.friction, "restitution": o.restitution, "static": o.static})  # fmt: skip
    return rows


def refine_with_views(
    scene: Scene,
    *,
    # the capture views are rendered this wide (None: their own width, at most 640). "Within a pixel" of the
    # silhouette is the tolerance: at 160 px a pixel is ~2 cm on the sample video, and ground splats beside a
    # base joined (its slab's IoU fell 0.807 -> 0.792 on one lift; at its own 320 px it rose to 0.831)
    width: int | None = None,
    max_views: int = 30,  # at most this many capture views, evenly spaced
    agree: float = 0.8,  # a splat joins an object when this fraction of the pixels it shows lies in its silhouette
    margin: float = 0.05,  # ... and it is within this fraction of the object's size of its collider
    band_reach: float = 0.02,  # on the ground plane: within this fraction of its size of the footprint
    rim_reach: float = 0.01,  # within this fraction of its size of the collider's surface ...
    agree_rim: float = 0.5,  # ... this fraction of the pixels is enough
    backend: str = "cpu",
    progress=None,  # called with (views done, views) after each view
) -> tuple[Scene, dict[str, int]]:
    """Give each object the splats that every capture view shows inside its silhouette; ``(scene, added)``.

    Clustering keeps only confident splats standing clearly above the ground, so an object's
    lowest band and its faint edge splats stay behind when it moves. A candidate (a splat of
    no object, near an object's collider) joins that object when, over all capture views, at
    least ``agree`` of the pixels where it is the dominant splat lie inside (within a pixel of)
    the object's projected collider: its own object agrees across views, while ground splats
    beside the base fall outside the silhouette from most directions. A candidate inside the
    collider, or one that no view shows (an inner or edge splat behind the object's own surface),
    joins without a vote: left behind, it would draw a ghost of the object where it stood. A
    candidate within ``rim_reach`` of the collider's surface (needle-thin edge splats, half of whose
    pixels fall outside the silhouette from any view) needs only ``agree_rim``. Splats within the
    fitted ground plane's threshold (``metadata["segmentation"]``) are candidates only when they
    stand up from the plane (or are needles) within ``band_reach`` of an object's footprint, and
    then by the vote, or without it inside the footprint: an object's bottom edges join, the floor
    under it (flat splats) stays. Colliders and masses are unchanged.
    """
    from scipy.spatial import ConvexHull, QhullError

    from physics.colliders import collider_parts
    from physics.transforms import quat_to_matrix, transform_points

    if not scene.objects or not scene.capture_cameras:
        return scene, {}
    s = scene.splats
    means = s.means.astype(np.float64)
    taken = np.zeros(len(s), bool)
    for o in scene.objects:
        taken[o.splat_indices] = True
    ground = scene.metadata.get("segmentation", {}).get("ground", {})
    above = np.ones(len(s), bool)  # above the ground plane (everything, when the scene does not know it)
    band = np.zeros(len(s), bool)  # on the ground plane, standing up from it
    footing = means  # where the footprint test looks: band splats are raised to just above the plane
    if scene.ground is not None and ground.get("threshold"):
        # The ground plane's own splats (within its threshold) stay ground, except the splats standing up
        # from it (thinnest axis over 30 degrees off its normal) and the needles at an object's footprint: the
        # object's bottom edges, which left behind draw its outline on the floor once it moves. The floor's
        # splats lie flat; round ones (no axis a quarter shorter than the longest) have no direction and stay.
        g = scene.ground
        normal = np.asarray(g.normal, np.float64)
        height = means @ normal - g.offset
        on_plane = np.abs(height) < float(ground["threshold"])
        axes = quat_to_matrix(s.unit_quats.astype(np.float64))  # [N, 3, 3], columns = the splat's axes
        order = np.argsort(s.scales, axis=1)
        lo, mid, hi = np.take_along_axis(s.scales.astype(np.float64), order, axis=1).T
        thin = np.take_along_axis(axes, order[:, None, :1], axis=2)[:, :, 0]
        upright = (lo <= 0.75 * hi) & (np.abs(thin @ normal) < np.cos(np.pi / 6))
        band = ~taken & on_plane & (upright | (hi >= 3.0 * mid))
        taken |= on_plane
        above = height > 0.0
        footing = means + np.outer(np.maximum(height, 1e-3) - height, normal)
    hulls, sizes, cand = [], [], np.full(len(s), -1, np.int64)
    best = np.full(len(s), np.inf)
    for k, o in enumerate(scene.objects):
        pose = np.r_[o.position, o.quaternion]
        world = [transform_points(pose, v) for v, _ in collider_parts(o.collider)]
        hulls.append(world)
        size = float(np.max(np.ptp(np.concatenate(world), axis=0)))
        sizes.append(size)
        dist = np.full(len(s), np.inf)
        for v in world:
            try:
                eq = ConvexHull(v).equations
            except QhullError:
                continue
            dist = np.minimum(dist, np.max(footing @ eq[:, :3].T + eq[:, 3], axis=1))  # > 0 outside, ~distance
        reach = np.where(band, band_reach * size, margin * size)
        near = (~taken | band) & (dist <= reach) & (dist < best)
        cand[near], best[near] = k, dist[near]
    idx = np.nonzero(cand >= 0)[0]
    if idx.size == 0:
        return scene, {}
    sizes = np.asarray(sizes)
    lookup = np.full(len(s) + 1, -1, np.int64)  # splat -> candidate row; id -1 maps to the last slot
    lookup[idx] = np.arange(idx.size)
    seen = np.zeros(idx.size)
    inside = np.zeros(idx.size)
    cams = scene.capture_cameras
    pick = np.unique(np.linspace(0, len(cams) - 1, min(max_views, len(cams))).round().astype(int))
    for n, i in enumerate(pick):
        cam = cams[i].scaled((width or min(cams[i].width, 640)) / cams[i].width)
        _, ids = render_ids(scene, cam, backend=backend)
        row = lookup[ids.reshape(-1)]
        hit = row >= 0
        pix = np.nonzero(hit)[0]
        rows = row[hit]
        np.add.at(seen, rows, 1.0)
        uv = np.stack([pix % cam.width + 0.5, pix // cam.width + 0.5], -1)
        own = cand[idx[rows]]
        ok = np.zeros(len(pix), bool)
        for k in np.unique(own):
            m = own == k
            ok[m] = _in_silhouette(cam, hulls[k], uv[m])
        np.add.at(inside, rows[ok], 1.0)
        if progress is not None:
            progress(n + 1, len(pick))
    # Splats on the collider's surface (its edges, drawn by needle-thin splats along the silhouette's rim)
    # show about half their pixels outside it from any view: they need only ``agree_rim``.
    rim = (best[idx] <= rim_reach * sizes[cand[idx]]) & ~band[idx]
    join = (seen >= 2) & (inside >= np.where(rim, agree_rim, agree) * seen)
    # Splats no capture view shows (inner splats, edges behind the object's own surface) cannot be judged by
    # silhouettes; left behind, they draw a ghost of the object where it stood once it moves. Inside the
    # collider, or hidden and within the margin of it, they are the object's. Not on the ground plane: there
    # only the vote counts, and the floor under the object stays (a hole once it moves is the world model's).
    join |= ((best[idx] <= 0.0) | (seen == 0)) & above[idx] & ~band[idx]  # not the ground slab's underside
    # Standing splats of the ground plane's band inside the footprint are the object's bottom edges: the floor
    # under it lies flat. A sharper lift draws those edges with more, smaller splats that straddle the
    # silhouette and fail the vote (2026-11-22, the sample densified every 60 steps: 5.4 % of the slab's
    # splats stayed behind, half of its lowest 4 cm; with this 1.7 % and 14 %).
    join |= band[idx] & (best[idx] <= 0.0)
    added, objects = {}, []
    for k, o in enumerate(scene.objects):
        new = idx[join & (cand[idx] == k)]
        added[o.name] = int(new.size)
        objects.append(o if new.size == 0 else replace(o, splat_indices=np.union1d(o.splat_indices, new)))
    return scene.with_(objects=tuple(objects)), added


def _in_silhouette(cam: Camera, pieces: list[np.ndarray], uv: np.ndarray) -> np.ndarray:
    """[P] bool: pixel centres ``uv`` [P, 2] inside the projection of any convex piece (world vertices)."""
    from scipy.spatial import ConvexHull, QhullError

    out = np.zeros(len(uv), bool)
    for v in pieces:
        p = np.c_[v, np.ones(len(v))] @ cam.viewmat.T
        if np.any(p[:, 2] <= 1e-6):  # the piece reaches behind the camera: no convex silhouette
            continue
        q = p[:, :3] @ cam.K.T
        try:
            eq = ConvexHull(q[:, :2] / q[:, 2:3]).equations
        except QhullError:
            continue
        out |= np.all(uv @ eq[:, :2].T + eq[:, 2] <= 1.0, axis=1)  # within a pixel: edge splats straddle it
    return out
