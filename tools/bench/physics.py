"""Benchmarks of the physics path (no rasterization).

1. Per rendered frame: ``PhysicsWorld.step(1/fps)`` plus ``SplatRig.apply`` for a scene of
   ``--objects`` boxes carrying ``--splats`` splats (SH degree 3), every object moving
   (thrown and tumbling). Target: <= 5 ms per frame on a 2-core CPU.
2. Segmentation + colliders (``physics.segment_scene``) on a synthetic scene of a ground
   and ``--seg-objects`` boxes and balls. Target: <= 20 s.
3. With ``--scene DIR`` (a lifted scene, e.g. ``hybrid demo -o DIR``): segmentation + colliders
   on it, then the refinement with its capture views (``hybrid.objects.refine_with_views``,
   cpu rasterizer). Target for the sample scene: <= 20 s together.

    python tools/bench/physics.py [--splats 300000] [--objects 20] [--frames 60] [--scene DIR]

Prints medians and the machine; nothing is written.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from physics import PhysicsWorld, SegmentConfig, SplatRig, segment_scene  # noqa: E402
from scenes import ColliderMesh, Ground, Scene, SceneObject, Splats  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba
    import pybullet  # noqa: F401

    return (f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cpus, python {platform.python_version()}, "
            f"numpy {np.__version__}, numba {numba.__version__}")  # fmt: skip


def box_surface(size, n, rng) -> np.ndarray:  # n points on the surface of a centred box
    size = np.asarray(size, float)
    areas = np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]]).repeat(2)
    face = rng.choice(6, size=n, p=areas / areas.sum())
    pts = rng.uniform(-0.5, 0.5, size=(n, 3)) * size
    axis = face // 2
    pts[np.arange(n), axis] = np.where(face % 2, 0.5, -0.5) * size[axis]
    return pts


def box_collider(size) -> ColliderMesh:
    import trimesh

    return ColliderMesh(*(lambda m: (m.vertices, m.faces))(trimesh.creation.box(size)))


def frame_scene(n_splats: int, n_objects: int, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    per = n_splats // n_objects
    cols = int(np.ceil(np.sqrt(n_objects)))
    objects, means = [], []
    for k in range(n_objects):
        size = rng.uniform(0.1, 0.25, size=3)
        pos = np.array([(k % cols) * 0.6, (k // cols) * 0.6, size[2] / 2 + 0.001])
        means.append(box_surface(size, per, rng) + pos)
        objects.append(SceneObject(f"box{k}", np.arange(k * per, (k + 1) * per), box_collider(size), mass=1.0,
                                   position=tuple(pos)))  # fmt: skip
    n = per * n_objects
    splats = Splats(np.concatenate(means), rng.normal(size=(n, 4)), np.full((n, 3), -5.0), np.full(n, 3.0),
                    rng.normal(scale=0.2, size=(n, 16, 3)))  # fmt: skip
    return Scene(splats, objects=tuple(objects), ground=Ground())


def bench_frames(n_splats: int, n_objects: int, frames: int, fps: float, sh_mode: str) -> dict:
    scene = frame_scene(n_splats, n_objects)
    world = PhysicsWorld(scene)
    rest = np.array([[*o.position, *o.quaternion] for o in scene.objects])
    rig = SplatRig(scene.splats, [o.splat_indices for o in scene.objects], rest, sh_mode=sh_mode)
    rig.apply(rest + np.array([1e-3, 0, 0, 0, 0, 0, 0]))  # compile / warm up
    rng = np.random.default_rng(1)
    for name in world.names:  # throw everything: all bodies move for the whole run
        world.set_velocity(name, [*rng.uniform(-1.5, 1.5, 2), rng.uniform(2, 4)], rng.uniform(-6, 6, 3))
    step_t, apply_t, moving = [], [], []
    last = world.body_poses()
    for _ in range(frames):
        t0 = time.perf_counter()
        world.step(1.0 / fps)
        poses = world.body_poses()
        t1 = time.perf_counter()
        rig.apply(poses)
        t2 = time.perf_counter()
        step_t.append(t1 - t0)
        apply_t.append(t2 - t1)
        moving.append(int(np.any(np.abs(poses - last) > 1e-6, axis=1).sum()))
        last = poses
    colors_t = []
    if sh_mode == "view_dir":
        for _ in range(5):
            t0 = time.perf_counter()
            rig.colors(np.array([3.0, -3.0, 2.0]))
            colors_t.append(time.perf_counter() - t0)
    total = [a + b for a, b in zip(step_t, apply_t, strict=True)]
    ms = lambda xs: 1000 * statistics.median(xs)  # noqa: E731
    return {"step": ms(step_t), "apply": ms(apply_t), "total": ms(total),
            "p90": 1000 * float(np.percentile(total, 90)), "best": 1000 * min(total), "moving": statistics.median(moving),
            "colors": ms(colors_t) if colors_t else None}  # fmt: skip


def seg_scene(n_objects: int, per_object: int, ground_splats: int, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    half = 0.25 * n_objects**0.5 + 0.5
    g = rng.uniform(-half, half, size=(ground_splats, 2))
    parts = [np.stack([g[:, 0], g[:, 1], rng.normal(scale=1e-3, size=ground_splats)], -1)]
    cols = int(np.ceil(np.sqrt(n_objects)))
    for k in range(n_objects):
        size = rng.uniform(0.08, 0.3, size=3)
        pos = np.array([(k % cols) * 0.5 - half + 0.4, (k // cols) * 0.5 - half + 0.4, size[2] / 2])
        pts = box_surface(size, per_object, rng)
        parts.append(pts[pts[:, 2] > -size[2] / 2 + 1e-6] + pos)  # no bottom face
    parts.append(rng.uniform([-half, -half, 0.0], [half, half, 1.0], size=(2000, 3)))  # haze
    means = np.concatenate(parts)
    n = len(means)
    opac = np.full(n, 0.9)
    opac[-2000:] = 0.05
    return Scene(Splats.from_activated(means, rng.normal(size=(n, 4)), np.full((n, 3), 0.004), opac,
                                       rng.uniform(0.2, 0.8, (n, 3))))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splats", type=int, default=300_000)
    ap.add_argument("--objects", type=int, default=20)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seg-objects", type=int, default=10)
    ap.add_argument("--seg-splats-per-object", type=int, default=8000)
    ap.add_argument("--seg-ground-splats", type=int, default=120_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scene", type=Path, default=None, help="a lifted scene folder to segment and refine")
    args = ap.parse_args()
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}")
    print(f"frame: {args.objects} objects, {args.splats} splats (SH degree 3), {args.frames} frames at {args.fps:g} fps, "
          f"240 Hz physics = {240 / args.fps:g} steps a frame (target <= 5 ms/frame)")  # fmt: skip
    for mode in ("view_dir", "rotate_sh"):
        r = bench_frames(args.splats, args.objects, args.frames, args.fps, mode)
        extra = f", per-camera colours {r['colors']:.2f} ms" if r["colors"] is not None else ""
        print(f"  sh_mode={mode:9s}: step {r['step']:.2f} ms + splat update {r['apply']:.2f} ms = "
              f"{r['total']:.2f} ms median (p90 {r['p90']:.2f}, best {r['best']:.2f}), {r['moving']:.0f} bodies moving{extra}")  # fmt: skip
    scene = seg_scene(args.seg_objects, args.seg_splats_per_object, args.seg_ground_splats)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = segment_scene(scene, SegmentConfig())
        times.append(time.perf_counter() - t0)
    print(
        f"segmentation + colliders: {len(scene.splats)} splats -> {len(out.objects)} objects "
        f"(expected {args.seg_objects}) in {statistics.median(times):.2f} s median of {args.repeats} (target <= 20 s)"
    )
    if args.scene is not None:
        bench_scene(args.scene, args.repeats)


def bench_scene(folder: Path, repeats: int) -> None:
    from hybrid.objects import refine_with_views
    from scenes import load_scene

    scene = load_scene(folder)
    seg_t, ref_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        found = segment_scene(scene, SegmentConfig())
        t1 = time.perf_counter()
        _, added = refine_with_views(found)
        t2 = time.perf_counter()
        seg_t.append(t1 - t0)
        ref_t.append(t2 - t1)
    seg, ref = statistics.median(seg_t), statistics.median(ref_t)
    print(f"{folder}: {len(scene.splats)} splats -> {len(found.objects)} objects; segmentation + colliders "
          f"{seg:.2f} s + refinement with {min(30, len(scene.capture_cameras))} capture views {ref:.2f} s "
          f"({sum(added.values())} splats joined) = {seg + ref:.2f} s median of {repeats} (target <= 20 s)")  # fmt: skip


if __name__ == "__main__":
    main()
