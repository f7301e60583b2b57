"""Splat optimisation: metrics, densification, determinism, exact resume, colour-drift compensation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hybrid.lift.train import (
    CpuStrategy,
    TrainData,
    Trainer,
    TrainOptions,
    init_from_points,
    psnr,
    split_heldout,
    ssim,
)
from scenes.scene import Camera

ROOT = Path(__file__).resolve().parents[2]


def naive_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM with a full 11x11 Gaussian window per channel (Wang et al. 2004), reflect padding."""
    x = torch.arange(11.0) - 5
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    w = (g[:, None] * g[None]) / g.sum() ** 2
    w = w[None, None].repeat(3, 1, 1, 1)
    X = F.pad(a.permute(2, 0, 1)[None], (5,) * 4, mode="reflect")
    Y = F.pad(b.permute(2, 0, 1)[None], (5,) * 4, mode="reflect")
    mx, my = F.conv2d(X, w, groups=3), F.conv2d(Y, w, groups=3)
    sxx = F.conv2d(X * X, w, groups=3) - mx**2
    syy = F.conv2d(Y * Y, w, groups=3) - my**2
    sxy = F.conv2d(X * Y, w, groups=3) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean())


def test_ssim_and_psnr_against_references():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(40, 50, 3, generator=g)
    b = (a + 0.1 * torch.randn(40, 50, 3, generator=g)).clamp(0, 1)
    assert float(ssim(a, b)) == pytest.approx(naive_ssim(a, b), abs=1e-5)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
    # constant images: the variances vanish and SSIM = (2 a b + C1) / (a^2 + b^2 + C1)
    ca, cb = torch.full((20, 20, 3), 0.3), torch.full((20, 20, 3), 0.5)
    assert float(ssim(ca, cb)) == pytest.approx((2 * 0.15 + 1e-4) / (0.09 + 0.25 + 1e-4), rel=1e-5)
    assert psnr(ca, ca + 0.1) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01


def test_split_heldout_every_eighth():
    train, held = split_heldout(20)
    assert list(held) == [0, 8, 16] and len(train) == 17 and not set(train) & set(held)


def _params(means, log_scales, opacities):
    n = len(means)
    return torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.tensor(means, dtype=torch.float32)),
        "scales": torch.nn.Parameter(torch.tensor(log_scales, dtype=torch.float32)),
        "quats": torch.nn.Parameter(torch.tensor([[1.0, 0, 0, 0]] * n)),
        "opacities": torch.nn.Parameter(torch.tensor(opacities, dtype=torch.float32)),
        "sh0": torch.nn.Parameter(torch.zeros(n, 1, 3)),
        "shN": torch.nn.Parameter(torch.zeros(n, 3, 3)),
    })  # fmt: skip


def test_densification_clones_splits_and_prunes():
    o = TrainOptions(refine_start=0, refine_every=10, grow_grad2d=2e-4, grow_scale3d=0.01, prune_opacity=0.005)
    strat = CpuStrategy(o, scene_scale=1.0, steps=100)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    params = _params(
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]],
        [[math.log(0.005)] * 3, [math.log(0.1)] * 3, [math.log(0.005)] * 3, [math.log(0.005)] * 3],
        [logit(0.5), logit(0.5), logit(0.001), logit(0.5)],
    )
    optimizers = {k: torch.optim.Adam([params[k]], lr=1e-3) for k in params}
    (sum(p.sum() for p in params.values())).backward()
    for opt in optimizers.values():
        opt.step()  # creates Adam moments that must follow the splats
    state = strat.initialize_state(4)
    means2d = torch.zeros(1, 4, 2, requires_grad=True)
    # NDC gradients: splat 0 (small) and 1 (large) high, 2 high but transparent, 3 low
    means2d.grad = torch.tensor([[[1e-3, 0], [1e-3, 0], [1e-3, 0], [1e-6, 0]]]) / (100 / 2.0)
    info = {"means2d": means2d, "radii": torch.ones(1, 4, 2, dtype=torch.int32), "width": 100, "height": 100,
            "n_cameras": 1}  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    out = strat.step_post_backward(params, optimizers, state, 10, info, gen)
    assert out == {"cloned": 2, "split": 1, "pruned": 2}  # clones: 0 and 2; the transparent one and its clone go
    n = len(params["means"])
    assert n == 4 + 2 - 1 + 2 - 2  # clones, split (one out, two in), prunes
    for k, opt in optimizers.items():
        st = opt.state[params[k]]
        assert st["exp_avg"].shape == params[k].shape  # moments resized with the splats
    big = torch.exp(params["scales"]).max(-1).values
    assert int((big > 0.08).sum()) == 0  # the large splat is gone, replaced by two at 1/1.6 of its size
    assert int(torch.isclose(big, torch.tensor(0.1 / 1.6), rtol=1e-2).sum()) == 2


@pytest.fixture(scope="module")
def tiny_data():
    """12 frames of the sample video at 80x60 with their ground-truth cameras, and points on the ground."""
    from hybrid.lift.decode import SelectOptions, decode_video

    fs = decode_video(ROOT / "assets" / "sample.mp4", SelectOptions(max_frames=12, max_size=80))
    gt = json.loads((ROOT / "assets" / "sample_gt.json").read_text())
    cams = tuple(Camera.from_dict(gt["cameras"][int(i)]).scaled(0.25) for i in fs.source_indices)
    rng = np.random.default_rng(0)
    pts = np.concatenate(
        [rng.uniform(-2.5, 2.5, (1500, 3)) * [1, 1, 0], rng.uniform(-0.6, 0.6, (500, 3)) + [0, 0, 0.6]]
    )
    cols = rng.random((2000, 3))
    train, held = split_heldout(len(cams))
    return TrainData(fs.images, cams, train, held), pts, cols


def _trainer(data, pts, cols, **kw) -> Trainer:
    opts = TrainOptions(steps=24, refine_start=4, refine_every=6, sh_degree=1, sh_interval=10, lowres_until=0.25, **kw)
    return Trainer(data, init_from_points(pts, cols, opts), opts)


class _Stop(Exception):
    pass


def _same(x, y) -> None:
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)


def test_training_is_deterministic_and_resumes_exactly(tiny_data, tmp_path):
    data, pts, cols = tiny_data
    ra = _trainer(data, pts, cols, seed=3).run()
    assert ra.history and len(ra.splats) != 2000  # densification ran
    _same(ra.splats, _trainer(data, pts, cols, seed=3).run().splats)

    def stop_at_13(info):  # what Ctrl-C does in `hybrid lift`: stop after a step, save, resume later
        if info["step"] == 13:
            raise _Stop

    b = _trainer(data, pts, cols, seed=3)
    with pytest.raises(_Stop):
        b.run(stop_at_13)
    b.save_checkpoint(tmp_path)
    c = _trainer(data, pts, cols, seed=3)
    c.load_checkpoint(tmp_path)
    assert c.step == 13
    rc = c.run()
    assert rc.steps == 24
    _same(ra.splats, rc.splats)
    d = _trainer(data, pts, cols, seed=4).run()
    assert len(d.splats) != len(ra.splats) or not np.array_equal(d.splats.means, ra.splats.means)


def test_training_improves_held_out_psnr(tiny_data):
    data, pts, cols = tiny_data
    t = _trainer(data, pts, cols, seed=0)
    before = t.evaluate(data.heldout)["psnr"]
    t.o = TrainOptions(**{**t.o.__dict__, "steps": 150})
    t.run()
    after = t.evaluate(data.heldout)["psnr"]
    assert after > before + 5, (before, after)


def test_colour_correction_absorbs_exposure_flicker(tiny_data):
    data, pts, cols = tiny_data
    gains = np.linspace(0.75, 1.25, len(data.cameras))[np.random.default_rng(1).permutation(len(data.cameras))]
    flicker = (data.images.astype(np.float32) * gains[:, None, None, None]).clip(0, 255).round().astype(np.uint8)
    fdata = TrainData(flicker, data.cameras, data.train, data.heldout)
    t = _trainer(fdata, pts, cols, seed=0, appearance_lr=5e-3)
    t.o = TrainOptions(**{**t.o.__dict__, "steps": 200})
    res = t.run()
    learned = res.color_correction[:, [0, 1, 2], [0, 1, 2]].mean(1)  # [Tt] mean diagonal gain
    injected = gains[data.train]
    corr = np.corrcoef(learned, injected)[0, 1]
    assert corr > 0.9, (corr, learned.round(3), injected.round(3))


def test_splats_keep_the_frames_colours_under_the_colour_correction(tiny_data):
    """The per-frame corrections are centred, so the splats drawn without one match the frames' colours.

    A correction common to every frame is indistinguishable from a change of every splat's colour; left
    free, the corrections took up +5..+7/255 early and the splats stayed that much too dark at every
    view drawn without a correction (held-out frames, novel views; a lifted TinyRenderer orbit 4.7 %
    too dark at its own capture views). The held-out frames are the independent truth here.
    """
    data, pts, cols = tiny_data
    t = _trainer(data, pts, cols, seed=0, appearance_lr=5e-3)
    t.o = TrainOptions(**{**t.o.__dict__, "steps": 200})
    res = t.run()
    np.testing.assert_allclose(res.color_correction.mean(0), np.eye(3, 4), atol=1e-6)
    bias = np.mean([(t.render_image(int(i)) - data.images[int(i)] / 255.0).reshape(-1, 3).mean(0)
                    for i in data.heldout], axis=0)  # fmt: skip
    assert np.abs(bias).max() < 8 / 255, bias * 255
