"""The scene model and its file formats."""
from scenes.errors import (
    BackendError,
    FormatError,
    HybridError,
    MissingDependencyError,
    PhysicsError,
    SceneError,
    ShapeError,
)
from scenes.splats import SH_C0, Splats, num_sh_coeffs, rgb_to_sh0, sh0_to_rgb

__all__ = [
    "BackendError",
    "FormatError",
    "HybridError",
    "MissingDependencyError",
    "PhysicsError",
    "SceneError",
    "ShapeError",
    "SH_C0",
    "Splats",
    "num_sh_coeffs",
    "rgb_to_sh0",
    "sh0_to_rgb",
]
