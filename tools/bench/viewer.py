"""Viewer/compositor benchmark: frames per second of the GL renderer, headless (EGL).

    python tools/bench/viewer.py [--width 1280 --height 720] [--splats 100000] [--scene FILE|FOLDER]
                                 [--path gl|raster|cpu|all] [--frames 40] [--turn 0.2] [--sh-degree 3]
                                 [--splat-scale 1.0 | --splat-budget-ms MS] [--physics [--objects 20]]

Targets (compositor issue): CPU machine (llvmpipe, 2 cores) 1280x720 with 100k splats >= 10 FPS with
physics running; GPU machine 1920x1080 with 1M splats >= 120 FPS on the GL-splat path (and the
raster-image path reported). The camera orbits by ``--turn`` degrees a frame (so the CPU depth sort
is redone every few frames, as in a viewer); a ground plane and a box with a shadow are drawn too.
Each frame ends with ``ctx.finish()``. Prints medians and the machine; rendering only, unless
``--physics`` adds the viewer's whole frame with physics running (``bench_physics``).

Paths: ``gl`` (instanced GL quads), ``raster`` (``render.rasterize`` image), ``cpu`` (numba compositing
on the CPU, :mod:`render.gl.cpu_splats`). The cpu path can composite the splats at a lower internal
resolution (``--splat-scale``, or ``--splat-budget-ms`` to let the renderer choose it each frame) and
upscale them over the full-resolution meshes; the output and the internal splat resolution are both
printed. Meshes are always drawn at the output resolution.
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
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the project's commands: no spinning numba threads

from _machine import cpu_model  # noqa: E402  (tools/bench/ is on sys.path when run as a script)

from render.gl import Renderer, RenderSettings, box_mesh, create_context, look_at, plane_mesh  # noqa: E402
from scenes import Splats  # noqa: E402


def make_splats(n: int, sh_degree: int, seed: int = 0) -> Splats:
    """A trained-scene-like cloud: a 4 m wide blob, log-scales around -4.5 (1 cm), mixed opacities."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    k = (sh_degree + 1) ** 2
    sh = np.concatenate([rng.normal(0, 1, (n, 1, 3)), rng.normal(0, 0.1, (n, k - 1, 3))], axis=1)
    return Splats(
        (rng.normal(0, 1.0, (n, 3)) * [1.2, 1.2, 0.6] + [0, 0, 0.8]).astype(f32),
        rng.standard_normal((n, 4), dtype=f32),
        rng.normal(-4.5, 0.7, (n, 3)).astype(f32),
        rng.normal(0.0, 2.0, n).astype(f32),
        sh.astype(f32),
    )


def load_splats(path: Path, n: int | None) -> Splats:
    from scenes import load_scene
    from scenes.formats import read_splats

    splats = load_scene(path, load_weights=False).splats if path.is_dir() else read_splats(path)
    if n is not None and n < len(splats):
        splats = splats.subset(np.random.default_rng(0).choice(len(splats), n, replace=False))
    return splats


def bench(ctx, splats: Splats, args, path: str) -> dict:
    settings = RenderSettings(splat_path=path, raster_backend=args.raster_backend, **splat_settings(args, path))
    lo, hi = np.percentile(splats.means, 5, axis=0), np.percentile(splats.means, 95, axis=0)
    center = (lo + hi) / 2
    radius = 1.3 * float(np.linalg.norm(hi - lo))
    K = np.array([[0.9 * args.width, 0, args.width / 2], [0, 0.9 * args.width, args.height / 2], [0, 0, 1.0]])
    times, sorts, sizes = [], [], []
    with Renderer(ctx, args.width, args.height, settings) as r:
        r.set_splats(splats)
        r.add_mesh(plane_mesh((radius, radius), (center[0], center[1], lo[2])))
        r.add_mesh(box_mesh((0.3, 0.3, 0.3), center + [0.4 * radius, 0, 0]))
        for i in range(args.warmup + args.frames):
            az = np.radians(args.turn * i)
            eye = center + radius * np.array([np.cos(az), np.sin(az), 0.35])
            count = r.splat_layer.sort_count
            t = time.perf_counter()
            r.render(look_at(eye, center), K)
            ctx.finish()
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
                sorts.append(r.splat_layer.sort_count > count)
                sizes.append(r.splat_size if path == "cpu" else (args.width, args.height))
        if args.save:
            from PIL import Image

            Image.fromarray(r.read().to_uint8()).save(args.save.with_name(f"{args.save.stem}_{path}{args.save.suffix}"))
    sorted_t = [t for t, s in zip(times, sorts, strict=True) if s]
    unsorted_t = [t for t, s in zip(times, sorts, strict=True) if not s]
    med = statistics.median(times)
    return {
        "median_ms": 1000 * med,
        "fps": 1 / med,
        "sorted_ms": 1000 * statistics.median(sorted_t) if sorted_t else float("nan"),
        "unsorted_ms": 1000 * statistics.median(unsorted_t) if unsorted_t else float("nan"),
        "sort_fraction": float(np.mean(sorts)) if path == "gl" else float("nan"),
        "splat_size": _median_size(sizes),
    }


def splat_settings(args, path: str) -> dict:
    """RenderSettings fields for the internal splat resolution (cpu path only)."""
    if path != "cpu":
        return {}
    out = {"splat_scale": args.splat_scale, "splat_budget_ms": args.splat_budget_ms}
    if args.splat_budget_ms is not None:
        out["min_splat_scale"] = min(args.min_splat_scale, args.splat_scale)
    return out


def _median_size(sizes) -> str:
    w = sorted(s[0] for s in sizes)[len(sizes) // 2]
    h = sorted(s[1] for s in sizes)[len(sizes) // 2]
    lo, hi = min(sizes), max(sizes)
    return f"{w}x{h}" if lo == hi else f"{w}x{h} (median; {lo[0]}x{lo[1]}..{hi[0]}x{hi[1]})"


def bench_physics(ctx, args, path: str) -> dict:
    """The viewer's whole frame with physics running: ``hybrid.viewer.ViewerSession`` tick + sync + render.

    Scene: ``--objects`` boxes carrying ``--splats`` SH-3 splats in all (``tools/bench/physics.py``'s
    scene), thrown up and spun every second so that every object keeps moving; the camera frames
    them and orbits by ``--turn`` degrees a frame. Rendered at ``--width`` x ``--height`` (no
    whole-frame downscaling), with the splat path ``path`` (cpu: at the internal splat scale or budget).
    """
    import importlib.util

    from hybrid.viewer import ViewerSession, ViewerSettings

    spec = importlib.util.spec_from_file_location("bench_physics", Path(__file__).with_name("physics.py"))
    bench_physics_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_physics_module)
    scene = bench_physics_module.frame_scene(args.splats, args.objects)
    vs = ViewerSettings(render_scale=1.0, splat_path=path, **splat_settings(args, path))
    session = ViewerSession(scene, ctx, (args.width, args.height), vs)
    rng = np.random.default_rng(0)
    phys = session.world.physics
    dt = 1 / 30
    session.frame_view()
    session.camera.update(1.0)
    totals, parts, sizes, layer = [], {"physics": [], "splats": [], "render": []}, [], []
    try:
        for i in range(args.warmup + args.frames):
            if i % 30 == 0:  # throw everything again
                for name in phys.names:
                    phys.set_velocity(name, linear=[*rng.normal(0, 0.5, 2), 3.0], angular=rng.normal(0, 4, 3))
            session.camera.look(-args.turn / np.degrees(session.camera.config.look_sensitivity), 0)
            t0 = time.perf_counter()
            session.tick(dt)
            t1 = time.perf_counter()
            session.sync()
            t2 = time.perf_counter()
            session.render()  # ends with ctx.finish()
            t3 = time.perf_counter()
            if i >= args.warmup:
                totals.append(t3 - t0)
                r = session.renderer
                sizes.append(r.splat_size if path == "cpu" else (r.width, r.height))
                layer.append(r.splat_ms if path == "cpu" else float("nan"))
                for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    parts[key].append(value)
        if args.save:
            from PIL import Image

            Image.fromarray(session.read_render()).save(
                args.save.with_name(f"{args.save.stem}_physics{args.save.suffix}")
            )
    finally:
        session.release()
    med = statistics.median(totals)
    return {
        "median_ms": 1000 * med,
        "fps": 1 / med,
        **{f"{k}_ms": 1000 * statistics.median(v) for k, v in parts.items()},
        "splat_size": _median_size(sizes),
        "layer_ms": statistics.median(layer),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--splats", type=int, default=100_000)
    p.add_argument("--sh-degree", type=int, default=3)
    p.add_argument("--scene", type=Path, default=None, help="splat file or scene folder (subsampled to --splats)")
    p.add_argument("--path", choices=["gl", "raster", "cpu", "both", "all"], default="gl",
                   help="splat path(s) to time; both = gl and raster, all = gl, raster and cpu")  # fmt: skip
    p.add_argument("--splat-scale", type=float, default=1.0,
                   help="cpu path: internal splat resolution / output resolution (0, 1]")  # fmt: skip
    p.add_argument("--splat-budget-ms", type=float, default=None,
                   help="cpu path: choose the splat scale each frame to keep the splat layer within this time")  # fmt: skip
    p.add_argument("--min-splat-scale", type=float, default=0.25, help="cpu path with a budget: lowest scale")
    p.add_argument("--raster-backend", default=None)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--turn", type=float, default=0.2, help="degrees of orbit per frame")
    p.add_argument("--save", type=Path, default=None, help="save the last frame as a PNG (suffixed by path)")
    p.add_argument("--physics", action="store_true", help="also time the viewer's frame with physics running")
    p.add_argument("--objects", type=int, default=20, help="--physics: number of moving objects")
    args = p.parse_args()

    ctx = create_context("egl")
    splats = load_splats(args.scene, args.splats) if args.scene else make_splats(args.splats, args.sh_degree)
    print(f"machine: {cpu_model()}, {platform.machine()}, GL: {ctx.info['GL_RENDERER']} ({ctx.info['GL_VERSION']})")
    source = args.scene or f"synthetic SH{args.sh_degree}"
    print(f"scene: {len(splats)} splats ({source}, SH degree {splats.sh_degree}), {args.width}x{args.height}, "
          f"{args.frames} frames, orbit {args.turn} deg/frame, + plane and box with shadow map")  # fmt: skip
    paths = {"both": ("gl", "raster"), "all": ("gl", "raster", "cpu")}.get(args.path, (args.path,))
    for path in paths:
        s = bench(ctx, splats, args, path)
        extra = (f"frames with a re-sort {s['sort_fraction']:.0%}: {s['sorted_ms']:.1f} ms, without: "
                 f"{s['unsorted_ms']:.1f} ms" if path == "gl" else f"{_scale_note(args)}")  # fmt: skip
        print(f"{path:>6}: output {args.width}x{args.height}, splats at {s['splat_size']}: median "
              f"{s['median_ms']:.1f} ms = {s['fps']:.1f} FPS  ({extra})")  # fmt: skip
    if args.physics:
        path = paths[-1]
        s = bench_physics(ctx, args, path)
        print(f"physics ({path} path): {args.objects} moving objects carrying {args.splats} SH-3 splats, output "
              f"{args.width}x{args.height}, splats at {s['splat_size']}, viewer frame (tick + sync + render): median "
              f"{s['median_ms']:.1f} ms = {s['fps']:.1f} FPS (physics {s['physics_ms']:.1f} ms, splat update + upload "
              f"{s['splats_ms']:.1f} ms, render {s['render_ms']:.1f} ms"
              + (f", of which the cpu splat layer {s['layer_ms']:.1f} ms)" if path == "cpu" else ")"))  # fmt: skip


def _scale_note(args) -> str:
    if args.splat_budget_ms is not None:
        return f"splat scale chosen for a {args.splat_budget_ms:g} ms splat budget"
    return f"splat scale {args.splat_scale:g}"


if __name__ == "__main__":
    main()
