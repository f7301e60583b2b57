"""``hybrid render``: headless rendering of a scene folder to PNGs or an MP4 (EGL, no display needed)."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]


def _parse_color(text: str) -> tuple[float, float, float]:
    from scenes.errors import ShapeError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ShapeError(f"--background: expected three numbers R,G,B in [0, 1], got {text!r}")
    return values  # type: ignore[return-value]


def render_command(
    scene: Path = typer.Argument(..., help="Scene folder (scene.json, splats, objects)."),
    out: Path = typer.Option(..., "-o", "--out", help="OUT.mp4 for a video, a folder for DIR/c{i}.png, or one .png."),
    cameras: Path | None = typer.Option(
        None, "--cameras", help="nerfstudio transforms.json: one view per frame, in order."
    ),
    orbit: int | None = typer.Option(None, "--orbit", help="Render N views on a circle around the scene (default 60)."),
    width: int | None = typer.Option(None, "--width", help="Image width (default: the cameras', else 1280)."),
    height: int | None = typer.Option(None, "--height", help="Image height (default: the cameras', else 720)."),
    fov: float = typer.Option(50.0, "--fov", help="Orbit vertical field of view in degrees, without capture cameras."),
    elevation: float | None = typer.Option(
        None, "--elevation", help="Orbit elevation in degrees (default from the capture cameras, else 20)."
    ),
    fps: float = typer.Option(30.0, "--fps", help="Frame rate of an MP4."),
    splat_path: str = typer.Option(
        "gl",
        "--splat-path",
        help="'gl' (GL quads), 'cpu' (numba compositing; faster than 'gl' on llvmpipe, same maths) "
        "or 'raster' (render.rasterize image).",
    ),
    raster_backend: str | None = typer.Option(
        None, "--raster-backend", help="render.rasterize backend for --splat-path raster."
    ),
    background: str = typer.Option("0,0,0", "--background", help="Background colour R,G,B in [0, 1]."),
    colliders: bool = typer.Option(False, "--colliders", help="Draw the object colliders as wireframes."),
    world_model: str | None = typer.Option(
        None, "--world-model", help="off, relight or full (default: full with --light-direction, else off)."
    ),
    light_direction: str | None = typer.Option(
        None, "--light-direction", help="Relight: direction x,y,z from the scene towards the light (world frame)."
    ),
    supersample: str | None = typer.Option(
        None,
        "--supersample",
        help="Draw each view N (1-4) times finer and box-filter it, or 'auto': as many times as the view is coarser "
        "than the capture cameras (for views smaller or farther than the capture; splats only, through "
        "render.rasterize, as --world-model renders them). Default: auto where the world model draws (relight, "
        "full); with --world-model off and no --supersample the GL path draws each view at its size.",
    ),
) -> None:
    """Render SCENE headless (EGL) from --cameras or an --orbit into OUT.mp4 or a folder of PNGs."""
    import time

    from render.gl.headless import render_views, scene_orbit, write_pngs, write_video
    from render.gl.renderer import RenderSettings
    from scenes import load_scene, read_cameras_file
    from scenes.errors import ShapeError

    if cameras is not None and orbit is not None:
        raise ShapeError("give either --cameras or --orbit, not both")
    suffix = out.suffix.lower()
    if suffix not in ("", ".mp4", ".png") and not out.is_dir():
        raise ShapeError(f"-o {out}: expected OUT.mp4, a .png or a folder (no suffix), got suffix {out.suffix!r}")
    settings = RenderSettings(splat_path=splat_path, background=_parse_color(background), raster_backend=raster_backend)
    from hybrid.world_model.model import parse_light_direction, resolve_mode, world_model_views

    light_dir = parse_light_direction(light_direction)
    wm_mode = resolve_mode(world_model, light_dir)
    loaded = load_scene(scene, load_weights=wm_mode != "off")  # relight uses the stored capture light too
    if cameras is not None:
        views = read_cameras_file(cameras)
        size = (width, height) if width and height else None
    else:
        views = scene_orbit(loaded, 60 if orbit is None else orbit, width=width, height=height, fov_y_deg=fov,
                            elevation_deg=elevation)  # fmt: skip
        size = None
    if suffix == ".mp4" and size is None:  # one size for the whole video: the first view's
        size = (views[0].width, views[0].height)
    if suffix == ".png" and len(views) != 1:
        raise ShapeError(f"-o {out}: a single .png needs exactly one view, got {len(views)}; give a folder instead")

    factor = None  # render.supersample: None is "auto", the world model's default
    if supersample is not None:
        from render.supersample import parse_supersample

        try:
            factor = parse_supersample(supersample)
        except ValueError as e:
            raise ShapeError(str(e)) from None

    start = time.perf_counter()
    # the world model (and any supersampled view) draws the splats itself (render.rasterize); no meshes drawn
    rasterized = wm_mode != "off" or supersample is not None
    if rasterized:
        frames = world_model_views(
            loaded,
            views,
            wm_mode,
            light_dir,
            background=settings.background,
            size=size,
            backend=raster_backend,
            notify=lambda text: typer.echo(f"world model: {text}"),
            supersample=factor,
        )
    else:
        frames = render_views(loaded, views, settings=settings, colliders=colliders, size=size)
    if suffix == ".mp4":
        count = write_video(out, frames, fps=fps)
        what = str(out)
    elif suffix == ".png":
        from PIL import Image

        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(next(iter(frames))).save(out)
        count, what = 1, str(out)
    else:
        count = len(write_pngs(out, frames))
        what = f"{out}/c0.png .. c{count - 1}.png"
    elapsed = time.perf_counter() - start
    how = (f"render.rasterize, world model {wm_mode}, supersample {supersample or 'auto'}" if rasterized
           else f"{splat_path} splats")  # fmt: skip
    typer.echo(f"rendered {count} view(s) ({how}, {len(loaded.splats)} splats) to {what} "
               f"in {elapsed:.1f} s ({1000 * elapsed / max(count, 1):.0f} ms/view)")  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("render")(render_command)
