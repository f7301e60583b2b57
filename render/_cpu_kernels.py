"""numba kernels of the cpu backend: projection, SH, tile binning, compositing and their backward passes.

Imported lazily by :mod:`render._cpu` (after the numba cache directory is set up). Every kernel is
``@njit(cache=True)``. The compositing passes (``raster_fwd``, ``raster_bwd``) are
``parallel=True`` drivers running ``prange`` over 16x16 tiles, each tile handled by a serial
``_raster_*_range``; projection, SH and their backward passes run ``prange`` over chunks of 512
splats; binning and the gradient reduction are serial (a few ms; every parallel kernel adds
seconds to the first-call compile, which is cached on disk). Kernels are generic
over float32 / float64: constants are built with ``dtype.type(...)`` so float32 inputs stay float32
(speed); float64 (gradcheck) gets its own compiled version and runs the serial tile loops.

The maths is gsplat 1.5's (see :mod:`render._reference`, the definition these kernels are tested
against); the backward passes are written by hand: compositing back to front per pixel, then
the projection Jacobians, the covariance and quaternion chain, and the SH basis.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

TILE = 16

# Packed per-(camera, splat) record read by the compositing loops (one cache line per splat):
# mean x, mean y, conic a, b, c, opacity, sigma bound of the span search, camera z, radius x, radius y.
P_MX, P_MY, P_CA, P_CB, P_CC, P_OP, P_SMAX, P_Z, P_RX, P_RY = range(10)
P_LEN = 10
SPAN_MARGIN = 0.05  # sigma margin of the row-span search; far above float rounding, keeps it exact


# ----------------------------------------------------------------------------------------- small helpers
@njit(cache=True)
def _rotmat(w, x, y, z, one):  # unit wxyz -> row-major 3x3
    two = one + one
    return (
        one - two * (y * y + z * z), two * (x * y - w * z), two * (x * z + w * y),
        two * (x * y + w * z), one - two * (x * x + z * z), two * (y * z - w * x),
        two * (x * z - w * y), two * (y * z + w * x), one - two * (x * x + y * y),
    )  # fmt: skip


@njit(cache=True)
def _covar(r, sx, sy, sz):  # R diag(s) (R diag(s))^T, R row-major
    m0, m1, m2 = r[0] * sx, r[1] * sy, r[2] * sz
    m3, m4, m5 = r[3] * sx, r[4] * sy, r[5] * sz
    m6, m7, m8 = r[6] * sx, r[7] * sy, r[8] * sz
    s00 = m0 * m0 + m1 * m1 + m2 * m2
    s01 = m0 * m3 + m1 * m4 + m2 * m5
    s02 = m0 * m6 + m1 * m7 + m2 * m8
    s11 = m3 * m3 + m4 * m4 + m5 * m5
    s12 = m3 * m6 + m4 * m7 + m5 * m8
    s22 = m6 * m6 + m7 * m7 + m8 * m8
    return (s00, s01, s02, s01, s11, s12, s02, s12, s22), (m0, m1, m2, m3, m4, m5, m6, m7, m8)


@njit(cache=True)
def _mm(a, b):  # 3x3 @ 3x3, row-major tuples
    return (
        a[0] * b[0] + a[1] * b[3] + a[2] * b[6], a[0] * b[1] + a[1] * b[4] + a[2] * b[7],
        a[0] * b[2] + a[1] * b[5] + a[2] * b[8],
        a[3] * b[0] + a[4] * b[3] + a[5] * b[6], a[3] * b[1] + a[4] * b[4] + a[5] * b[7],
        a[3] * b[2] + a[4] * b[5] + a[5] * b[8],
        a[6] * b[0] + a[7] * b[3] + a[8] * b[6], a[6] * b[1] + a[7] * b[4] + a[8] * b[7],
        a[6] * b[2] + a[7] * b[5] + a[8] * b[8],
    )  # fmt: skip


@njit(cache=True)
def _mmt(a, b):  # a @ b^T
    return (
        a[0] * b[0] + a[1] * b[1] + a[2] * b[2], a[0] * b[3] + a[1] * b[4] + a[2] * b[5],
        a[0] * b[6] + a[1] * b[7] + a[2] * b[8],
        a[3] * b[0] + a[4] * b[1] + a[5] * b[2], a[3] * b[3] + a[4] * b[4] + a[5] * b[5],
        a[3] * b[6] + a[4] * b[7] + a[5] * b[8],
        a[6] * b[0] + a[7] * b[1] + a[8] * b[2], a[6] * b[3] + a[7] * b[4] + a[8] * b[5],
        a[6] * b[6] + a[7] * b[7] + a[8] * b[8],
    )  # fmt: skip


@njit(cache=True)
def _mtm(a, b):  # a^T @ b
    return (
        a[0] * b[0] + a[3] * b[3] + a[6] * b[6], a[0] * b[1] + a[3] * b[4] + a[6] * b[7],
        a[0] * b[2] + a[3] * b[5] + a[6] * b[8],
        a[1] * b[0] + a[4] * b[3] + a[7] * b[6], a[1] * b[1] + a[4] * b[4] + a[7] * b[7],
        a[1] * b[2] + a[4] * b[5] + a[7] * b[8],
        a[2] * b[0] + a[5] * b[3] + a[8] * b[6], a[2] * b[1] + a[5] * b[4] + a[8] * b[7],
        a[2] * b[2] + a[5] * b[5] + a[8] * b[8],
    )  # fmt: skip


@njit(cache=True)
def _view(viewmats, c):
    w = (
        viewmats[c, 0, 0], viewmats[c, 0, 1], viewmats[c, 0, 2],
        viewmats[c, 1, 0], viewmats[c, 1, 1], viewmats[c, 1, 2],
        viewmats[c, 2, 0], viewmats[c, 2, 1], viewmats[c, 2, 2],
    )  # fmt: skip
    return w, viewmats[c, 0, 3], viewmats[c, 1, 3], viewmats[c, 2, 3]


@njit(cache=True)
def _cov2d(sc, j00, j02, j11, j12):
    """``(J W, J W S W^T J^T)`` for the projection Jacobian ``J = [[j00, 0, j02], [0, j11, j12]]``.

    ``sc`` is the camera-frame covariance ``W S W^T`` (row-major 3x3 tuple); returns the six
    entries of ``A = J sc`` (the backward pass needs them) and the 2x2 covariance ``c = A J^T``.
    """
    a00 = j00 * sc[0] + j02 * sc[6]
    a01 = j00 * sc[1] + j02 * sc[7]
    a02 = j00 * sc[2] + j02 * sc[8]
    a10 = j11 * sc[3] + j12 * sc[6]
    a11 = j11 * sc[4] + j12 * sc[7]
    a12 = j11 * sc[5] + j12 * sc[8]
    c00 = a00 * j00 + a02 * j02
    c01 = a01 * j11 + a02 * j12
    c10 = a10 * j00 + a12 * j02
    c11 = a11 * j11 + a12 * j12
    return (a00, a01, a02, a10, a11, a12), c00, c01, c10, c11


@njit(cache=True)
def _fov_limits(ks, c, wf, hf, one):
    fx, fy, cx, cy = ks[c, 0, 0], ks[c, 1, 1], ks[c, 0, 2], ks[c, 1, 2]
    ft = type(one)
    half, k03 = ft(0.5), ft(0.3)
    tan_x = half * wf / fx
    tan_y = half * hf / fy
    lxp, lxn = (wf - cx) / fx + k03 * tan_x, cx / fx + k03 * tan_x
    lyp, lyn = (hf - cy) / fy + k03 * tan_y, cy / fy + k03 * tan_y
    return fx, fy, cx, cy, lxp, lxn, lyp, lyn


# ----------------------------------------------------------------------------------------- projection
@njit(cache=True)
def _project_fwd_range(
    lo, hi,
    means, quats, scales, opacities, viewmats, ks,  # [N,3] [N,4] [N,3] [N] [C,4,4] [C,3,3]
    width, height, eps2d, near, far, radius_clip, antialiased, n_tx, n_ty,
    means2d, conics, depths, opac_eff, radii, rects,  # out: [C,N,2] [C,N,3] [C,N] [C,N] [C,N,2]i32 [C,N,4]i32
    pk,  # out: [C, N, P_LEN] the same values packed for the compositing loops
):  # fmt: skip
    n_cam = viewmats.shape[0]
    ft = means.dtype.type
    one, zero, two = ft(1.0), ft(0.0), ft(2.0)
    eps, near_f, far_f, clip = ft(eps2d), ft(near), ft(far), ft(radius_clip)
    athr, ext_max, ts, margin = ft(1.0 / 255.0), ft(3.33), ft(TILE), ft(SPAN_MARGIN)
    wf, hf = ft(width), ft(height)
    for g in range(lo, hi):
        qw, qx, qy, qz = quats[g, 0], quats[g, 1], quats[g, 2], quats[g, 3]
        inv = one / math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
        rot = _rotmat(qw * inv, qx * inv, qy * inv, qz * inv, one)
        sig, _ = _covar(rot, scales[g, 0], scales[g, 1], scales[g, 2])
        px, py, pz = means[g, 0], means[g, 1], means[g, 2]
        for c in range(n_cam):
            w, t0, t1, t2 = _view(viewmats, c)
            x = w[0] * px + w[1] * py + w[2] * pz + t0
            y = w[3] * px + w[4] * py + w[5] * pz + t1
            z = w[6] * px + w[7] * py + w[8] * pz + t2
            if z < near_f or z > far_f:
                continue
            sc = _mmt(_mm(w, sig), w)
            fx, fy, cx, cy, lxp, lxn, lyp, lyn = _fov_limits(ks, c, wf, hf, one)
            rz = one / z
            rz2 = rz * rz
            tx = z * min(lxp, max(-lxn, x * rz))
            ty = z * min(lyp, max(-lyn, y * rz))
            j00, j02, j11, j12 = fx * rz, -fx * tx * rz2, fy * rz, -fy * ty * rz2
            _, c00, c01, c10, c11 = _cov2d(sc, j00, j02, j11, j12)
            u = fx * x * rz + cx
            v = fy * y * rz + cy
            det_orig = c00 * c11 - c01 * c10
            a = c00 + eps
            d = c11 + eps
            det = a * d - c01 * c10
            if det <= zero:
                continue
            o = opacities[g]
            if antialiased:
                o = o * math.sqrt(max(zero, det_orig / det))
            if o < athr:
                continue
            log_o = math.log(o / athr)
            extend = min(ext_max, math.sqrt(two * log_o))
            rx = ft(math.ceil(extend * math.sqrt(a)))
            ry = ft(math.ceil(extend * math.sqrt(d)))
            if rx <= clip and ry <= clip:
                continue
            if u + rx <= zero or u - rx >= wf or v + ry <= zero or v - ry >= hf:
                continue
            if rx <= zero or ry <= zero:
                continue
            ca, cb, cc = d / det, -(c01 + c10) / two / det, a / det
            means2d[c, g, 0] = u
            means2d[c, g, 1] = v
            conics[c, g, 0] = ca
            conics[c, g, 1] = cb
            conics[c, g, 2] = cc
            depths[c, g] = z
            opac_eff[c, g] = o
            radii[c, g, 0] = int(rx)
            radii[c, g, 1] = int(ry)
            pk[c, g, P_MX] = u
            pk[c, g, P_MY] = v
            pk[c, g, P_CA] = ca
            pk[c, g, P_CB] = cb
            pk[c, g, P_CC] = cc
            pk[c, g, P_OP] = o
            pk[c, g, P_SMAX] = log_o + margin
            pk[c, g, P_Z] = z
            pk[c, g, P_RX] = rx
            pk[c, g, P_RY] = ry
            rxf, ryf = rx / ts, ry / ts
            rects[c, g, 0] = min(max(0, int(math.floor(u / ts - rxf))), n_tx)
            rects[c, g, 1] = min(max(0, int(math.floor(v / ts - ryf))), n_ty)
            rects[c, g, 2] = min(max(0, int(math.ceil(u / ts + rxf))), n_tx)
            rects[c, g, 3] = min(max(0, int(math.ceil(v / ts + ryf))), n_ty)


@njit(parallel=True, cache=True)
def project_fwd(
    means, quats, scales, opacities, viewmats, ks, width, height, eps2d, near, far, radius_clip, antialiased, n_tx,
    n_ty, means2d, conics, depths, opac_eff, radii, rects, pk,
):  # fmt: skip
    """_project_fwd_range over all splats, in parallel chunks of 512."""
    n = means.shape[0]
    for t in prange((n + 511) // 512):
        _project_fwd_range(
            t * 512, min(n, t * 512 + 512), means, quats, scales, opacities, viewmats, ks, width, height, eps2d, near,
            far, radius_clip, antialiased, n_tx, n_ty, means2d, conics, depths, opac_eff, radii, rects, pk,
        )  # fmt: skip


@njit(cache=True)
def _project_bwd_range(
    lo, hi,
    means, quats, scales, opacities, viewmats, ks, width, height, eps2d, antialiased, radii,
    v_means2d, v_conics, v_depths, v_opac_eff,  # [C,N,2] [C,N,3] [C,N] [C,N]
    want_view,
    v_means, v_quats, v_scales, v_opacities, v_view,  # out: [N,3] [N,4] [N,3] [N] [C,N,12] (or [1,1,12])
):  # fmt: skip
    n_cam = viewmats.shape[0]
    ft = means.dtype.type
    one, zero, two, half = ft(1.0), ft(0.0), ft(2.0), ft(0.5)
    eps = ft(eps2d)
    wf, hf = ft(width), ft(height)
    for g in range(lo, hi):
        qw0, qx0, qy0, qz0 = quats[g, 0], quats[g, 1], quats[g, 2], quats[g, 3]
        inv = one / math.sqrt(qw0 * qw0 + qx0 * qx0 + qy0 * qy0 + qz0 * qz0)
        qw, qx, qy, qz = qw0 * inv, qx0 * inv, qy0 * inv, qz0 * inv
        rot = _rotmat(qw, qx, qy, qz, one)
        sx, sy, sz = scales[g, 0], scales[g, 1], scales[g, 2]
        sig, mm = _covar(rot, sx, sy, sz)
        px, py, pz = means[g, 0], means[g, 1], means[g, 2]
        vpx, vpy, vpz, vop = zero, zero, zero, zero
        vs = (zero, zero, zero, zero, zero, zero, zero, zero, zero)  # dL/dSigma (world)
        for c in range(n_cam):
            if radii[c, g, 0] <= 0 or radii[c, g, 1] <= 0:
                continue
            w, t0, t1, t2 = _view(viewmats, c)
            x = w[0] * px + w[1] * py + w[2] * pz + t0
            y = w[3] * px + w[4] * py + w[5] * pz + t1
            z = w[6] * px + w[7] * py + w[8] * pz + t2
            sc = _mmt(_mm(w, sig), w)
            fx, fy, cx, cy, lxp, lxn, lyp, lyn = _fov_limits(ks, c, wf, hf, one)
            rz = one / z
            rz2 = rz * rz
            rz3 = rz2 * rz
            xr, yr = x * rz, y * rz
            tx = z * min(lxp, max(-lxn, xr))
            ty = z * min(lyp, max(-lyn, yr))
            j00, j02, j11, j12 = fx * rz, -fx * tx * rz2, fy * rz, -fy * ty * rz2
            (a00, a01, a02, a10, a11, a12), c00, c01, c10, c11 = _cov2d(sc, j00, j02, j11, j12)
            det_orig = c00 * c11 - c01 * c10
            a = c00 + eps
            d = c11 + eps
            det = a * d - c01 * c10
            # opacity (and the antialiasing compensation)
            go = v_opac_eff[c, g]
            w00, w01, w11 = zero, zero, zero
            if antialiased:
                ratio = det_orig / det
                if ratio > zero:
                    comp = math.sqrt(ratio)
                    vop += go * comp
                    vr = go * opacities[g] * half / comp
                    w00 += vr * (c11 - ratio * d) / det
                    w11 += vr * (c00 - ratio * a) / det
                    w01 += vr * (-(c01 + c10) * half) * (one - ratio) / det
            else:
                vop += go
            # conic = inverse(cov2d + eps I): dL/dcov = -P dL/dP P (P symmetric)
            p0, p1, p2 = d / det, -(c01 + c10) / two / det, a / det
            ga, hb, gc = v_conics[c, g, 0], half * v_conics[c, g, 1], v_conics[c, g, 2]
            t00 = ga * p0 + hb * p1
            t01 = ga * p1 + hb * p2
            t10 = hb * p0 + gc * p1
            t11 = hb * p1 + gc * p2
            w00 -= p0 * t00 + p1 * t10
            w01 -= p0 * t01 + p1 * t11
            w11 -= p1 * t01 + p2 * t11
            # cov2d = J Sc J^T
            e00, e01, e02 = w00 * j00, w01 * j11, w00 * j02 + w01 * j12
            e10, e11, e12 = w01 * j00, w11 * j11, w01 * j02 + w11 * j12
            vsc = (
                j00 * e00, j00 * e01, j00 * e02,
                j11 * e10, j11 * e11, j11 * e12,
                j02 * e00 + j12 * e10, j02 * e01 + j12 * e11, j02 * e02 + j12 * e12,
            )  # fmt: skip
            vj00 = two * (w00 * a00 + w01 * a10)
            vj02 = two * (w00 * a02 + w01 * a12)
            vj11 = two * (w01 * a01 + w11 * a11)
            vj12 = two * (w01 * a02 + w11 * a12)
            # mean2d, depth and the Jacobian's dependence on the camera-space mean
            gu, gv = v_means2d[c, g, 0], v_means2d[c, g, 1]
            vx = fx * rz * gu
            vy = fy * rz * gv
            vz = -(fx * x * gu + fy * y * gv) * rz2 + v_depths[c, g]
            vz += -fx * rz2 * vj00 - fy * rz2 * vj11
            if xr <= lxp and xr >= -lxn:
                vx += -fx * rz2 * vj02
                vz += two * fx * tx * rz3 * vj02
            else:
                vz += fx * tx * rz3 * vj02
            if yr <= lyp and yr >= -lyn:
                vy += -fy * rz2 * vj12
                vz += two * fy * ty * rz3 * vj12
            else:
                vz += fy * ty * rz3 * vj12
            # camera-space -> world: m_c = W m + t, Sc = W Sigma W^T
            vpx += w[0] * vx + w[3] * vy + w[6] * vz
            vpy += w[1] * vx + w[4] * vy + w[7] * vz
            vpz += w[2] * vx + w[5] * vy + w[8] * vz
            ds = _mm(_mtm(w, vsc), w)
            vs = (
                vs[0] + ds[0], vs[1] + ds[1], vs[2] + ds[2], vs[3] + ds[3], vs[4] + ds[4],
                vs[5] + ds[5], vs[6] + ds[6], vs[7] + ds[7], vs[8] + ds[8],
            )  # fmt: skip
            if want_view:
                vw = _mm(_mm(vsc, w), sig)
                v_view[c, g, 0] = vx * px + two * vw[0]
                v_view[c, g, 1] = vx * py + two * vw[1]
                v_view[c, g, 2] = vx * pz + two * vw[2]
                v_view[c, g, 3] = vy * px + two * vw[3]
                v_view[c, g, 4] = vy * py + two * vw[4]
                v_view[c, g, 5] = vy * pz + two * vw[5]
                v_view[c, g, 6] = vz * px + two * vw[6]
                v_view[c, g, 7] = vz * py + two * vw[7]
                v_view[c, g, 8] = vz * pz + two * vw[8]
                v_view[c, g, 9] = vx
                v_view[c, g, 10] = vy
                v_view[c, g, 11] = vz
        v_means[g, 0] = vpx
        v_means[g, 1] = vpy
        v_means[g, 2] = vpz
        v_opacities[g] = vop
        # Sigma = M M^T, M = R S: dL/dM = 2 dL/dSigma M (symmetric)
        vm = _mm(vs, mm)
        vm = (
            two * vm[0], two * vm[1], two * vm[2], two * vm[3], two * vm[4],
            two * vm[5], two * vm[6], two * vm[7], two * vm[8],
        )  # fmt: skip
        v_scales[g, 0] = rot[0] * vm[0] + rot[3] * vm[3] + rot[6] * vm[6]
        v_scales[g, 1] = rot[1] * vm[1] + rot[4] * vm[4] + rot[7] * vm[7]
        v_scales[g, 2] = rot[2] * vm[2] + rot[5] * vm[5] + rot[8] * vm[8]
        r00, r01, r02 = vm[0] * sx, vm[1] * sy, vm[2] * sz  # dL/dR
        r10, r11, r12 = vm[3] * sx, vm[4] * sy, vm[5] * sz
        r20, r21, r22 = vm[6] * sx, vm[7] * sy, vm[8] * sz
        gw = two * (qx * (r21 - r12) + qy * (r02 - r20) + qz * (r10 - r01))
        gx = two * (-two * qx * (r11 + r22) + qy * (r01 + r10) + qz * (r02 + r20) + qw * (r21 - r12))
        gy = two * (-two * qy * (r00 + r22) + qx * (r01 + r10) + qz * (r12 + r21) + qw * (r02 - r20))
        gz = two * (-two * qz * (r00 + r11) + qx * (r02 + r20) + qy * (r12 + r21) + qw * (r10 - r01))
        dot = gw * qw + gx * qx + gy * qy + gz * qz
        v_quats[g, 0] = (gw - dot * qw) * inv
        v_quats[g, 1] = (gx - dot * qx) * inv
        v_quats[g, 2] = (gy - dot * qy) * inv
        v_quats[g, 3] = (gz - dot * qz) * inv


@njit(parallel=True, cache=True)
def project_bwd(
    means, quats, scales, opacities, viewmats, ks, width, height, eps2d, antialiased, radii,
    v_means2d, v_conics, v_depths, v_opac_eff, want_view, v_means, v_quats, v_scales, v_opacities, v_view,
):  # fmt: skip
    """_project_bwd_range over all splats, in parallel chunks of 512 (each splat's outputs are its own)."""
    n = means.shape[0]
    for t in prange((n + 511) // 512):
        _project_bwd_range(
            t * 512, min(n, t * 512 + 512), means, quats, scales, opacities, viewmats, ks, width, height, eps2d,
            antialiased, radii, v_means2d, v_conics, v_depths, v_opac_eff, want_view, v_means, v_quats, v_scales,
            v_opacities, v_view,
        )  # fmt: skip


# ----------------------------------------------------------------------------------------- spherical harmonics
@njit(cache=True)
def _sh_basis(x, y, z, one):  # unit direction -> 16 real SH values (3DGS order and signs)
    ft = type(one)
    c1 = ft(0.4886025119029199)
    xx, yy, zz = x * x, y * y, z * z
    three, four, two = ft(3.0), ft(4.0), ft(2.0)
    return (
        ft(0.28209479177387814),
        -c1 * y, c1 * z, -c1 * x,
        ft(1.0925484305920792) * x * y, ft(-1.0925484305920792) * y * z,
        ft(0.31539156525252005) * (two * zz - xx - yy), ft(-1.0925484305920792) * x * z,
        ft(0.5462742152960396) * (xx - yy),
        ft(-0.5900435899266435) * y * (three * xx - yy), ft(2.890611442640554) * x * y * z,
        ft(-0.4570457994644658) * y * (four * zz - xx - yy), ft(0.3731763325901154) * z * (two * zz - three * xx - three * yy),
        ft(-0.4570457994644658) * x * (four * zz - xx - yy), ft(1.445305721320277) * z * (xx - yy),
        ft(-0.5900435899266435) * x * (xx - three * yy),
    )  # fmt: skip


@njit(cache=True)
def _sh_basis_vjp(x, y, z, vb, nk, one):  # d/d(x, y, z) of sum_k vb[k] Y_k (polynomial forms above)
    ft = type(one)
    c1 = ft(0.4886025119029199)
    gx = -c1 * vb[3]
    gy = -c1 * vb[1]
    gz = c1 * vb[2]
    if nk > 4:
        xx, yy, zz = x * x, y * y, z * z
        two = one + one
        a, b, c, d, e = ft(1.0925484305920792), ft(-1.0925484305920792), ft(0.31539156525252005), ft(
            -1.0925484305920792), ft(0.5462742152960396)  # fmt: skip
        gx += a * y * vb[4] + c * (-two * x) * vb[6] + d * z * vb[7] + e * two * x * vb[8]
        gy += a * x * vb[4] + b * z * vb[5] + c * (-two * y) * vb[6] + e * (-two * y) * vb[8]
        gz += b * y * vb[5] + c * (two * two * z) * vb[6] + d * x * vb[7]
        if nk > 9:
            three, six, eight, four = ft(3.0), ft(6.0), ft(8.0), ft(4.0)
            k9, k10, k11 = ft(-0.5900435899266435), ft(2.890611442640554), ft(-0.4570457994644658)
            k12, k13, k14, k15 = ft(0.3731763325901154), ft(-0.4570457994644658), ft(1.445305721320277), ft(
                -0.5900435899266435)  # fmt: skip
            gx += (
                k9 * six * x * y * vb[9] + k10 * y * z * vb[10] + k11 * (-two * x * y) * vb[11]
                + k12 * (-six * x * z) * vb[12] + k13 * (four * zz - three * xx - yy) * vb[13]
                + k14 * two * x * z * vb[14] + k15 * (three * xx - three * yy) * vb[15]
            )  # fmt: skip
            gy += (
                k9 * (three * xx - three * yy) * vb[9] + k10 * x * z * vb[10] + k11 * (four * zz - xx - three * yy) * vb[11]
                + k12 * (-six * y * z) * vb[12] + k13 * (-two * x * y) * vb[13] + k14 * (-two * y * z) * vb[14]
                + k15 * (-six * x * y) * vb[15]
            )  # fmt: skip
            gz += (
                k10 * x * y * vb[10] + k11 * eight * y * z * vb[11] + k12 * (six * zz - three * xx - three * yy) * vb[12]
                + k13 * eight * x * z * vb[13] + k14 * (xx - yy) * vb[14]
            )  # fmt: skip
    return gx, gy, gz


@njit(cache=True)
def sh_fwd(lo, hi, means, sh, campos, degree, radii, out):  # [N,3] [N,K,3] [C,3] int [C,N,2] -> out [C,N,3]
    n_cam = campos.shape[0]
    nk = (degree + 1) * (degree + 1)
    ft = means.dtype.type
    one, zero, half = ft(1.0), ft(0.0), ft(0.5)
    for g in range(lo, hi):
        for c in range(n_cam):
            if radii[c, g, 0] <= 0 or radii[c, g, 1] <= 0:
                continue
            x, y, z = one, zero, zero
            if degree > 0:
                dx = means[g, 0] - campos[c, 0]
                dy = means[g, 1] - campos[c, 1]
                dz = means[g, 2] - campos[c, 2]
                inv = one / math.sqrt(dx * dx + dy * dy + dz * dz)
                x, y, z = dx * inv, dy * inv, dz * inv
            b = _sh_basis(x, y, z, one)
            for ch in range(3):
                acc = zero
                for k in range(nk):
                    acc += b[k] * sh[g, k, ch]
                out[c, g, ch] = max(acc + half, zero)


@njit(cache=True)
def sh_bwd(lo, hi, means, sh, campos, degree, radii, v_colors, v_sh, v_means, v_campos):
    # v_colors [C,N,3] -> v_sh [N,K,3] (+=), v_means [N,3] (=), v_campos [C,N,3] (=)
    n_cam = campos.shape[0]
    nk = (degree + 1) * (degree + 1)
    ft = means.dtype.type
    one, zero, half = ft(1.0), ft(0.0), ft(0.5)
    for g in range(lo, hi):
        vmx, vmy, vmz = zero, zero, zero
        vb = np.empty(16, means.dtype)
        for c in range(n_cam):
            if radii[c, g, 0] <= 0 or radii[c, g, 1] <= 0:
                continue
            x, y, z, inv = one, zero, zero, one
            if degree > 0:
                dx = means[g, 0] - campos[c, 0]
                dy = means[g, 1] - campos[c, 1]
                dz = means[g, 2] - campos[c, 2]
                inv = one / math.sqrt(dx * dx + dy * dy + dz * dz)
                x, y, z = dx * inv, dy * inv, dz * inv
            b = _sh_basis(x, y, z, one)
            vb[:] = zero
            for ch in range(3):
                acc = zero
                for k in range(nk):
                    acc += b[k] * sh[g, k, ch]
                if acc + half < zero:
                    continue
                vc = v_colors[c, g, ch]
                for k in range(nk):
                    v_sh[g, k, ch] += b[k] * vc
                    vb[k] += sh[g, k, ch] * vc
            if degree > 0:
                ux, uy, uz = _sh_basis_vjp(x, y, z, vb, nk, one)
                dot = ux * x + uy * y + uz * z
                gx, gy, gz = (ux - dot * x) * inv, (uy - dot * y) * inv, (uz - dot * z) * inv
                vmx += gx
                vmy += gy
                vmz += gz
                v_campos[c, g, 0] = -gx
                v_campos[c, g, 1] = -gy
                v_campos[c, g, 2] = -gz
        v_means[g, 0] = vmx
        v_means[g, 1] = vmy
        v_means[g, 2] = vmz


@njit(parallel=True, cache=True)
def sh_fwd_parallel(means, sh, campos, degree, radii, out):
    """sh_fwd over all splats, in parallel chunks of 512."""
    n = means.shape[0]
    for t in prange((n + 511) // 512):
        sh_fwd(t * 512, min(n, t * 512 + 512), means, sh, campos, degree, radii, out)


@njit(parallel=True, cache=True)
def sh_bwd_parallel(means, sh, campos, degree, radii, v_colors, v_sh, v_means, v_campos):
    """sh_bwd over all splats, in parallel chunks of 512 (each splat's outputs are its own)."""
    n = means.shape[0]
    for t in prange((n + 511) // 512):
        sh_bwd(t * 512, min(n, t * 512 + 512), means, sh, campos, degree, radii, v_colors, v_sh, v_means, v_campos)


# ----------------------------------------------------------------------------------------- LLVM intrinsics
# (what numba does not expose: bit casts, fused multiply-add, max, prefetch)
@intrinsic
def _exp2_neg_int(typingctx, k):
    """2^-k as a float32 for an int32 k in [0, 126], built from its bits (vectorises, unlike ldexp)."""
    if k != types.int32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.shl(builder.sub(ir.Constant(i32, 127), args[0]), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """llvm.fma: a * b + c with one rounding (numba does not contract a * b + c by itself)."""
    if a not in (types.float32, types.float64) or b != a or c != a:
        return None

    def codegen(context, builder, signature, args):
        t = args[0].type
        return builder.call(builder.module.declare_intrinsic("llvm.fma", [t], ir.FunctionType(t, [t, t, t])), args)

    return a(a, b, c), codegen


@intrinsic
def _fmax(typingctx, a, b):
    """llvm.maxnum: a float max that LLVM keeps as a max (vmaxps), not a select of a loaded value."""
    if a not in (types.float32, types.float64) or b != a:
        return None

    def codegen(context, builder, signature, args):
        t = args[0].type
        return builder.call(builder.module.declare_intrinsic("llvm.maxnum", [t], ir.FunctionType(t, [t, t])), args)

    return a(a, b), codegen


@intrinsic
def _prefetch(typingctx, arr, idx):
    """llvm.prefetch of arr.flat[idx] (C-contiguous arr), for reading: splat data visited in depth order."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")  # fmt: skip
        ptr = builder.bitcast(builder.gep(ary.data, [args[1]]), i8p)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(arr, idx), codegen


# ----------------------------------------------------------------------------------------- tile binning
@njit(cache=True)
def radix_argsort(keys):  # uint32 [n] -> int32 [n]: the stable ascending order (LSD radix sort, 4 x 8 bits)
    n = keys.shape[0]
    order = np.arange(n).astype(np.int32)
    tmp = np.empty(n, np.int32)
    count = np.empty(257, np.int64)
    for shift in range(0, 32, 8):
        for b in range(257):
            count[b] = 0
        for i in range(n):
            count[((keys[order[i]] >> shift) & 255) + 1] += 1
        for b in range(256):
            count[b + 1] += count[b]
        for i in range(n):
            j = order[i]
            byte = (keys[j] >> shift) & 255
            tmp[count[byte]] = j
            count[byte] += 1
        for i in range(n):
            order[i] = tmp[i]
    return order


@njit(cache=True)
def bin_tiles(rects, order, n_vis, n_tx, n_ty):
    """Tile lists: offsets [C*T+1] int64 and splat ids [n_isect] int32, each tile's list in depth order.

    Splats are visited in depth order (``order[c, :n_vis[c]]``, a stable sort), so a counting sort
    by tile keeps every tile's list sorted: the same lists as gsplat's per-tile depth sort.
    """
    n_cam = order.shape[0]
    n_tiles = n_tx * n_ty
    n_spl = rects.shape[1]
    offsets = np.zeros(n_cam * n_tiles + 1, np.int64)
    for c in range(n_cam):
        for i in range(n_vis[c]):
            g = order[c, i]
            if i + 16 < n_vis[c]:  # depth order is scattered in memory: fetch ahead
                _prefetch(rects, (c * n_spl + order[c, i + 16]) * 4)
            for ty in range(rects[c, g, 1], rects[c, g, 3]):
                for tx in range(rects[c, g, 0], rects[c, g, 2]):
                    offsets[c * n_tiles + ty * n_tx + tx + 1] += 1
    for i in range(n_cam * n_tiles):
        offsets[i + 1] += offsets[i]
    cursor = offsets[:-1].copy()
    ids = np.empty(offsets[-1], np.int32)
    for c in range(n_cam):
        for i in range(n_vis[c]):
            g = order[c, i]
            if i + 16 < n_vis[c]:
                _prefetch(rects, (c * n_spl + order[c, i + 16]) * 4)
            for ty in range(rects[c, g, 1], rects[c, g, 3]):
                for tx in range(rects[c, g, 0], rects[c, g, 2]):
                    t = c * n_tiles + ty * n_tx + tx
                    ids[cursor[t]] = g
                    cursor[t] += 1
    return offsets, ids


# ----------------------------------------------------------------------------------------- compositing

EXP_ARG_MAX = 87.0  # _exp_neg's argument cap (2^-126, the smallest normal float32 scale)


def _exp_neg(s, s_lim):
    """exp(-s) for s >= 0: _exp_neg_poly(x) * scale of (x, scale) = _exp_neg_reduce(s, s_lim) (see those)."""
    raise NotImplementedError  # jit only


def _exp_neg_reduce(s, s_lim):
    raise NotImplementedError  # jit only


def _exp_neg_poly(x):
    raise NotImplementedError  # jit only


@overload(_exp_neg_reduce)
def _exp_neg_reduce_jit(s, s_lim):
    """float32: Cephes' expf, with s clamped to [0, s_lim] (s_lim <= 87): exp(-s) = exp(x) 2^-k, this returns
    x = -s + k ln 2 in [-ln2/2, ln2/2] and the scale 2^-k (built from its bits). Unlike numba's libm exp (no
    SVML here) it vectorises; within 1 ulp of exp. float64 (gradcheck): (s, 1) and libm's exp. The forward
    and backward compositing both use it (the same operations: bitwise the same alphas)."""
    if s == types.float64:
        return lambda s, s_lim: (s, 1.0)

    def impl(s, s_lim):
        ft = np.float32
        s = s if s > ft(0.0) else ft(0.0)
        s = s if s < s_lim else s_lim
        k = np.int32(s * ft(1.4426950408889634) + ft(0.5))  # round(s / ln 2), s >= 0
        kf = ft(k)
        x = _fma(kf, ft(-2.12194440e-4), _fma(kf, ft(0.693359375), -s))  # Cody-Waite: ln 2 in two parts
        return x, _exp2_neg_int(k)

    return impl


@overload(_exp_neg_poly)
def _exp_neg_poly_jit(x):
    """exp(x) for |x| <= ln2 / 2: Cephes' expf polynomial, in Estrin's order (float64: libm exp(-x))."""
    if x == types.float64:
        return lambda x: math.exp(-x)

    def impl(x):
        ft = np.float32
        x2 = x * x
        a = _fma(ft(1.6666665459e-1), x, ft(5.0000001201e-1))
        b = _fma(ft(8.3334519073e-3), x, ft(4.1665795894e-2))
        d = _fma(ft(1.9875691500e-4), x, ft(1.3981999507e-3))
        return _fma(_fma(_fma(d, x2, b), x2, a), x2, x) + ft(1.0)

    return impl


@overload(_exp_neg)
def _exp_neg_jit(s, s_lim):
    def impl(s, s_lim):
        x, scale = _exp_neg_reduce(s, s_lim)
        return _exp_neg_poly(x) * scale

    return impl


@njit(cache=True)
def _ifloor(v):
    """floor as an int without a libm call."""
    i = int(v)
    return i - 1 if v < i else i


@njit(cache=True)
def _setup(pk, c, g, x0, y0, x1, y1):
    """Per splat and tile: the rows [r0, r1) and the constants of the per-row column span.

    A pixel can only have alpha >= 1/255 inside the bounding box and inside the ellipse
    sigma <= ln(255 o) (+ SPAN_MARGIN); the span is that ellipse's chord on the row.
    """
    mx, my, rx, ry = pk[c, g, P_MX], pk[c, g, P_MY], pk[c, g, P_RX], pk[c, g, P_RY]
    ca, cb, cc, smax = pk[c, g, P_CA], pk[c, g, P_CB], pk[c, g, P_CC], pk[c, g, P_SMAX]
    det = ca * cc - cb * cb
    r0 = max(y0, _ifloor(my - ry))
    r1 = min(y1, _ifloor(my + ry) + 1)
    bx0 = max(x0, _ifloor(mx - rx))
    bx1 = min(x1, _ifloor(mx + rx) + 1)
    two_s_ca = (smax + smax) * ca
    ellipse = det > 0 and ca > 0
    inv_ca = cb_ca = ca - ca
    if ellipse:
        hy = math.sqrt(two_s_ca / det)  # |dy| bound of the ellipse
        r0 = max(r0, _ifloor(my - hy))
        r1 = min(r1, _ifloor(my + hy) + 1)
        inv_ca = type(ca)(1.0) / ca
        cb_ca = cb * inv_ca
    return r0, r1, bx0, bx1, ellipse, two_s_ca, det, inv_ca, cb_ca


@njit(cache=True)
def _span(mx, dy, bx0, bx1, ellipse, two_s_ca, det, inv_ca, cb_ca):
    """Columns [a, b) of a row at offset dy = my - (py + 0.5)."""
    if not ellipse:
        return bx0, bx1
    disc = two_s_ca - det * dy * dy
    if disc < 0:
        return 0, 0
    hw = math.sqrt(disc) * inv_ca  # pixel centre px + 0.5 = mx - dx, dx in [-cb dy / ca -+ hw]
    mid = mx + cb_ca * dy
    return max(bx0, _ifloor(mid - hw)), min(bx1, _ifloor(mid + hw) + 1)


# per-tile state of the forward (see _raster_fwd_range), float fields: pixel centre x, y, T, 1 while not done,
# depth limit, largest weight alpha T, accumulated r, g, b, depth; the splat's exp argument then alpha, exp scale
S_CX, S_CY, S_T, S_LIVE, S_LIM, S_BEST, S_ACC = range(7)
S_VIS = S_ACC + 4
S_SC = S_VIS + 1
S_LEN = S_SC + 1
I_LAST, I_BEST = range(2)  # int32 fields: last contributing list index, list index of the largest weight
TT = TILE * TILE
FS = TT + 16  # distance between the fields: not a multiple of 4 KiB / 4 fields (no false store-load aliasing)
HALF = TILE // 2


@njit(cache=True)
def _lane(r, i):
    """Index of tile pixel (row r, column i) in a field: the left half tile's rows, then the right half's."""
    return (i // HALF) * (TT // 2) + r * HALF + i % HALF


@njit(cache=True)
def _raster_fwd_range(
    lo, hi,
    pk, colors, bg, has_bg, want_depth, want_ids, offsets, ids, depth_limit, has_limit, width, height, n_tx, n_ty,
    out_rgb, out_depth, out_alpha, out_t, out_last, out_ids,
):  # fmt: skip
    """Front-to-back compositing, one tile per parallel job.

    pk [C,N,P_LEN] packed splats; colors [1 or C, N, F] (F = 0 or 3); bg [C, F]; offsets/ids the
    depth-sorted tile lists; depth_limit [C,H,W]. Outputs: out_rgb [C,H,W,F] (+ T * bg),
    out_depth [C,H,W,D] (D = 1 when want_depth) accumulated z, out_alpha [C,H,W,1] = 1 - T,
    out_t [C,H,W] final T, out_last [C,H,W] last contributing list index, out_ids [C,H,W] dominant splat.

    Vectorised (8 float32 lanes on AVX2): a splat is composited over every pixel of its rows [r0, r1) in
    each half tile (8 columns) that its box reaches, in flat loops with masks and selects instead of
    branches, in three passes (sigma and the exp's range reduction; alpha; compositing): short dependency
    chains, so that the out-of-order core overlaps the iterations. Pixels of the box outside the row spans
    of ``_span`` have alpha < 1/255 (the span has a sigma margin), so they are skipped as the backward
    skips them, and the alphas are the backward's bit for bit (same sigma expression, same _exp_neg).
    The tile state st is one flat array [field, half, row, column] (constant distances between the fields,
    consecutive lanes: no aliasing checks, no index wraparound); pixels beyond the image start done. Stores
    are max / products, never a select of the old value, which LLVM turns into slow masked stores: the list
    index k only grows, T * 1 = T.
    """
    nf = colors.shape[2]
    per_cam = colors.shape[0] > 1
    n_tiles = n_tx * n_ty
    dt = pk.dtype
    ft = dt.type
    one, zero, half = ft(1.0), ft(0.0), ft(0.5)
    amax, athr, tmin, inf, s_cap = ft(0.999), ft(1.0 / 255.0), ft(1e-4), ft(np.inf), ft(EXP_ARG_MAX)
    none = np.int32(-1)
    n_spl = pk.shape[1]
    st = np.empty(S_LEN * FS, dt)
    ist = np.empty(2 * FS, np.int32)
    for job in range(lo, hi):
        c = job // n_tiles
        cc_ = c if per_cam else 0
        tile = job - c * n_tiles
        x0 = (tile % n_tx) * TILE
        y0 = (tile // n_tx) * TILE
        x1 = min(x0 + TILE, width)
        y1 = min(y0 + TILE, height)
        for r in range(TILE):
            for i in range(TILE):
                q = _lane(r, i)
                inside = y0 + r < y1 and x0 + i < x1
                st[S_CX * FS + q] = ft(x0 + i) + half  # pixel centre
                st[S_CY * FS + q] = ft(y0 + r) + half
                st[S_T * FS + q] = one
                st[S_LIVE * FS + q] = one if inside else zero
                st[S_LIM * FS + q] = depth_limit[c, y0 + r, x0 + i] if has_limit and inside else inf
                st[S_BEST * FS + q] = zero
                for f in range(S_ACC, S_LEN):
                    st[f * FS + q] = zero
                ist[I_LAST * FS + q] = none
                ist[I_BEST * FS + q] = none
        n_done = TT - (x1 - x0) * (y1 - y0)
        k_end = offsets[job + 1]
        for k in range(offsets[job], k_end):
            g = ids[k]
            if k + 1 < k_end:  # the splats are in depth order, scattered in memory: fetch the next one early
                g_next = ids[k + 1]
                _prefetch(pk, (c * n_spl + g_next) * P_LEN)
                if nf > 0:
                    _prefetch(colors, (cc_ * n_spl + g_next) * nf)
            mx, my = pk[c, g, P_MX], pk[c, g, P_MY]
            ca, cb, cc, op, zg = pk[c, g, P_CA], pk[c, g, P_CB], pk[c, g, P_CC], pk[c, g, P_OP], pk[c, g, P_Z]
            c0 = c1 = c2 = zero
            if nf == 3:
                c0, c1, c2 = colors[cc_, g, 0], colors[cc_, g, 1], colors[cc_, g, 2]
            s_lim = min(pk[c, g, P_SMAX], s_cap)  # exp(-sigma) beyond it only decides alpha < 1/255
            k32 = np.int32(k)
            r0, r1, bx0, bx1 = _setup(pk, c, g, x0, y0, x1, y1)[:4]
            if r0 >= r1 or bx0 >= bx1:
                continue
            fa, fb = ft(bx0) + half, ft(bx1) + half
            for h in range((bx0 - x0) // HALF, (bx1 - x0 - 1) // HALF + 1):  # the half tiles the box reaches
                # its rows r0 .. r1 - 1 there: lanes q0 .. q1 - 1 (the masks let LLVM see non-negative indices)
                q0 = (h & 1) * (TT // 2) + ((r0 - y0) & (TILE - 1)) * HALF
                q1 = (h & 1) * (TT // 2) + ((r1 - 1 - y0) & (TILE - 1)) * HALF + HALF
                for q in range(q0, q1):  # sigma, reduced for exp; a scale 0: skipped, -1: behind the depth limit
                    cx = st[S_CX * FS + q]
                    dx = mx - cx
                    dy = my - st[S_CY * FS + q]
                    sig = half * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    x, scale = _exp_neg_reduce(sig, s_lim)
                    inside = (cx >= fa) & (cx < fb)
                    scale = scale if inside & (sig >= zero) else zero
                    st[S_SC * FS + q] = -one if inside & (zg >= st[S_LIM * FS + q]) else scale
                    st[S_VIS * FS + q] = x
                for q in range(q0, q1):  # alpha of each pixel (0: skipped, -1: behind the depth limit)
                    scale = st[S_SC * FS + q]
                    alpha = min(amax, op * (_exp_neg_poly(st[S_VIS * FS + q]) * scale))
                    alpha = alpha if alpha >= athr else zero
                    st[S_VIS * FS + q] = -one if scale < zero else alpha
                nd = np.int32(0)
                for q in range(q0, q1):  # compositing; the weights replace the alphas
                    alpha = st[S_VIS * FS + q]
                    t = st[S_T * FS + q]
                    live = st[S_LIVE * FS + q] > zero
                    stop = live & (alpha < zero)  # behind the depth limit: done, no contribution
                    ok = live & (alpha > zero)
                    keep = one - alpha
                    end = ok & (t * keep <= tmin)  # saturated: done, no contribution (gsplat)
                    con = ok & (not end)
                    v = alpha * t if con else zero
                    st[S_T * FS + q] = t * (keep if con else one)
                    st[S_LIVE * FS + q] = one if live & (not (stop | end)) else zero
                    bs = st[S_BEST * FS + q]
                    ist[I_BEST * FS + q] = max(ist[I_BEST * FS + q], k32 if v > bs else none)
                    st[S_BEST * FS + q] = _fmax(bs, v)
                    ist[I_LAST * FS + q] = max(ist[I_LAST * FS + q], k32 if con else none)
                    st[S_ACC * FS + q] += c0 * v
                    st[(S_ACC + 1) * FS + q] += c1 * v
                    st[(S_ACC + 2) * FS + q] += c2 * v
                    st[(S_ACC + 3) * FS + q] += zg * v
                    nd = np.int32(nd + np.int32(stop | end))
                n_done += nd
            if n_done == TT:
                break
        for py in range(y0, y1):
            for px in range(x0, x1):
                q = _lane(py - y0, px - x0)
                t = st[S_T * FS + q]
                for f in range(nf):
                    a_f = st[(S_ACC + f) * FS + q]
                    out_rgb[c, py, px, f] = a_f + t * bg[c, f] if has_bg else a_f
                if want_depth:
                    out_depth[c, py, px, 0] = st[(S_ACC + 3) * FS + q]
                out_alpha[c, py, px, 0] = one - t
                out_t[c, py, px] = t
                out_last[c, py, px] = ist[I_LAST * FS + q]
                kb = ist[I_BEST * FS + q]
                out_ids[c, py, px] = ids[kb] if want_ids and kb >= 0 else -1


@njit(parallel=True, cache=True)
def raster_fwd(
    pk, colors, bg, has_bg, want_depth, want_ids, offsets, ids, depth_limit, has_limit, width, height, n_tx, n_ty,
    out_rgb, out_depth, out_alpha, out_t, out_last, out_ids,
):  # fmt: skip
    """Front-to-back compositing (see _raster_fwd_range), one 16x16 tile per parallel job."""
    total = pk.shape[0] * n_tx * n_ty
    for t in prange(total):
        _raster_fwd_range(
            t, t + 1, pk, colors, bg, has_bg, want_depth, want_ids, offsets, ids, depth_limit, has_limit, width,
            height, n_tx, n_ty, out_rgb, out_depth, out_alpha, out_t, out_last, out_ids,
        )  # fmt: skip


G_MX, G_MY, G_CA, G_CB, G_CC, G_OP, G_AX, G_AY, G_Z, G_RGB = range(10)  # per-intersection gradient layout


@intrinsic
def _radd(typingctx, a, b):
    """a + b as a reassociable fadd: lets LLVM vectorise a sum over pixels (8 partial sums, then a fixed
    horizontal sum: the order depends on the compiled code only, not on threading)."""
    if a not in (types.float32, types.float64) or b != a:
        return None

    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], args[1], flags=("reassoc", "nsz"))

    return a(a, b), codegen


# per-tile state of the backward (see _raster_bwd_range), float fields: pixel centre x, y, T (recovered back to
# front), dL/dT_final T_final, dL/d(r, g, b, depth), the colours and depth accumulated behind, the splat's exp
# argument then its exp(-sigma), exp scale
B_CX, B_CY, B_T, B_VTF, B_V, B_BUF = 0, 1, 2, 3, 4, 8
B_VIS = B_BUF + 4
B_SC = B_VIS + 1
B_LEN = B_SC + 1


@njit(cache=True)
def _raster_bwd_range(
    lo, hi,
    pk, colors, bg, has_bg, want_depth, offsets, ids, width, height, n_tx, n_ty,
    out_t, out_last, v_rgb, v_depth, v_alpha,
    pair_grads, v_bg_tiles,
):  # fmt: skip
    """Back-to-front per pixel (gsplat's order), recovering T by division, for tiles lo .. hi - 1.

    Gradients of the outputs v_rgb [C,H,W,F], v_depth [C,H,W,D], v_alpha [C,H,W,1] are written per
    tile-list entry to pair_grads [n_isect, G_RGB + F] (see G_*; every row of the tiles is written, so
    no zeroing is needed and no two tiles share a row) and to v_bg_tiles [C*T, F]; reduce_pairs sums
    the entries of each splat.

    Vectorised as the forward (see _raster_fwd_range): the same tile state layout [field, half, row,
    column], the same pixels per splat (its rows in each half tile its box reaches, the box's columns),
    the same three passes (sigma and exp's range reduction; exp; gradients), masks and selects instead of
    branches (a pixel a splat does not reach gets alpha 0: T * 1, buffers + 0), the same alphas bit for
    bit. A pixel takes part while the splat's list index is <= its last contributing one. The sums over
    pixels are reassociable adds (_radd), 8 lanes wide: a fixed order, deterministic.
    """
    nf = colors.shape[2]
    rgb3 = nf == 3
    per_cam = colors.shape[0] > 1
    n_tiles = n_tx * n_ty
    dt = pk.dtype
    ft = dt.type
    one, zero, half = ft(1.0), ft(0.0), ft(0.5)
    amax, athr, s_cap = ft(0.999), ft(1.0 / 255.0), ft(EXP_ARG_MAX)
    n_spl = pk.shape[1]
    st = np.empty(B_LEN * FS, dt)
    last = np.empty(FS, np.int32)
    for job in range(lo, hi):
        c = job // n_tiles
        cc_ = c if per_cam else 0
        tile = job - c * n_tiles
        x0 = (tile % n_tx) * TILE
        y0 = (tile // n_tx) * TILE
        x1 = min(x0 + TILE, width)
        y1 = min(y0 + TILE, height)
        for f in range(nf):
            v_bg_tiles[job, f] = zero
        if offsets[job + 1] == offsets[job] and not has_bg:
            continue
        k_max = -1
        for r in range(TILE):
            for i in range(TILE):
                q = _lane(r, i)
                py, px = y0 + r, x0 + i
                st[B_CX * FS + q] = ft(px) + half
                st[B_CY * FS + q] = ft(py) + half
                for f in range(B_T, B_LEN):
                    st[f * FS + q] = zero
                last[q] = -1
                if py < y1 and px < x1:
                    t = out_t[c, py, px]
                    st[B_T * FS + q] = t
                    last[q] = out_last[c, py, px]
                    k_max = max(k_max, last[q])
                    vtf = -v_alpha[c, py, px, 0]
                    for f in range(nf):
                        st[(B_V + f) * FS + q] = v_rgb[c, py, px, f]
                        if has_bg:
                            vtf += bg[c, f] * v_rgb[c, py, px, f]
                    st[B_VTF * FS + q] = vtf * t  # d T_final / d alpha_k = -T_final / (1 - alpha_k)
                    if want_depth:
                        st[(B_V + 3) * FS + q] = v_depth[c, py, px, 0]
        if has_bg:
            for py in range(y0, y1):
                for px in range(x0, x1):
                    t = out_t[c, py, px]
                    for f in range(nf):
                        v_bg_tiles[job, f] += t * v_rgb[c, py, px, f]
        for k in range(max(k_max + 1, offsets[job]), offsets[job + 1]):  # entries no pixel reached
            for j in range(pair_grads.shape[1]):
                pair_grads[k, j] = zero
        for k in range(k_max, offsets[job] - 1, -1):
            g = ids[k]
            if k > offsets[job]:  # the list is walked back to front: fetch the previous splat early
                g_next = ids[k - 1]
                _prefetch(pk, (c * n_spl + g_next) * P_LEN)
                if nf > 0:
                    _prefetch(colors, (cc_ * n_spl + g_next) * nf)
            mx, my = pk[c, g, P_MX], pk[c, g, P_MY]
            ca, cb, cc, op, zg = pk[c, g, P_CA], pk[c, g, P_CB], pk[c, g, P_CC], pk[c, g, P_OP], pk[c, g, P_Z]
            c0 = c1 = c2 = zero
            if rgb3:
                c0, c1, c2 = colors[cc_, g, 0], colors[cc_, g, 1], colors[cc_, g, 2]
            vmx, vmy, va, vb, vc, vop, amx, amy, vzg = zero, zero, zero, zero, zero, zero, zero, zero, zero
            vf0 = vf1 = vf2 = zero
            s_lim = min(pk[c, g, P_SMAX], s_cap)  # as in the forward: the same alphas, bit for bit
            k32 = np.int32(k)
            r0, r1, bx0, bx1 = _setup(pk, c, g, x0, y0, x1, y1)[:4]
            if r0 < r1 and bx0 < bx1:
                fa, fb = ft(bx0) + half, ft(bx1) + half
                for h in range((bx0 - x0) // HALF, (bx1 - x0 - 1) // HALF + 1):
                    q0 = (h & 1) * (TT // 2) + ((r0 - y0) & (TILE - 1)) * HALF
                    q1 = (h & 1) * (TT // 2) + ((r1 - 1 - y0) & (TILE - 1)) * HALF + HALF
                    for q in range(q0, q1):  # sigma, reduced for exp; a scale 0: not reached
                        cx = st[B_CX * FS + q]
                        dx = mx - cx
                        dy = my - st[B_CY * FS + q]
                        sig = half * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        x, scale = _exp_neg_reduce(sig, s_lim)
                        ok = (cx >= fa) & (cx < fb) & (sig >= zero) & (last[q] >= k32)
                        st[B_SC * FS + q] = scale if ok else zero
                        st[B_VIS * FS + q] = x
                    for q in range(q0, q1):  # exp(-sigma) (0: not reached)
                        st[B_VIS * FS + q] = _exp_neg_poly(st[B_VIS * FS + q]) * st[B_SC * FS + q]
                    for q in range(q0, q1):  # gradients
                        vis = st[B_VIS * FS + q]
                        ovis = op * vis
                        alpha = min(amax, ovis)
                        ok = alpha >= athr
                        alpha = alpha if ok else zero
                        ra = one / (one - alpha)
                        t = st[B_T * FS + q] * ra
                        st[B_T * FS + q] = t
                        fac = alpha * t
                        v_a = -st[B_VTF * FS + q] * ra
                        g0 = st[B_V * FS + q]
                        g1 = st[(B_V + 1) * FS + q]
                        g2 = st[(B_V + 2) * FS + q]
                        b0 = st[B_BUF * FS + q]
                        b1 = st[(B_BUF + 1) * FS + q]
                        b2 = st[(B_BUF + 2) * FS + q]
                        vf0 = _radd(vf0, fac * g0)
                        vf1 = _radd(vf1, fac * g1)
                        vf2 = _radd(vf2, fac * g2)
                        v_a += (c0 * t - b0 * ra) * g0 + (c1 * t - b1 * ra) * g1 + (c2 * t - b2 * ra) * g2
                        st[B_BUF * FS + q] = b0 + c0 * fac
                        st[(B_BUF + 1) * FS + q] = b1 + c1 * fac
                        st[(B_BUF + 2) * FS + q] = b2 + c2 * fac
                        gz = st[(B_V + 3) * FS + q]  # 0 without depth: no branch (LLVM would mask the stores)
                        bz = st[(B_BUF + 3) * FS + q]
                        vzg = _radd(vzg, fac * gz)
                        v_a += (zg * t - bz * ra) * gz
                        st[(B_BUF + 3) * FS + q] = bz + zg * fac
                        lin = ok & (ovis <= amax)  # alpha not clamped to amax: it depends on sigma and opacity
                        st[B_VIS * FS + q] = -ovis * v_a if lin else zero  # dL/dsigma
                        st[B_SC * FS + q] = vis * v_a if lin else zero  # dL/dopacity
                    for q in range(q0, q1):  # sums of the conic and mean gradients
                        v_sigma = st[B_VIS * FS + q]
                        dx = mx - st[B_CX * FS + q]
                        dy = my - st[B_CY * FS + q]
                        va = _radd(va, half * v_sigma * dx * dx)
                        vb = _radd(vb, v_sigma * dx * dy)
                        vc = _radd(vc, half * v_sigma * dy * dy)
                        gx = v_sigma * (ca * dx + cb * dy)
                        gy = v_sigma * (cb * dx + cc * dy)
                        vmx = _radd(vmx, gx)
                        vmy = _radd(vmy, gy)
                        amx = _radd(amx, abs(gx))
                        amy = _radd(amy, abs(gy))
                        vop = _radd(vop, st[B_SC * FS + q])
            pair_grads[k, G_MX] = vmx
            pair_grads[k, G_MY] = vmy
            pair_grads[k, G_CA] = va
            pair_grads[k, G_CB] = vb
            pair_grads[k, G_CC] = vc
            pair_grads[k, G_OP] = vop
            pair_grads[k, G_AX] = amx
            pair_grads[k, G_AY] = amy
            pair_grads[k, G_Z] = vzg
            if rgb3:
                pair_grads[k, G_RGB] = vf0
                pair_grads[k, G_RGB + 1] = vf1
                pair_grads[k, G_RGB + 2] = vf2


@njit(parallel=True, cache=True)
def raster_bwd(
    pk, colors, bg, has_bg, want_depth, offsets, ids, width, height, n_tx, n_ty, out_t, out_last,
    v_rgb, v_depth, v_alpha, pair_grads, v_bg_tiles,
):  # fmt: skip
    """Backward of raster_fwd (see _raster_bwd_range), one 16x16 tile per parallel job."""
    total = pk.shape[0] * n_tx * n_ty
    for t in prange(total):
        _raster_bwd_range(
            t, t + 1, pk, colors, bg, has_bg, want_depth, offsets, ids, width, height, n_tx, n_ty,
            out_t, out_last, v_rgb, v_depth, v_alpha, pair_grads, v_bg_tiles,
        )  # fmt: skip


@njit(cache=True)
def reduce_pairs(offsets, ids, n_tiles, pair_grads, grads):
    """grads [C, N, G] += the pair_grads [n_isect, G] rows of each (camera, splat), in tile-list order
    (a fixed order: deterministic)."""
    n_spl, ng = grads.shape[1], grads.shape[2]
    for job in range(offsets.shape[0] - 1):
        c = job // n_tiles
        k_end = offsets[job + 1]
        for k in range(offsets[job], k_end):
            if k + 16 < k_end:  # the splats' rows are scattered in memory: fetch ahead
                row = (c * n_spl + ids[k + 16]) * ng
                _prefetch(grads, row)
                _prefetch(grads, row + ng - 1)  # a row can straddle two cache lines
            g = ids[k]
            for j in range(ng):
                grads[c, g, j] += pair_grads[k, j]
