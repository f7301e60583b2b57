"""``hybrid simulate SCENE --events events.json [--cameras cams.json | --orbit] --duration T -o OUT``."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]


def _parse_times(text: str | None) -> list[float]:
    from scenes.errors import ShapeError

    if not text:
        return []
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ShapeError(f"--times: expected seconds separated by commas, e.g. 0.5,1,2.25; got {text!r}") from None


def simulate_command(
    scene: Path = typer.Argument(..., help="Scene folder (scene.json with objects and colliders)."),
    events: Path | None = typer.Option(None, "--events", help="Events JSON: interventions scheduled in time."),
    cameras: Path | None = typer.Option(
        None, "--cameras", help="nerfstudio transforms.json; the first one films the video."
    ),
    orbit: bool = typer.Option(False, "--orbit", help="Film the video from a camera orbiting the scene (the default)."),
    duration: float = typer.Option(..., "--duration", help="Seconds to simulate."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder: poses.json, simulation.mp4, stills."),
    times: str | None = typer.Option(
        None, "--times", help="With --cameras: seconds t1,t2,... for OUT/t{time:.2f}_c{i}.png."
    ),
    fps: float = typer.Option(30.0, "--fps", help="Video frame rate (and poses.json frames per second)."),
    video: bool = typer.Option(True, "--video/--no-video", help="Write OUT/simulation.mp4."),
    video_width: int = typer.Option(640, "--video-width", help="Largest video width; views are scaled down to it."),
    backend: str = typer.Option("cpu", "--raster-backend", help="render.rasterize backend: cpu, gsplat or reference."),
    world_model: str | None = typer.Option(
        None, "--world-model", help="off, relight or full (default: full with --light-direction, else off)."
    ),
    light_direction: str | None = typer.Option(
        None, "--light-direction", help="Relight: direction x,y,z from the scene towards the light (world frame)."
    ),
) -> None:
    """Simulate SCENE with scheduled --events; write OUT/poses.json, OUT/simulation.mp4 and stills."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from hybrid.simulate import simulate
    from physics.events import load_events
    from scenes import load_scene, read_cameras_file
    from scenes.errors import ShapeError

    if cameras is not None and orbit:
        raise ShapeError("give either --cameras FILE or --orbit, not both")
    stills = _parse_times(times)
    if stills and cameras is None:
        raise ShapeError("--times needs --cameras FILE (the stills are rendered from those cameras)")
    from hybrid.world_model.model import parse_light_direction, resolve_mode

    light_dir = parse_light_direction(light_direction)
    wm_mode = resolve_mode(world_model, light_dir)
    loaded = load_scene(scene, load_weights=wm_mode != "off")  # relight uses the stored capture light too
    evs = load_events(events) if events is not None else ()
    cams = read_cameras_file(cameras) if cameras is not None else None
    start = time.perf_counter()
    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed}/{task.total} frames"),
                  TimeRemainingColumn(), transient=True) as bar:  # fmt: skip
        task = bar.add_task("simulate", total=None)
        result = simulate(loaded, evs, out, duration=duration, cameras=cams, times=stills, fps=fps, video=video,
                          video_width=video_width, backend=backend, world_model=wm_mode, light_direction=light_dir,
                          progress=lambda done, total: bar.update(task, completed=done, total=total))  # fmt: skip
    for a in result.applied:
        typer.echo(f"t={a.time:.4f} s  {a.event.type}" + (f" -> {a.object}" if a.object else ""))
    typer.echo(f"simulated {duration:g} s of {len(loaded.objects)} object(s) in {time.perf_counter() - start:.1f} s: "
               f"{result.poses}" + (f", {result.video}" if result.video else "")
               + (f", {len(result.stills)} still(s)" if result.stills else ""))  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
