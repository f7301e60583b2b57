"""``hybrid objects SCENE``: list, find (``--detect``, ``--object x,y,z``, ``--click i,u,v``), merge and rename objects."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]


def _point(text: str, flag: str) -> tuple[float, ...]:
    from scenes.errors import ShapeError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    n = 3
    if len(values) != n:
        raise ShapeError(f"{flag}: expected three numbers separated by commas, got {text!r}")
    return values


def objects_command(
    scene: Path = typer.Argument(..., help="Scene folder."),
    detect: bool = typer.Option(
        False, "--detect", help="Find the ground and the objects again (replaces the objects)."
    ),
    seeds: list[str] = typer.Option(
        [], "--object", help="x,y,z on an object (world, metres): only seeded objects are made."
    ),
    clicks: list[str] = typer.Option([], "--click", help="i,u,v: pixel (u, v) of capture camera i on an object."),
    density: float = typer.Option(500.0, "--density", help="kg/m^3 used for the masses of detected objects."),
    refine: bool = typer.Option(
        True, "--refine/--no-refine", help="After --detect: give objects the splats the capture views show inside them."
    ),
    merge: list[str] = typer.Option([], "--merge", help="a,b[,c...][=name]: merge objects into one."),
    rename: list[str] = typer.Option([], "--rename", help="old=new"),
    sheet: Path | None = typer.Option(None, "--sheet", help="Contact-sheet PNG (default SCENE/objects.png)."),
    no_sheet: bool = typer.Option(False, "--no-sheet", help="Do not render the contact sheet."),
    write: bool = typer.Option(False, "--write", help="Save the changed objects into SCENE."),
    as_json: bool = typer.Option(False, "--json", help="Print the object list as JSON."),
    backend: str = typer.Option("cpu", "--raster-backend", help="render.rasterize backend for the sheet and clicks."),
) -> None:
    """List SCENE's objects with a contact sheet outlining each; find, merge or rename them."""
    import json

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from hybrid.objects import click_seed, contact_sheet, object_table, refine_with_views
    from physics.segment import (
        SegmentConfig,
        merge_objects,
        not_object_notes,
        rename_object,
        segment_scene,
        settle_notes,
    )
    from scenes import load_scene, save_scene
    from scenes.errors import ShapeError

    loaded = load_scene(scene)  # with its weights, so that saving the new objects keeps them
    changed = False
    points = [_point(s, "--object") for s in seeds]
    for c in clicks:
        parts = c.split(",")
        if len(parts) != 3:
            raise ShapeError(f"--click: expected i,u,v (camera index, pixel column, pixel row), got {c!r}")
        try:
            i, u, v = int(parts[0]), float(parts[1]), float(parts[2])
        except ValueError:
            raise ShapeError(f"--click: expected i,u,v with an integer camera index, got {c!r}") from None
        points.append(tuple(click_seed(loaded, i, u, v, backend=backend)))
    if detect or points:
        cfg = SegmentConfig(density=density)
        loaded = segment_scene(loaded, cfg, np.array(points) if points else None)
        if not as_json:
            for line in settle_notes(loaded.metadata["segmentation"]["settled"]):
                typer.echo(line)
            for line in not_object_notes(loaded.metadata["segmentation"].get("not_objects", []), str(scene)):
                typer.echo(line)
        if refine and loaded.capture_cameras and loaded.objects:
            loaded, added = refine_with_views(loaded, backend=backend)
            if not as_json:
                typer.echo(f"refined with the capture views: {sum(added.values())} splats joined their objects")
        changed = True
    for m in merge:
        names, _, new = m.partition("=")
        loaded = merge_objects(loaded, [n.strip() for n in names.split(",") if n.strip()], new.strip() or None)
        changed = True
    for r in rename:
        old, sep, new = r.partition("=")
        if not sep or not old or not new:
            raise ShapeError(f"--rename: expected old=new, got {r!r}")
        loaded = rename_object(loaded, old.strip(), new.strip())
        changed = True
    rows = object_table(loaded)
    if as_json:
        print(json.dumps(rows, indent=1))
    else:
        console = Console()
        table = Table("name", "splats", "mass kg", "position m", "size m", "friction", "static",
                      title=f"{len(rows)} object(s) in {scene}")  # fmt: skip
        for r in rows:
            size = "-" if r["size"] is None else " x ".join(f"{v:.3f}" for v in r["size"])
            table.add_row(r["name"], str(r["splats"]), f"{r['mass']:.3f}", ", ".join(f"{v:.3f}" for v in r["position"]),
                          size, f"{r['friction']:.2f}", "yes" if r["static"] else "")  # fmt: skip
        console.print(table)
        if not rows:
            console.print("no objects: find them with --detect (or --object x,y,z / --click i,u,v)")
    if changed and write:
        save_scene(loaded, scene)
        typer.echo(f"saved {len(rows)} object(s) into {scene}")
    elif changed:
        typer.echo("not saved; add --write to store these objects in the scene")
    if rows and not no_sheet:
        path = contact_sheet(loaded, sheet or Path(scene) / "objects.png", backend=backend)
        typer.echo(f"contact sheet: {path}")


def register(app: typer.Typer) -> None:
    app.command("objects")(objects_command)
