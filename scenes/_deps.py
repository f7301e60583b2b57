"""Lazy imports of optional heavy packages with an actionable error."""

from __future__ import annotations

import importlib
from types import ModuleType

from scenes.errors import MissingDependencyError

# module name -> (pip distribution, extra of this project that pulls it in)
_PACKAGES = {
    "pybullet": ("pybullet", "physics"),
    "trimesh": ("trimesh", "physics"),
    "moderngl": ("moderngl", "gl"),
    "glfw": ("glfw", "gl"),
    "av": ("av", "lift"),
    "pycolmap": ("pycolmap", "lift"),
    "gsplat": ("gsplat", "cuda"),
    "numba": ("numba", None),
    "zstandard": ("zstandard", None),
    "imgui_bundle": ("imgui-bundle", "viewer"),
    "PIL": ("pillow", None),
}


# modules that print a banner from C when first imported (PyBullet: "pybullet build time: ...")
_BANNERS = {"pybullet"}


def _import(module: str) -> ModuleType:
    """``importlib.import_module``, with the process's stderr (fd 2) silenced while a banner-printing module loads."""
    import sys

    if module.split(".")[0] not in _BANNERS or module in sys.modules:
        return importlib.import_module(module)
    import ctypes
    import os

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (e.g. a replaced sys.stderr): import as is
        return importlib.import_module(module)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
            try:
                return importlib.import_module(module)
            finally:
                try:  # anything C stdio still buffers goes to /dev/null too
                    ctypes.CDLL(None).fflush(None)
                except (OSError, AttributeError):
                    pass
                os.dup2(saved, 2)
        finally:
            os.close(null)
    finally:
        os.close(saved)


def require(module: str, feature: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` saying how to install it."""
    try:
        return _import(module)
    except ImportError as exc:
        dist, extra = _PACKAGES.get(module.split(".")[0], (module.split(".")[0], None))
        how = f"pip install {dist}"
        if extra:
            how += f"  (or: pip install -e '.[{extra}]')"
        what = f" for {feature}" if feature else ""
        raise MissingDependencyError(
            f"the package '{dist}' is needed{what} but could not be imported ({exc}); install it with: {how}"
        ) from exc


def available(module: str) -> bool:
    """True when ``module`` imports."""
    try:
        _import(module)
    except Exception:  # noqa: BLE001 - any failure means unavailable
        return False
    return True
