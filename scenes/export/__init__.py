"""Engine export and import: axis conventions, SH rotation and the glTF scene file.

Front door: :func:`scene_to_glb` / :func:`write_scene_glb` / :func:`read_scene_glb` (the whole scene as
one GLB with ``KHR_gaussian_splatting``, ``KHR_lights_punctual`` and ``OMI_physics_body``),
:func:`transform_splats` (a rigid motion of splats including their SH), :func:`rotate_sh` and
:data:`AXES` (our +Z-up world to each file convention).
"""

from scenes.export.axes import (
    AXES,
    FORMAT_AXES,
    axes_matrix,
    matrix_to_quat,
    quat_multiply,
    quat_to_matrix,
    transform_splats,
)
from scenes.export.gltf import GLTF_FROM_WORLD, read_glb_splats, read_scene_glb, scene_to_glb, write_scene_glb
from scenes.export.sh import rotate_sh, sh_basis, sh_rotation_matrices

__all__ = [
    "AXES",
    "FORMAT_AXES",
    "GLTF_FROM_WORLD",
    "axes_matrix",
    "matrix_to_quat",
    "quat_multiply",
    "quat_to_matrix",
    "read_glb_splats",
    "read_scene_glb",
    "rotate_sh",
    "scene_to_glb",
    "sh_basis",
    "sh_rotation_matrices",
    "transform_splats",
    "write_scene_glb",
]
