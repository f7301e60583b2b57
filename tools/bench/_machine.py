"""What every benchmark prints about the machine it ran on (imported as ``_machine`` from tools/bench/)."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (falls back to what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """One line: date, CPU, logical cores, load average, Python (shared machines are noisy: keep the load)."""
    try:
        load = "load average {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())
    except OSError:
        load = "load average unknown"
    return (
        f"{datetime.date.today().isoformat()}, {cpu_model()}, {os.cpu_count()} logical cores, {load}, "
        f"python {platform.python_version()}"
    )
