"""Camera maths for the GL renderer: OpenCV intrinsics to GL clip space, look-at and orbits.

Cameras are world-to-camera ``viewmat [4, 4]`` and intrinsics ``K [3, 3]`` in the OpenCV axes
(x right, y down, z forward), as everywhere in the runtime. The GL projection keeps image row 0
at the top of the framebuffer (NDC y = +1), so a pixel (u, v) of the rasterizer is the GL
fragment at window coordinates (u, H - v).
"""

from __future__ import annotations

import numpy as np

from scenes.errors import ShapeError

__all__ = [
    "gl_projection",
    "look_at",
    "intrinsics_from_fov",
    "orbit_viewmats",
    "camera_center",
    "depth_coefficients",
]


def _check(name: str, arr, shape: tuple) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape != shape:
        raise ShapeError(f"{name}: expected shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ShapeError(f"{name}: contains non-finite values")
    return arr


def gl_projection(
    K: np.ndarray,  # [3, 3] OpenCV intrinsics, pixels
    width: int,
    height: int,
    near: float,
    far: float,
) -> np.ndarray:  # [4, 4] OpenCV camera coordinates -> GL clip coordinates
    """The projection whose clip coordinates put ``K @ x`` at the pixel the rasterizer uses.

    NDC x = 2u / W - 1 and y = 1 - 2v / H for the pixel (u, v) = (fx x / z + cx, fy y / z + cy);
    NDC z maps view depth ``near..far`` to -1..1 as a standard GL perspective does. Skew is ignored
    (as gsplat does).
    """
    K = _check("K", K, (3, 3))
    if not 0 < near < far:
        raise ShapeError(f"gl_projection: need 0 < near < far, got near={near}, far={far}")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    a, b = depth_coefficients(near, far)
    return np.array(
        [
            [2 * fx / width, 0, 2 * cx / width - 1, 0],
            [0, -2 * fy / height, 1 - 2 * cy / height, 0],
            [0, 0, a, b],
            [0, 0, 1, 0],
        ],
        dtype=np.float64,
    )


def depth_coefficients(near: float, far: float) -> tuple[float, float]:
    """``(a, b)`` with NDC depth ``a + b / z`` for view depth z (-1 at ``near``, +1 at ``far``)."""
    return (far + near) / (far - near), -2.0 * far * near / (far - near)


def look_at(
    eye: np.ndarray,  # [3] camera centre, world
    target: np.ndarray,  # [3] point looked at, world
    up: np.ndarray = (0.0, 0.0, 1.0),  # [3] world up (+Z)
) -> np.ndarray:  # [4, 4] world-to-camera, OpenCV axes
    """World-to-camera matrix of a camera at ``eye`` looking at ``target`` with ``up`` up on screen."""
    eye, target, up = _check_vec3("eye", eye), _check_vec3("target", target), _check_vec3("up", up)
    forward = target - eye
    dist = np.linalg.norm(forward)
    if dist == 0:
        raise ShapeError(f"look_at: eye and target are the same point {eye.tolist()}")
    z = forward / dist
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight along up: pick another up
        x = np.cross(z, np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # image y points down: -up projected
    R = np.stack([x, y, z])
    view = np.eye(4)
    view[:3, :3] = R
    view[:3, 3] = -R @ eye
    return view


def _check_vec3(name: str, v) -> np.ndarray:
    return _check(name, v, (3,))


def intrinsics_from_fov(width: int, height: int, fov_y_deg: float = 50.0) -> np.ndarray:  # [3, 3]
    """Pinhole intrinsics with square pixels, the principal point at the centre and vertical FOV ``fov_y_deg``."""
    if not 0 < fov_y_deg < 180:
        raise ShapeError(f"intrinsics_from_fov: fov_y_deg must lie in (0, 180), got {fov_y_deg}")
    f = 0.5 * height / np.tan(np.radians(fov_y_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)


def orbit_viewmats(
    center: np.ndarray,  # [3] point orbited, world
    radius: float,  # distance of the camera from ``center``, metres
    n: int,  # number of views, evenly spaced in azimuth
    elevation_deg: float = 20.0,  # angle above the horizontal plane (+Z up)
    start_azimuth_deg: float = 0.0,  # azimuth of the first view, from +X towards +Y
) -> np.ndarray:  # [n, 4, 4] world-to-camera
    """``n`` cameras on a circle around ``center`` (Z up), all looking at it."""
    center = _check("center", center, (3,))
    if n < 1:
        raise ShapeError(f"orbit_viewmats: n must be >= 1, got {n}")
    if not radius > 0:
        raise ShapeError(f"orbit_viewmats: radius must be > 0, got {radius}")
    el = np.radians(elevation_deg)
    out = np.empty((n, 4, 4))
    for i in range(n):
        az = np.radians(start_azimuth_deg) + 2 * np.pi * i / n
        offset = radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        out[i] = look_at(center + offset, center)
    return out


def camera_center(viewmat: np.ndarray) -> np.ndarray:  # [3]
    """World position of the camera of a world-to-camera matrix."""
    viewmat = _check("viewmat", viewmat, (4, 4))
    return -viewmat[:3, :3].T @ viewmat[:3, 3]
