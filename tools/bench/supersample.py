"""Cost of supersampling (render.supersample): a scene's capture views drawn coarser, as drawn vs supersampled.

Each capture camera of SCENE is scaled by ``--scale`` (default 0.5: half the capture's resolution) and
drawn by ``WorldModel(scene, MODE, supersample=...)`` with ``supersample`` 1 (as drawn) and ``None``
("auto"); both in the same run, interleaved, one thread. Prints the factor auto picked, the medians and
their ratio, and the machine.

    python tools/bench/supersample.py [--scene out/demo] [--scale 0.5] [--mode off|relight] [--repeats 7]

Run ``hybrid demo -o out/demo`` first (``make demo``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see docs/lift.md (Environment)
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from _machine import machine_line  # noqa: E402  (tools/bench/ is on sys.path when run as a script)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", type=Path, default=ROOT / "out" / "demo")
    ap.add_argument("--scale", type=float, default=0.5, help="the capture cameras scaled by this")
    ap.add_argument("--mode", choices=("off", "relight"), default="off")
    ap.add_argument("--cameras", type=int, default=4, help="capture cameras used (evenly spread)")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()

    import torch

    from hybrid.world_model import SplatState, WorldModel
    from render.supersample import scene_sampling
    from scenes import load_scene

    torch.set_num_threads(1)
    scene = load_scene(a.scene)
    if not scene.capture_cameras:
        raise SystemExit(f"{a.scene}: no capture cameras; supersampling 'auto' has nothing to compare with")
    pick = np.linspace(0, len(scene.capture_cameras) - 1, min(a.cameras, len(scene.capture_cameras))).astype(int)
    cams = [scene.capture_cameras[i].scaled(a.scale) for i in pick]
    state = SplatState.rest(scene)
    models = {"as drawn": WorldModel(scene, a.mode, supersample=1), "auto": WorldModel(scene, a.mode, supersample=None)}
    shade = None if a.mode == "off" else models["auto"].shade(state)
    sampling = scene_sampling(scene)
    factors = [sampling.factor(c, state.means) for c in cams]
    times = {k: [] for k in models}
    for r in range(a.repeats + 1):
        for name, wm in models.items():
            t = time.perf_counter()
            wm.images(state, cams, **({} if shade is None else {"shade": shade}))
            if r:  # the first round warms the kernels
                times[name].append(1000 * (time.perf_counter() - t) / len(cams))
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(machine_line())
    print(f"{a.scene}: {len(scene.splats)} splats; {len(cams)} capture cameras x {a.scale} "
          f"({cams[0].width}x{cams[0].height}); mode {a.mode}; auto factors {factors}")  # fmt: skip
    for k, v in med.items():
        print(f"  {k:9s} median {v:7.1f} ms per view (min {min(times[k]):.1f})")
    print(f"  auto / as drawn: {med['auto'] / med['as drawn']:.2f}x")


if __name__ == "__main__":
    main()
