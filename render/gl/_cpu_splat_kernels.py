"""Numba kernels of the CPU splat layer (:mod:`render.gl.cpu_splats`): forward-only compositing.

Splats come projected by ``render._cpu_kernels.project_fwd`` (the cpu backend's own projection) and
are packed front to back by :func:`pack` (one row of ``PACK`` floats a splat, so that compositing
reads memory in order). :func:`bin_bands` lists, for each band of ``band`` image rows, the splats whose
bounding box reaches it (in order); :func:`composite` then runs ``prange`` over bands, each
pixel accumulating ``C += c alpha T`` front to back with gsplat's rules (alpha = min(0.999, o exp(-sigma)),
skipped below 1/255 or for sigma < 0, stop once T would fall to 1e-4 or below), stopping at the mesh
depth. Each row visits only the columns inside the splat's alpha >= 1/255 ellipse (plus a margin);
the alpha test decides the rest, so the result is the same as visiting the whole bounding box.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from render._cpu_kernels import sh_fwd

ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
SPAN_MARGIN = 0.05  # sigma margin of the per-row column span; far above float rounding


@njit(parallel=True, cache=True)
def sh_colors(means, sh, campos, degree, radii, out):  # the cpu backend's sh_fwd in parallel chunks of 1024
    n = means.shape[0]
    for t in prange((n + 1023) // 1024):
        sh_fwd(t * 1024, min(n, t * 1024 + 1024), means, sh, campos, degree, radii, out)


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


PACK = 12  # u, v, conic xx, xy, yy, opacity, depth, r, g, b, radius x, radius y
P_U, P_V, P_CA, P_CB, P_CC, P_O, P_Z, P_R, P_G, P_B, P_RX, P_RY = range(PACK)


@njit(parallel=True, cache=True)
def pack(order, means2d, conics, opacities, depths, colors, radii):  # -> [M, PACK] float32 in ``order``
    m = order.shape[0]
    out = np.empty((m, PACK), np.float32)
    for k in prange(m):
        g = order[k]
        out[k, P_U], out[k, P_V] = means2d[g, 0], means2d[g, 1]
        out[k, P_CA], out[k, P_CB], out[k, P_CC] = conics[g, 0], conics[g, 1], conics[g, 2]
        out[k, P_O], out[k, P_Z] = opacities[g], depths[g]
        out[k, P_R], out[k, P_G], out[k, P_B] = colors[g, 0], colors[g, 1], colors[g, 2]
        out[k, P_RX], out[k, P_RY] = radii[g, 0], radii[g, 1]
    return out


@njit(cache=True)
def bin_bands(packed, height, band):  # -> (starts [B + 1] int64, items [M'] int32: rows of ``packed``)
    n_bands = (height + band - 1) // band
    counts = np.zeros(n_bands + 1, np.int64)
    for k in range(packed.shape[0]):
        v, ry = packed[k, P_V], packed[k, P_RY]
        b0 = max(0, int(math.floor((v - ry) / band)))
        b1 = min(n_bands - 1, int(math.floor((v + ry) / band)))
        for b in range(b0, b1 + 1):
            counts[b + 1] += 1
    for b in range(n_bands):
        counts[b + 1] += counts[b]
    items = np.empty(counts[n_bands], np.int32)
    fill = counts[:n_bands].copy()
    for k in range(packed.shape[0]):
        v, ry = packed[k, P_V], packed[k, P_RY]
        b0 = max(0, int(math.floor((v - ry) / band)))
        b1 = min(n_bands - 1, int(math.floor((v + ry) / band)))
        for b in range(b0, b1 + 1):
            items[fill[b]] = k
            fill[b] += 1
    return counts, items


@njit(parallel=True, cache=True)
def composite(starts, items, packed, limit, band, out):
    """out [H, W, 4] (premultiplied rgb, alpha) from the binned splats; limit [H, W] view depth (inf: none).

    Along a row sigma is a quadratic in x, so exp(-sigma) follows from two exps per row and two
    multiplications per pixel: g(x + 1) = g(x) e(x), e(x + 1) = e(x) exp(-conic_xx) (float64).
    """
    height, width = out.shape[0], out.shape[1]
    n_bands = starts.shape[0] - 1
    for b in prange(n_bands):
        y0 = b * band
        y1 = min(height, y0 + band)
        rows = y1 - y0
        T = np.ones((rows, width), np.float32)  # transmittance, negated once the pixel is done
        C = np.zeros((rows, width, 3), np.float32)
        for k in range(starts[b], starts[b + 1]):
            g = items[k]
            u, v = np.float64(packed[g, P_U]), np.float64(packed[g, P_V])
            ca, cb, cc = np.float64(packed[g, P_CA]), np.float64(packed[g, P_CB]), np.float64(packed[g, P_CC])
            o = np.float64(packed[g, P_O])
            z = packed[g, P_Z]
            r, gg, bb = packed[g, P_R], packed[g, P_G], packed[g, P_B]
            smax = math.log(o / ALPHA_MIN) + SPAN_MARGIN
            step2 = math.exp(-ca)
            ry = packed[g, P_RY]
            ya = max(y0, int(math.floor(v - ry - 0.5)))
            yb = min(y1, int(math.ceil(v + ry + 0.5)))
            for y in range(ya, yb):
                dy = v - (y + 0.5)
                # columns where 0.5 ca dx^2 + cb dx dy + 0.5 cc dy^2 <= smax
                disc = cb * cb * dy * dy - ca * (cc * dy * dy - 2.0 * smax)
                if disc < 0.0:
                    continue
                root = math.sqrt(disc)
                dx_lo = (-cb * dy - root) / ca
                dx_hi = (-cb * dy + root) / ca
                # dx = u - (x + 0.5)  =>  x = u - 0.5 - dx
                xa = max(0, int(math.floor(u - 0.5 - dx_hi)))
                xb = min(width, int(math.ceil(u - 0.5 - dx_lo)) + 1)
                if xa >= xb:
                    continue
                dx = u - (xa + 0.5)
                sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                gauss = math.exp(-sigma)  # exp(-sigma) at x = xa
                ratio = math.exp(-(0.5 * ca * (1.0 - 2.0 * dx) - cb * dy))  # exp(sigma(x) - sigma(x + 1))
                ly = y - y0
                for x in range(xa, xb):
                    alpha = min(0.999, o * gauss)
                    gauss *= ratio
                    ratio *= step2
                    t = T[ly, x]
                    if t < 0.0 or alpha < ALPHA_MIN or z >= limit[y, x]:
                        continue
                    next_t = t * (1.0 - alpha)
                    if next_t <= T_MIN:
                        T[ly, x] = -t
                        continue
                    w = alpha * t
                    C[ly, x, 0] += r * w
                    C[ly, x, 1] += gg * w
                    C[ly, x, 2] += bb * w
                    T[ly, x] = next_t
        for ly in range(rows):
            for x in range(width):
                t = T[ly, x]
                out[y0 + ly, x, 0] = C[ly, x, 0]
                out[y0 + ly, x, 1] = C[ly, x, 1]
                out[y0 + ly, x, 2] = C[ly, x, 2]
                out[y0 + ly, x, 3] = 1.0 - abs(t)
