"""Numba kernels of the CPU splat layer (:mod:`render.gl.cpu_splats`): forward-only compositing.

Per frame: :func:`project` (the cpu rasterization backend's projection, ``render._cpu_kernels``) writes one
64-byte row of ``PACK`` floats a splat, with the constants of its row spans; :func:`sh_colors` (its SH)
fills in the colours; after a depth sort, :func:`pack` gathers the visible rows front to back (so that
compositing reads memory in order) and :func:`bin_bands` lists, for each band of ``band`` image rows, the
splats whose bounding box reaches it (in order). :func:`composite` then takes bands from a shared queue on
numba's threads, each pixel accumulating ``C += c alpha T`` front to back with gsplat's rules
(alpha = min(0.999, o exp(-sigma)), skipped below 1/255 or for sigma < 0, stop once T would fall to 1e-4
or below), stopping at the mesh depth.

The work runs 8 lanes a vector (AVX2) written as LLVM IR: numba's loop vectoriser leaves 8-iteration
loops scalar, its SLP vectoriser is off, and its loops with libm calls (no SVML here) do not vectorise.
Projection and SH apply the cpu backend's own float32 operations in its order (its helpers run on
:class:`_Vec` values), so they are bit for bit its results. Compositing handles blocks of 8 pixels of a
row: sigma in the cpu backend's float32 order, exp(-sigma) by Cephes' expf (the cpu backend's
``_exp_neg``, ~1 ulp of libm's), then the blend with per-lane selects. A splat visits, per row, only the
blocks of its alpha >= 1/255 ellipse chord (plus a margin; the alpha test decides the rest, so the result
is the same as visiting the whole bounding box), and skips blocks whose 8 pixels are all done.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from render._cpu_kernels import SPAN_MARGIN, _cov2d, _covar, _fov_limits, _mm, _mmt, _rotmat, _view
from scenes.splats import SH_C0, SH_C1, SH_C2, SH_C3

LANES = 8  # pixels of a block (one AVX2 vector of float32)
HALF, ONE = np.float32(0.5), np.float32(1.0)

# u, v, conic xx, xy, yy, opacity, depth, r, g, b, radius x, radius y, then the row-span constants
# 2 smax ca (smax: the sigma bound of the alpha >= 1/255 ellipse, with the cpu backend's margin),
# det = ca cc - cb^2, 1 / ca, cb / ca
PACK = 16
P_U, P_V, P_CA, P_CB, P_CC, P_O, P_Z, P_R, P_G, P_B, P_RX, P_RY, P_2SCA, P_DET, P_ICA, P_CBCA = range(PACK)


# ----------------------------------------------------------------------- 8-lane IR building blocks
_F = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_V = ir.VectorType(_F, LANES)
_VI = ir.VectorType(_I32, LANES)
_LANES_F = ir.Constant(_V, [float(j) for j in range(LANES)])
_LANES_I = ir.Constant(_VI, list(range(LANES)))


def _fv(value):  # a float32 vector constant
    return ir.Constant(_V, [float(np.float32(value))] * LANES)


def _iv(value):  # an int32 vector constant
    return ir.Constant(_VI, [int(value)] * LANES)


def _bcast(b, value, vty=_V):
    undef = ir.Constant(vty, ir.Undefined)
    return b.shuffle_vector(b.insert_element(undef, value, ir.Constant(_I32, 0)), undef, _iv(0))


def _call(b, name, ret, *args):  # an LLVM intrinsic on vectors
    fn = cgutils.get_or_insert_function(b.module, ir.FunctionType(ret, [a.type for a in args]), name)
    return b.call(fn, list(args))


def _data(context, builder, ty, value):  # an array's data pointer
    return context.make_array(ty)(context, builder, value).data


def _exp_neg(b, s):
    """exp(-s) on 8 lanes: render._cpu_kernels._exp_neg's float32 Cephes expf, s clamped to [0, 87]."""
    s = b.select(b.fcmp_ordered(">", s, _fv(0.0)), s, _fv(0.0))
    s = b.select(b.fcmp_ordered("<", s, _fv(87.0)), s, _fv(87.0))
    k = b.fptosi(b.fadd(b.fmul(s, _fv(1.4426950408889634)), _fv(0.5)), _VI)  # round(s / ln 2)
    kf = b.sitofp(k, _V)
    x = b.fadd(b.fsub(b.fmul(kf, _fv(0.693359375)), s), b.fmul(kf, _fv(-2.12194440e-4)))  # Cody-Waite
    p = b.fadd(b.fmul(_fv(1.9875691500e-4), x), _fv(1.3981999507e-3))
    for c in (8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = b.fadd(b.fmul(p, x), _fv(c))
    p = b.fadd(b.fadd(b.fmul(p, b.fmul(x, x)), x), _fv(1.0))
    return b.fmul(p, b.bitcast(b.shl(b.sub(_iv(127), k), _iv(23)), _V))  # * 2^-k


class _Vec:
    """An 8-lane float32 IR value with Python's arithmetic operators (emitting fadd, fsub, fmul, fdiv, fneg)."""

    __slots__ = ("b", "v")

    def __init__(self, b, v):
        self.b, self.v = b, v

    def _o(self, other):
        return other.v if isinstance(other, _Vec) else _fv(other)

    def __add__(self, o):
        return _Vec(self.b, self.b.fadd(self.v, self._o(o)))

    def __radd__(self, o):
        return _Vec(self.b, self.b.fadd(self._o(o), self.v))

    def __sub__(self, o):
        return _Vec(self.b, self.b.fsub(self.v, self._o(o)))

    def __rsub__(self, o):
        return _Vec(self.b, self.b.fsub(self._o(o), self.v))

    def __mul__(self, o):
        return _Vec(self.b, self.b.fmul(self.v, self._o(o)))

    def __rmul__(self, o):
        return _Vec(self.b, self.b.fmul(self._o(o), self.v))

    def __truediv__(self, o):
        return _Vec(self.b, self.b.fdiv(self.v, self._o(o)))

    def __neg__(self):
        return _Vec(self.b, self.b.fneg(self.v))


def _vmin(a, b):  # numba's min(a, b) on floats: b if b < a else a
    return _Vec(a.b, a.b.select(a.b.fcmp_ordered("<", b.v, a.v), b.v, a.v))


def _vmax(a, b):  # numba's max(a, b) on floats: b if b > a else a
    return _Vec(a.b, a.b.select(a.b.fcmp_ordered(">", b.v, a.v), b.v, a.v))


# ------------------------------------------------------------------------------- projection
# The cpu backend's projection (render._cpu_kernels._project_fwd_range, one camera, radius_clip 0 allowed,
# not antialiased) on 8 splats a vector: its helpers (_rotmat, _covar, _mm, _mmt, _cov2d) run on _Vec values, whose
# operators emit the same float32 instructions in the same order, so the results are bit for bit its own.
# Per-splat constants that only depend on the opacity (the log) are made once by :func:`splat_constants`.
C_SX, C_SY, C_SZ, C_O, C_EXT, C_SMAX = range(6)  # planes of splat_constants' output
# camera constants: view rotation (9, row-major) and translation (3), fx fy cx cy, the fov limits lxp lxn lyp lyn,
# eps2d, near, far, width, height, radius_clip
CAM_FX, CAM_LXP, CAM_EPS, CAM_NEAR, CAM_FAR, CAM_W, CAM_H, CAM_CLIP = 12, 16, 20, 21, 22, 23, 24, 25
CAM_LEN = 26


@njit(cache=True)
def splat_constants(scales, opacities, n_pad):  # [N, 3], [N] float32 -> [6 * n_pad] planes C_SX .. C_SMAX
    """What the projection needs per splat that only the scales and opacities decide: the scales, the
    opacity, the extent sqrt(2 ln(255 o)) (capped at 3.33) and the sigma bound ln(255 o) + margin, with the
    cpu backend's own float32 steps."""
    ft = np.float32
    athr, ext_max, two, margin = ft(1.0 / 255.0), ft(3.33), ft(2.0), ft(SPAN_MARGIN)
    out = np.zeros(6 * n_pad, np.float32)
    for g in range(scales.shape[0]):
        o = opacities[g]
        out[C_SX * n_pad + g], out[C_SY * n_pad + g], out[C_SZ * n_pad + g] = scales[g, 0], scales[g, 1], scales[g, 2]
        out[C_O * n_pad + g] = o
        if o >= athr:
            log_o = math.log(o / athr)
            out[C_EXT * n_pad + g] = min(ext_max, math.sqrt(two * log_o))
            out[C_SMAX * n_pad + g] = log_o + margin
    return out


@njit(cache=True)
def camera_constants(viewmat, K, width, height, eps2d, near, far, radius_clip):  # float32 [4, 4], [3, 3] -> [CAM_LEN]
    """The scalars of render._cpu_kernels' projection for one camera, from its own helpers."""
    ft = np.float32
    out = np.zeros(CAM_LEN, np.float32)
    w, t0, t1, t2 = _view(viewmat.reshape(1, 4, 4), 0)
    for k in range(9):
        out[k] = w[k]
    out[9], out[10], out[11] = t0, t1, t2
    fx, fy, cx, cy, lxp, lxn, lyp, lyn = _fov_limits(K.reshape(1, 3, 3), 0, ft(width), ft(height), ft(1.0))
    out[CAM_FX], out[CAM_FX + 1], out[CAM_FX + 2], out[CAM_FX + 3] = fx, fy, cx, cy
    out[CAM_LXP], out[CAM_LXP + 1], out[CAM_LXP + 2], out[CAM_LXP + 3] = lxp, lxn, lyp, lyn
    out[CAM_EPS], out[CAM_NEAR], out[CAM_FAR] = ft(eps2d), ft(near), ft(far)
    out[CAM_W], out[CAM_H], out[CAM_CLIP] = ft(width), ft(height), ft(radius_clip)
    return out


@intrinsic
def _project8(typingctx, means, quats, consts, cam, i, rec, depth, visible):
    """Splats i .. i + 7 (i a multiple of 8; lanes past N are not visible): rec[i + j] = their PACK rows (all
    but the colour), depth[i + j] = camera z, visible[i + j] = 1 where the cpu backend keeps the splat."""
    f32v, f32m = types.float32[::1], types.Array(types.float32, 2, "C")
    if (means, quats, rec) != (f32m, f32m, f32m) or (consts, cam, depth) != (f32v, f32v, f32v):
        return None
    if visible != types.int8[::1]:
        return None

    def codegen(context, builder, signature, args):
        b = builder
        mp, qp, kp, cp, rp, dp, vp = (_data(context, b, signature.args[a], args[a]) for a in (0, 1, 2, 3, 5, 6, 7))
        i = args[4]
        n = context.make_array(signature.args[0])(context, b, args[0]).shape
        n = b.extract_value(n, 0)
        n_pad = b.extract_value(context.make_array(signature.args[6])(context, b, args[6]).shape, 0)

        def cam(k):
            return _Vec(b, _bcast(b, b.load(b.gep(cp, [ir.Constant(_I64, k)]))))

        def lanes(ptr, stride, k):  # field k of rows i .. i + 7 (clamped to N - 1) of a [N, stride] array
            vec = ir.Constant(_V, ir.Undefined)
            for j in range(LANES):
                g = b.add(i, ir.Constant(_I64, j))
                g = b.select(b.icmp_signed("<", g, n), g, b.sub(n, ir.Constant(_I64, 1)))
                val = b.load(b.gep(ptr, [b.add(b.mul(g, ir.Constant(_I64, stride)), ir.Constant(_I64, k))]))
                vec = b.insert_element(vec, val, ir.Constant(_I32, j))
            return _Vec(b, vec)

        def plane(k):
            p = b.gep(kp, [b.add(b.mul(n_pad, ir.Constant(_I64, k)), i)])
            return _Vec(b, b.load(b.bitcast(p, _V.as_pointer()), align=4))

        sqrt = lambda x: _Vec(b, _call(b, "llvm.sqrt.v8f32", _V, x.v))  # noqa: E731
        ceil = lambda x: _Vec(b, _call(b, "llvm.ceil.v8f32", _V, x.v))  # noqa: E731
        lt = lambda x, y: b.fcmp_ordered("<", x.v, y.v)  # noqa: E731
        le = lambda x, y: b.fcmp_ordered("<=", x.v, y.v)  # noqa: E731
        one, zero, two = _Vec(b, _fv(1.0)), _Vec(b, _fv(0.0)), _Vec(b, _fv(2.0))
        qw, qx, qy, qz = (lanes(qp, 4, k) for k in range(4))
        inv = one / sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
        rot = _rotmat.py_func(qw * inv, qx * inv, qy * inv, qz * inv, one)
        sig, _ = _covar.py_func(rot, plane(C_SX), plane(C_SY), plane(C_SZ))
        px, py, pz = (lanes(mp, 3, k) for k in range(3))
        w = tuple(cam(k) for k in range(9))
        t0, t1, t2 = cam(9), cam(10), cam(11)
        x = w[0] * px + w[1] * py + w[2] * pz + t0
        y = w[3] * px + w[4] * py + w[5] * pz + t1
        z = w[6] * px + w[7] * py + w[8] * pz + t2
        ok = b.icmp_signed("<", b.add(_bcast(b, b.trunc(i, _I32), _VI), _LANES_I), _bcast(b, b.trunc(n, _I32), _VI))
        ok = b.and_(ok, b.not_(b.or_(lt(z, cam(CAM_NEAR)), lt(cam(CAM_FAR), z))))
        sc = _mmt.py_func(_mm.py_func(w, sig), w)
        fx, fy, cx, cy = (cam(CAM_FX + k) for k in range(4))
        lxp, lxn, lyp, lyn = (cam(CAM_LXP + k) for k in range(4))
        rz = one / z
        rz2 = rz * rz
        tx = z * _vmin(lxp, _vmax(-lxn, x * rz))
        ty = z * _vmin(lyp, _vmax(-lyn, y * rz))
        j00, j02, j11, j12 = fx * rz, -fx * tx * rz2, fy * rz, -fy * ty * rz2
        _, c00, c01, c10, c11 = _cov2d.py_func(sc, j00, j02, j11, j12)
        u = fx * x * rz + cx
        v = fy * y * rz + cy
        a = c00 + cam(CAM_EPS)
        d = c11 + cam(CAM_EPS)
        det = a * d - c01 * c10
        ok = b.and_(ok, b.not_(le(det, zero)))
        ok = b.and_(ok, b.not_(lt(plane(C_O), _Vec(b, _fv(1.0 / 255.0)))))
        extend = plane(C_EXT)
        rx = ceil(extend * sqrt(a))
        ry = ceil(extend * sqrt(d))
        clip, wf, hf = cam(CAM_CLIP), cam(CAM_W), cam(CAM_H)
        ok = b.and_(ok, b.not_(b.and_(le(rx, clip), le(ry, clip))))
        off = b.or_(b.or_(le(u + rx, zero), le(wf, u - rx)), b.or_(le(v + ry, zero), le(hf, v - ry)))
        ok = b.and_(ok, b.not_(b.or_(off, b.or_(le(rx, zero), le(ry, zero)))))
        ca, cb, cc = d / det, -(c01 + c10) / two / det, a / det
        smax = plane(C_SMAX)
        fields = {
            P_U: u, P_V: v, P_CA: ca, P_CB: cb, P_CC: cc, P_O: plane(C_O), P_Z: z, P_RX: rx, P_RY: ry,
            P_2SCA: (smax + smax) * ca, P_DET: ca * cc - cb * cb, P_ICA: one / ca, P_CBCA: cb / ca,
        }  # fmt: skip
        vis = b.zext(ok, ir.VectorType(ir.IntType(8), LANES))
        for j in range(LANES):
            g = b.add(i, ir.Constant(_I64, j))
            row = b.mul(g, ir.Constant(_I64, PACK))
            for k, val in fields.items():
                b.store(b.extract_element(val.v, ir.Constant(_I32, j)), b.gep(rp, [b.add(row, ir.Constant(_I64, k))]))
            b.store(b.extract_element(z.v, ir.Constant(_I32, j)), b.gep(dp, [g]))
            b.store(b.extract_element(vis, ir.Constant(_I32, j)), b.gep(vp, [g]))
        return context.get_dummy_value()

    return types.void(means, quats, consts, cam, types.int64, rec, depth, visible), codegen


@njit(parallel=True, cache=True)
def project(means, quats, consts, cam, rec, depth, visible):
    """The cpu backend's project_fwd for one camera, 8 splats a vector, into PACK rows (colours left out).

    means [N, 3], quats [N, 4] (wxyz, normalised here), consts :func:`splat_constants`' [6 * n_pad], cam the
    [CAM_LEN] camera constants (:func:`camera_constants`); out: rec [n_pad, PACK], depth [n_pad] (camera z),
    visible [n_pad] int8.
    """
    n_blocks = (means.shape[0] + LANES - 1) // LANES
    for blk in prange(n_blocks):
        _project8(means, quats, consts, cam, blk * LANES, rec, depth, visible)


# ----------------------------------------------------------------------------- spherical harmonics
SH_CHUNK = 1024  # splats a parallel job
_SH_C = (SH_C0, SH_C1, *SH_C2, *SH_C3)  # the basis constants in 3DGS order (scenes.splats defines them)


def _sh_basis8(b, x, y, z, nk):
    """render._cpu_kernels._sh_basis on 8 lanes, the same float32 operations in the same order."""
    c = [_fv(v) for v in _SH_C]
    mul, sub = b.fmul, b.fsub
    basis = [c[0]]
    if nk > 1:
        neg_c1 = _fv(-np.float32(_SH_C[1]))
        basis += [mul(neg_c1, y), mul(c[1], z), mul(neg_c1, x)]
    if nk > 4:
        xx, yy, zz = mul(x, x), mul(y, y), mul(z, z)
        two, three, four = _fv(2.0), _fv(3.0), _fv(4.0)
        basis += [
            mul(mul(c[2], x), y),
            mul(mul(c[3], y), z),
            mul(c[4], sub(sub(mul(two, zz), xx), yy)),
            mul(mul(c[5], x), z),
            mul(c[6], sub(xx, yy)),
        ]
        if nk > 9:
            basis += [
                mul(mul(c[7], y), sub(mul(three, xx), yy)),
                mul(mul(mul(c[8], x), y), z),
                mul(mul(c[9], y), sub(sub(mul(four, zz), xx), yy)),
                mul(mul(c[10], z), sub(sub(mul(two, zz), mul(three, xx)), mul(three, yy))),
                mul(mul(c[11], x), sub(sub(mul(four, zz), xx), yy)),
                mul(mul(c[12], z), sub(xx, yy)),
                mul(mul(c[13], x), sub(xx, mul(three, yy))),
            ]
    return basis


def _make_sh8(degree):
    nk = (degree + 1) ** 2

    @intrinsic
    def _sh8(typingctx, dirs, i_d, d_stride, coefs, i_c, c_stride, out, i_o, o_stride):
        arr = types.float32[::1]
        if (dirs, coefs, out) != (arr, arr, arr):
            return None

        def codegen(context, builder, signature, args):
            b = builder
            dp, cp, op = (_data(context, b, signature.args[i], args[i]) for i in (0, 3, 6))
            i_d, d_stride, i_c, c_stride, i_o, o_stride = args[1], args[2], args[4], args[5], args[7], args[8]
            vptr = _V.as_pointer()

            def vload(base, i):
                return b.load(b.bitcast(b.gep(base, [i]), vptr), align=4)

            x = y = z = None
            if nk > 1:
                dx, dy, dz = (vload(dp, b.add(i_d, b.mul(d_stride, ir.Constant(_I64, r)))) for r in range(3))
                norm = _call(b, "llvm.sqrt.v8f32", _V, b.fadd(b.fadd(b.fmul(dx, dx), b.fmul(dy, dy)), b.fmul(dz, dz)))
                inv = b.fdiv(_fv(1.0), norm)
                x, y, z = b.fmul(dx, inv), b.fmul(dy, inv), b.fmul(dz, inv)
            basis = _sh_basis8(b, x, y, z, nk)
            for ch in range(3):
                acc = _fv(0.0)
                for k in range(nk):
                    coef = vload(cp, b.add(i_c, b.mul(c_stride, ir.Constant(_I64, 3 * k + ch))))
                    acc = b.fadd(acc, b.fmul(basis[k], coef))
                acc = b.fadd(acc, _fv(0.5))
                acc = b.select(b.fcmp_ordered(">", acc, _fv(0.0)), acc, _fv(0.0))
                p = b.bitcast(b.gep(op, [b.add(i_o, b.mul(o_stride, ir.Constant(_I64, ch)))]), vptr)
                b.store(acc, p, align=4)
            return context.get_dummy_value()

        i64 = types.int64
        return types.void(dirs, i64, i64, coefs, i64, i64, out, i64, i64), codegen

    return _sh8


_sh8_0, _sh8_1, _sh8_2, _sh8_3 = (_make_sh8(d) for d in range(4))


@njit(parallel=True, cache=True)
def sh_colors(means, campos, body, rotations, rotated, degree, coefs, shade, rec):
    """The cpu backend's ``sh_fwd`` colours (bit for bit), 8 splats a vector, times shade [N, 3] (or [0, 3]:
    none), into the colour fields of rec [n_pad, PACK] (:func:`project`'s rows).

    means [N, 3]; coefs [(K * 3) * n_pad]: row k * 3 + ch holds coefficient k of channel ch of every splat
    (n_pad = N rounded up to 8, zeros after N); degree 0..3. With ``rotated`` each splat's view direction is
    taken in its body's rest frame (body [N], -1 for none; rotations [B, 3, 3]) as :func:`rest_frame_points`.
    """
    n = means.shape[0]
    n_pad = rec.shape[0]
    shaded = shade.shape[0] > 0
    cx, cy, cz = campos[0], campos[1], campos[2]
    for t in prange((n + SH_CHUNK - 1) // SH_CHUNK):
        lo = t * SH_CHUNK
        hi = min(n, lo + SH_CHUNK)
        dirs = np.ones(3 * SH_CHUNK, np.float32)
        col = np.empty(3 * SH_CHUNK, np.float32)
        for i in range(lo, hi):
            dx, dy, dz = means[i, 0] - cx, means[i, 1] - cy, means[i, 2] - cz
            if rotated:
                b = body[i]
                if b >= 0:
                    r = rotations[b]
                    dx, dy, dz = (
                        r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
                        r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
                        r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz,
                    )
                dx, dy, dz = (dx + cx) - cx, (dy + cy) - cy, (dz + cz) - cz  # as rest_frame_points + sh_fwd
            j = i - lo
            dirs[j], dirs[SH_CHUNK + j], dirs[2 * SH_CHUNK + j] = dx, dy, dz
        for j in range(0, hi - lo, LANES):
            if degree == 3:
                _sh8_3(dirs, j, SH_CHUNK, coefs, lo + j, n_pad, col, j, SH_CHUNK)
            elif degree == 2:
                _sh8_2(dirs, j, SH_CHUNK, coefs, lo + j, n_pad, col, j, SH_CHUNK)
            elif degree == 1:
                _sh8_1(dirs, j, SH_CHUNK, coefs, lo + j, n_pad, col, j, SH_CHUNK)
            else:
                _sh8_0(dirs, j, SH_CHUNK, coefs, lo + j, n_pad, col, j, SH_CHUNK)
        for i in range(lo, hi):
            j = i - lo
            for ch in range(3):
                c = col[ch * SH_CHUNK + j]
                rec[i, P_R + ch] = c * shade[i, ch] if shaded else c


@njit(parallel=True, cache=True)
def rest_frame_points(means, campos, body_of_splat, rotations, out):  # out[i] = campos + R[b]^T (mean - campos)
    for i in prange(means.shape[0]):
        dx, dy, dz = means[i, 0] - campos[0], means[i, 1] - campos[1], means[i, 2] - campos[2]
        b = body_of_splat[i]
        if b >= 0:
            r = rotations[b]
            dx, dy, dz = (
                r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
                r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
                r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz,
            )
        out[i, 0], out[i, 1], out[i, 2] = dx + campos[0], dy + campos[1], dz + campos[2]


# ------------------------------------------------------------------- sorting, binning, compositing
@njit(parallel=True, cache=True)
def pack(order, rec, height, band):
    """The rows rec [n_pad, PACK] (:func:`project`'s, coloured by :func:`sh_colors`) of the splats ``order`` [M]
    int32, in that order ([M, PACK] float32), and [M, 2] int32 the first and last band of ``band`` rows that
    each reaches."""
    m = order.shape[0]
    n_bands = (height + band - 1) // band
    out = np.empty((m, PACK), np.float32)
    bands = np.empty((m, 2), np.int32)
    for k in prange(m):
        g = order[k]
        for f in range(PACK):
            out[k, f] = rec[g, f]
        v, ry = rec[g, P_V], rec[g, P_RY]
        bands[k, 0] = max(0, int(math.floor((v - ry) / band)))
        bands[k, 1] = min(n_bands - 1, int(math.floor((v + ry) / band)))
    return out, bands


@njit(cache=True)
def bin_bands(bands, n_bands):  # [M, 2] (pack's) -> (starts [B + 1] int64, items [M'] int32: rows of ``packed``)
    counts = np.zeros(n_bands + 1, np.int64)
    for k in range(bands.shape[0]):
        for b in range(bands[k, 0], bands[k, 1] + 1):
            counts[b + 1] += 1
    for b in range(n_bands):
        counts[b + 1] += counts[b]
    items = np.empty(counts[n_bands], np.int32)
    fill = counts[:n_bands].copy()
    for k in range(bands.shape[0]):
        for b in range(bands[k, 0], bands[k, 1] + 1):
            items[fill[b]] = k
            fill[b] += 1
    return counts, items


@intrinsic
def _fetch_add(typingctx, counter):
    """Atomically counter[0] += 1; returns the old value (a shared work queue for prange's threads)."""
    if counter != types.int64[::1]:
        return None

    def codegen(context, builder, signature, args):
        ptr = _data(context, builder, signature.args[0], args[0])
        return builder.atomic_rmw("add", ptr, ir.Constant(_I64, 1), "monotonic")

    return types.int64(counter), codegen


@intrinsic
def _row_spans(typingctx, spans, u, v, yc, two_s_ca, det, inv_ca, cb_ca, width):
    """The ellipse chords of 8 rows (centres yc + j): columns [spans[j], spans[8 + j]) (clipped to
    [0, width]; empty when a >= b), then the rows [spans[16], spans[17]) that have one.

    The cpu backend's ``_span``: pixel centres px + 0.5 within mid -+ hw, mid = u + cb dy / ca,
    hw = sqrt(2 smax ca - det dy^2) / ca, widened to whole pixels.
    """
    f = types.float32
    if spans != types.int32[::1] or any(a != f for a in (u, v, yc, two_s_ca, det, inv_ca, cb_ca)):
        return None

    def codegen(context, builder, signature, args):
        b = builder
        data = _data(context, b, signature.args[0], args[0])
        u, v, yc, two_s_ca, det, inv_ca, cb_ca = (_bcast(b, a) for a in args[1:8])
        dy = b.fsub(v, b.fadd(yc, _LANES_F))
        disc = b.fsub(two_s_ca, b.fmul(b.fmul(det, dy), dy))
        none = b.fcmp_unordered("<", disc, _fv(0.0))
        hw = b.fmul(_call(b, "llvm.sqrt.v8f32", _V, b.select(none, _fv(0.0), disc)), inv_ca)
        mid = b.fadd(u, b.fmul(cb_ca, dy))
        lo = b.fptosi(_call(b, "llvm.floor.v8f32", _V, b.fsub(mid, hw)), _VI)
        hi = b.add(b.fptosi(_call(b, "llvm.floor.v8f32", _V, b.fadd(mid, hw)), _VI), _iv(1))
        lo = b.select(b.icmp_signed("<", lo, _iv(0)), _iv(0), lo)
        width = _bcast(b, b.trunc(args[8], _I32), _VI)
        hi = b.select(b.icmp_signed(">", hi, width), width, hi)
        hi = b.select(none, _iv(0), hi)
        some = b.icmp_signed("<", lo, hi)
        vptr = _VI.as_pointer()
        b.store(lo, b.bitcast(data, vptr), align=4)
        b.store(hi, b.bitcast(b.gep(data, [ir.Constant(_I64, LANES)]), vptr), align=4)
        first = _call(b, "llvm.vector.reduce.smin.v8i32", _I32, b.select(some, _LANES_I, _iv(LANES)))
        end = _call(b, "llvm.vector.reduce.smax.v8i32", _I32, b.select(some, b.add(_LANES_I, _iv(1)), _iv(0)))
        b.store(first, b.gep(data, [ir.Constant(_I64, 2 * LANES)]))
        b.store(end, b.gep(data, [ir.Constant(_I64, 2 * LANES + 1)]))
        return context.get_dummy_value()

    return types.void(spans, *([f] * 7), types.int64), codegen


@intrinsic
def _blend_block(typingctx, state, lim, i_px, plane, u, xc, ca, ccdy, cb, dy, o, z, cr, cg, cbl, lo, hi):
    """One splat over the 8 pixels state[i_px + j] of a row (j < 8), lanes lo <= j < hi of them.

    ``state`` holds four planes ``plane`` apart: T (negated once the pixel is done), then premultiplied
    r, g, b; lim[i_px + j] is each pixel's depth limit. xc = x + 0.5 of lane 0, ccdy = cc dy dy.
    Returns how many of the 8 pixels this splat finished.
    """
    f = types.float32
    if (state, lim) != (types.float32[::1], types.float32[::1]) or any(
        a != f for a in (u, xc, ca, ccdy, cb, dy, o, z, cr, cg, cbl)
    ):
        return None

    def codegen(context, builder, signature, args):
        b = builder
        st = _data(context, b, signature.args[0], args[0])
        lm = _data(context, b, signature.args[1], args[1])
        i_px, plane = args[2], args[3]
        u, xc, ca, ccdy, cb, dy, o, z, cr, cg, cbl = (_bcast(b, a) for a in args[4:15])
        lo = _bcast(b, b.trunc(args[15], _I32), _VI)
        hi = _bcast(b, b.trunc(args[16], _I32), _VI)
        vptr = _V.as_pointer()
        p_t = b.bitcast(b.gep(st, [i_px]), vptr)
        t = b.load(p_t, align=4)
        limit = b.load(b.bitcast(b.gep(lm, [i_px]), vptr), align=4)
        dx = b.fsub(u, b.fadd(xc, _LANES_F))  # u - (x + 0.5); x + 0.5 is exact
        # sigma = 0.5 (ca dx dx + cc dy dy) + cb dx dy, in the cpu backend's float32 order
        sigma = b.fadd(b.fmul(_fv(0.5), b.fadd(b.fmul(b.fmul(ca, dx), dx), ccdy)), b.fmul(b.fmul(cb, dx), dy))
        oe = b.fmul(o, _exp_neg(b, sigma))
        alpha = b.select(b.fcmp_ordered("<", _fv(0.999), oe), _fv(0.999), oe)
        live = b.and_(b.icmp_signed(">=", _LANES_I, lo), b.icmp_signed("<", _LANES_I, hi))
        live = b.and_(live, b.fcmp_ordered(">=", t, _fv(0.0)))
        behind = b.fcmp_ordered(">=", z, limit)  # this splat and all later ones: the pixel is done
        ok = b.and_(b.and_(live, b.not_(behind)), b.fcmp_ordered(">=", sigma, _fv(0.0)))
        ok = b.and_(ok, b.fcmp_ordered(">=", alpha, _fv(1.0 / 255.0)))
        next_t = b.fmul(t, b.fsub(_fv(1.0), alpha))
        low = b.fcmp_ordered("<=", next_t, _fv(1e-4))
        blend = b.and_(ok, b.not_(low))
        done = b.or_(b.and_(ok, low), b.and_(live, behind))
        w = b.select(blend, b.fmul(alpha, t), _fv(0.0))
        i_c = i_px
        for col in (cr, cg, cbl):
            i_c = b.add(i_c, plane)
            p_c = b.bitcast(b.gep(st, [i_c]), vptr)
            b.store(b.fadd(b.load(p_c, align=4), b.fmul(col, w)), p_c, align=4)
        b.store(b.select(blend, next_t, b.select(done, b.fneg(t), t)), p_t, align=4)
        return b.zext(b.ctpop(b.bitcast(done, ir.IntType(LANES))), _I64)

    i64 = types.int64
    return i64(state, lim, i64, i64, *([f] * 11), i64, i64), codegen


@njit(parallel=True, cache=True)
def composite(starts, items, packed, limit, band, order, threads, under, background, out):
    """out [H, W, 4] (premultiplied rgb, alpha; row 0 = top) from the binned splats, or with ``background``
    [4] (else [0]) the colour of a framebuffer after blending them over it (:func:`over`; row 0 = bottom),
    under [H, W, 4] its colour (row 0 = bottom) or [0, 0, 4] for ``background`` everywhere.

    limit [H, W] view depth (inf: none), or [0, 0] for none anywhere. Each of ``threads`` workers (numba's
    thread count) takes the next band of ``order`` [B] (e.g. the busiest first) from a shared counter until
    none is left: prange alone hands each thread a fixed run of iterations, which a busy (shared) machine
    or the splats gathering in part of the image would leave unbalanced.
    """
    counter = np.zeros(1, np.int64)
    wp = (out.shape[1] + LANES - 1) // LANES * LANES
    for _ in prange(threads):
        state = np.empty(4 * band * wp, np.float32)  # a band's planes T, r, g, b of [rows, wp]
        lim = np.empty(band * wp, np.float32)  # and its depth limits
        while True:
            i = _fetch_add(counter)
            if i >= order.shape[0]:
                break
            _composite_band(starts, items, packed, limit, band, order[i], under, background, state, lim, out)


@njit(cache=True)
def _composite_band(starts, items, packed, limit, band, b, under, background, state, lim, out):
    height, width = out.shape[0], out.shape[1]
    has_limit = limit.shape[0] > 0
    nblk = (width + LANES - 1) // LANES
    wp = nblk * LANES
    y0 = b * band
    rows = min(height, y0 + band) - y0
    plane = rows * wp
    for ly in range(rows):
        for x in range(wp):
            state[ly * wp + x] = ONE if x < width else -ONE
            lim[ly * wp + x] = limit[y0 + ly, x] if has_limit and x < width else np.float32(np.inf)
    state[plane : 4 * plane] = 0.0
    alive = np.zeros((rows, nblk), np.int64)  # pixels of each block not done yet
    alive_cols = np.zeros(nblk, np.int64)  # ... summed over the band's rows
    for c in range(nblk):
        n = min(LANES, width - c * LANES)
        alive[:, c] = n
        alive_cols[c] = rows * n
    n_alive = rows * width
    spans = np.empty(2 * LANES + 2, np.int32)
    yc = np.float32(y0) + HALF
    for k in range(starts[b], starts[b + 1]):
        if n_alive == 0:
            break
        g = items[k]
        u, v, rx = packed[g, P_U], packed[g, P_V], packed[g, P_RX]
        c0 = max(0, int(math.floor(u - rx - ONE))) // LANES
        c1 = min(nblk - 1, max(0, int(math.floor(u + rx + ONE))) // LANES)
        live = False
        for c in range(c0, c1 + 1):
            if alive_cols[c] > 0:
                live = True
                break
        if not live:
            continue
        _row_spans(spans, u, v, yc, packed[g, P_2SCA], packed[g, P_DET], packed[g, P_ICA], packed[g, P_CBCA], width)
        ca, cb, cc, o, z = packed[g, P_CA], packed[g, P_CB], packed[g, P_CC], packed[g, P_O], packed[g, P_Z]
        cr, cg, cbl = packed[g, P_R], packed[g, P_G], packed[g, P_B]
        for ly in range(spans[2 * LANES], min(rows, spans[2 * LANES + 1])):
            xa, xb = spans[ly], spans[LANES + ly]
            dy = v - (np.float32(y0 + ly) + HALF)
            ccdy = cc * dy * dy
            for c in range(xa // LANES, (xb - 1) // LANES + 1):
                if alive[ly, c] == 0:
                    continue
                x0 = c * LANES
                done = _blend_block(state, lim, ly * wp + x0, plane, u, np.float32(x0) + HALF, ca, ccdy, cb, dy, o,
                                    z, cr, cg, cbl, xa - x0, xb - x0)  # fmt: skip
                if done:
                    alive[ly, c] -= done
                    alive_cols[c] -= done
                    n_alive -= done
    blended, cleared = background.shape[0] > 0, under.shape[0] == 0
    for ly in range(rows):
        row = ly * wp
        if not blended:
            for x in range(width):
                out[y0 + ly, x, 0] = state[plane + row + x]
                out[y0 + ly, x, 1] = state[2 * plane + row + x]
                out[y0 + ly, x, 2] = state[3 * plane + row + x]
                out[y0 + ly, x, 3] = ONE - abs(state[row + x])
            continue
        y = height - 1 - (y0 + ly)
        for x in range(width):
            a = ONE - abs(state[row + x])
            for c in range(4):
                src = a if c == 3 else state[(c + 1) * plane + row + x]
                dst = background[c] if cleared else under[y, x, c]
                out[y, x, c] = dst if a <= 0 else src + dst * (ONE - a)


@njit(parallel=True, cache=True)
def over(rgba, under, background, out):
    """out = rgba over under, rows flipped (GL's order): what blending ``rgba`` with (ONE, ONE_MINUS_SRC_ALPHA)
    over a framebuffer holding ``under`` gives, pixels of alpha <= 0 left as they are (as the renderer's
    raster_composite.frag discards them).

    rgba [H, W, 4] premultiplied, row 0 = top; under [H, W, 4] row 0 = bottom, or [0, 0, 4] for a
    framebuffer holding ``background`` [4] everywhere; out [H, W, 4] row 0 = bottom.
    """
    height, width = rgba.shape[0], rgba.shape[1]
    cleared = under.shape[0] == 0
    for y in prange(height):
        src = rgba[height - 1 - y]
        for x in range(width):
            a = src[x, 3]
            for c in range(4):
                dst = background[c] if cleared else under[y, x, c]
                out[y, x, c] = dst if a <= 0 else src[x, c] + dst * (ONE - a)


@njit(cache=True)
def bad_poses(means, quats):  # [N, 3] or [0, 3], [N, 4] or [0, 4] float32 -> (non-finite values, zero-length quats)
    """How many values of means and quats are not finite, and how many quats have zero length (branch-free
    loops: they vectorise)."""
    bad = zero = 0
    for flat in (means.reshape(-1), quats.reshape(-1)):
        for i in range(flat.shape[0]):
            bad += not math.isfinite(flat[i])
    for i in range(quats.shape[0]):
        zero += (quats[i, 0] == 0) & (quats[i, 1] == 0) & (quats[i, 2] == 0) & (quats[i, 3] == 0)
    return bad, zero
