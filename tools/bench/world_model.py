"""Benchmark of the appearance world model against an independent renderer (PyBullet TinyRenderer, shadows on).

For each scene (seeded boxes on a textured ground, PyBullet physics):

1. an orbit of capture frames is rendered by TinyRenderer under light L0;
2. the scene's splats are built from the known geometry (flat splats on a jittered grid on the
   ground and on the box faces, kept where some capture frame sees them); their colours start
   as the mean of the pixels that see each splat (depth-tested against TinyRenderer's depth)
   and are then fitted through ``render.rasterize`` to the capture frames (``--colour-steps``,
   the photometric half of lifting; geometry fixed): the lifting pipeline is not used, so its
   geometric errors do not enter this table;
3. the world model is trained on the scene (sun, ambient and shadow strength *estimated*; the
   light direction given, or estimated too with ``--estimate-direction``);
4. ground truth from other viewpoints: (a) after a push, at several times (object poses from
   our World, set in the TinyRenderer scene), (b) at rest under another light direction L1;
5. engine-only (``--world-model off``), ``relight`` and ``full`` are scored by PSNR and SSIM over
   the whole image and over the pixels that changed in the ground truth.

    python tools/bench/world_model.py [--scenes 3] [--steps 500] [--colour-steps 300] [--estimate-direction]
                                      [--lift] [--out artifacts/world_model_bench.md]

``--lift`` replaces step 2 by the real lifting pipeline: the capture frames are written as PNGs
with a nerfstudio ``transforms.json`` (the known cameras: no SfM, the benchmark's world frame in
metres) and lifted with ``hybrid.lift`` (``--lift-preset``, ``fast`` by default). Its objects are found as the product
finds them (``--objects detect``, the default): ``segment_scene`` with a seed on each box's top
face (what ``hybrid objects --detect --object x,y,z`` does when a person points at the boxes),
hull colliders, masses from the density, settling, then ``refine_with_views``; each object is
named after its box, and the true box moves as its object moved from rest. ``--objects known``
is the older shortcut: a lifted splat belongs to a box when its centre lies inside the box's
known pose and half extents (inflated by 10 % + 2 cm: the floor around and under the box goes
with it), the rest is the static ground; the colliders are the known box shapes.

Prints the table and writes it (markdown) with the failure/fix PNGs beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see docs/lift.md (Environment)
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from tiny_world import (  # noqa: E402  (shared with tools/world_model_prior.py)
    CHANGED,
    L0,
    LIGHT_EDITS,
    PUSH_TIMES,
    H,
    TinyScene,
    W,
    build_scene,
    cam_look,
    capture_orbit,
    lift_scene,
)

from hybrid.world_model import SplatState, TrainConfig, WorldModel, apply_world_model, train_world_model  # noqa: E402
from hybrid.world_model.residual import IN_CHANNELS  # noqa: E402
from render.supersample import parse_supersample  # noqa: E402


# ------------------------------------------------------------------------------------------- metrics
def psnr(a, b, mask=None) -> float:
    err = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    mse = float(err.mean()) if mask is None else float(err[mask].mean())
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def ssim_map(a, b) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    c1, c2 = 0.01**2, 0.03**2
    out = []
    for ch in range(3):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        f = lambda t: gaussian_filter(t, 1.5, truncate=3.5)  # noqa: E731
        mx, my = f(x), f(y)
        sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
        out.append(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2)))
    return np.mean(out, axis=0)


def scores(pred, gt, changed) -> dict:
    s = ssim_map(pred, gt)
    return {"psnr": psnr(pred, gt), "ssim": float(s.mean()),
            "psnr_changed": psnr(pred, gt, changed) if changed.any() else float("nan"),
            "ssim_changed": float(s[changed].mean()) if changed.any() else float("nan")}  # fmt: skip


# ------------------------------------------------------------------------------------------- one scene
def run_scene(seed: int, out: Path, tmp: Path, config: TrainConfig, log, estimate_direction: bool,
              colour_steps: int = 300, use_lift: bool = False, lift_cache: Path | None = None,
              lift_steps: int | None = None, objects: str = "detect", supersample: int | None = None,
              lift_preset: str = "fast") -> dict:  # fmt: skip
    from hybrid.world import World
    from physics.events import parse_events

    t0 = time.perf_counter()
    tiny = TinyScene(seed, tmp)
    captures = capture_orbit(tiny)
    lift_info = {}
    if use_lift:
        scene, lift_info = lift_scene(tiny, captures, seed, tmp, log, lift_cache, lift_steps, objects, lift_preset)
    else:
        scene = build_scene(tiny, captures, seed, colour_steps, log)
    t_build = time.perf_counter() - t0
    log(f"scene {seed}: {len(scene.splats)} splats, {len(scene.objects)} boxes, built in {t_build:.0f} s")

    t1 = time.perf_counter()
    from hybrid.world_model import Relighting

    if estimate_direction:
        rel = None
    else:  # the direction is given (as a lifted scene's metadata could); sun / ambient are still estimated
        rel = Relighting.fit(scene, light_direction=tuple(L0))
    result = train_world_model(scene, config, relighting=rel)
    t_train = time.perf_counter() - t1
    est = np.asarray(result.relighting.light.direction)
    light_err = float(np.degrees(np.arccos(np.clip(est @ L0, -1, 1))))
    log(f"  world model trained in {t_train:.0f} s; light {np.round(est, 3).tolist()} "
        f"({light_err:.1f} deg from the truth), sun {np.round(result.relighting.light.color, 3).tolist()}, "
        f"ambient {np.round(result.relighting.light.ambient, 3).tolist()}")  # fmt: skip
    scene = scene.with_(weights={"world_model": result.weights})
    full = WorldModel(scene, "full", relighting=result.relighting, supersample=supersample)
    off = WorldModel(scene, "off", supersample=supersample)

    evals = []
    for az, rad, hgt in [(0.3, 1.8, 1.5), (2.4, 2.3, 2.3), (4.4, 1.9, 1.8)]:
        evals.append(cam_look([rad * np.cos(az), rad * np.sin(az), hgt], target=(0.0, 0.0, 0.05)))
    rest_gt = [tiny.render(c, L0)[0] for c in evals]

    # the push: the largest box, hit in the middle of a side towards the scene's outside
    names = {o.name for o in scene.objects}  # with detected objects, a box no object matched cannot be pushed
    box = max((b for b in tiny.boxes if b["name"] in names), key=lambda b: float(np.prod(b["half"])))
    direction = box["position"][:2] / max(np.linalg.norm(box["position"][:2]), 1e-6)
    direction = np.array([-direction[1], direction[0]])  # sideways: along the circle, away from the others
    velocity = np.r_[direction * 2.2, 0.0]  # a push: the box is set sliding at 2.2 m/s
    events = parse_events([{"time": 0.0, "type": "set_velocity", "object": box["name"], "linear": velocity.tolist()}])
    world = World(scene, events=events)
    rows, panels = [], {}
    for t in PUSH_TIMES:
        world.advance_to(t)
        poses = world.poses()
        tiny.set_poses(tiny.follow(scene, poses))
        gts = [tiny.render(c, L0)[0] for c in evals]
        state = SplatState.of_world(world)
        frames = full.render(state, evals, keep_gbuffers=True)
        engine = off.images(state, evals)
        for ci, (gt, fr) in enumerate(zip(gts, frames, strict=True)):
            changed = np.abs(gt - rest_gt[ci]).max(axis=-1) > CHANGED
            relit = apply_world_model("relight", fr.gbuffers)
            preds = {"engine-only": engine[ci], "relight": relit, "full": fr.image}
            for method, pred in preds.items():
                rows.append({"seed": seed, "edit": f"push t={t:g}s", "camera": ci, "method": method,
                             "changed_frac": float(changed.mean()), **scores(pred, gt, changed)})  # fmt: skip
            if ci == 0 and t == 1.0:
                panels["push"] = [rest_gt[ci], gt, engine[ci], relit, fr.image]
    tiny.set_poses(tiny.follow(scene, {o.name: {"position": o.position, "quaternion": o.quaternion}
                                       for o in scene.objects}))  # fmt: skip
    state = SplatState.rest(scene)
    engine = off.images(state, evals)
    floor = float(np.mean([psnr(e, g) for e, g in zip(engine, rest_gt, strict=True)]))  # no edit vs ground truth
    for edit, direction in LIGHT_EDITS.items():
        gts = [tiny.render(c, direction)[0] for c in evals]
        frames = full.render(state, evals, light_direction=tuple(direction), keep_gbuffers=True)
        for ci, (gt, fr) in enumerate(zip(gts, frames, strict=True)):
            changed = np.abs(gt - rest_gt[ci]).max(axis=-1) > CHANGED
            relit = apply_world_model("relight", fr.gbuffers)
            for method, pred in {"engine-only": engine[ci], "relight": relit, "full": fr.image}.items():
                rows.append({"seed": seed, "edit": edit, "camera": ci, "method": method,
                             "changed_frac": float(changed.mean()), **scores(pred, gt, changed)})  # fmt: skip
            if ci == 0:
                panels[edit.replace(" ", "_")] = [rest_gt[ci], gt, engine[ci], relit, fr.image]
    # unedited: the relit render against the plain render (the capture as the splats hold it)
    cams = [c for c, _, _ in captures[::6]]
    rel_only = WorldModel(scene, "relight", relighting=result.relighting, supersample=supersample).images(
        SplatState.rest(scene), cams
    )
    plain = off.images(SplatState.rest(scene), cams)
    unedited = float(np.mean([psnr(a, b) for a, b in zip(rel_only, plain, strict=True)]))
    tiny.close()
    from PIL import Image

    for name, imgs in panels.items():
        strip = np.concatenate([np.clip(i, 0, 1) for i in imgs], axis=1)
        Image.fromarray((strip * 255 + 0.5).astype(np.uint8)).save(out / f"scene{seed}_{name}.png")
    return {"rows": rows, "splats": len(scene.splats), "train_s": t_train, "build_s": t_build, "light_err": light_err,
            "unedited_psnr": unedited, "losses": result.losses, "params": result.net.num_parameters,
            "init": result.init, "samples": result.samples,
            "floor_psnr": floor, **lift_info}  # fmt: skip


def _shipped_net():
    """The shipped prior's network (its width), else a fresh one of the default width: what a scene runs."""
    from hybrid.world_model import ResidualNet
    from hybrid.world_model.prior import load_prior

    return load_prior() or ResidualNet()


def residual_timing() -> dict:
    import torch

    net = _shipped_net().eval()
    x = torch.rand(1, IN_CHANNELS, 240, 320)
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        ts = []
        with torch.inference_mode():
            for _ in range(30):
                t = time.perf_counter()
                net(x)
                ts.append(time.perf_counter() - t)
        out[threads] = (1000 * min(ts), 1000 * float(np.median(ts)))
    torch.set_num_threads(os.cpu_count() or 1)
    return out


def residual_timing_gpu(width: int = 1920, height: int = 1080, repeats: int = 50) -> None:
    """The residual network's forward on CUDA (float32, and float16 autocast), CUDA-event timed medians."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--residual-gpu needs a CUDA device")
    net = _shipped_net().eval().cuda()
    print(f"gpu: {torch.cuda.get_device_name()}, torch {torch.__version__}; residual (width {net.width}) at "
          f"{width}x{height}")  # fmt: skip
    x = torch.rand(1, IN_CHANNELS, height, width, device="cuda")
    for label, dtype in (("float32", None), ("float16 autocast", torch.float16), ("bfloat16 autocast", torch.bfloat16)):
        for channels_last in (False, True):
            m = net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            xi = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            ts = []
            with (
                torch.inference_mode(),
                torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None),
            ):
                for i in range(repeats + 5):
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a.record()
                    m(xi)
                    b.record()
                    torch.cuda.synchronize()
                    if i >= 5:
                        ts.append(a.elapsed_time(b))
            print(
                f"residual {label:18s} channels_last={channels_last!s:5s}: median {np.median(ts):.2f} ms, min {min(ts):.2f} ms"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "world_model_bench.md")
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="residual steps on each scene's capture (default: 0 from the prior, 500 from scratch)",
    )
    ap.add_argument("--init", choices=("prior", "scratch"), default="prior",
                    help="the residual starts from the shipped prior (corpus seeds 1000+) or from random weights")  # fmt: skip
    ap.add_argument(
        "--estimate-direction",
        action="store_true",
        help="estimate the light direction too (by default it is given; sun and ambient are estimated)",
    )
    ap.add_argument("--colour-steps", type=int, default=300,
                    help="Adam steps fitting the splat colours to the capture frames through the rasterizer "
                         "(0: per-splat means of the frames only)")  # fmt: skip
    ap.add_argument("--lift", action="store_true",
                    help="lift the capture orbit with hybrid lift --preset fast (known cameras) instead of building "
                         "the splats from the known geometry")  # fmt: skip
    ap.add_argument(
        "--lift-cache",
        type=Path,
        default=None,
        help="with --lift: keep each scene's lift in this folder and reuse it on later runs",
    )
    ap.add_argument("--lift-steps", type=int, default=None,
                    help="with --lift: optimisation steps of the lift (default: the preset's, fast 800, quality 7000)")  # fmt: skip
    ap.add_argument("--lift-preset", choices=("fast", "quality"), default="fast",
                    help="with --lift: the lift's preset (fast: the CPU default; quality: the GPU default, "
                         "7000 steps, SH degree 3), run on the CPU either way")  # fmt: skip
    ap.add_argument("--objects", choices=("detect", "known"), default="detect",
                    help="with --lift: the objects are what the product detects with a seed on each box "
                         "(segment_scene + refine_with_views, hull colliders; detect), or the splats inside the "
                         "boxes' known poses grown by 10 %% + 2 cm with the true boxes as colliders (known)")  # fmt: skip
    ap.add_argument("--seeds", type=str, default=None, help="comma-separated scene seeds (default 0..scenes-1)")
    ap.add_argument("--supersample", type=str, default="auto",
                    help="every method draws N times finer and box-filters (render.supersample), or 'auto': as "
                         "many times as an evaluation view is coarser than the capture (default auto, the "
                         "renderers' default since session 16; 1: as drawn)")  # fmt: skip
    ap.add_argument("--residual-gpu", action="store_true", help="only time the residual at 1920x1080 on CUDA")
    a = ap.parse_args()
    if a.residual_gpu:
        residual_timing_gpu()
        return
    import tempfile

    out_dir = a.out.parent / ("world_model" + a.out.stem.removeprefix("world_model_bench"))  # panels, rows.json
    out_dir.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(steps=a.steps, views=8, init=a.init)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        seeds = [int(v) for v in a.seeds.split(",")] if a.seeds else range(a.scenes)
        for seed in seeds:
            results.append(
                run_scene(
                    seed,
                    out_dir,
                    Path(tmp),
                    config,
                    lambda s: print(s, flush=True),
                    a.estimate_direction,
                    a.colour_steps,
                    a.lift,
                    a.lift_cache,
                    a.lift_steps,
                    a.objects,
                    parse_supersample(a.supersample),
                    a.lift_preset,
                )  # fmt: skip
            )
            # rows so far, in case a long run is cut short
            (out_dir / "rows.json").write_text(json.dumps([r for res in results for r in res["rows"]], indent=0))
    timing = residual_timing()
    a.panels = out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir
    text = report(results, timing, a)
    print(text)
    a.out.write_text(text)
    (out_dir / "rows.json").write_text(json.dumps([r for res in results for r in res["rows"]], indent=0))


def report(results: list[dict], timing: dict, args=None) -> str:
    rows = [r for res in results for r in res["rows"]]
    methods = ("engine-only", "relight", "full")
    lines = ["## World model (tools/bench/world_model.py)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}. "
             f"{len(results)} scenes (seeds {', '.join(str(r['rows'][0]['seed']) for r in results)}), {W}x{H}, TinyRenderer ground truth with shadows; "
             + (f"lifted with hybrid lift --preset {getattr(args, 'lift_preset', 'fast')}"
                + (f" --steps {args.lift_steps}" if getattr(args, "lift_steps", None) else "") + " (known cameras, CPU), "
                + ("splats assigned to the boxes by their known poses; " if getattr(args, "objects", "") == "known"
                   else "objects detected (segment_scene seeded on each box, refine_with_views); ")
                if getattr(args, "lift", False) else
                "splats built from the known geometry with colours fitted to the capture frames (not lifted; "
                f"{getattr(args, 'colour_steps', '?')} colour steps); ")
             + (f"every method supersampled {args.supersample}; " if getattr(args, "supersample", "1") != "1" else "")
             + "light direction "
             f"{'estimated' if getattr(args, 'estimate_direction', False) else 'given'}, "
             f"residual init {getattr(args, 'init', 'prior')}, steps on each scene "
             f"{TrainConfig(steps=getattr(args, 'steps', None), init=getattr(args, 'init', 'prior')).train_steps}.", "",
             "| scene | edit | method | PSNR | SSIM | PSNR changed | SSIM changed | changed px |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for res in results:
        seed = res["rows"][0]["seed"]
        edits = sorted({r["edit"] for r in res["rows"]}, key=lambda e: (e.startswith("light"), e))
        for edit in edits:
            for m in methods:
                sel = [r for r in res["rows"] if r["edit"] == edit and r["method"] == m]
                f = lambda k, sel=sel: float(np.nanmean([r[k] for r in sel]))  # noqa: E731
                lines.append(f"| {seed} | {edit} | {m} | {f('psnr'):.2f} | {f('ssim'):.4f} | {f('psnr_changed'):.2f} | "
                             f"{f('ssim_changed'):.4f} | {100 * f('changed_frac'):.1f}% |")  # fmt: skip

    def mean(edit_prefix, m, k, seed=None):
        sel = [r for r in rows if r["edit"].startswith(edit_prefix) and r["method"] == m
               and (seed is None or r["seed"] == seed)]  # fmt: skip
        return float(np.nanmean([r[k] for r in sel]))

    gain_push = mean("push", "full", "psnr_changed") - mean("push", "engine-only", "psnr_changed")
    worst = min(mean("push", "full", "psnr", s) - mean("push", "engine-only", "psnr", s)
                for s in {r["seed"] for r in rows})  # fmt: skip
    gains = {e: mean(e, "relight", "psnr") - mean(e, "engine-only", "psnr") for e in LIGHT_EDITS}
    train_s = ", ".join(f"{r['train_s']:.0f} s" for r in results)
    inits = {(r["init"], r["samples"]) for r in results}
    residual_from = "; ".join(
        "residual: the shipped prior as shipped, light fitted" if (init, n) == ("prior", 0)
        else f"residual from {init}, {n} edited views" for init, n in sorted(inits))  # fmt: skip
    unedited = ", ".join(f"{r['unedited_psnr']:.1f} dB" for r in results)
    light_err = ", ".join(f"{r['light_err']:.1f} deg" for r in results)
    splats = ", ".join(str(r["splats"]) for r in results)
    floor = ", ".join(f"{r['floor_psnr']:.1f} dB" for r in results)
    lifted = "".join(
        f" Lift (scene {r['rows'][0]['seed']}): {r['lift_s']:.0f} s, held-out PSNR {r['heldout_psnr']:.2f} dB, "
        f"box splats {r['box_splats']}." for r in results if "lift_s" in r)  # fmt: skip
    lines += ["", "| target | measured | met |", "|---|---|---|",
              f"| push, changed pixels: full - engine-only >= 2 dB (mean) | {gain_push:+.2f} dB | "
              f"{'yes' if gain_push >= 2 else 'no'} |",
              f"| push, whole image: full never worse than engine-only by > 0.2 dB (worst scene) | {worst:+.2f} dB | "
              f"{'yes' if worst >= -0.2 else 'no'} |",
              *[f"| {e}, whole image: relight - baked >= 3 dB | {g:+.2f} dB | {'yes' if g >= 3 else 'no'} |"
                for e, g in gains.items()],
              f"| residual at 320x240 on CPU <= 30 ms (min / median, 1 thread; 2 threads) | "
              f"{timing[1][0]:.1f} / {timing[1][1]:.1f} ms; {timing[2][0]:.1f} / {timing[2][1]:.1f} ms | "
              f"{'yes' if timing[1][1] <= 30 else 'no'} |",
              f"| per-scene training <= 3 min on CPU ({residual_from}) | {train_s} | "
              f"{'yes' if max(r['train_s'] for r in results) <= 180 else 'no'} |",
              "", f"Relit without edits vs plain render (capture cameras): {unedited}. No-edit floor (engine-only "
              f"render at rest vs the ground truth, evaluation cameras): {floor}.{lifted} Light direction "
              f"{'estimated to within ' + light_err if getattr(args, 'estimate_direction', True) else 'given'}. Splats: {splats}; residual parameters: {results[0]['params']}. "
              "GPU timing not measured (no GPU lent).",
              "", f"Panels in {getattr(args, 'panels', 'artifacts/world_model')}/: GT before | GT after | engine-only | "
              "relight | full.", ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
