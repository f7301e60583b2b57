"""``hybrid world-model train SCENE``: fit the relighting; the residual is the shipped prior or trained on the scene."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register"]

app = typer.Typer(help="The appearance world model: relighting, moving shadows, learned residual.",
                  no_args_is_help=True)  # fmt: skip


@app.command("train")
def train_command(
    scene: Path = typer.Argument(..., help="Scene folder; weights/world_model.safetensors is written into it."),
    steps: int | None = typer.Option(
        None,
        "--steps",
        help="Optimiser steps on the capture's edit-imitating samples (default: 0 from the prior, "
        "which is used as shipped; 500 from scratch).",
    ),
    views: int = typer.Option(12, "--views", help="Capture cameras used for training."),
    scale: float = typer.Option(0.5, "--scale", help="Training resolution as a fraction of the capture cameras'."),
    light_direction: str | None = typer.Option(
        None, "--light-direction", help="The capture light x,y,z (towards the light) when known; else estimated."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (augmentations, initialisation)."),
    init: str = typer.Option(
        "prior", "--init", help="Start from the shipped prior (trained on simulated interventions) or from 'scratch'."
    ),
    raster_backend: str | None = typer.Option(None, "--raster-backend", help="render.rasterize backend."),
) -> None:
    """Fit SCENE's world model and save it into the scene: the capture light, and the residual network.

    The residual is the shipped prior (trained on simulated interventions, tools/world_model_prior.py) as shipped by default; --steps N fine-tunes it on the capture (self-supervised, edit-imitating samples) and --init scratch trains it on the capture alone.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from hybrid.world_model import WEIGHTS_NAME, TrainConfig, parse_light_direction, train_world_model
    from scenes import Light, load_scene, save_scene

    if init not in ("prior", "scratch"):
        raise typer.BadParameter(f"'prior' or 'scratch', got {init!r}", param_hint="--init")
    loaded = load_scene(scene)
    direction = parse_light_direction(light_direction)
    light = None
    if direction is not None:
        light = Light(direction=direction, color=loaded.light.color, intensity=loaded.light.intensity,
                      ambient=loaded.light.ambient)  # fmt: skip
    config = TrainConfig(steps=steps, views=views, scale=scale, seed=seed, init=init)
    labels = {"light": "estimating the light", "samples": "rendering edits", "train": "training the residual"}
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn()) as bar:  # fmt: skip
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(labels.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        result = train_world_model(loaded, config, light=light, backend=raster_backend, progress=progress)
    save_scene(loaded.with_(weights={**loaded.weights, WEIGHTS_NAME: result.weights}), scene)
    L = result.relighting.light
    typer.echo(f"light: direction {[round(v, 3) for v in L.direction]}, sun {[round(v, 3) for v in L.color]}, "
               f"ambient {[round(v, 3) for v in L.ambient]}")  # fmt: skip
    where = f"wrote {scene}/weights/{WEIGHTS_NAME}.safetensors ({result.net.num_parameters} parameters)"
    if result.samples == 0:
        typer.echo(f"residual: the shipped prior, trained on simulated interventions (tools/world_model_prior.py), "
                   f"as shipped (--steps N fine-tunes it on the capture, --init scratch trains on the capture "
                   f"alone); {result.seconds:.1f} s; {where}")  # fmt: skip
    else:
        typer.echo(f"residual trained (from {result.init}) on {result.samples} edited views in {result.seconds:.1f} s; "
                   f"gated L1 on them {result.fitted_loss:.4f} with the network, {result.baseline_loss:.4f} hole fill "
                   f"only; {where}")  # fmt: skip
    if not result.network_used:
        typer.echo("the network did not beat the hole fill on its own training views and is switched off: "
                   "--world-model full renders relight with the hole fill")  # fmt: skip


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="world-model")
