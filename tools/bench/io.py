"""Splat file IO benchmark: load + save of a 1M-splat SH-3 scene as PLY and SPZ against raw copies of the bytes.

    python tools/bench/io.py [--splats 1000000] [--runs 5] [--dir /tmp]

Targets (foundation issue): PLY read and write throughput >= 70% of a raw copy (read + write) of the same bytes;
SPZ read and write of 1M splats under 1.5 s each. Prints medians and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _machine import cpu_model  # noqa: E402  (tools/bench/ is on sys.path when run as a script)

from scenes import Splats  # noqa: E402
from scenes.formats import read_splats, write_splats  # noqa: E402


def make_splats(n: int, seed: int = 0) -> Splats:
    """Plausible trained-scene statistics: positions in a 20 m box, log-scales around -4, SH rest small."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    return Splats(
        rng.uniform(-10, 10, (n, 3)).astype(f32),
        rng.standard_normal((n, 4), dtype=f32),
        rng.normal(-4.0, 1.0, (n, 3)).astype(f32),
        rng.normal(0.0, 2.0, n).astype(f32),
        np.concatenate([rng.normal(0, 1, (n, 1, 3)), rng.normal(0, 0.1, (n, 15, 3))], axis=1).astype(f32),
    )


def timed(fn, runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each run (CPU time shows the cost when the machine is shared)."""
    wall, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu


def raw_copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splats", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default=None, help="folder for the temporary files (default: the system temp folder)")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"machine: {cpu_model()}, {os.cpu_count()} logical cores, python {platform.python_version()}, "
                  f"numpy {np.__version__}")  # fmt: skip
    with console.status(f"generating {args.splats:,} SH-3 splats"):
        s = make_splats(args.splats)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        ply, spz, copy = d / "scene.ply", d / "scene.spz", d / "copy.bin"
        results: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        steps = [
            ("PLY write", lambda: write_splats(s, ply)),
            ("PLY read", lambda: read_splats(ply)),
            ("raw copy (read + write)", lambda: raw_copy(ply, copy)),
            ("shutil.copyfile", lambda: shutil.copyfile(ply, copy)),
            ("SPZ v4 write", lambda: write_splats(s, spz)),
            ("SPZ v4 read", lambda: read_splats(spz)),
        ]
        for name, fn in steps:
            with console.status(f"{name} x {args.runs}"):
                fn()  # warm-up: page cache, first-touch allocations
                results[name], cpu[name] = timed(fn, args.runs)
        size = ply.stat().st_size
        spz_size = spz.stat().st_size
    med = {k: statistics.median(v) for k, v in results.items()}
    table = Table("step", "median s", "min s", "median CPU s", "MB/s (PLY bytes)", title=f"{args.splats:,} splats, SH degree 3, "
                  f"PLY {size / 1e6:.0f} MB, SPZ {spz_size / 1e6:.1f} MB, {args.runs} runs")  # fmt: skip
    for k, v in results.items():
        table.add_row(
            k, f"{med[k]:.3f}", f"{min(v):.3f}", f"{statistics.median(cpu[k]):.3f}", f"{size / med[k] / 1e6:.0f}"
        )
    console.print(table)
    if hasattr(os, "getloadavg"):
        console.print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    copy_t = med["raw copy (read + write)"]
    ratios = {
        "PLY read / raw copy throughput": copy_t / med["PLY read"],
        "PLY write / raw copy throughput": copy_t / med["PLY write"],
    }
    for k, v in ratios.items():
        console.print(f"{k}: {v:.2f} (target >= 0.70) {'[green]ok' if v >= 0.7 else '[red]MISSED'}")
    for k in ("SPZ v4 read", "SPZ v4 write"):
        scaled = med[k] * 1_000_000 / args.splats
        console.print(
            f"{k} per 1M splats: {scaled:.2f} s (target < 1.5 s) {'[green]ok' if scaled < 1.5 else '[red]MISSED'}"
        )


if __name__ == "__main__":
    main()
