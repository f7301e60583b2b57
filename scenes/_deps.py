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


def require(module: str, feature: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` saying how to install it."""
    try:
        return importlib.import_module(module)
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
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any failure means unavailable
        return False
    return True
