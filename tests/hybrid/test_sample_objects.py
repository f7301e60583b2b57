"""The sample video lifted end to end, then its objects found and pushed, against its ground truth.

``assets/sample.mp4`` is rendered by ``tools/make_sample_video.py`` from a known scene whose
objects, ground plane and per-frame cameras are in ``assets/sample_gt.json``. The sample is
lifted ONCE for this module (``hybrid demo``, a few minutes on 2 cores), so every test that
needs the lift lives here. ``HYBRID_SAMPLE_LIFT=DIR`` reuses a folder made by
``hybrid demo -o DIR`` instead (for development; the demo run's own checks then read its report).

The lifted frame is the SfM frame aligned to gravity and metric scale from the camera height;
a similarity (Umeyama) from the lifted capture cameras' centres to the true ones maps it onto
the ground-truth frame. Objects are compared on what a lift can observe: the centre of a box's
horizontal extent and the height of its top face (the bottom face is never seen), and per pixel:
the capture views rendered with splat ids against the true boxes' silhouettes (PyBullet rays).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("pycolmap")
pytest.importorskip("pybullet")
pytest.importorskip("trimesh")

from hybrid.lift.align import fit_similarity  # noqa: E402
from hybrid.objects import refine_with_views, render_ids  # noqa: E402
from physics import PhysicsWorld, segment_scene  # noqa: E402
from scenes import load_scene  # noqa: E402
from scenes.scene import Camera  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
GT = json.loads((ROOT / "assets" / "sample_gt.json").read_text())

XY_TOL = 0.03  # m: centre of an object's horizontal extent (the crate is 0.6 m wide; measured <= 1.1 cm)
TOP_TOL = 0.03  # m: height of its top face (measured <= 1.0 cm)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``(completed process or None, folder)`` of the sample lifted by ``hybrid demo``."""
    reuse = os.environ.get("HYBRID_SAMPLE_LIFT")
    if reuse:
        return None, Path(reuse)
    out = tmp_path_factory.mktemp("sample") / "demo"
    r = subprocess.run([sys.executable, "-m", "hybrid.cli", "demo", "-o", str(out)], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    return r, out


@pytest.fixture(scope="module")
def found(demo):
    """``(lifted scene, segmented scene, to_gt)`` with ``to_gt(points)`` mapping lifted points to the true frame."""
    r, folder = demo
    if r is not None and r.returncode != 0:
        pytest.fail(f"hybrid demo failed: {r.stderr[-3000:]}")
    scene = load_scene(folder)
    true_centres = np.array([Camera.from_dict(c).position for c in GT["cameras"]])
    frame = [int(re.search(r"(\d+)", c.name).group(1)) for c in scene.capture_cameras]
    s, R, t = fit_similarity(np.array([c.position for c in scene.capture_cameras]), true_centres[frame])
    return scene, segment_scene(scene), (s, R, t)


def _to_gt(sim, points: np.ndarray) -> np.ndarray:
    s, R, t = sim
    return s * np.asarray(points, np.float64) @ R.T + t


def _true_boxes() -> dict[str, tuple[np.ndarray, float]]:
    """name -> (centre xy, top height) of each true box (yawed about z only)."""
    return {o["name"]: (np.array(o["position"][:2]), o["position"][2] + o["half_extents"][2]) for o in GT["objects"]}


def _observed(scene, obj, sim) -> tuple[np.ndarray, float, float]:
    """(centre xy of the horizontal extent, top height, bottom height) of a found object, in the true frame."""
    pts = _to_gt(sim, scene.splats.means[obj.splat_indices])
    lo, hi = np.percentile(pts, [2, 98], axis=0)
    return (lo[:2] + hi[:2]) / 2, float(hi[2]), float(lo[2])


def _match(scene, segmented, sim) -> dict[str, str]:
    """true name -> found object name, nearest centre first, one to one."""
    truth = _true_boxes()
    seen = {o.name: _observed(scene, o, sim) for o in segmented.objects}
    pairs = sorted((np.linalg.norm(seen[f][0] - c) + abs(seen[f][1] - top), g, f)
                   for g, (c, top) in truth.items() for f in seen)  # fmt: skip
    out, used = {}, set()
    for _, g, f in pairs:
        if g not in out and f not in used:
            out[g] = f
            used.add(f)
    return out


@pytest.mark.slow
def test_demo_lifts_the_sample_video(demo):
    """The product target: the sample video with --preset fast (see tools/bench/lift.py for timings)."""
    r, folder = demo
    if r is not None:
        assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((folder / "report.json").read_text())
    assert report["heldout"]["psnr"] >= 27.0
    assert report["frames"]["registered"] == 60
    assert report["peak_memory_mb"] <= 4096
    scene = load_scene(folder)
    assert scene.ground is not None and len(scene.capture_cameras) == 60
    heights = [c.position[2] for c in scene.capture_cameras]
    assert np.median(heights) == pytest.approx(2.2, abs=0.02)


@pytest.mark.slow
def test_objects_found_match_the_true_objects(found):
    scene, segmented, sim = found
    s, R, _ = sim
    assert s == pytest.approx(1.0, abs=0.02)  # the lift's metric scale (camera height) is right to 2%
    assert np.degrees(np.arccos(np.clip(R[:, 2] @ [0, 0, 1], -1, 1))) < 2.0  # and its "up" is the true up
    truth = _true_boxes()
    assert len(segmented.objects) == len(truth)  # crate, tower, slab and the cube resting on the crate
    match = _match(scene, segmented, sim)
    assert len(match) == len(truth)
    for name, (centre, top) in truth.items():
        got_xy, got_top, got_bottom = _observed(scene, segmented.object(match[name]), sim)
        assert np.linalg.norm(got_xy - centre) <= XY_TOL, (name, got_xy, centre)
        assert abs(got_top - top) <= TOP_TOL, (name, got_top, top)
    # the cube is its own object resting on the crate: its lowest splats are near the crate's top
    _, _, cube_bottom = _observed(scene, segmented.object(match["cube"]), sim)
    assert cube_bottom == pytest.approx(truth["crate"][1], abs=0.06)
    # and the colliders stand where the objects do: on the ground, or on the crate for the cube
    for name in ("crate", "tower", "slab"):
        obj = segmented.object(match[name])
        lo = _to_gt(sim, obj.collider.vertices + np.asarray(obj.position)).min(0)
        assert abs(lo[2]) <= 0.02, (name, lo)


@pytest.mark.slow
def test_colliders_hold_the_true_boxes_volume(found):
    """Each collider's volume (mass / density) is its true box's, to 25 %; it reaches no more than 12 cm past it.

    The collider is the hull of the object's splats: floaters chained to a base stretched it. On
    one lift (2026-11-23) the crate's hull reached 25 cm past two sides (the tower's 19 cm) and
    held 1.45x the box's volume (tower 1.24x, slab 1.18x); with the chained floaters dropped:
    crate 1.09x, tower 1.04x, slab 1.01x, cube 0.86x (resting on the crate, its collider starts at
    the crate's top), reaching at most 9 cm past (one splat by the crate's base; on 27 lifts of
    box worlds at most 12.5 cm, 2.6 cm on average). On a later lift (2026-11-23, same code, newer
    packages) the cube's hull reached 12.2 cm past it: 7 of the crate's top splats stood above the
    stack's cut and went with the cube; given back to the crate (``_stray_top``), 5.0 cm.
    """
    from physics import SegmentConfig
    from physics.colliders import collider_parts
    from physics.transforms import quat_to_matrix, transform_points

    scene, segmented, sim = found
    density = SegmentConfig().density
    for o in GT["objects"]:
        obj = segmented.object(_match(scene, segmented, sim)[o["name"]])
        half = np.asarray(o["half_extents"])
        volume = obj.mass / density / sim[0] ** 3  # in the true frame's metres
        assert volume == pytest.approx(8 * np.prod(half), rel=0.25), (o["name"], volume, 8 * np.prod(half))
        world = np.concatenate([transform_points(np.r_[obj.position, obj.quaternion], v)
                                for v, _ in collider_parts(obj.collider)])  # fmt: skip
        local = (_to_gt(sim, world) - o["position"]) @ quat_to_matrix(np.asarray(o["quaternion"], np.float64))
        assert float(np.max(np.abs(local) - half)) <= 0.12, (o["name"], np.abs(local).max(0) - half)


def _true_labels(cam: Camera, names: list[str]) -> np.ndarray:
    """[H, W] index into ``names`` of the true box each pixel of ``cam`` sees, -1 for the ground."""
    import pybullet as p

    c = p.connect(p.DIRECT)
    try:
        body = {}
        for o in GT["objects"]:
            w, x, y, z = o["quaternion"]
            shape = p.createCollisionShape(p.GEOM_BOX, halfExtents=o["half_extents"], physicsClientId=c)
            uid = p.createMultiBody(0, shape, basePosition=o["position"], baseOrientation=[x, y, z, w],
                                    physicsClientId=c)  # fmt: skip
            body[uid] = names.index(o["name"])
        c2w = np.linalg.inv(cam.viewmat)
        v, u = np.mgrid[0 : cam.height, 0 : cam.width] + 0.5
        rays = np.stack([(u - cam.K[0, 2]) / cam.K[0, 0], (v - cam.K[1, 2]) / cam.K[1, 1], np.ones_like(u)], -1)
        ends = c2w[:3, 3] + 20.0 * rays.reshape(-1, 3) @ c2w[:3, :3].T
        hits = []
        for a in range(0, len(ends), 8000):
            chunk = ends[a : a + 8000]
            starts = np.broadcast_to(c2w[:3, 3], chunk.shape)
            hits += p.rayTestBatch(starts.tolist(), chunk.tolist(), physicsClientId=c)
        return np.array([body.get(h[0], -1) for h in hits]).reshape(cam.height, cam.width)
    finally:
        p.disconnect(physicsClientId=c)


def _iou(scene, segmented, match, views) -> dict[str, float]:
    """Per true object: IoU of the pixels whose dominant splat is its found object's and its true silhouette."""
    names = list(match)
    owner = np.full(len(scene.splats) + 1, -1)
    for k, g in enumerate(names):
        owner[segmented.object(match[g]).splat_indices] = k
    inter, union = np.zeros(len(names)), np.zeros(len(names))
    for i, truth in views:
        _, ids = render_ids(segmented, scene.capture_cameras[i].scaled(0.5))
        got = owner[ids]
        for k in range(len(names)):
            inter[k] += np.sum((got == k) & (truth == k))
            union[k] += np.sum((got == k) | (truth == k))
    return dict(zip(names, inter / union, strict=True))


@pytest.mark.slow
def test_refinement_with_the_capture_views_covers_the_true_silhouettes_better(found):
    scene, segmented, sim = found
    match = _match(scene, segmented, sim)
    frame = [int(re.search(r"(\d+)", c.name).group(1)) for c in scene.capture_cameras]
    true_cams = [Camera.from_dict(GT["cameras"][f]).scaled(0.5) for f in frame]
    views = [(i, _true_labels(true_cams[i], list(match))) for i in range(0, len(frame), 6)]  # 10 of 60 views
    before = _iou(scene, segmented, match, views)
    refined, added = refine_with_views(segmented)
    after = _iou(scene, refined, match, views)
    # measured on 8 lifts (seeds 0-5; the lift repeats bit for bit on one machine, but not necessarily across CPUs):
    # before 0.73-0.90, after 0.78-0.91 (+0.015 to +0.033 on average). The thin slab is the weakest: 0.73-0.81
    # -> 0.78-0.86 (0.65-0.86 after, before large debris beside its base was dropped from its cluster; at 160 px
    # instead of the capture's 320, ground splats beside its base joined it: 0.807 -> 0.792 on one lift).
    assert sum(added.values()) > 0
    for name in match:
        assert after[name] >= 0.7, (name, after)
        assert after[name] >= before[name] - 0.005, (name, before, after)
    assert np.mean(list(after.values())) >= np.mean(list(before.values())) + 0.01, (before, after)
    for o in refined.objects:  # colliders and masses are untouched: only splats join
        assert o.mass == segmented.object(o.name).mass
        assert np.isin(segmented.object(o.name).splat_indices, o.splat_indices).all()


@pytest.mark.slow
def test_refinement_leaves_no_outline_of_an_object_on_the_floor(found):
    """The splats inside each true box (and 1.5 cm around it) go with their object, bottom edges included.

    Left with the ground, they draw the object's outline where it stood once it is pushed away: its dark
    bottom edges sit within the ground plane's threshold, where clustering leaves everything to the ground.
    """
    from physics.transforms import quat_to_matrix

    scene, segmented, sim = found
    match = _match(scene, segmented, sim)
    refined, _ = refine_with_views(segmented)
    points = _to_gt(sim, scene.splats.means)
    opaque = scene.splats.opacities.reshape(-1) > 0.05
    for o in GT["objects"]:
        local = (points - o["position"]) @ quat_to_matrix(np.asarray(o["quaternion"], np.float64))
        inside = np.all(np.abs(local) <= np.asarray(o["half_extents"]) + 0.015, axis=1) & opaque
        near_floor = inside & (local[:, 2] < -o["half_extents"][2] + 0.04)  # its lowest 2.5 cm
        left = inside & ~np.isin(np.arange(len(points)), refined.object(match[o["name"]]).splat_indices)
        # measured on the demo lift (crate, tower, slab, cube): left 1.5 / 0.4 / 1.7 / 3.1 % of the splats inside,
        # of the lowest 4 cm of the three on the floor 10 / 2 / 14 % (2026-11-22, densified every 60 steps; with
        # every 100 and standing band splats inside the footprint joining only by vote: 2.3 / 1.0 / 3.7 / 3.6 % and
        # 22 / 25 / 39 %; before the ground plane's standing splats could join at all: 4.9 / 2.9 / 8.0 / 3.6 %
        # and 88 / 82 / 83 %)
        assert left.sum() <= 0.05 * inside.sum(), (o["name"], int(left.sum()), int(inside.sum()))
        if o["position"][2] - o["half_extents"][2] < 0.01:  # standing on the floor (the cube is on the crate)
            low = int((left & near_floor).sum())
            assert low <= 0.5 * near_floor.sum(), (o["name"], low, int(near_floor.sum()))


@pytest.mark.slow
def test_a_push_moves_the_object_it_hits_and_no_other(found):
    scene, segmented, sim = found
    _, R, _ = sim
    match = _match(scene, segmented, sim)
    world = PhysicsWorld(segmented)
    world.step(0.5)  # settle: lifted colliders are not exactly at rest
    start = {g: world.pose(f)[:3].copy() for g, f in match.items()}
    tower = match["tower"]
    direction = R.T @ np.array([0.0, 1.0, 0.0])  # true +y: away from the other objects
    direction[2] = 0.0
    direction /= np.linalg.norm(direction)
    # a ray at the tower's mid height from 1 m behind it finds the point on its face to push
    hit = world.pick(start["tower"] - direction, direction)
    assert hit is not None and hit.name == tower
    speed = 2.0  # m/s: slides ~0.4 m on friction 0.6 x 0.8 if it stays upright; it may also tip over
    assert world.push(hit.point, speed * world.dynamics(tower)[0] * direction) == tower
    world.step(1.0)
    moved = {g: _to_gt(sim, world.pose(f)[:3]) - _to_gt(sim, start[g]) for g, f in match.items()}
    along = moved["tower"][:2] @ [0.0, 1.0]
    assert along > 0.1, moved["tower"]  # slid (or toppled) in the direction of the impulse
    assert along >= 0.8 * np.linalg.norm(moved["tower"][:2]), moved["tower"]
    for g in ("crate", "slab", "cube"):
        assert np.linalg.norm(moved[g]) < 0.01, (g, moved[g])


@pytest.mark.slow
def test_the_demo_brings_the_lifted_sample_to_life(demo, found):
    """``hybrid demo`` goes on after the lift: objects, the world model's light, a push filmed with it on."""
    import av

    from hybrid.world_model import WEIGHTS_NAME

    r, folder = demo
    if r is None:
        pytest.skip("HYBRID_SAMPLE_LIFT reuses a lift; the demo's own outputs are checked on a fresh one")
    scene, _, sim = found  # the scene as the demo saved it, with its objects
    assert len(scene.objects) == len(GT["objects"])
    assert (folder / "objects.png").is_file()
    assert (folder / "weights" / f"{WEIGHTS_NAME}.safetensors").is_file()
    push = folder / "push"
    frames = json.loads((push / "poses.json").read_text())["frames"]
    with av.open(str(push / "simulation.mp4")) as video:
        assert sum(1 for _ in video.decode(video=0)) == len(frames)
    for name in ("t0.00_c0.png", "t2.50_c0.png", "t0.00_c1.png", "t2.50_c1.png", "compare.png",
                 "engine_only/t2.50_c0.png"):  # fmt: skip
        assert (push / name).is_file()
    # the tallest object standing on the ground is the tower: it moves, the others stay where they are
    match = _match(scene, scene, sim)
    first, last = frames[0]["objects"], frames[-1]["objects"]
    for true_name, name in match.items():
        moved = np.linalg.norm(_to_gt(sim, last[name]["position"]) - _to_gt(sim, first[name]["position"]))
        if true_name == "tower":
            assert moved > 0.2, moved
        else:  # not even by the world model's 3 mm: the cube tipped 7.5 mm on its crate before objects were settled
            assert moved < 0.003, (true_name, moved)


@pytest.mark.slow
def test_the_light_direction_is_recovered_from_the_lifted_objects_faces(found):
    """The world model's light estimate on a real lift: the sample's sun (76 degrees high) from its boxes.

    The lifted boxes' cast shadows are blobby and short under a high sun (scored by shadows alone,
    the estimate pointed 78 degrees away); the faces' brightness under their collider normals
    pins the direction down: 2.1-7.2 degrees on 8 lifts (seeds 0-5). It was 3.1-17.5 with each
    face's plain median splat colour and cast shadows refining the faces' answer.
    """
    from hybrid.world_model import Relighting

    _, segmented, sim = found
    _, R, _ = sim
    rel = Relighting.fit(segmented)
    truth = R.T @ np.asarray(GT["light"]["direction"])  # into the lifted frame
    got = np.asarray(rel.light.direction)
    assert np.degrees(np.arccos(np.clip(got @ truth / np.linalg.norm(truth), -1, 1))) < 12.0
    assert np.all(np.asarray(rel.light.color) > 0.1)  # a directional light, not ambient only
