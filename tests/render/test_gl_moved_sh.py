"""View-dependent colour of moved objects: the compositor keeps the rest SH and rotates the view
direction into each object's rest frame; the picture must equal ``render.rasterize`` (cpu backend) of
the same splats with their SH coefficients rotated exactly (``physics.SplatRig(sh_mode="rotate_sh")``)."""

from __future__ import annotations

import numpy as np
import pytest

from physics.transforms import SplatRig, quat_to_matrix
from render.gl import Renderer, RenderSettings, intrinsics_from_fov, look_at
from tests.render.gl_support import ctx_fixture, gl_context_fixture, psnr, save_artifact  # noqa: F401
from tests.render.test_gl_splats import _random_splats

W, H = 160, 120


def _moved_scene():
    splats = _random_splats(300, 3, seed=21)
    groups = [np.arange(0, 120), np.arange(120, 220)]  # two bodies; splats 220.. belong to none
    rest = np.array([[0.3, 0.0, 0.0, 1, 0, 0, 0], [-0.4, 0.2, 0.1, 1, 0, 0, 0]], np.float64)
    a, b = np.radians(70), np.radians(-110)  # large turns, so rest-frame SH would be visibly wrong
    now = np.array(
        [
            [0.4, -0.1, 0.2, np.cos(a / 2), 0, np.sin(a / 2), 0],  # about +Y
            [-0.3, 0.3, 0.0, np.cos(b / 2), np.sin(b / 2) * 0.6, 0, np.sin(b / 2) * 0.8],
        ]
    )
    rig = SplatRig(splats, groups, rest, sh_mode="rotate_sh")
    means, quats, sh, _ = rig.apply(now)
    body = np.full(len(splats), -1)
    for i, g in enumerate(groups):
        body[g] = i
    R = np.stack([quat_to_matrix(now[i, 3:]) @ quat_to_matrix(rest[i, 3:]).T for i in range(2)])
    return splats, means.copy(), quats.copy(), sh.copy(), body, R


@pytest.mark.parametrize("path", ["gl", "cpu", "raster"])
def test_moved_objects_view_dependent_colour_matches_rasterize_with_rotated_sh(ctx, path):
    import torch

    from render.rasterize import rasterize

    splats, means, quats, sh_rot, body, R = _moved_scene()
    viewmat = look_at([0.6, -3.0, 1.4], [0, 0, 0])
    K = intrinsics_from_fov(W, H, 55)
    t = {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in
         {"means": means, "quats": quats, "scales": splats.scales, "opacities": splats.opacities, "sh": sh_rot}.items()}  # fmt: skip
    ref = rasterize(
        t["means"], t["quats"], t["scales"], t["opacities"], t["sh"],
        torch.tensor(viewmat, dtype=torch.float32)[None], torch.tensor(K, dtype=torch.float32)[None], W, H,
        sh_degree=3, backend="cpu",
    ).colors[0].numpy()  # fmt: skip
    settings = RenderSettings(splat_path=path, raster_backend="cpu" if path == "raster" else None)
    with Renderer(ctx, W, H, settings) as r:
        r.set_splats(splats)  # rest SH
        r.update_splats(means, quats)
        stale = r.render_frame(viewmat, K)  # world-frame evaluation of rest SH: what this fixes
        r.set_splat_rotations(body, R)
        frame = r.render_frame(viewmat, K)
    save_artifact(f"moved_sh_{path}", np.concatenate([frame.color, ref, stale.color], axis=1))
    value, before = psnr(frame.color, ref), psnr(stale.color, ref)
    assert value >= 40.0, f"PSNR {value:.1f} dB against rasterize with rotated SH"
    assert before < value - 10.0, f"the scene should need the rotation (without: {before:.1f} dB, with: {value:.1f})"


def test_set_splat_rotations_checks_its_input(ctx):
    from scenes.errors import ShapeError

    splats = _random_splats(10, 1, seed=1)
    with Renderer(ctx, 32, 24) as r:
        r.set_splats(splats)
        with pytest.raises(ShapeError, match="body_of_splat"):
            r.set_splat_rotations(np.zeros(9, int), np.eye(3)[None])
        with pytest.raises(ShapeError, match="body indices"):
            r.set_splat_rotations(np.full(10, 1), np.eye(3)[None])
