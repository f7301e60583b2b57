"""Compiled loops behind :class:`physics.transforms.SplatRig` (numba; compiled on first use, cached on disk).

Imported lazily: ``import physics`` does not load numba. The loops are serial on purpose:
they are memory bound, and on the 2-core machines this runs on numba's thread pool cost
more than it saved (measured: 8 ms parallel vs 1.6 ms serial for 300k splats).

Splats are visited in runs: maximal ranges of consecutive entries (sorted by splat index)
that belong to one body, so the body's transform is loaded once per run and memory is
walked in order whatever the interleaving of the objects' splats.
"""

from __future__ import annotations

import numpy as np

from scenes._deps import require

numba = require("numba", "the compiled splat transforms")

# P[b] packs a body's motion since rest: R row-major (0-8), t (9-11), q wxyz (12-15).


@numba.njit(cache=True)
def rig_pack(poses, rest_inv, P):  # [B, 7] float64, [B, 7] float64 -> P [B, 16] float32 in place
    """``P[b] = pack(poses[b] * rest_inv[b])`` as ``_pack(pose_compose(...))`` computes it, without allocating.

    Returns -1, or the first body whose quaternion has zero length (P is then incomplete).
    """
    for b in range(poses.shape[0]):
        ax, ay, az = poses[b, 0], poses[b, 1], poses[b, 2]
        aw, aqx, aqy, aqz = poses[b, 3], poses[b, 4], poses[b, 5], poses[b, 6]
        bw, bx, by, bz = rest_inv[b, 3], rest_inv[b, 4], rest_inv[b, 5], rest_inv[b, 6]
        na = (aw * aw + aqx * aqx + aqy * aqy + aqz * aqz) ** 0.5
        if na == 0.0:
            return b
        w, x, y, z = aw / na, aqx / na, aqy / na, aqz / na  # the translation turns with the unit quaternion
        px, py, pz = rest_inv[b, 0], rest_inv[b, 1], rest_inv[b, 2]
        tx = (1 - 2 * (y * y + z * z)) * px + 2 * (x * y - w * z) * py + 2 * (x * z + w * y) * pz + ax
        ty = 2 * (x * y + w * z) * px + (1 - 2 * (x * x + z * z)) * py + 2 * (y * z - w * x) * pz + ay
        tz = 2 * (x * z - w * y) * px + 2 * (y * z + w * x) * py + (1 - 2 * (x * x + y * y)) * pz + az
        qw = aw * bw - aqx * bx - aqy * by - aqz * bz  # Hamilton product of the raw quaternions
        qx = aw * bx + aqx * bw + aqy * bz - aqz * by
        qy = aw * by - aqx * bz + aqy * bw + aqz * bx
        qz = aw * bz + aqx * by - aqy * bx + aqz * bw
        nq = (qw * qw + qx * qx + qy * qy + qz * qz) ** 0.5
        if nq == 0.0:
            return b
        w, x, y, z = qw / nq, qx / nq, qy / nq, qz / nq
        P[b, 0] = 1 - 2 * (y * y + z * z)
        P[b, 1] = 2 * (x * y - w * z)
        P[b, 2] = 2 * (x * z + w * y)
        P[b, 3] = 2 * (x * y + w * z)
        P[b, 4] = 1 - 2 * (x * x + z * z)
        P[b, 5] = 2 * (y * z - w * x)
        P[b, 6] = 2 * (x * z - w * y)
        P[b, 7] = 2 * (y * z + w * x)
        P[b, 8] = 1 - 2 * (x * x + y * y)
        P[b, 9], P[b, 10], P[b, 11] = tx, ty, tz
        P[b, 12], P[b, 13], P[b, 14], P[b, 15] = w, x, y, z
    return -1


@numba.njit(cache=True, fastmath=True)
def rig_move(
    entries,  # [M] int64 splat indices, sorted
    run_starts,  # [U + 1] int64 entry range of each run
    run_body,  # [U] int32 body of each run
    changed,  # [B] bool: rewrite this body's splats
    P,  # [B, 16] float32 packed motions
    means0, quats0,  # rest [N, 3], [N, 4]
    means, quats,  # outputs
):  # fmt: skip
    for u in range(run_body.shape[0]):
        b = run_body[u]
        if not changed[b]:
            continue
        r00, r01, r02, r10, r11, r12, r20, r21, r22 = P[b, 0], P[b, 1], P[b, 2], P[b, 3], P[b, 4], P[b, 5], P[b, 6], P[b, 7], P[b, 8]  # fmt: skip
        t0, t1, t2 = P[b, 9], P[b, 10], P[b, 11]
        w, x, y, z = P[b, 12], P[b, 13], P[b, 14], P[b, 15]
        for e in range(run_starts[u], run_starts[u + 1]):
            i = entries[e]
            px, py, pz = means0[i, 0], means0[i, 1], means0[i, 2]
            means[i, 0] = r00 * px + r01 * py + r02 * pz + t0
            means[i, 1] = r10 * px + r11 * py + r12 * pz + t1
            means[i, 2] = r20 * px + r21 * py + r22 * pz + t2
            qw, qx, qy, qz = quats0[i, 0], quats0[i, 1], quats0[i, 2], quats0[i, 3]
            quats[i, 0] = w * qw - x * qx - y * qy - z * qz
            quats[i, 1] = w * qx + x * qw + y * qz - z * qy
            quats[i, 2] = w * qy - x * qz + y * qw + z * qx
            quats[i, 3] = w * qz + x * qy - y * qx + z * qw


@numba.njit(cache=True, fastmath=True, inline="always")
def _band(Db, src, dst, start, size):  # dst[start:start+size] = Db @ src[start:start+size] (per colour)
    for r in range(size):
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        for k in range(size):
            d = Db[r, k]
            a0 += d * src[start + k, 0]
            a1 += d * src[start + k, 1]
            a2 += d * src[start + k, 2]
        dst[start + r, 0] = a0
        dst[start + r, 1] = a1
        dst[start + r, 2] = a2


@numba.njit(cache=True, fastmath=True)
def rig_rotate_sh(
    entries, run_starts, run_body, changed,  # as in rig_move
    D,  # [B, 3, 7, 7] float32 SH rotation per band 1..3 (top-left (2l+1)^2 used)
    degree,  # SH degree (1..3)
    sh0,  # rest [N, K, 3]
    sh,  # output (band 0 is never touched: the DC term does not depend on direction)
):  # fmt: skip
    for u in range(run_body.shape[0]):
        b = run_body[u]
        if not changed[b]:
            continue
        D1 = D[b, 0, :3, :3].copy()
        D2 = D[b, 1, :5, :5].copy()
        D3 = D[b, 2].copy()
        for e in range(run_starts[u], run_starts[u + 1]):
            i = entries[e]
            src = sh0[i]
            dst = sh[i]
            _band(D1, src, dst, 1, 3)
            if degree > 1:
                _band(D2, src, dst, 4, 5)
            if degree > 2:
                _band(D3, src, dst, 9, 7)


@numba.njit(cache=True, fastmath=True)
def view_colors(
    means,  # [N, 3] current centres
    sh0,  # [N, K, 3] rest SH
    body_of_splat,  # [N] int32 body of each splat, -1 for none
    P,  # [B, 16] float32 packed motions (R used)
    campos,  # [3] float64 camera centre
    out,  # [N, 3] float32 colours
):  # fmt: skip
    C0 = 0.28209479177387814
    C1 = 0.4886025119029199
    K = sh0.shape[1]
    for i in range(means.shape[0]):
        dx = means[i, 0] - campos[0]
        dy = means[i, 1] - campos[1]
        dz = means[i, 2] - campos[2]
        b = body_of_splat[i]
        if b >= 0:  # view direction in the body's rest frame: R^T d
            x = P[b, 0] * dx + P[b, 3] * dy + P[b, 6] * dz
            y = P[b, 1] * dx + P[b, 4] * dy + P[b, 7] * dz
            z = P[b, 2] * dx + P[b, 5] * dy + P[b, 8] * dz
        else:
            x, y, z = dx, dy, dz
        n = (x * x + y * y + z * z) ** 0.5
        if n > 0:
            x, y, z = x / n, y / n, z / n
        for c in range(3):
            v = C0 * sh0[i, 0, c]
            if K > 1:
                v += -C1 * y * sh0[i, 1, c] + C1 * z * sh0[i, 2, c] - C1 * x * sh0[i, 3, c]
            if K > 4:
                xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
                v += (
                    1.0925484305920792 * xy * sh0[i, 4, c]
                    - 1.0925484305920792 * yz * sh0[i, 5, c]
                    + 0.31539156525252005 * (2 * zz - xx - yy) * sh0[i, 6, c]
                    - 1.0925484305920792 * xz * sh0[i, 7, c]
                    + 0.5462742152960396 * (xx - yy) * sh0[i, 8, c]
                )
                if K > 9:
                    v += (
                        -0.5900435899266435 * y * (3 * xx - yy) * sh0[i, 9, c]
                        + 2.890611442640554 * xy * z * sh0[i, 10, c]
                        - 0.4570457994644658 * y * (4 * zz - xx - yy) * sh0[i, 11, c]
                        + 0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy) * sh0[i, 12, c]
                        - 0.4570457994644658 * x * (4 * zz - xx - yy) * sh0[i, 13, c]
                        + 1.445305721320277 * z * (xx - yy) * sh0[i, 14, c]
                        - 0.5900435899266435 * x * (xx - 3 * yy) * sh0[i, 15, c]
                    )
            v += 0.5
            out[i, c] = v if v > 0 else 0.0
