"""The reference rasterizer: small, exact, pure PyTorch (autograd gives every gradient).

It defines the maths the other backends must reproduce (gsplat 1.5 semantics):

1. project: camera-space mean and covariance, EWA Jacobian with gsplat's frustum clamp,
   ``eps2d`` dilation (and the antialiasing compensation), conic = inverse 2D covariance,
   opacity-aware radius ``ceil(min(3.33, sqrt(2 ln(255 o))) * sigma)``; culled splats get radius 0;
2. bin: a splat goes to every 16x16 tile its bounding box touches, ordered by camera z (stable);
3. composite, per pixel front to back: ``alpha = min(0.999, o exp(-sigma))``, skipped when
   ``sigma < 0`` or ``alpha < 1/255``; the pixel stops (exclusive) when ``T (1 - alpha) <= 1e-4``
   or when a splat is at/behind the depth limit.

Tiles are processed in padded batches (every pixel of a tile against every splat of the tile),
which also makes this the "straightforward padded pure-PyTorch tiled rasterizer" peer in the
benchmark.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from render._common import (
    ALPHA_MAX,
    ALPHA_MIN,
    EXTEND_MAX,
    T_MIN,
    TILE_SIZE,
    RasterRequest,
    RasterResult,
    campos_of,
    finish,
)
from render.sh import sh_to_color

__all__ = ["run", "project", "composite", "quat_to_rotmat"]

_BATCH_ELEMENTS = 1 << 22  # pixels x splats evaluated per padded batch


def run(req: RasterRequest) -> RasterResult:
    means2d, conics, depths, opac, radii = project(
        req.means, req.quats, req.scales, req.opacities, req.viewmats, req.Ks, req.width, req.height,
        eps2d=req.eps2d, near_plane=req.near_plane, far_plane=req.far_plane, radius_clip=req.radius_clip,
        antialiased=req.antialiased,
    )  # fmt: skip
    valid = (radii > 0).all(-1)
    feats = []
    if req.wants_rgb:
        if req.sh_degree is None:
            feats.append(req.colors[None].expand(req.viewmats.shape[0], -1, -1))
        else:
            dirs = req.means[None] - campos_of(req.viewmats)[:, None]  # [C, N, 3]
            dirs = torch.where(valid[..., None], dirs, torch.ones_like(dirs))  # culled: any non-zero direction
            feats.append(sh_to_color(req.sh_degree, dirs, req.colors[None]))
    if req.wants_depth:
        feats.append(depths[..., None])
    img, trans, ids = composite(
        means2d, conics, opac, torch.cat(feats, -1), depths, radii, req.width, req.height, req.depth_limit
    )
    return finish(req, img, trans, means2d, radii, ids if req.options.splat_ids else None, "reference")


def quat_to_rotmat(q: Tensor) -> Tensor:  # [..., 4] unit wxyz -> [..., 3, 3]
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, -1).reshape(q.shape[:-1] + (3, 3))


def project(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    *,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    antialiased: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Project splats: means2d [C, N, 2], conics [C, N, 3], depths [C, N], opacities [C, N], radii [C, N, 2] int32.

    Entries of culled splats (radius 0) are zero.
    """
    q = quats / torch.linalg.vector_norm(quats, dim=-1, keepdim=True)
    m = quat_to_rotmat(q) * scales[:, None, :]  # R S
    covars = m @ m.transpose(-1, -2)  # [N, 3, 3]
    rot, trans = viewmats[:, :3, :3], viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", rot, means) + trans[:, None, :]  # [C, N, 3]
    covars_c = torch.einsum("cij,njk,clk->cnil", rot, covars, rot)  # [C, N, 3, 3]
    x, y, z = means_c.unbind(-1)
    in_depth = (z >= near_plane) & (z <= far_plane)
    z = torch.where(in_depth, z, torch.ones_like(z))  # keep culled entries finite (and their gradients zero)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    rz = 1.0 / z
    tx = z * torch.clamp(x * rz, min=-lim_x_neg, max=lim_x_pos)
    ty = z * torch.clamp(y * rz, min=-lim_y_neg, max=lim_y_pos)
    zero = torch.zeros_like(z)
    jac = torch.stack([fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], -1)
    jac = jac.reshape(z.shape + (2, 3))
    cov2d = jac @ covars_c @ jac.transpose(-1, -2)  # [C, N, 2, 2]
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)

    a, b, c, d = cov2d[..., 0, 0], cov2d[..., 0, 1], cov2d[..., 1, 0], cov2d[..., 1, 1]
    det_orig = a * d - b * c
    a, d = a + eps2d, d + eps2d
    det = a * d - b * c
    ok_det = det > 0
    det = torch.where(ok_det, det, torch.ones_like(det))
    conics = torch.stack([d / det, -(b + c) / 2.0 / det, a / det], -1)
    opac = opacities[None].expand_as(z)
    if antialiased:
        ratio = det_orig / det
        pos = ratio > 0
        comp = torch.where(pos, torch.sqrt(torch.where(pos, ratio, torch.ones_like(ratio))), torch.zeros_like(ratio))
        opac = opac * comp

    with torch.no_grad():
        o = opac.detach()
        visible = o >= ALPHA_MIN
        extend = torch.sqrt(2.0 * torch.log(torch.where(visible, o, torch.ones_like(o)) / ALPHA_MIN))
        extend = torch.clamp_max(extend, EXTEND_MAX)
        rx = torch.ceil(extend * torch.sqrt(a.detach().clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(d.detach().clamp_min(0)))
        mx, my = means2d[..., 0].detach(), means2d[..., 1].detach()
        valid = in_depth & ok_det & visible & ~((rx <= radius_clip) & (ry <= radius_clip))
        valid &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = torch.where(valid[..., None], torch.stack([rx, ry], -1), 0).to(torch.int32)
    keep = valid[..., None]
    return (
        torch.where(keep, means2d, 0.0),
        torch.where(keep, conics, 0.0),
        torch.where(valid, z, 0.0),
        torch.where(valid, opac, 0.0),
        radii,
    )


def composite(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    opacities: Tensor,  # [C, N]
    feats: Tensor,  # [C, N, F]
    depths: Tensor,  # [C, N] camera z (sort key, depth-limit test)
    radii: Tensor,  # [C, N, 2] int
    width: int,
    height: int,
    depth_limit: Tensor | None = None,  # [C, H, W]
) -> tuple[Tensor, Tensor, Tensor]:
    """Front-to-back compositing: features [C, H, W, F], transmittance [C, H, W, 1], dominant ids [C, H, W]."""
    outs = [
        _composite_one(
            means2d[i],
            conics[i],
            opacities[i],
            feats[i],
            depths[i],
            radii[i],
            width,
            height,
            None if depth_limit is None else depth_limit[i],
        )  # fmt: skip
        for i in range(means2d.shape[0])
    ]
    return tuple(torch.stack(parts) for parts in zip(*outs, strict=True))  # type: ignore[return-value]


def tile_bins(
    means2d: Tensor,  # [N, 2]
    depths: Tensor,  # [N]
    radii: Tensor,  # [N, 2]
    n_tx: int,
    n_ty: int,
) -> tuple[Tensor, Tensor]:
    """Padded tile lists: splat ids [n_tiles, M] ordered by depth (stable), -1 padded; counts [n_tiles]."""
    n = means2d.shape[0]
    dev = means2d.device
    with torch.no_grad():
        m = means2d.detach() / TILE_SIZE
        r = radii.to(means2d.dtype) / TILE_SIZE
        x0 = torch.floor(m[:, 0] - r[:, 0]).clamp(0, n_tx).long()
        x1 = torch.ceil(m[:, 0] + r[:, 0]).clamp(0, n_tx).long()
        y0 = torch.floor(m[:, 1] - r[:, 1]).clamp(0, n_ty).long()
        y1 = torch.ceil(m[:, 1] + r[:, 1]).clamp(0, n_ty).long()
        count = (x1 - x0) * (y1 - y0) * (radii > 0).all(-1)
        gid = torch.repeat_interleave(torch.arange(n, device=dev), count)
        local = torch.arange(gid.numel(), device=dev) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        wid = (x1 - x0)[gid]
        tile = (y0[gid] + local // wid) * n_tx + x0[gid] + local % wid
        rank = torch.empty(n, dtype=torch.long, device=dev)
        rank[torch.sort(depths.detach(), stable=True).indices] = torch.arange(n, device=dev)
        order = torch.sort(tile * max(n, 1) + rank[gid]).indices
        tile, gid = tile[order], gid[order]
        counts = torch.bincount(tile, minlength=n_tx * n_ty)
        pos = torch.arange(tile.numel(), device=dev) - (torch.cumsum(counts, 0) - counts)[tile]
        table = torch.full((n_tx * n_ty, int(counts.max()) if tile.numel() else 0), -1, dtype=torch.long, device=dev)
        table[tile, pos] = gid
    return table, counts


def _composite_one(means2d, conics, opac, feats, depths, radii, width, height, limit):
    n_tx, n_ty = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
    table, counts = tile_bins(means2d, depths, radii, n_tx, n_ty)
    dev, nf = means2d.device, feats.shape[-1]
    pix = torch.arange(TILE_SIZE * TILE_SIZE, device=dev)
    order = torch.argsort(counts, descending=True, stable=True)
    busy = order[counts[order] > 0]
    # with gradients, recompute each batch in backward instead of keeping every batch's graph alive
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (means2d, conics, opac, feats))
    tiles_out, feat_out, trans_out, id_out = [], [], [], []
    start = 0
    while start < busy.numel():
        m = int(counts[busy[start]])
        b = max(1, _BATCH_ELEMENTS // (TILE_SIZE * TILE_SIZE * m))
        tiles = busy[start : start + b]
        start += b
        px = ((tiles % n_tx) * TILE_SIZE)[:, None] + pix % TILE_SIZE  # [B, P] pixel column
        py = ((tiles // n_tx) * TILE_SIZE)[:, None] + pix // TILE_SIZE
        ids = table[tiles, :m]  # [B, M]
        lim = None if limit is None else limit[py.clamp_max(height - 1), px.clamp_max(width - 1)]  # [B, P]
        args = (means2d, conics, opac, feats, depths, ids, px, py, lim, width, height)
        f, t, i = checkpoint(_batch, *args, use_reentrant=False) if grad else _batch(*args)
        feat_out.append(f)
        trans_out.append(t)
        id_out.append(i)
        tiles_out.append(tiles)
    n_tiles = n_tx * n_ty
    p = TILE_SIZE * TILE_SIZE
    img = feats.new_zeros((n_tiles, p, nf))
    trans = feats.new_ones((n_tiles, p, 1))
    idmap = torch.full((n_tiles, p), -1, dtype=torch.long, device=dev)
    if tiles_out:
        idx = torch.cat(tiles_out)
        img = img.index_put((idx,), torch.cat(feat_out))
        trans = trans.index_put((idx,), torch.cat(trans_out))
        idmap = idmap.index_put((idx,), torch.cat(id_out))

    def untile(t: Tensor) -> Tensor:
        t = t.reshape(n_ty, n_tx, TILE_SIZE, TILE_SIZE, *t.shape[2:]).transpose(1, 2)
        return t.reshape(n_ty * TILE_SIZE, n_tx * TILE_SIZE, *t.shape[4:])[:height, :width]

    return untile(img), untile(trans), untile(idmap)


def _batch(means2d, conics, opac, feats, depths, ids, px, py, lim, width, height):
    """Every pixel [B, P] of B tiles against the M splats [B, M] of its tile (padded with -1), front to back."""
    dt = means2d.dtype
    g = ids.clamp_min(0)
    dx = means2d[g, 0][:, None, :] - (px.to(dt) + 0.5)[:, :, None]  # [B, P, M]
    dy = means2d[g, 1][:, None, :] - (py.to(dt) + 0.5)[:, :, None]
    con = conics[g]
    sigma = 0.5 * (con[..., 0][:, None] * dx * dx + con[..., 2][:, None] * dy * dy) + con[..., 1][:, None] * dx * dy
    alpha = torch.clamp_max(opac[g][:, None, :] * torch.exp(-sigma), ALPHA_MAX)
    inside = (px < width) & (py < height)
    ok = (ids >= 0)[:, None, :] & (sigma >= 0) & (alpha >= ALPHA_MIN) & inside[:, :, None]
    if lim is not None:
        ok &= depths[g][:, None, :] < lim[:, :, None]
    alpha = torch.where(ok, alpha, 0.0)
    t_incl = torch.cumprod(1.0 - alpha, -1)
    stop = torch.cumsum((ok & (t_incl <= T_MIN)).to(torch.int32), -1) > 0  # the pixel stops (exclusive)
    keep = ok & ~stop
    t_excl = torch.cat([torch.ones_like(t_incl[..., :1]), t_incl[..., :-1]], -1)
    w = torch.where(keep, alpha * t_excl, 0.0)  # [B, P, M] alpha * T
    best, arg = w.detach().max(-1)  # first maximum: the front-most on ties
    return (
        torch.einsum("bpm,bmf->bpf", w, feats[g]),
        torch.cumprod(torch.where(keep, 1.0 - alpha, 1.0), -1)[..., -1:],
        torch.where(best > 0, torch.gather(ids, 1, arg), -1),
    )
