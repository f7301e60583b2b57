"""The residual's shipped prior (hybrid/world_model/prior.safetensors, made by tools/world_model_prior.py).

Checked against PyBullet's TinyRenderer, the independent renderer of the benchmark: on a box
world whose seed is not in the corpus, edited by our physics, the prior alone must correct the
engine towards what TinyRenderer draws better than the hole fill does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid.world_model import TrainConfig, train_world_model
from hybrid.world_model.prior import PRIOR_PATH, load_prior, prior_metadata
from hybrid.world_model.train import gated_l1
from scenes.errors import FormatError, ShapeError
from tests.hybrid._world_model_scenes import LIGHT, cube_over_plane

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_prior_loads_and_says_how_it_was_made():
    net = load_prior()
    assert net is not None and net.width == 16 and net.num_parameters < 3_000_000
    meta = prior_metadata()
    assert meta["made_by"] == "tools/world_model_prior.py"
    first, last = (int(v) for v in meta["corpus_seeds"].split("-"))
    assert first > 2, "the corpus must not contain the benchmark's scenes (seeds 0-2)"
    assert float(meta["gated_l1"]) < float(meta["gated_l1_hole_fill"])


def test_a_corrupt_or_missing_prior_is_a_clear_error_or_a_fallback(tmp_path, caplog):
    bad = tmp_path / "prior.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(FormatError, match="not a world-model prior"):
        load_prior(bad)
    assert load_prior(tmp_path / "missing.safetensors") is None
    assert "training the residual from random weights" in caplog.text


def test_training_uses_the_prior_as_shipped_or_fine_tunes_it_or_starts_from_scratch():
    from hybrid.world_model import Relighting

    scene, _ = cube_over_plane(LIGHT, floor_half=0.3, spacing=0.02)
    rel = Relighting.fit(scene, light=LIGHT)
    small = dict(views=2, samples_per_view=3, crop=48, batch=4)
    prior = load_prior().state_dict()
    shipped = train_world_model(scene, TrainConfig(**small), relighting=rel)  # the default: the prior, 0 steps
    assert shipped.init == "prior" and shipped.samples == 0 and shipped.network_used
    for k, v in shipped.net.state_dict().items():
        torch.testing.assert_close(v, prior[k], rtol=0, atol=0)
    assert shipped.weights["light.direction"].tolist() == list(rel.light.direction)
    tuned = train_world_model(scene, TrainConfig(steps=5, **small), relighting=rel)
    assert tuned.init == "prior" and tuned.samples == 6
    moved = [k for k, v in tuned.net.state_dict().items() if not torch.equal(v, prior[k])]
    assert moved, "fine-tuning changed nothing"
    scratch = train_world_model(scene, TrainConfig(steps=5, init="scratch", **small), relighting=rel)
    assert scratch.init == "scratch"
    assert TrainConfig(init="scratch").train_steps == 500 and TrainConfig().train_steps == 0
    with pytest.raises(ShapeError, match="init"):
        train_world_model(scene, TrainConfig(init="imagenet", **small), relighting=rel)
    # a prior that does not fit the asked width (or is missing) falls back to training from scratch, 500 steps
    narrow = train_world_model(scene, TrainConfig(width=8, **{**small, "batch": 2}), relighting=rel)
    assert narrow.init == "scratch" and narrow.samples == 6 and len(narrow.losses) == 10


@pytest.mark.skipif(not PRIOR_PATH.exists(), reason="no shipped prior")
def test_the_prior_beats_the_hole_fill_on_a_held_out_simulated_world(tmp_path):
    """A box world (seed 7: not the corpus's 1000+) slid, toppled, dropped and removed; truth by TinyRenderer."""
    sys.path.insert(0, str(ROOT / "tools"))
    from safetensors.numpy import save_file
    from world_model_prior import load_samples, scene_samples

    arrays = scene_samples(7, tmp_path, log=lambda s: None, colour_steps=0)
    save_file(arrays, str(tmp_path / "held_out.safetensors"))
    samples = load_samples([tmp_path / "held_out.safetensors"])
    assert len(samples) >= 8
    net = load_prior()
    with_prior, hole_fill = gated_l1(samples, net), gated_l1(samples)
    print(f"held-out gated L1: prior {with_prior:.4f}, hole fill {hole_fill:.4f}")
    assert with_prior < 0.97 * hole_fill, (with_prior, hole_fill)
    # and the gate holds: outside it the corrected image is the base image exactly
    x, base, gate, _ = samples[0]
    with torch.no_grad():
        out = base + gate * net(x)
    far = gate == 0
    assert far.any() and torch.equal(out.expand_as(base)[far.expand_as(base)], base[far.expand_as(base)])
    assert np.isfinite(with_prior)


@pytest.mark.skipif(not PRIOR_PATH.exists(), reason="no shipped prior")
def test_the_prior_beats_the_hole_fill_on_a_held_out_lifted_world(tmp_path):
    """A box world (seed 8) lifted by hybrid lift from its TinyRenderer orbit, then edited; truth by TinyRenderer.

    A lift draws what geometry-built splats do not (blurred edges, floaters, floor under the boxes); the
    prior's corpus has lifted worlds for that. Its objects are found as the product finds them (the corpus
    tool's default, ``--objects detect``). Measured, drawn with auto supersampling (the default since session 16) and 48
    samples: prior 0.0817 against the hole fill's 0.0864 (session 15's prior: 0.0826, which fails the bound). As drawn, 16
    samples: prior 0.104 against the hole fill's 0.113 (session 15, lifts with centred colour
    corrections; the prior trained on the uncentred, 4.7 %-too-dark lifts gave 0.109 here); 0.126 against 0.139 (session 12;
    with the splats inside the boxes' known poses, session 9: 0.108 against 0.121, and the prior of
    geometry-built worlds alone 0.118, which failed the bound). The lift takes ~1.5 min.
    """
    sys.path.insert(0, str(ROOT / "tools"))
    from safetensors.numpy import save_file
    from world_model_prior import load_samples, scene_samples

    arrays = scene_samples(8, tmp_path, log=lambda s: None, lift_cache=tmp_path / "lifts")
    save_file(arrays, str(tmp_path / "held_out.safetensors"))
    samples = load_samples([tmp_path / "held_out.safetensors"])
    assert len(samples) >= 8
    with_prior, hole_fill = gated_l1(samples, load_prior()), gated_l1(samples)
    print(f"held-out lifted gated L1: prior {with_prior:.4f}, hole fill {hole_fill:.4f}")
    assert with_prior < 0.95 * hole_fill, (with_prior, hole_fill)


def test_world_model_train_cli_uses_the_prior_and_says_so(tmp_path):
    from typer.testing import CliRunner

    from hybrid.cli import app
    from hybrid.world_model import WEIGHTS_NAME
    from scenes import load_scene, save_scene

    scene, _ = cube_over_plane(LIGHT, floor_half=0.3, spacing=0.02)
    folder = save_scene(scene, tmp_path / "scene")
    runner = CliRunner()
    res = runner.invoke(app, ["world-model", "train", str(folder), "--light-direction", "0.45,-0.25,0.86"])
    assert res.exit_code == 0, res.output
    assert "shipped prior" in res.output and "--init scratch" in res.output
    saved = load_scene(folder).weights[WEIGHTS_NAME]
    for k, v in load_prior().state_arrays().items():
        np.testing.assert_array_equal(saved[k], v)
    res = runner.invoke(app, ["world-model", "train", str(folder), "--init", "scratch", "--steps", "3", "--views", "2"])
    assert res.exit_code == 0, res.output
    assert "from scratch" in res.output
    res = runner.invoke(app, ["world-model", "train", str(folder), "--init", "imagenet"])
    assert res.exit_code != 0 and "init" in res.output
