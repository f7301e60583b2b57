"""``hybrid view``: the interactive viewer window (fly, select, push, relight, screenshot, record)."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]


def _parse_size(text: str) -> tuple[int, int]:
    from scenes.errors import ShapeError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        w = h = 0
    if w <= 0 or h <= 0:
        raise ShapeError(f"--size: expected WIDTHxHEIGHT in pixels, e.g. 1280x720, got {text!r}")
    return w, h


def view_command(
    scene: Path = typer.Argument(..., help="Scene folder (scene.json, splats, objects)."),
    size: str = typer.Option("1280x720", "--size", help="Window size WIDTHxHEIGHT."),
    render_scale: float | None = typer.Option(
        None,
        "--render-scale",
        help="Internal render size / view size (default: 1 on a GPU; on CPU GL at most 640x360 pixels).",
    ),
    splat_path: str = typer.Option(
        "auto",
        "--splat-path",
        help="'auto' (cpu splats within a frame budget on a software GL such as llvmpipe, GL quads on a GPU), "
        "'gl' (GL quads), 'cpu' (numba compositing) or 'raster' (render.rasterize image).",
    ),
    camera: int | None = typer.Option(None, "--camera", help="Start at capture camera N (1-based)."),
    out_dir: Path = typer.Option(Path("."), "--out-dir", help="Folder for P screenshots (PNG + JSON) and recordings."),
    asset: str = typer.Option("", "--asset", help="Mesh file the panel's Spawn field starts with."),
    push_strength: float = typer.Option(1.0, "--push-strength", help="Impulse of a push in N s (panel slider)."),
    no_panel: bool = typer.Option(False, "--no-panel", help="No ImGui panel (keys and mouse only; no imgui-bundle)."),
    paused: bool = typer.Option(False, "--paused", help="Start with physics paused (space resumes)."),
    frames: int | None = typer.Option(None, "--frames", help="Quit after drawing this many frames (scripts)."),
    world_model: str = typer.Option(
        "off",
        "--world-model",
        help="off (GL frames), relight or full: once the view is still, it is redrawn through the world model "
        "(the panel's World view switches it later).",
    ),
) -> None:
    """Open SCENE in a window: WASD/QE fly, right-drag look, click select, shift-click/drag push, panel for the rest."""
    from hybrid.viewer._display import check_display
    from scenes.errors import ShapeError

    choices = {"off": "gl", "relight": "relight", "full": "full"}  # --world-model -> the panel's World view
    if world_model not in choices:
        raise ShapeError(f"--world-model: must be one of {', '.join(choices)}; got {world_model!r}")
    check_display()  # before loading anything: no display fails at once, pointing at `hybrid render`
    from hybrid.viewer import ViewerSettings, ViewerWindow
    from scenes import load_scene

    window_size = _parse_size(size)
    if camera is not None and camera < 1:
        raise ShapeError(f"--camera: capture cameras are numbered from 1, got {camera}")
    settings = ViewerSettings(splat_path=splat_path, render_scale=render_scale, push_strength=push_strength)
    loaded = load_scene(scene)  # with its world-model weights: the panel can switch to relight or full
    viewer = ViewerWindow(
        loaded,
        title=f"hybrid view - {scene.resolve().name}",
        size=window_size,
        settings=settings,
        panel=not no_panel,
        out_dir=out_dir,
        asset_path=asset,
        start_camera=None if camera is None else camera - 1,
    )
    viewer.session.paused = paused
    viewer.session.set_world_view(choices[world_model])
    viewer.run(max_frames=frames)
    for path in viewer.screenshots + viewer.recordings:
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("view")(view_command)
