"""Quaternion algebra shared by physics, rendering and export (wxyz, Hamilton convention)."""

from __future__ import annotations

import numpy as np

__all__ = ["quat_multiply"]


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # [..., 4] x [..., 4] -> [..., 4], wxyz
    """Hamilton product ``a * b`` (rotate by ``b`` first, then ``a``), broadcasting over leading axes; float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )
