"""Supersampling a render coarser than the capture (render.supersample), against analytic answers.

Splats much smaller than a pixel are drawn as gsplat draws them, with a 0.3 px² dilation: a dot
of opacity ``o`` puts ``o * 2 pi * 0.3`` px² of light in the frame it was fitted to. A field of
such dots, drawn four times coarser, should be as bright on average (a box filter keeps the
light); drawn directly, the dilation is 0.3 px² of the *coarse* pixels, 16 times the area, and
the field comes out many times too bright. The same happens, less starkly, to every lifted
scene drawn below its capture resolution.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from render.supersample import CaptureSampling, resolve, resolve_max, scene_sampling
from scenes import Camera, Scene, Splats

HEIGHT = 1.0  # camera height over the plane, m
SIZE = 160  # capture frame side, px
FOCAL = 200.0  # capture focal length, px: a capture pixel is 5 mm on the plane
OPACITY = 0.5


def _dots_scene(seed: int = 0) -> tuple[Scene, Camera]:
    """White dots (much smaller than a capture pixel) on a jittered grid 8 capture pixels apart, on black."""
    rng = np.random.default_rng(seed)
    px = HEIGHT / FOCAL  # a capture pixel on the plane, m
    g = (np.arange(16) - 7.5) * 8 * px
    xy = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2) + rng.uniform(-2, 2, (256, 2)) * px
    means = np.c_[xy, np.zeros(len(xy))]
    splats = Splats.from_activated(means, np.tile([1.0, 0, 0, 0], (len(xy), 1)), np.full((len(xy), 3), 0.02 * px),
                                   np.full(len(xy), OPACITY), colors=np.ones((len(xy), 3)))  # fmt: skip
    cam = Camera.look_at([0.0, 0.0, HEIGHT], [0.0, 0.0, 0.0], fov_y_deg=2 * np.degrees(np.arctan(SIZE / 2 / FOCAL)),
                         width=SIZE, height=SIZE, up=(0.0, 1.0, 0.0))  # fmt: skip
    return Scene(splats, capture_cameras=(cam,)), cam


def test_the_factor_is_how_many_capture_pixels_a_pixel_spans():
    scene, cam = _dots_scene()
    sampling = scene_sampling(scene)
    means = scene.splats.means
    assert sampling.factor(cam, means) == 1  # the capture itself
    assert sampling.factor(cam.scaled(0.5), means) == 2
    assert sampling.factor(cam.scaled(0.25), means) == 4
    assert sampling.factor(cam.scaled(0.125), means) == 4  # at most MAX_FACTOR
    assert sampling.factor(cam.scaled(2.0), means) == 1  # finer than the capture: drawn as is
    far = Camera.look_at([0.0, 0.0, 2 * HEIGHT], [0.0, 0.0, 0.0], fov_y_deg=30.0, width=SIZE, height=SIZE,
                         up=(0.0, 1.0, 0.0))  # fmt: skip
    focal = far.K[0, 0]
    assert sampling.factor(far, means) == int(np.ceil(2 * FOCAL / focal - 0.25))  # twice as far: half the rate
    away = Camera.look_at([0.0, 0.0, HEIGHT], [0.0, 0.0, 2 * HEIGHT], fov_y_deg=40.0, width=SIZE, height=SIZE,
                          up=(0.0, 1.0, 0.0))  # fmt: skip
    assert sampling.factor(away, means) == 1  # nothing of the scene in view
    assert CaptureSampling.of(means, ()) is None  # no capture cameras: nothing to compare with
    assert scene_sampling(Scene(scene.splats)) is None


def test_resolve_is_the_block_mean_and_resolve_max_the_block_max():
    x = torch.arange(4 * 6 * 2, dtype=torch.float32).reshape(4, 6, 2)
    got = resolve(x, 2)
    want = x.reshape(2, 2, 3, 2, 2).mean(dim=(1, 3))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(resolve_max(x, 2), x.reshape(2, 2, 3, 2, 2).amax(dim=(1, 3)))
    assert resolve(x, 1) is x


@pytest.mark.parametrize("path", ["world", "world_model"])
def test_dots_drawn_four_times_coarser_keep_their_light(path):
    from hybrid.world import World
    from hybrid.world_model import SplatState, WorldModel

    scene, cam = _dots_scene()
    small = cam.scaled(0.25)  # 40 x 40: each pixel spans 4 x 4 capture pixels
    if path == "world":
        got = World(scene).render([small], supersample=None)[0]  # auto: 4
        default = World(scene).render([small])[0]  # the default is auto (session 16)
        direct = World(scene).render([small], supersample=1)[0]  # drawn as is
        bare = World(Scene(scene.splats)).render([small], supersample=None)[0]  # no capture cameras: nothing to do
    else:
        state = SplatState.rest(scene)
        got = WorldModel(scene, "off", supersample=None).images(state, [small])[0]
        default = WorldModel(scene, "off").images(state, [small])[0]
        direct = WorldModel(scene, "off", supersample=1).images(state, [small])[0]
        bare = WorldModel(Scene(scene.splats), "off", supersample=None).images(state, [small])[0]
    np.testing.assert_array_equal(bare, direct)
    np.testing.assert_array_equal(default, got)
    # the 16 x 16 dots fill a square 128 capture pixels wide, 32 of these pixels, in the middle
    want = 256 * OPACITY * 2 * np.pi * 0.3 / 128**2  # each dot's light over the square's area (capture px²)
    square = slice(4, 36)
    assert got[square, square].mean() == pytest.approx(want, rel=0.02)  # 0.994: the alpha cut-off
    assert direct[square, square].mean() > 10 * want  # the failure this fixes (15x)


def test_render_cli_supersample_auto_keeps_the_light_and_a_bad_value_says_what_is_allowed(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from hybrid.cli import app
    from scenes import save_scene
    from scenes.cameras import write_transforms_json

    scene, cam = _dots_scene()
    save_scene(scene, tmp_path / "dots")
    small = cam.scaled(0.25)
    write_transforms_json(tmp_path / "cams.json", [small])
    runner = CliRunner()
    res = runner.invoke(app, ["render", str(tmp_path / "dots"), "--cameras", str(tmp_path / "cams.json"),
                              "--supersample", "auto", "-o", str(tmp_path / "out")])  # fmt: skip
    assert res.exit_code == 0, res.output
    img = np.asarray(Image.open(tmp_path / "out" / "c0.png"), np.float64) / 255
    want = 256 * OPACITY * 2 * np.pi * 0.3 / 128**2
    assert img[4:36, 4:36].mean() == pytest.approx(want, rel=0.05)  # 8-bit PNG: a few % of rounding
    res = runner.invoke(app, ["render", str(tmp_path / "dots"), "--cameras", str(tmp_path / "cams.json"),
                              "--supersample", "9", "-o", str(tmp_path / "bad")])  # fmt: skip
    assert res.exit_code != 0 and "'auto' or a factor 1..4" in res.output + str(res.exception)
