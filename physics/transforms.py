"""Rigid transforms for splats that follow their bodies: quaternions (wxyz), poses, SH rotation.

A pose is 7 numbers ``[x, y, z, qw, qx, qy, qz]``: the world position and wxyz rotation of a
frame. An object's splats are stored at its rest pose; at a new pose they move by the
relative transform ``delta = pose * rest^-1``::

    means' = R_delta mu + t_delta
    quats' = q_delta * q                 (rotates each Gaussian's covariance: R Sigma R^T)
    sh'    = D(R_delta) sh               (per SH band; keeps view-dependent colour attached)

``D(R)`` maps the SH coefficients of a colour function ``f`` to those of the rotated
function ``f'(d) = f(R^T d)``: a viewer looking along world direction ``d`` at the moved
object sees what it saw along ``R^T d`` at rest. We build ``D`` per band by evaluating the
3DGS real SH basis (the one gsplat and the Inria code evaluate) at fixed directions and at
their rotations, ``D_l = pinv(Y_l(dirs)) Y_l(R^T dirs)``; this is exact because each band
is closed under rotation, and it follows the basis' sign and ordering conventions by
construction. :class:`SplatRig` applies all of this to every object's splats in one compiled
pass (``physics._kernels``); :func:`transform_splats_reference` is its slow, obvious twin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenes.errors import ShapeError
from scenes.rotations import quat_multiply
from scenes.splats import SH_C0, Splats, sh_basis_terms

__all__ = [
    "quat_multiply",
    "quat_conjugate",
    "quat_normalize",
    "quat_to_matrix",
    "quat_angle_deg",
    "plane_basis",
    "matrix_to_quat",
    "quat_left_matrix",
    "pose_compose",
    "pose_inverse",
    "pose_relative",
    "transform_points",
    "sh_basis",
    "eval_sh",
    "sh_rotation_blocks",
    "rotate_sh",
    "transform_splats_reference",
    "SplatRig",
]

# Coefficient ranges of the SH bands (the basis itself is scenes.splats.sh_basis_terms).
_BANDS = ((0, 1), (1, 4), (4, 9), (9, 16))


# ------------------------------------------------------------------------------------ quaternions
def quat_normalize(q: np.ndarray) -> np.ndarray:  # [..., 4] -> [..., 4]
    q = np.asarray(q, np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(n == 0) or not np.all(np.isfinite(n)):
        raise ShapeError("quaternion: zero-length or non-finite quaternion; give [w, x, y, z] with a non-zero norm")
    return q / n


def quat_conjugate(q: np.ndarray) -> np.ndarray:  # [..., 4] -> [..., 4]
    q = np.asarray(q, np.float64)
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_to_matrix(q: np.ndarray) -> np.ndarray:  # [..., 4] wxyz (any norm) -> [..., 3, 3]
    w, x, y, z = np.moveaxis(quat_normalize(q), -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def quat_angle_deg(a, b) -> float:  # [4] x [4] wxyz unit -> degrees of the rotation between them (q ~ -q)
    return float(np.degrees(2.0 * np.arccos(min(1.0, abs(float(np.dot(a, b)))))))


def plane_basis(normal) -> np.ndarray:  # [3] -> [3, 3] rows e1, e2, unit normal (right-handed)
    """Two unit vectors spanning the plane of ``normal``, then the normal: ``points @ basis[:2].T`` are plane coordinates."""
    n = np.asarray(normal, np.float64)
    n = n / np.linalg.norm(n)
    e1 = np.cross(n, [1.0, 0, 0] if abs(n[0]) < 0.9 else [0, 1.0, 0])
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(n, e1), n])


def matrix_to_quat(R: np.ndarray) -> np.ndarray:  # [..., 3, 3] rotation -> [..., 4] wxyz with w >= 0
    """Rotation matrices to unit quaternions (Shepperd's method, branch per element)."""
    R = np.asarray(R, np.float64)
    if R.shape[-2:] != (3, 3):
        raise ShapeError(f"matrix_to_quat: expected [..., 3, 3], got {R.shape}")
    m = R.reshape(-1, 3, 3)
    tr = np.trace(m, axis1=1, axis2=2)
    diag = np.stack([m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1)
    # four candidate largest components; pick the best conditioned per matrix
    cand = np.stack([tr, diag[:, 0], diag[:, 1], diag[:, 2]], -1)
    k = np.argmax(cand, -1)
    q = np.empty((len(m), 4))
    s = np.sqrt(np.maximum(1.0 + tr, 1e-300)) * 2  # k == 0
    q0 = np.stack(
        [0.25 * s, (m[:, 2, 1] - m[:, 1, 2]) / s, (m[:, 0, 2] - m[:, 2, 0]) / s, (m[:, 1, 0] - m[:, 0, 1]) / s], -1
    )
    s = np.sqrt(np.maximum(1.0 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], 1e-300)) * 2
    q1 = np.stack(
        [(m[:, 2, 1] - m[:, 1, 2]) / s, 0.25 * s, (m[:, 0, 1] + m[:, 1, 0]) / s, (m[:, 0, 2] + m[:, 2, 0]) / s], -1
    )
    s = np.sqrt(np.maximum(1.0 + m[:, 1, 1] - m[:, 0, 0] - m[:, 2, 2], 1e-300)) * 2
    q2 = np.stack(
        [(m[:, 0, 2] - m[:, 2, 0]) / s, (m[:, 0, 1] + m[:, 1, 0]) / s, 0.25 * s, (m[:, 1, 2] + m[:, 2, 1]) / s], -1
    )
    s = np.sqrt(np.maximum(1.0 + m[:, 2, 2] - m[:, 0, 0] - m[:, 1, 1], 1e-300)) * 2
    q3 = np.stack(
        [(m[:, 1, 0] - m[:, 0, 1]) / s, (m[:, 0, 2] + m[:, 2, 0]) / s, (m[:, 1, 2] + m[:, 2, 1]) / s, 0.25 * s], -1
    )
    for i, qi in enumerate((q0, q1, q2, q3)):
        q[k == i] = qi[k == i]
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return q.reshape(R.shape[:-2] + (4,))


def quat_left_matrix(q: np.ndarray) -> np.ndarray:  # [..., 4] -> [..., 4, 4]
    """``L(q)`` with ``q * p == L(q) @ p`` for any wxyz quaternion ``p``."""
    w, x, y, z = np.moveaxis(np.asarray(q, np.float64), -1, 0)
    return np.stack(
        [
            np.stack([w, -x, -y, -z], -1),
            np.stack([x, w, -z, y], -1),
            np.stack([y, z, w, -x], -1),
            np.stack([z, -y, x, w], -1),
        ],
        -2,
    )


# ------------------------------------------------------------------------------------ poses
def _poses(p, name: str) -> np.ndarray:
    p = np.asarray(p, np.float64)
    if p.shape[-1:] != (7,) or not np.all(np.isfinite(p)):
        raise ShapeError(f"{name}: expected finite poses [..., 7] (x, y, z, qw, qx, qy, qz), got shape {p.shape}")
    return p


def pose_compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # [..., 7] x [..., 7] -> [..., 7]
    """``a * b``: the pose ``b`` (given in frame ``a``) expressed in the frame ``a`` lives in."""
    a, b = _poses(a, "pose a"), _poses(b, "pose b")
    t = np.einsum("...ij,...j->...i", quat_to_matrix(a[..., 3:]), b[..., :3]) + a[..., :3]
    return np.concatenate([t, quat_normalize(quat_multiply(a[..., 3:], b[..., 3:]))], -1)


def pose_inverse(p: np.ndarray) -> np.ndarray:  # [..., 7] -> [..., 7]
    p = _poses(p, "pose")
    qi = quat_conjugate(quat_normalize(p[..., 3:]))
    t = -np.einsum("...ij,...j->...i", quat_to_matrix(qi), p[..., :3])
    return np.concatenate([t, qi], -1)


def pose_relative(pose: np.ndarray, rest: np.ndarray) -> np.ndarray:  # [..., 7] x [..., 7] -> [..., 7]
    """``pose * rest^-1``: the world-frame motion that takes a body from ``rest`` to ``pose``."""
    return pose_compose(pose, pose_inverse(rest))


def transform_points(pose: np.ndarray, points: np.ndarray) -> np.ndarray:  # [7] x [N, 3] -> [N, 3]
    pose = _poses(pose, "pose")
    return np.asarray(points, np.float64) @ quat_to_matrix(pose[3:]).T + pose[:3]


# ------------------------------------------------------------------------------------ SH
def sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:  # [..., 3] unit -> [..., (degree+1)^2]
    """The 3DGS real SH basis (with its constants and signs) at unit directions ``dirs``."""
    d = np.asarray(dirs, np.float64)
    out = [np.full(d.shape[:-1], SH_C0)] + sh_basis_terms(d[..., 0], d[..., 1], d[..., 2], degree)
    return np.stack(out, -1)


def eval_sh(sh: np.ndarray, dirs: np.ndarray) -> np.ndarray:  # [N, K, 3] x [N, 3] -> [N, 3]
    """Colour of each splat seen along unit ``dirs`` (camera to splat), 3DGS convention, plus 0.5."""
    sh = np.asarray(sh, np.float64)
    degree = int(round(np.sqrt(sh.shape[1]))) - 1
    basis = sh_basis(dirs, degree)  # [N, K]
    return np.einsum("nk,nkc->nc", basis, sh) + 0.5


def _fibonacci_dirs(n: int) -> np.ndarray:  # [n, 3] well spread unit vectors (deterministic)
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (1 + 5**0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], -1)


_SAMPLE_DIRS = _fibonacci_dirs(48)
_BASIS_PINV = [np.linalg.pinv(sh_basis(_SAMPLE_DIRS, 3)[:, a:b]) for a, b in _BANDS]  # per band [2l+1, S]


def sh_rotation_blocks(R: np.ndarray, degree: int) -> list[np.ndarray]:  # [B, 3, 3] -> [[B, 2l+1, 2l+1]] l=1..deg
    """Per-band matrices ``D_l`` with ``sh'_l = D_l @ sh_l`` for objects rotated by ``R``."""
    R = np.asarray(R, np.float64)
    rotated = np.einsum("bji,sj->bsi", R, _SAMPLE_DIRS)  # R^T d for every sample direction
    basis = sh_basis(rotated, degree)  # [B, S, K]
    return [_BASIS_PINV[band] @ basis[..., _BANDS[band][0] : _BANDS[band][1]] for band in range(1, degree + 1)]


def rotate_sh(sh: np.ndarray, R: np.ndarray) -> np.ndarray:  # [N, K, 3] x [3, 3] -> [N, K, 3]
    """SH coefficients of splats whose object rotated by ``R`` (world frame)."""
    sh = np.asarray(sh)
    degree = int(round(np.sqrt(sh.shape[1]))) - 1
    out = np.array(sh, np.float64)
    for band, D in enumerate(sh_rotation_blocks(np.asarray(R)[None], degree), start=1):
        a, b = _BANDS[band]
        out[:, a:b] = np.einsum("ij,njc->nic", D[0], sh[:, a:b])
    return out.astype(sh.dtype)


# ------------------------------------------------------------------------------------ splats
def transform_splats_reference(
    splats: Splats,
    groups: list[np.ndarray],  # B arrays of splat indices, one per body
    rest_poses: np.ndarray,  # [B, 7]
    poses: np.ndarray,  # [B, 7]
    *,
    rotate_colors: bool = True,  # rotate SH bands 1-3 (as SplatRig with sh_mode="rotate_sh")
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # means [N, 3], quats [N, 4], sh [N, K, 3] (float64)
    """Slow, obvious twin of :meth:`SplatRig.apply`: loops over bodies, float64 numpy."""
    means = splats.means.astype(np.float64)
    quats = splats.quats.astype(np.float64)
    sh = splats.sh.astype(np.float64)
    for idx, rest, pose in zip(groups, _poses(rest_poses, "rest_poses"), _poses(poses, "poses"), strict=True):
        delta = pose_relative(pose, rest)
        R = quat_to_matrix(delta[3:])
        means[idx] = means[idx] @ R.T + delta[:3]
        quats[idx] = quat_multiply(delta[3:], quats[idx])
        if rotate_colors and sh.shape[1] > 1:
            sh[idx] = rotate_sh(sh[idx], R)
    return means, quats, sh


@dataclass(frozen=True)
class _Layout:
    entries: np.ndarray  # [M] int64 splat indices of all bodies, sorted
    run_starts: np.ndarray  # [U + 1] int64 entry ranges of runs of one body
    run_body: np.ndarray  # [U] int32 body of each run
    body_of_splat: np.ndarray  # [N] int32 body of each splat, -1 for none
    groups: tuple  # B arrays of splat indices (sorted), one per body


SH_MODES = ("view_dir", "rotate_sh")


class SplatRig:
    """Moves the splats of B rigid bodies to new poses, all bodies in one compiled pass.

    Holds the rest splats and output buffers; :meth:`apply` rewrites only the splats of
    bodies whose pose changed since the previous call (sleeping objects cost nothing) and
    returns views of the buffers ``(means [N, 3], quats [N, 4], sh [N, K, 3], opacity_logits [N])``,
    valid until the next call. Splats of no body never change. Hidden bodies (removed from
    the world) get an opacity logit of -100, i.e. they vanish.

    View-dependent colour (SH degree >= 1) has two exact treatments, chosen by ``sh_mode``:

    - ``"view_dir"`` (default): SH stay as at rest; :meth:`colors` evaluates them for a camera
      with the view direction rotated into each body's rest frame. Costs nothing per
      physics frame (the renderer evaluates SH per camera anyway) and is what keeps the
      20-object / 300k-splat update inside 5 ms: rotating degree-3 SH rewrites 192 bytes a
      splat, more than the memory bandwidth of a 2-core machine allows in that budget.
    - ``"rotate_sh"``: :meth:`apply` also rotates SH bands 1-3 (``D_l`` per body), so the
      returned splats can be handed to any renderer or exported as they are.
    """

    def __init__(
        self,
        splats: Splats,
        groups: list[np.ndarray],  # B arrays of splat indices into ``splats``, disjoint
        rest_poses: np.ndarray,  # [B, 7] the pose of each body at which ``splats`` were captured
        *,
        sh_mode: str = "view_dir",  # "view_dir" or "rotate_sh" (see the class docstring)
    ) -> None:
        if sh_mode not in SH_MODES:
            raise ShapeError(f"SplatRig: sh_mode must be one of {SH_MODES}, got {sh_mode!r}")
        self.splats = splats
        self.sh_mode = sh_mode
        self.rest_poses = _poses(rest_poses, "rest_poses").reshape(-1, 7).copy()
        if len(groups) != len(self.rest_poses):
            raise ShapeError(f"SplatRig: {len(groups)} splat groups for {len(self.rest_poses)} rest poses")
        n = len(splats)
        body_of_splat = np.full(n, -1, np.int32)
        arrays = []
        for b, g in enumerate(groups):
            g = np.unique(np.asarray(g, np.int64).reshape(-1))
            if g.size and (g[0] < 0 or g[-1] >= n):
                raise ShapeError(f"SplatRig: splat indices of body {b} out of range for {n} splats")
            if np.any(body_of_splat[g] >= 0):
                raise ShapeError(f"SplatRig: body {b} shares splats with another body; groups must be disjoint")
            body_of_splat[g] = b
            arrays.append(g)
        entries = np.nonzero(body_of_splat >= 0)[0].astype(np.int64)
        body_seq = body_of_splat[entries]
        cuts = np.nonzero(np.diff(body_seq))[0] + 1 if entries.size else np.zeros(0, np.int64)
        run_starts = (
            np.concatenate([[0], cuts, [entries.size]]).astype(np.int64) if entries.size else np.zeros(1, np.int64)
        )
        self._layout = _Layout(
            entries, run_starts, body_seq[run_starts[:-1]].astype(np.int32), body_of_splat, tuple(arrays)
        )
        self._rest_inv = pose_inverse(self.rest_poses) if len(self.rest_poses) else np.zeros((0, 7))
        self.means = splats.means.copy()
        self.quats = splats.quats.copy()
        self.sh = splats.sh.copy()
        self.opacity_logits = splats.opacity_logits.copy()
        self._last = self.rest_poses.copy()
        self._visible = np.ones(len(arrays), bool)
        self._P = _pack(np.tile([0, 0, 0, 1.0, 0, 0, 0], (len(arrays), 1)))

    @property
    def num_bodies(self) -> int:
        return len(self.rest_poses)

    @property
    def groups(self) -> tuple:
        """The splat indices of each body (sorted)."""
        return self._layout.groups

    def apply(
        self,
        poses: np.ndarray,  # [B, 7] current body poses
        visible: np.ndarray | None = None,  # [B] bool; False hides a body's splats
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        from physics._kernels import rig_move, rig_pack, rig_rotate_sh

        poses = _poses(poses, "poses").reshape(-1, 7)
        if poses.shape[0] != self.num_bodies:
            raise ShapeError(f"SplatRig.apply: expected {self.num_bodies} poses, got {poses.shape[0]}")
        visible = self._visible if visible is None else np.asarray(visible, bool).reshape(-1)
        if visible.shape != (self.num_bodies,):
            raise ShapeError(f"SplatRig.apply: visible must have {self.num_bodies} entries, got {visible.shape}")
        changed = np.any(poses != self._last, axis=1)
        lay = self._layout
        if changed.any():
            bad = rig_pack(poses, self._rest_inv, self._P)  # in place: no per-frame allocation
            if bad >= 0:
                raise ShapeError(f"SplatRig.apply: the quaternion of body {bad} has zero length; give [w, x, y, z]")
            rig_move(lay.entries, lay.run_starts, lay.run_body, changed, self._P,
                     self.splats.means, self.splats.quats, self.means, self.quats)  # fmt: skip
            degree = self.splats.sh_degree
            if self.sh_mode == "rotate_sh" and degree > 0:
                delta = pose_compose(poses, self._rest_inv)
                D = np.zeros((self.num_bodies, 3, 7, 7), np.float32)  # bands 1..3 padded to 7x7
                for band, Db in enumerate(sh_rotation_blocks(quat_to_matrix(delta[:, 3:]), degree), start=1):
                    D[:, band - 1, : 2 * band + 1, : 2 * band + 1] = Db
                rig_rotate_sh(lay.entries, lay.run_starts, lay.run_body, changed, D, degree, self.splats.sh, self.sh)
        for b in np.nonzero(visible != self._visible)[0]:
            idx = lay.groups[b]
            self.opacity_logits[idx] = self.splats.opacity_logits[idx] if visible[b] else -100.0
        self._last[...] = poses
        self._visible[...] = visible
        return self.means, self.quats, self.sh, self.opacity_logits

    def colors(self, campos: np.ndarray) -> np.ndarray:  # [3] -> [N, 3] float32
        """View-dependent colour of every splat seen from ``campos`` at the current poses.

        ``clamp(eval_sh(sh_rest, R^T d) + 0.5, 0)`` with ``d`` the unit direction from the
        camera to the splat and ``R`` its body's rotation since rest (gsplat's convention).
        Equal to evaluating rotated SH at ``d``, in either ``sh_mode``.
        """
        from physics._kernels import view_colors

        campos = np.asarray(campos, np.float64).reshape(-1)
        if campos.shape != (3,) or not np.all(np.isfinite(campos)):
            raise ShapeError(f"SplatRig.colors: campos must be 3 finite numbers, got {campos.tolist()}")
        out = np.empty((len(self.splats), 3), np.float32)
        view_colors(self.means, self.splats.sh, self._layout.body_of_splat, self._P, campos, out)
        return out

    def splats_now(self) -> Splats:
        """The current buffers as a (validated, copied) :class:`Splats`."""
        return Splats(self.means.copy(), self.quats.copy(), self.splats.log_scales, self.opacity_logits.copy(),
                      self.sh.copy(), dict(self.splats.extra))  # fmt: skip


def _pack(delta: np.ndarray) -> np.ndarray:  # [B, 7] -> [B, 16] float32 (R row-major, t, q)
    out = np.zeros((len(delta), 16), np.float32)
    if len(delta):
        q = quat_normalize(delta[:, 3:])
        out[:, :9] = quat_to_matrix(q).reshape(-1, 9)
        out[:, 9:12] = delta[:, :3]
        out[:, 12:] = q
    return out
