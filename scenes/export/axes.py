"""Axis conventions of the file formats and rigid transforms of splats (positions, rotations and SH).

Our world is right-handed, +Z up, +Y forward, +X right ("z-up"). Files use:

- ``y-up``: x right, y up, z back (RUB): glTF 2.0 (mandated) and SPZ (its specification's default).
- ``y-down``: x right, y down, z forward (RDF): the OpenCV/COLMAP convention that 3DGS PLY, ``.splat`` and
  compressed PLY files carry in practice, and that SuperSplat/PlayCanvas and splat-transform assume.
- ``z-up``: our own frame, unchanged.

``AXES[name]`` is the rotation taking our world coordinates to the file's coordinates.
"""

from __future__ import annotations

import numpy as np

from scenes.errors import ShapeError
from scenes.export.sh import check_rotation, rotate_sh
from scenes.rotations import quat_multiply
from scenes.splats import Splats

__all__ = [
    "AXES",
    "FORMAT_AXES",
    "axes_matrix",
    "quat_to_matrix",
    "matrix_to_quat",
    "quat_multiply",
    "transform_splats",
]

AXES: dict[str, np.ndarray] = {
    "z-up": np.eye(3),
    "y-up": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),  # (x, y, z) -> (x, z, -y)
    "y-down": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),  # (x, y, z) -> (x, -z, y)
}

# The convention each splat file format is written in and assumed when read, unless the user says otherwise.
FORMAT_AXES = {
    "glb": "y-up",
    "spz": "y-up",
    "ply": "y-down",
    "compressed-ply": "y-down",
    "splat": "y-down",
    "ksplat": "y-down",
}


def axes_matrix(name: str) -> np.ndarray:
    """The rotation from our +Z-up world to the axes ``name`` (see :data:`AXES`)."""
    try:
        return AXES[name].copy()
    except KeyError:
        raise ShapeError(f"axes: expected one of {sorted(AXES)}, got {name!r}") from None


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """[..., 4] wxyz quaternions (normalised here) -> [..., 3, 3] rotation matrices (float64)."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """A 3x3 rotation matrix -> unit wxyz quaternion with w >= 0 (float64)."""
    R = np.asarray(R, np.float64)
    if R.shape != (3, 3):
        raise ShapeError(f"matrix_to_quat: expected a 3x3 matrix, got shape {R.shape}")
    t = np.trace(R)
    if t > 0:
        s = 2.0 * np.sqrt(1.0 + t)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def transform_splats(splats: Splats, R: np.ndarray, t=(0.0, 0.0, 0.0)) -> Splats:
    """Splats moved by the rigid transform ``x -> R x + t``: means, rotations and SH coefficients (degrees 1-3).

    Scales and opacities are unchanged; quaternions keep their (un)normalised length.
    """
    R = check_rotation(R)
    t = np.asarray(t, np.float64).reshape(3)
    means = splats.means.astype(np.float64) @ R.T + t
    qR = matrix_to_quat(R)
    quats = quat_multiply(qR, splats.quats.astype(np.float64))
    sh = rotate_sh(splats.sh, R) if splats.sh.shape[1] > 1 else splats.sh
    return Splats(
        means.astype(np.float32),
        quats.astype(np.float32),
        splats.log_scales,
        splats.opacity_logits,
        sh,
        dict(splats.extra),
    )
