"""A per-pixel, per-splat Python loop (the compositing rule written out plainly) against the backends.

It also feeds the gsplat backend's dominant-splat computation (``render._gsplat.dominant_splats``,
pure PyTorch) the contributing pairs as gsplat's ``rasterize_to_indices_in_range`` lists them, so
that part of the CUDA path is tested without a GPU.
"""

from __future__ import annotations

import math

import pytest
import torch

from render import available_backends
from render._gsplat import dominant_splats
from render._reference import project
from tests.render._raster_scenes import random_scene, render

BACKENDS = [b for b in ("cpu", "reference") if b in available_backends()]


def _loop_composite(scene, means2d, conics, depths, opac, radii) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Colours [C, H, W, 3], alphas [C, H, W] and the (splat, pixel, camera) contributing pairs, pixel by pixel."""
    c_, h, w = scene["viewmats"].shape[0], scene["height"], scene["width"]
    m2d, con, op, depth = means2d.double(), conics.double(), opac.double(), depths.double()
    colors = scene["colors"].double()
    img = torch.zeros((c_, h, w, 3), dtype=torch.float64)
    alphas = torch.zeros((c_, h, w), dtype=torch.float64)
    pairs = []
    for c in range(c_):
        visible = [g for g in range(m2d.shape[1]) if (radii[c, g] > 0).all()]
        order = sorted(visible, key=lambda g: (float(depth[c, g]), g))
        for y in range(h):
            for x in range(w):
                t = 1.0
                for g in order:
                    dx, dy = float(m2d[c, g, 0]) - (x + 0.5), float(m2d[c, g, 1]) - (y + 0.5)
                    a, b, cc = (float(v) for v in con[c, g])
                    sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
                    alpha = min(0.999, float(op[c, g]) * math.exp(-sigma))
                    if sigma < 0 or alpha < 1 / 255:
                        continue
                    if t * (1 - alpha) <= 1e-4:
                        break
                    img[c, y, x] += alpha * t * colors[g]
                    t *= 1 - alpha
                    pairs.append((g, y * w + x, c))
                alphas[c, y, x] = 1 - t
    return img, alphas, pairs


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_match_a_plain_per_pixel_loop_and_the_gsplat_id_logic(backend):
    scene = random_scene(n=40, width=18, height=14, cameras=2, seed=21, backgrounds=False)
    res, _ = render(scene, backend)
    # the projection has its own tests; this one is about compositing, so take the reference projection
    args = [scene[k] for k in ("means", "quats", "scales", "opacities", "viewmats", "Ks")]
    means2d, conics, depths, opac, radii = project(*args, scene["width"], scene["height"])
    assert torch.equal(radii, res.radii) and torch.allclose(means2d, res.means2d, atol=1e-4)
    img, alphas, pairs = _loop_composite(scene, means2d, conics, depths, opac, radii)
    assert torch.allclose(res.colors.double(), img, atol=2e-6)
    assert torch.allclose(res.alphas[..., 0].double(), alphas, atol=2e-6)
    gid, pix, cam = (torch.tensor(v) for v in zip(*pairs, strict=True))
    ids = dominant_splats(gid, pix, cam, means2d, conics, opac, scene["width"], scene["height"])
    assert (ids == res.splat_ids).float().mean() > 0.995
