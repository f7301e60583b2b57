"""Benchmark of render.rasterize: the cpu backend against the pure-PyTorch peer, and gsplat on a GPU.

    python tools/bench/raster.py                 # scenarios a, b, c on the CPU (+ peak RSS of c)
    python tools/bench/raster.py --scenarios a   # one scenario
    python tools/bench/raster.py --scenarios b --breakdown   # + time per cpu kernel (forward; forward+backward)
    python tools/bench/raster.py --gpu           # gsplat vs render.rasterize at 1920x1080 with 1M splats
    git show HEAD:render/_cpu_kernels.py > /tmp/old_kernels.py
    python tools/bench/raster.py --ab-kernels /tmp/old_kernels.py   # + cpu times with those kernels, alternated

Scenarios (targets on the 2-core CPU machine in brackets):
  (a) 30k random splats at 320x240      [forward <= 60 ms, forward+backward <= 200 ms, >= 20x the peer]
  (b) the real garden scene (138,766 points, its 3 cameras, 648x420), gsplat-style initial scales
                                        [>= 20x the peer]
  (c) 100k random splats at 640x480     [forward <= 250 ms; peak RSS of forward+backward < 2 GB]
The peer is the reference backend: a straightforward padded, tiled pure-PyTorch rasterizer.
Random splats: means uniform in the view frustum at depth 2-6, wxyz quaternions from a normal,
screen-space standard deviations log-uniform in [0.4, 2.4] px per axis (so the depth complexity
is the same at every resolution), opacities uniform in [0.1, 1], colours uniform.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from render import RasterOptions, rasterize  # noqa: E402

GARDEN = Path(os.environ.get("HYBRID_SHARED_DATA", ROOT.parent / "shared" / "data")) / "gsplat" / "test_garden.npz"


# ------------------------------------------------------------------------------------------ scenes
def random_scene(n: int, width: int, height: int, seed: int = 0, dtype=torch.float32) -> dict:
    g = torch.Generator().manual_seed(seed)
    f = 0.9 * width
    z = 2.0 + 4.0 * torch.rand(n, generator=g, dtype=torch.float64)
    x = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * z * (width / 2) / f * 1.1
    y = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * z * (height / 2) / f * 1.1
    sigma_px = torch.exp(math.log(0.4) + torch.rand(n, 3, generator=g, dtype=torch.float64) * math.log(6.0))
    return {
        "means": torch.stack([x, y, z], -1).to(dtype),
        "quats": torch.randn(n, 4, generator=g, dtype=torch.float64).to(dtype),
        "scales": (sigma_px * z[:, None] / f).to(dtype),
        "opacities": (0.1 + 0.9 * torch.rand(n, generator=g, dtype=torch.float64)).to(dtype),
        "colors": torch.rand(n, 3, generator=g, dtype=torch.float64).to(dtype),
        "viewmats": torch.eye(4, dtype=dtype)[None],
        "Ks": torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=dtype)[None],
        "width": width,
        "height": height,
        "sh_degree": None,
    }


def garden_scene(path: Path = GARDEN, seed: int = 0) -> dict:
    """All garden points with gsplat simple_trainer's initialisation (scales from 3 nearest neighbours)."""
    from scipy.spatial import cKDTree

    d = np.load(path)
    pts = d["means3d"].astype(np.float64)
    dist, _ = cKDTree(pts).query(pts, k=4)
    scales = np.sqrt((dist[:, 1:] ** 2).mean(-1))  # gsplat: sqrt(mean squared distance to 3 neighbours)
    g = torch.Generator().manual_seed(seed)
    n = len(pts)
    sh = torch.zeros(n, 16, 3)
    sh[:, 0] = (torch.from_numpy(d["colors"]).float() / 255.0 - 0.5) / 0.28209479177387814
    return {
        "means": torch.from_numpy(pts).float(),
        "quats": torch.rand(n, 4, generator=g),
        "scales": torch.from_numpy(np.repeat(scales[:, None], 3, 1)).float(),
        "opacities": torch.full((n,), 0.1),
        "colors": sh,
        "viewmats": torch.from_numpy(d["viewmats"]).float(),
        "Ks": torch.from_numpy(d["Ks"]).float(),
        "width": int(d["width"]),
        "height": int(d["height"]),
        "sh_degree": 3,
    }


SCENARIOS = {
    "a": ("30k random splats, 320x240", lambda: random_scene(30_000, 320, 240)),
    "b": ("real garden, 138,766 splats, 3 cameras, 648x420", garden_scene),
    "c": ("100k random splats, 640x480", lambda: random_scene(100_000, 640, 480)),
}
DIFF = ("means", "quats", "scales", "opacities", "colors")


# ------------------------------------------------------------------------------------------ timing
def run_once(scene: dict, backend: str, backward: bool, device: str = "cpu", options=None) -> None:
    args = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in scene.items()}
    if backward:
        for k in DIFF:
            args[k] = args[k].detach().requires_grad_(True)
    res = rasterize(
        args["means"], args["quats"], args["scales"], args["opacities"], args["colors"], args["viewmats"], args["Ks"],
        args["width"], args["height"], sh_degree=args["sh_degree"], backend=backend, options=options,
    )  # fmt: skip
    if backward:
        (res.colors.sum() + res.alphas.sum()).backward()
    if device != "cpu":
        torch.cuda.synchronize()


def median_ms(fn, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), times


def machine() -> str:
    model = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    import numba

    return (
        f"cpu: {model}, {cores} cores usable, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min); "
        f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads)"
    )


def _vm_hwm_mib() -> float:
    """Peak resident set size of this process's address space (VmHWM). Unlike getrusage's ru_maxrss it is not
    inherited from the forking parent across exec, so a child started by a big parent reports its own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


def peak_rss_child(name: str) -> None:
    """Run (name) forward+backward once after a warm-up and print the process's peak RSS in MiB (JSON)."""
    scene = SCENARIOS[name][1]()
    run_once(scene, "cpu", backward=True)
    before = _vm_hwm_mib()
    run_once(scene, "cpu", backward=True)
    print(json.dumps({"peak_rss_mib": _vm_hwm_mib(), "after_warmup_mib": before}))


_TIMED_KERNELS = (
    "project_fwd", "sh_fwd_parallel", "radix_argsort", "bin_tiles", "raster_fwd",
    "raster_bwd", "reduce_pairs", "sh_bwd_parallel", "project_bwd",
)  # fmt: skip


def breakdown(scene: dict, repeats: int, backward: bool = True) -> None:
    """Median wall time per cpu-backend kernel over ``repeats`` forward(+backward) runs; the rest of the run
    (argument checks, torch <-> numpy, depth sort glue, autograd) is printed as overhead."""
    from render import _cpu

    real = _cpu.kernels()
    times: dict[str, list[float]] = {}

    class Timed:  # the kernel module with the listed kernels timed (summed per run)
        def __getattr__(self, name):
            fn = getattr(real, name)
            if name not in _TIMED_KERNELS:
                return fn

            def timed(*args):
                t = time.perf_counter()
                out = fn(*args)
                times.setdefault(name, [0.0] * repeats)[current[0]] += (time.perf_counter() - t) * 1000
                return out

            return timed

    totals, current = [], [0]
    _cpu._KERNELS = Timed()
    try:
        for i in range(repeats):
            current[0] = i
            t = time.perf_counter()
            run_once(scene, "cpu", backward=backward)
            totals.append((time.perf_counter() - t) * 1000)
    finally:
        _cpu._KERNELS = real
    med = {k: statistics.median(v) for k, v in times.items()}
    parts = ", ".join(f"{k} {v:.1f}" for k, v in med.items())
    total = statistics.median(totals)
    what = "forward+backward" if backward else "forward"
    print(f"    breakdown of {what} (median ms of {repeats}): {parts}; "
          f"total {total:.1f}, outside the kernels {total - sum(med.values()):.1f}")  # fmt: skip


def load_kernels(path: Path):
    """Another version of render/_cpu_kernels.py (a copy outside the tree) as a module, for --ab-kernels."""
    import importlib

    from render import _cpu

    _cpu.kernels()  # numba imported and its cache set up
    sys.path.insert(0, str(path.parent))  # imported by name: numba's on-disk cache pickles the module name
    try:
        return importlib.import_module(path.stem)
    finally:
        sys.path.remove(str(path.parent))


def ab_kernels(scene: dict, other, label: str, repeats: int) -> None:
    """cpu forward and forward+backward with this tree's kernels and with ``other``, alternated run by run
    so that both see the same machine load (median ms)."""
    from render import _cpu

    mine = _cpu.kernels()

    def run(mod, backward):
        _cpu._KERNELS = mod
        try:
            t = time.perf_counter()
            run_once(scene, "cpu", backward)
            return (time.perf_counter() - t) * 1000
        finally:
            _cpu._KERNELS = mine

    for backward in (False, True):
        run(other, backward)  # compile or load the cache
        a, b = [], []
        for _ in range(repeats):
            a.append(run(mine, backward))
            b.append(run(other, backward))
        p, q = statistics.median(a), statistics.median(b)
        what = "forward+backward" if backward else "forward"
        print(f"    A/B {what}: this tree {p:.1f} ms, {label} {q:.1f} ms (alternated, median of {repeats}) "
              f"-> {q / p:.2f}x")  # fmt: skip


def bench_cpu(
    names: list[str], repeats: int, peer_repeats: int, peer_backward: bool, show_breakdown: bool,
    ab_path: Path | None = None,
) -> None:  # fmt: skip
    print(machine())
    other = load_kernels(ab_path) if ab_path else None
    for name in names:
        title, make = SCENARIOS[name]
        if name == "b" and not GARDEN.is_file():
            print(f"({name}) {title}: skipped, {GARDEN} not found")
            continue
        scene = make()
        t0 = time.perf_counter()
        run_once(scene, "cpu", backward=True)  # compile (or load the on-disk cache) and warm up
        first = (time.perf_counter() - t0) * 1000
        fwd, _ = median_ms(lambda s=scene: run_once(s, "cpu", False), repeats)
        fb, _ = median_ms(lambda s=scene: run_once(s, "cpu", True), repeats)
        line = f"({name}) {title}: cpu forward {fwd:.1f} ms, forward+backward {fb:.1f} ms (median of {repeats}; " \
               f"first call {first:.0f} ms)"  # fmt: skip
        print(line)
        if show_breakdown:
            breakdown(scene, repeats, backward=False)
            breakdown(scene, repeats)
        if other is not None:
            ab_kernels(scene, other, ab_path.name, repeats)
        if name == "c":
            out = subprocess.run([sys.executable, __file__, "--rss-child", "c"], capture_output=True, text=True,
                                 check=True)  # fmt: skip
            rss = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"    peak RSS of (c) forward+backward (fresh process, includes torch/numba): "
                  f"{rss['peak_rss_mib']:.0f} MiB")  # fmt: skip
        if peer_repeats:  # alternate peer and cpu runs so that both see the same machine load
            for backward in (False, True) if peer_backward else (False,):
                peer_t, cpu_t = [], []
                for _ in range(peer_repeats):
                    peer_t.append(median_ms(lambda s=scene, b=backward: run_once(s, "reference", b), 1, warmup=0)[0])
                    cpu_t.append(median_ms(lambda s=scene, b=backward: run_once(s, "cpu", b), 3, warmup=0)[0])
                p, q = statistics.median(peer_t), statistics.median(cpu_t)
                what = "forward+backward" if backward else "forward"
                print(f"    peer (padded tiled PyTorch, the reference backend) {what} {p:.0f} ms vs cpu {q:.1f} ms "
                      f"in the same stretch -> cpu is {p / q:.1f}x faster")  # fmt: skip


def bench_gpu(repeats: int, n: int = 1_000_000, width: int = 1920, height: int = 1080) -> None:
    import gsplat

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    print(f"gpu: {torch.cuda.get_device_name()}, gsplat {gsplat.__version__}, torch {torch.__version__}")
    scene = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in random_scene(n, width, height).items()}
    a = scene

    def direct():
        gsplat.rasterization(a["means"], a["quats"], a["scales"], a["opacities"], a["colors"], a["viewmats"], a["Ks"],
                             width, height, packed=False)  # fmt: skip
        torch.cuda.synchronize()

    fast = RasterOptions(splat_ids=False, check_finite=False)
    checked = RasterOptions(splat_ids=False)

    def ours(options):
        run_once(a, "gsplat", backward=False, device="cuda", options=options)

    # interleave to share any drift between the two
    t_direct, t_ours, t_checked = [], [], []
    for fn in (direct, lambda: ours(fast), lambda: ours(checked)):
        for _ in range(3):
            fn()
    for _ in range(repeats):
        for fn, acc in ((direct, t_direct), (lambda: ours(fast), t_ours), (lambda: ours(checked), t_checked)):
            t = time.perf_counter()
            fn()
            acc.append((time.perf_counter() - t) * 1000)
    d, o, c = (statistics.median(x) for x in (t_direct, t_ours, t_checked))
    print(f"{n} splats {width}x{height}: gsplat.rasterization {d:.2f} ms, render.rasterize {o:.2f} ms "
          f"(overhead {100 * (o / d - 1):+.1f}%), with the NaN/inf check {c:.2f} ms ({100 * (c / d - 1):+.1f}%)")  # fmt: skip
    ids = RasterOptions(splat_ids=True, check_finite=False)
    s, _ = median_ms(lambda: ours(ids), max(3, repeats // 4))
    print(f"    with splat_ids (dominant-splat map via rasterize_to_indices_in_range): {s:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default="a,b,c", help="comma-separated subset of a,b,c")
    ap.add_argument("--repeats", type=int, default=15, help="timed runs per measurement (median)")
    ap.add_argument("--peer-repeats", type=int, default=3, help="timed runs of the peer (0: skip the peer)")
    ap.add_argument("--peer-backward", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the peer's forward+backward")  # fmt: skip
    ap.add_argument("--breakdown", action="store_true",
                    help="also print the time of each cpu kernel (forward, then forward+backward)")  # fmt: skip
    ap.add_argument("--gpu", action="store_true", help="gsplat vs render.rasterize at 1920x1080 with 1M splats")
    ap.add_argument("--ab-kernels", type=Path, metavar="PATH",
                    help="also time the cpu backend with this copy of render/_cpu_kernels.py (A/B, alternated)")  # fmt: skip
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        peak_rss_child(args.rss_child)
    elif args.gpu:
        bench_gpu(args.repeats)
    else:
        bench_cpu([s.strip() for s in args.scenarios.split(",") if s.strip()], args.repeats, args.peer_repeats,
                  args.peer_backward, args.breakdown, args.ab_kernels)  # fmt: skip


if __name__ == "__main__":
    main()
