"""The ``hybrid`` command line. Sub-commands live in ``hybrid/commands/*.py`` (each has ``register(app)``)."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys

# OpenMP threads that spin while waiting steal the CPU from the next operation on shared cores, and
# once torch's OpenMP runtime has read the environment every numba parallel call pays 2-8 ms instead of
# ~20 us: set before any command imports torch or numba.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

import hybrid.commands  # noqa: E402
from scenes.errors import HybridError  # noqa: E402

app = typer.Typer(
    name="hybrid",
    help="Neural-plus-game-engine hybrid 3D scene runtime: lift a video into Gaussian splats, simulate, render, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Neural-plus-game-engine hybrid 3D scene runtime."""


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Print versions and which backends are available (gsplat CUDA, CPU raster, GL EGL/GLFW, PyBullet, pycolmap)."""
    from rich.console import Console
    from rich.table import Table

    from hybrid.info import collect

    data = collect()
    if as_json:
        print(json.dumps(data, indent=1))
        return
    console = Console()
    m = data["machine"]
    console.print(
        f"[bold]hybrid[/bold] {data['versions'].get('hybrid-scene-runtime')}  "
        f"python {data['versions']['python']}  {m['processor']}  {m['cpus']} cpus"
    )
    vt = Table("package", "version", title="versions")
    for k, v in data["versions"].items():
        vt.add_row(k, v or "[dim]not installed[/dim]")
    console.print(vt)
    bt = Table("backend", "available", "detail", title="backends")
    for k, v in data["backends"].items():
        bt.add_row(k, "[green]yes[/green]" if v["available"] else "[red]no[/red]", v["detail"])
    console.print(bt)


def _register_all() -> None:
    for mod in sorted(pkgutil.iter_modules(hybrid.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"hybrid.commands.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_all()


def main() -> None:
    """Console entry point: run the app; typed runtime errors print one clear line and exit 2."""
    try:
        app()
    except HybridError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
