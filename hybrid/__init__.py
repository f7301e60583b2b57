"""hybrid: the runtime that composes scenes, render and physics (and the CLI ``hybrid``).

Importing it is light: no GPU, display, PyBullet or GL is touched until a feature is used.
"""

from scenes import (
    BackendError,
    Camera,
    FormatError,
    HybridError,
    Light,
    MissingDependencyError,
    PhysicsError,
    Scene,
    SceneError,
    SceneObject,
    ShapeError,
    Splats,
    load_scene,
    save_scene,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "BackendError",
    "Camera",
    "FormatError",
    "HybridError",
    "Light",
    "MissingDependencyError",
    "PhysicsError",
    "Scene",
    "SceneError",
    "SceneObject",
    "ShapeError",
    "Splats",
    "load_scene",
    "save_scene",
]
