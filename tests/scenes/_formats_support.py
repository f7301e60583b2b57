"""Helpers for the splat format tests: random splats, external reference tools (splat-transform, gsplat)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from scenes import Splats

ROOT = Path(__file__).resolve().parents[2]


def random_splats(n: int, degree: int = 3, seed: int = 0, *, extent: float = 3.0, in_range: bool = True) -> Splats:
    """Splats with values inside every format's representable range (``in_range``) or wider."""
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    sh = rng.normal(0.0, 0.3, (n, k, 3))
    if in_range:
        sh[:, 1:] = np.clip(sh[:, 1:], -0.95, 0.95)
        sh[:, 0] = np.clip(sh[:, 0], -1.7, 1.7)  # colour within [0, 1] and SPZ's DC range
    else:
        sh *= 4.0  # colours beyond [0, 1], SH beyond SPZ's [-1, 1]
    return Splats(
        rng.uniform(-extent, extent, (n, 3)),
        rng.normal(size=(n, 4)),
        rng.uniform(-7.0, 1.0, (n, 3)) if in_range else rng.normal(-4.0, 4.0, (n, 3)),
        rng.normal(0.0, 2.0, n),
        sh,
    )


def splat_transform_command() -> list[str] | None:
    """The splat-transform CLI (npm @playcanvas/splat-transform) if installed: $HYBRID_SPLAT_TRANSFORM,
    ``.node/node_modules/.bin`` in the checkout, or PATH."""
    candidates = [os.environ.get("HYBRID_SPLAT_TRANSFORM"), str(ROOT / ".node/node_modules/.bin/splat-transform")]
    for c in candidates:
        if c and Path(c).is_file() and shutil.which("node"):
            return [c]
    found = shutil.which("splat-transform")
    return [found] if found and shutil.which("node") else None


class SplatTransform:
    """Runs splat-transform (PlayCanvas's converter; its SPZ writer is Niantic's own code compiled to WASM)."""

    def __init__(self, command: list[str]):
        self.command = command

    def __call__(self, *args: str | Path) -> None:
        res = subprocess.run([*self.command, "-q", "-w", *map(str, args)], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise AssertionError(f"splat-transform {args} failed ({res.returncode}): {res.stderr[-2000:]}")


@pytest.fixture(scope="session")
def splat_transform() -> SplatTransform:
    cmd = splat_transform_command()
    if cmd is None:
        pytest.skip(
            "splat-transform not installed (npm install --prefix .node @playcanvas/splat-transform@3.7.0, or set "
            "HYBRID_SPLAT_TRANSFORM to its bin/splat-transform)"
        )
    return SplatTransform(cmd)


def activated_close(a: Splats, b: Splats, *, means=0.0, log_scales=0.0, opacity=0.0, sh=0.0, quat_dot=1.0) -> None:
    """Field-wise bounds between two splat sets of the same order (opacity compared after the sigmoid; quaternions
    by |dot| of the unit quaternions, so q and -q agree)."""
    assert len(a) == len(b)
    np.testing.assert_allclose(a.means, b.means, rtol=0, atol=means)
    np.testing.assert_allclose(a.log_scales, b.log_scales, rtol=0, atol=log_scales)
    np.testing.assert_allclose(a.opacities, b.opacities, rtol=0, atol=opacity)
    k = min(a.sh.shape[1], b.sh.shape[1])
    np.testing.assert_allclose(a.sh[:, :k], b.sh[:, :k], rtol=0, atol=sh)
    dot = np.abs((a.unit_quats.astype(np.float64) * b.unit_quats).sum(1))
    assert dot.min() >= quat_dot, f"worst |q . q'| = {dot.min()} < {quat_dot}"
