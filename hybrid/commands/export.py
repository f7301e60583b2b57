"""``hybrid export`` (a scene for game engines) and ``hybrid import`` (a splat file from another tool into a scene)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


class ExportFormat(str, Enum):
    glb = "glb"
    ply = "ply"
    spz = "spz"
    splat = "splat"
    compressed_ply = "compressed-ply"


class Axes(str, Enum):
    y_up = "y-up"
    y_down = "y-down"
    z_up = "z-up"


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        scene: Path = typer.Argument(..., help="Scene folder (with scene.json)."),
        format: ExportFormat = typer.Option(..., "--format", "-f", help="Output format."),
        out: Path = typer.Option(..., "-o", "--out", help="Output file (ending in the format's suffix) or folder."),
        object_name: str = typer.Option(None, "--object", help="Export only this object, in its own frame."),
        axes: Axes = typer.Option(
            None,
            "--axes",
            help="Axes of the splat file (default: glb/spz y-up, ply/splat/compressed-ply y-down as 3DGS tools "
            "expect; z-up keeps ours).",
        ),
        sh_degree: int = typer.Option(
            None, "--sh-degree", min=0, max=3, help="Truncate or zero-pad SH to this degree (Unity aras-p wants 3)."
        ),
        light_direction: str = typer.Option(
            None,
            "--light-direction",
            help="x,y,z towards the light (world frame): bake the world model's relighting under it into the "
            "splat colours (new shadows included); the exported light points there too.",
        ),
    ) -> None:
        """Export a scene for Unity, Unreal, Godot, PlayCanvas or three.js (see docs/engines.md).

        glb: one glTF 2.0 binary with KHR_gaussian_splatting splats, an object per node with OMI_physics_body
        physics, cameras and a KHR_lights_punctual light. ply/spz/splat/compressed-ply: the splat file plus
        <stem>.colliders/*.glb and <stem>.physics.json beside it.
        """
        from hybrid.export import export_scene
        from scenes import load_scene

        sc = load_scene(scene, load_weights=light_direction is not None)
        if light_direction is not None:
            from hybrid.world_model import bake_light, parse_light_direction

            sc = bake_light(
                sc, parse_light_direction(light_direction), notify=lambda text: typer.echo(f"  note: {text}")
            )
            d = ", ".join(f"{v:.3f}" for v in sc.light.direction)
            typer.echo(f"relit under the light towards ({d}) (world model, --world-model relight)")
        result = export_scene(
            sc,
            out,
            format.value,
            object_name=object_name,
            axes=axes.value if axes else None,
            name=scene.resolve().name or "scene",
            sh_degree=sh_degree,
        )
        typer.echo(f"wrote {result.path} ({result.num_splats} splats, {result.format}, axes {result.axes})")
        for f in result.files[1:]:
            typer.echo(f"  + {f}")
        for note in result.lost:
            typer.echo(f"  note: {note}")

    @app.command("import")
    def import_(
        file: Path = typer.Argument(
            ...,
            help="A splat file (.ply, .compressed.ply, .splat, .spz, .ksplat) or a "
            ".glb/.gltf with KHR_gaussian_splatting.",
        ),
        out: Path = typer.Option(..., "-o", "--out", help="Scene folder to write."),
        axes: Axes = typer.Option(
            None,
            "--axes",
            help="Axes the file was written in (default: glb/spz y-up, ply/splat/compressed-ply/ksplat y-down).",
        ),
        format: str = typer.Option(None, "--format", help="Splat format when it cannot be told from the file."),
        no_physics: bool = typer.Option(False, "--no-physics", help="Ignore a <stem>.physics.json beside the file."),
    ) -> None:
        """Bring splats from another tool (Marble, Polycam, Luma, SuperSplat, ...) into a scene folder.

        Then `hybrid objects` and segmentation work on it. Our own exports come back with their objects.
        """
        from hybrid.export import import_file
        from scenes import save_scene

        sc = import_file(file, axes=axes.value if axes else None, format=format, physics=not no_physics)
        path = save_scene(sc, out)
        info = sc.metadata.get("imported_from", {})
        typer.echo(
            f"wrote {path}: {len(sc.splats)} splats (SH degree {sc.splats.sh_degree}) from "
            f"{info.get('format', '?')} in axes {info.get('axes', '?')}, {len(sc.objects)} object(s)"
            + (", ground" if sc.ground is not None else "")
        )
