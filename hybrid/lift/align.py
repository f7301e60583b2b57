"""Gravity and scale for a structure-from-motion result (whose frame and units are arbitrary).

+Z up: the dominant plane of the sparse points whose normal agrees (within
``max_tilt_deg``) with the cameras' average up vector is taken as the ground; without
such a plane the cameras' up vector is used. The ground goes to ``z = 0`` and the middle
of the scene to the origin. Metres: ``camera_height`` (the median height of the cameras
above the ground) or an explicit ``scale``; by default a prior camera height of
:data:`DEFAULT_CAMERA_HEIGHT` metres (a person holding a phone) is assumed.

Known cameras are never aligned: their world frame and units are kept exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenes.errors import ShapeError
from scenes.scene import Camera

__all__ = ["AlignOptions", "Alignment", "DEFAULT_CAMERA_HEIGHT", "estimate_alignment", "fit_plane", "apply_similarity"]

DEFAULT_CAMERA_HEIGHT = 1.6  # metres: eye level of a standing person filming with a phone


@dataclass(frozen=True)
class AlignOptions:
    """How the reconstruction is put upright and in metres."""

    camera_height: float | None = None  # median camera height above the ground, metres (None: prior)
    scale: float | None = None  # metres per reconstruction unit (overrides camera_height)
    max_tilt_deg: float = 35.0  # largest angle between a ground normal and the cameras' up vector
    seed: int = 0  # RANSAC seed


@dataclass(frozen=True, eq=False)
class Alignment:
    """A similarity ``x_world = scale * R @ x + t`` and how it was found."""

    R: np.ndarray  # [3, 3]
    t: np.ndarray  # [3]
    scale: float
    up_source: str  # "ground plane" or "camera up"
    ground_share: float  # share of the points on the ground plane (0 without one)
    tilt_deg: float  # angle between the chosen up and the cameras' average up vector
    camera_height: float  # median camera height above the ground after alignment, metres
    scale_source: str  # "camera height", "scale" or "prior camera height"

    @property
    def matrix(self) -> np.ndarray:
        """[4, 4] homogeneous similarity."""
        M = np.eye(4)
        M[:3, :3] = self.scale * self.R
        M[:3, 3] = self.t
        return M

    def to_dict(self) -> dict:
        return {"up_source": self.up_source, "ground_share": round(self.ground_share, 4),
                "tilt_deg": round(self.tilt_deg, 3), "scale": self.scale, "scale_source": self.scale_source,
                "camera_height_m": round(self.camera_height, 4), "matrix": self.matrix.tolist()}  # fmt: skip


def fit_plane(
    points: np.ndarray, threshold: float, iters: int, rng: np.random.Generator
) -> tuple[np.ndarray, float, np.ndarray]:
    """RANSAC plane ``n . x = d`` refined on its inliers: ``(n [3], d, inlier mask [P])``."""
    P = len(points)
    best = np.zeros(P, bool)
    for _ in range(iters):
        a, b, c = points[rng.choice(P, 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm < 1e-12:
            continue
        n /= norm
        inl = np.abs(points @ n - n @ a) < threshold
        if inl.sum() > best.sum():
            best = inl
    if best.sum() < 3:
        return np.array([0.0, 0.0, 1.0]), 0.0, best
    q = points[best]
    centre = q.mean(0)
    n = np.linalg.svd(q - centre)[2][2]
    inl = np.abs((points - centre) @ n) < threshold
    return n, float(n @ centre), inl


def _rotation_to_z(n: np.ndarray) -> np.ndarray:
    """Smallest rotation taking the unit vector ``n`` to +Z."""
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(n, z)
    c = float(n @ z)
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx * (1.0 / (1.0 + c))


def estimate_alignment(points: np.ndarray, cameras: list[Camera], opts: AlignOptions | None = None) -> Alignment:
    """Find the similarity that puts ``points`` and ``cameras`` upright, grounded and in metres."""
    opts = opts or AlignOptions()
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 10:
        raise ShapeError(f"points: need at least 10 points [P, 3] to find the ground, got shape {points.shape}")
    if opts.scale is not None and not opts.scale > 0:
        raise ShapeError(f"scale: must be > 0 metres per unit, got {opts.scale}")
    if opts.camera_height is not None and not opts.camera_height > 0:
        raise ShapeError(f"camera_height: must be > 0 metres, got {opts.camera_height}")
    rng = np.random.default_rng(opts.seed)
    centres = np.array([c.position for c in cameras])
    cam_up = -np.mean([c.c2w[:3, 1] for c in cameras], axis=0)  # OpenCV: camera -y is image up
    cam_up /= np.linalg.norm(cam_up)
    spread = np.percentile(np.linalg.norm(points - np.median(points, 0), axis=1), 90)
    threshold = 0.01 * spread
    remaining = np.ones(len(points), bool)
    chosen = None
    for _ in range(3):  # the three largest planes; the ground is the largest one facing up
        idx = np.nonzero(remaining)[0]
        if len(idx) < 10:
            break
        n, d, inl = fit_plane(points[idx], threshold, 400, rng)
        if inl.sum() < max(10, 0.1 * len(points)):
            break
        if np.mean(centres @ n - d) < 0:  # normal towards the cameras
            n, d = -n, -d
        tilt = float(np.degrees(np.arccos(np.clip(n @ cam_up, -1, 1))))
        if tilt <= opts.max_tilt_deg:
            chosen = (n, d, float(inl.sum()) / len(points), tilt)
            break
        remaining[idx[inl]] = False
    if chosen is not None:
        n, d, share, tilt = chosen
        up_source = "ground plane"
    else:
        n, share, tilt = cam_up, 0.0, 0.0
        d = float(np.percentile(points @ n, 2))  # the lowest points stand in for the ground
        up_source = "camera up"
    R = _rotation_to_z(n)
    heights = centres @ n - d
    median_h = float(np.median(heights))
    if opts.scale is not None:
        s, scale_source = float(opts.scale), "scale"
    else:
        target = opts.camera_height if opts.camera_height is not None else DEFAULT_CAMERA_HEIGHT
        scale_source = "camera height" if opts.camera_height is not None else "prior camera height"
        if median_h <= 0:
            raise ShapeError(
                "the cameras are not above the ground plane found; give --scale instead of a camera height"
            )
        s = target / median_h
    rotated = points @ R.T
    centre_xy = np.median(rotated[:, :2], axis=0)
    t = np.array([-s * centre_xy[0], -s * centre_xy[1], -s * d])  # ground (n . x = d) -> z = 0
    return Alignment(R, t, s, up_source, share, tilt, s * median_h, scale_source)


def apply_similarity(
    A: Alignment, cameras: list[Camera | None], points: np.ndarray
) -> tuple[list[Camera | None], np.ndarray]:
    """Cameras and points in the aligned frame (cameras keep their intrinsics)."""
    out = []
    for c in cameras:
        if c is None:
            out.append(None)
            continue
        c2w = c.c2w
        new = np.eye(4)
        new[:3, :3] = A.R @ c2w[:3, :3]
        new[:3, 3] = A.scale * A.R @ c2w[:3, 3] + A.t
        out.append(Camera(c.K, np.linalg.inv(new), c.width, c.height, c.name))
    pts = A.scale * np.asarray(points, np.float64) @ A.R.T + A.t
    return out, pts


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``(s, R, t)`` with ``dst ~ s R src + t`` for corresponding ``[N, 3]`` points, least squares (Umeyama 1991).

    For comparing a lift with a known truth: e.g. its capture cameras' centres with the true ones.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, sig, Vt = np.linalg.svd(b.T @ a / len(src))
    E = np.diag([1.0, 1.0, np.sign(np.linalg.det(U) * np.linalg.det(Vt))])
    R = U @ E @ Vt
    scale = float((sig * np.diag(E)).sum() / ((a**2).sum() / len(src)))
    return scale, R, mu_d - scale * R @ mu_s
