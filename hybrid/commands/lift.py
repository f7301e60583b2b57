"""``hybrid lift INPUT -o SCENE_DIR`` and ``hybrid demo``: a video (or images, or known cameras) -> a scene."""

from __future__ import annotations

from pathlib import Path

import typer

SAMPLE_CAMERA_HEIGHT = 2.2  # metres: the orbit height of tools/make_sample_video.py (what a user would know)


def sample_video() -> Path:
    """The bundled sample video (``assets/sample.mp4`` of the repository)."""
    from hybrid.lift.errors import LiftError

    path = Path(__file__).resolve().parents[2] / "assets" / "sample.mp4"
    if not path.is_file():
        raise LiftError(
            f"the sample video is not at {path}; this install has no assets/ folder "
            "(run from a clone of the repository, or make it with: python tools/make_sample_video.py)"
        )
    return path


def _run(
    input_path: Path,
    out: Path,
    preset: str | None,
    resume: bool,
    seed: int,
    steps: int | None,
    max_frames: int | None,
    max_size: int | None,
    camera_height: float | None,
    scale: float | None,
    sh_degree: int | None,
    no_overlays: bool,
    no_appearance: bool,
    images: Path | None,
    keep_work: bool,
    device: str | None,
    backend: str | None,
    quiet: bool,
    sfm_threads: int = 1,
) -> None:
    import os

    # OpenMP threads that spin while waiting steal the CPU from the next operation when the cores are
    # shared (measured 5x slower training on 2 busy cores); set before torch and numba start OpenMP.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from dataclasses import replace

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from hybrid.lift.pipeline import PRESETS, lift, preset_options
    from hybrid.lift.train import Interrupted

    if preset is not None and preset not in PRESETS:
        raise typer.BadParameter(f"must be one of {', '.join(PRESETS)}; got {preset!r}", param_hint="--preset")

    console = Console(stderr=True, quiet=quiet)
    overrides = {"seed": seed}
    if steps is not None:
        overrides["steps"] = steps
    if sh_degree is not None:
        overrides["sh_degree"] = sh_degree
    if no_appearance:
        overrides["appearance"] = False
    if backend is not None:
        overrides["backend"] = backend
    opts = preset_options(preset, device, **overrides)
    select = opts.select
    if max_frames is not None:
        select = replace(select, max_frames=max_frames)
    if max_size is not None:
        select = replace(select, max_size=max_size)
    if sfm_threads == 0 or sfm_threads < -1:
        raise typer.BadParameter(
            f"a thread count >= 1, or -1 for all cores; got {sfm_threads}", param_hint="--sfm-threads"
        )
    sfm = replace(opts.sfm, deterministic=sfm_threads == 1, num_threads=sfm_threads)
    opts = replace(opts, select=select, align=replace(opts.align, camera_height=camera_height, scale=scale),
                   overlays=not no_overlays, images=images, keep_work=keep_work, sfm=sfm)  # fmt: skip

    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  PSNR {task.fields[psnr]:5.2f} dB  {task.fields[splats]:>7,} splats"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    )  # fmt: skip
    state: dict = {}
    with Progress(*columns, console=console, transient=False, disable=quiet) as bar:

        def progress(stage: str, info: dict) -> None:
            if stage != "train":
                console.log(f"[cyan]{stage}[/cyan]")
                return
            if "task" not in state:
                state["task"] = bar.add_task("train", total=info.get("steps", opts.train.steps),
                                             completed=info.get("step", 0), loss=0.0, psnr=0.0,
                                             splats=info.get("splats", 0))  # fmt: skip
                return
            bar.update(state["task"], completed=info["step"], loss=info["loss"], psnr=info["psnr"],
                       splats=info["splats"])  # fmt: skip

        try:
            report = lift(input_path, out, opts, resume=resume, progress=progress)
        except Interrupted as exc:
            console.print(f"[yellow]{exc}[/yellow]")
            raise typer.Exit(130) from None
    _summary(report.data, report.scene_dir, quiet)


def _summary(r: dict, scene_dir: Path, quiet: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(quiet=quiet)
    t = Table(show_header=False, title=f"lifted {r['input']} -> {scene_dir}")
    f = r["frames"]
    t.add_row("frames", f"{f['decoded']} decoded, {f['selected']} selected, {f['registered']} with cameras "
                        f"({f['train']} train, {f['heldout']} held out), {f['size'][0]}x{f['size'][1]}")  # fmt: skip
    t.add_row("held-out", f"PSNR {r['heldout']['psnr']:.2f} dB, SSIM {r['heldout']['ssim']:.3f}")
    t.add_row("splats", f"{r['splats']:,} (SH degree {r['sh_degree']}), {r['steps']} steps")
    t.add_row("cameras", f"{r['cameras']['source']}, focal {r['cameras']['focal_px']:.1f} px")
    if r.get("alignment"):
        a = r["alignment"]
        t.add_row(
            "up / scale", f"+Z from {a['up_source']}, {a['scale_source']} -> camera height {a['camera_height_m']:.2f} m"
        )
    times = ", ".join(f"{k} {v:.0f}s" for k, v in r["timings_s"].items())
    t.add_row("time", times)
    t.add_row("device", f"{r['device']}, peak memory {r['peak_memory_mb']:.0f} MB")
    for note in r.get("notes", []):
        t.add_row("note", note)
    console.print(t)
    console.print(f"report: {scene_dir / 'report.json'}   side by side: {scene_dir / 'heldout_side_by_side.png'}")


def _bring_to_life(scene_dir: Path, quiet: bool) -> None:
    from rich.console import Console

    from hybrid.demo import PUSH_DURATION, bring_to_life
    from physics.segment import not_object_notes, settle_notes

    console = Console(stderr=True, quiet=quiet)
    labels = {"objects": "finding the ground and the objects", "world model": "fitting the world model's light",
              "push": f"filming a push ({PUSH_DURATION:g} s, world model full)"}  # fmt: skip
    with console.status("") as status:
        r = bring_to_life(scene_dir, progress=lambda stage: status.update(labels.get(stage, stage)))
    out = Console(quiet=quiet)
    times = ", ".join(f"{k.replace('_', ' ')} {v:.0f}s" for k, v in r.seconds.items())
    out.print(f"objects: {', '.join(r.objects) or 'none'}; contact sheet {scene_dir / 'objects.png'}")
    for line in settle_notes(r.settled) + not_object_notes(r.not_objects, str(scene_dir)):
        out.print(line)
    out.print(f"light: direction {r.light['direction']}, sun {r.light['sun']}, ambient {r.light['ambient']}")
    if r.push_dir is not None:
        out.print(f"pushed {r.pushed}: {r.push_dir / 'simulation.mp4'} (and stills, poses.json, events.json)")
    else:
        out.print("no object stands on the ground: nothing pushed")
    out.print(f"time: {times}")


def register(app: typer.Typer) -> None:
    @app.command("lift")
    def lift_cmd(
        input_path: Path = typer.Argument(
            ...,
            metavar="INPUT",
            help="A video (mp4/webm/mov/avi), a folder of images, a transforms.json (or a folder holding one), "
            "or a COLMAP model folder.",
        ),  # fmt: skip
        out: Path = typer.Option(..., "--out", "-o", metavar="SCENE_DIR", help="Scene folder to write."),
        preset: str | None = typer.Option(
            None,
            "--preset",
            help="fast (CPU default: 800 steps, densify every 60, SH degree 1, <= 640 px) or quality (GPU default: 7000 steps, SH 3).",
        ),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted lift into the same SCENE_DIR."),
        seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same input: same scene)."),
        steps: int | None = typer.Option(None, "--steps", help="Training steps (default: from the preset)."),
        max_frames: int | None = typer.Option(None, "--max-frames", help="Most frames kept from a video."),
        max_size: int | None = typer.Option(None, "--max-size", help="Longest image side in pixels."),
        camera_height: float | None = typer.Option(
            None,
            "--camera-height",
            help="Median camera height above the ground in metres, for the metric scale of a video "
            "(default prior: 1.6 m). Known cameras keep their own units.",
        ),  # fmt: skip
        scale: float | None = typer.Option(
            None, "--scale", help="Metres per reconstruction unit (instead of --camera-height)."
        ),
        sh_degree: int | None = typer.Option(None, "--sh-degree", help="Highest SH degree (0-3)."),
        no_overlays: bool = typer.Option(False, "--no-overlays", help="Do not detect and mask static overlays."),
        no_appearance: bool = typer.Option(
            False, "--no-appearance", help="No per-frame colour correction (for footage without exposure flicker)."
        ),
        images: Path | None = typer.Option(None, "--images", help="Image folder of a COLMAP model input."),
        keep_work: bool = typer.Option(
            False, "--keep-work", help="Keep SCENE_DIR.lift-work (frames, SfM, checkpoint)."
        ),
        device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
        backend: str | None = typer.Option(None, "--backend", help="Rasterizer backend: cpu, gsplat or reference."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
        sfm_threads: int = typer.Option(
            1,
            "--sfm-threads",
            help="COLMAP threads. 1 (default): the same input and seed give the same scene, bit "
            "for bit. More (-1: all cores) is faster on long videos but differs from run to run.",
        ),
    ) -> None:
        """Lift a video or a capture into a splat scene folder (with report.json and a held-out side-by-side PNG)."""
        _run(input_path, out, preset, resume, seed, steps, max_frames, max_size, camera_height, scale, sh_degree,
             no_overlays, no_appearance, images, keep_work, device, backend, quiet, sfm_threads)  # fmt: skip

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("demo_scene"), "--out", "-o", metavar="SCENE_DIR", help="Scene folder to write."),
        preset: str | None = typer.Option(None, "--preset", help="fast (CPU default) or quality (GPU default)."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted demo."),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        steps: int | None = typer.Option(None, "--steps", help="Training steps (default: from the preset)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
        lift_only: bool = typer.Option(
            False, "--lift-only", help="Only lift: no objects, world model or push (the first step alone)."
        ),
    ) -> None:
        """Lift the bundled sample video (a simulated orbit, filmed from 2.2 m) into SCENE_DIR, then bring it to life.

        Then, as hybrid objects --detect --write, hybrid world-model train and hybrid simulate would: the ground and objects with colliders and masses (SCENE_DIR/objects.png), the world model's light, and a push at the tallest object filmed with the world model on (SCENE_DIR/push/: simulation.mp4, stills, poses.json, events.json, cameras.json).
        """  # noqa: E501
        _run(sample_video(), out, preset, resume, seed, steps, None, None, SAMPLE_CAMERA_HEIGHT, None, None,
             False, False, None, False, None, None, quiet)  # fmt: skip
        if not lift_only:
            _bring_to_life(out, quiet)
