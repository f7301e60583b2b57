"""The scene model and its file formats."""

from scenes.cameras import read_cameras_file, read_colmap_model, read_transforms_json, write_transforms_json
from scenes.errors import (
    BackendError,
    FormatError,
    HybridError,
    MissingDependencyError,
    PhysicsError,
    SceneError,
    ShapeError,
)
from scenes.folder import load_scene, save_scene
from scenes.formats import read_splats, write_splats
from scenes.scene import Camera, ColliderMesh, Ground, Light, Scene, SceneObject
from scenes.splats import SH_C0, Splats, num_sh_coeffs, rgb_to_sh0, sh0_to_rgb

__all__ = [
    "Camera",
    "ColliderMesh",
    "Ground",
    "Light",
    "Scene",
    "SceneObject",
    "load_scene",
    "save_scene",
    "read_cameras_file",
    "read_colmap_model",
    "read_transforms_json",
    "write_transforms_json",
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
    "read_splats",
    "write_splats",
]
