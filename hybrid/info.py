"""What this machine can run: versions and available backends (``hybrid info``)."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import platform


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _check(fn) -> tuple[bool, str]:
    try:
        return True, fn() or ""
    except Exception as exc:  # noqa: BLE001 - report any failure as "unavailable" with its reason
        return False, f"{type(exc).__name__}: {exc}".splitlines()[0][:160]


def _gsplat_cuda() -> str:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device (torch.cuda.is_available() is False)")
    importlib.import_module("gsplat")
    return f"{torch.cuda.get_device_name(0)}, gsplat {_version('gsplat')}"


def _cpu_raster() -> str:
    importlib.import_module("numba")
    render = importlib.import_module("render")
    if "cpu" not in render.available_backends():
        raise RuntimeError("render reports the cpu backend unavailable")
    return f"numba {_version('numba')}, {os.cpu_count()} cores"


def _egl() -> str:
    import moderngl

    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        return f"{ctx.info['GL_RENDERER']} (GL {ctx.version_code})"
    finally:
        ctx.release()


def _glfw() -> str:
    import glfw

    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise RuntimeError("no display (DISPLAY unset); use `hybrid render` for headless output")
    if not glfw.init():
        raise RuntimeError("glfw.init() failed")
    glfw.terminate()
    return f"glfw {_version('glfw')}"


def _pybullet() -> str:
    from scenes._deps import require

    pybullet = require("pybullet", "physics simulation")

    cid = pybullet.connect(pybullet.DIRECT)
    pybullet.disconnect(cid)
    return f"pybullet {_version('pybullet')}"


def _pycolmap() -> str:
    import pycolmap

    return f"pycolmap {pycolmap.__version__}"


def _pyav() -> str:
    import av

    return f"PyAV {av.__version__}"


def collect() -> dict:
    """Versions and backend availability as a JSON-serialisable dict."""
    versions = {
        name: _version(name)
        for name in (
            "hybrid-scene-runtime",
            "torch",
            "numpy",
            "numba",
            "gsplat",
            "pybullet",
            "pycolmap",
            "moderngl",
            "glfw",
            "av",
            "trimesh",
            "safetensors",
        )
    }
    versions["python"] = platform.python_version()
    backends = {}
    for name, fn in (
        ("gsplat CUDA", _gsplat_cuda),
        ("CPU raster (numba)", _cpu_raster),
        ("GL: EGL headless", _egl),
        ("GL: GLFW window", _glfw),
        ("PyBullet", _pybullet),
        ("pycolmap", _pycolmap),
        ("PyAV", _pyav),
    ):
        ok, detail = _check(fn)
        backends[name] = {"available": ok, "detail": detail}
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "versions": versions,
        "backends": backends,
    }
