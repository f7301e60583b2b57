"""``hybrid convert IN OUT``: convert a splat file between formats and print what was kept and lost."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("convert")
    def convert(
        src: Path = typer.Argument(
            ..., metavar="IN", help="Input splat file (.ply, .compressed.ply, .splat, .spz, .ksplat)."
        ),
        dst: Path = typer.Argument(
            ..., metavar="OUT", help="Output file; its extension picks the format unless --format."
        ),
        format: str | None = typer.Option(
            None,
            "--format",
            "-f",
            help="Output format: ply, compressed_ply, splat, spz (default: from OUT's extension).",
        ),
        in_format: str | None = typer.Option(
            None, "--in-format", help="Input format when its bytes and extension do not tell (default: detected)."
        ),
        spz_version: int = typer.Option(4, "--spz-version", help="SPZ version to write: 2, 3 or 4."),
        keep_order: bool = typer.Option(
            False, "--keep-order", help="Compressed PLY: keep the input order instead of Morton order (looser bounds)."
        ),
        drop_invalid: bool = typer.Option(
            False, "--drop-invalid", help="Drop splats with non-finite values or zero quaternions instead of failing."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", "-w", help="Replace OUT if it exists."),
    ) -> None:
        """Convert a splat file to another format; prints count, SH degree, bounds and what the format lost."""
        from rich.console import Console
        from rich.table import Table

        from scenes.errors import FormatError
        from scenes.formats import convert_splats, output_format

        if dst.exists() and not overwrite:
            raise FormatError(f"{dst} exists; pass --overwrite to replace it")
        if src.resolve() == dst.resolve():
            raise FormatError(f"{src}: input and output are the same file")
        out_fmt = output_format(dst, format)
        options: dict = {}
        if out_fmt == "spz":
            options["version"] = spz_version
        if out_fmt == "compressed_ply":
            options["morton"] = not keep_order
        report = convert_splats(src, dst, in_format=in_format, format=format, drop_invalid=drop_invalid, **options)
        console = Console()
        table = Table(show_header=False, title=f"{report.source} -> {report.target}")
        table.add_row("formats", f"{report.source_format} -> {report.target_format}"
                      + (f" v{spz_version}" if report.target_format == "spz" else ""))  # fmt: skip
        table.add_row("splats", f"{report.count:,}")
        table.add_row("SH degree", str(report.sh_degree))
        lo, hi = report.bounds_min, report.bounds_max
        table.add_row("bounds min", "  ".join(f"{v:.4g}" for v in lo))
        table.add_row("bounds max", "  ".join(f"{v:.4g}" for v in hi))
        table.add_row("size", f"{_size(report.bytes_in)} -> {_size(report.bytes_out)}")
        for note in report.read_notes:
            table.add_row("read", note)
        for item in report.lost or ("nothing",):
            table.add_row("[yellow]lost[/yellow]", item)
        console.print(table)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"
