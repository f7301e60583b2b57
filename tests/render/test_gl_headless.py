"""Headless rendering: ``hybrid render`` with a camera file into a folder, an orbit into an MP4."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from scenes import Scene, Splats, save_scene
from scenes.errors import ShapeError
from tests.render.gl_support import ctx_fixture, gl_context_fixture, save_artifact  # noqa: F401

COLORS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


@pytest.fixture
def three_splat_scene(tmp_path):
    """Splat i (colour i) at (3 i, 0, 0) with a white one 0.5 m above it; Z up."""
    means, colors = [], []
    for i in range(3):
        means += [[3.0 * i, 0, 0], [3.0 * i, 0, 0.5]]
        colors += [COLORS[i], [1.0, 1.0, 1.0]]
    splats = Splats.from_activated(means, [[1, 0, 0, 0]] * 6, [[0.1] * 3] * 6, [0.99] * 6, colors)
    return save_scene(Scene(splats=splats), tmp_path / "scene")


def _app():
    from hybrid.cli import app

    return app


def test_render_cameras_into_folder_in_file_order(ctx, three_splat_scene, tmp_path):
    # nerfstudio transforms.json, OpenGL axes: camera i at (3 i, -4, 0) looking along +Y with +Z up
    frames = []
    for i in range(3):
        c2w = [[1, 0, 0, 3.0 * i], [0, 0, -1, -4.0], [0, 1, 0, 0], [0, 0, 0, 1]]
        frames.append({"file_path": f"img{i}.png", "transform_matrix": c2w})
    cams = tmp_path / "cams.json"
    cams.write_text(
        json.dumps({"fl_x": 100.0, "fl_y": 100.0, "cx": 48.5, "cy": 32.5, "w": 96, "h": 64, "frames": frames})
    )
    out = tmp_path / "views"
    result = CliRunner().invoke(_app(), ["render", str(three_splat_scene), "--cameras", str(cams), "-o", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    from PIL import Image

    images = [np.asarray(Image.open(out / f"c{i}.png")) for i in range(3)]
    assert sorted(p.name for p in out.iterdir()) == ["c0.png", "c1.png", "c2.png"]
    save_artifact("cli_cameras", np.concatenate(images, axis=1))
    for i, image in enumerate(images):
        assert image.shape == (64, 96, 3)
        # its own splat on the pixel centre (48.5, 32.5): colour * opacity 0.99
        np.testing.assert_allclose(image[32, 48] / 255.0, 0.99 * COLORS[i], atol=0.01)
        # the white splat 0.5 m above projects 100 * 0.5 / 4 = 12.5 px above the centre: image up is world +Z
        np.testing.assert_allclose(image[20, 48] / 255.0, [0.99, 0.99, 0.99], atol=0.03)
        assert image[45, 48].max() < 5  # nothing below


def test_render_orbit_into_mp4(ctx, tmp_path):
    av = pytest.importorskip("av")
    # one green splat at (1, 2, 0.5): the orbit circles it
    splats = Splats.from_activated([[1, 2, 0.5]], [[1, 0, 0, 0]], [[0.3] * 3], [0.99], [[0, 1, 0]])
    scene = save_scene(Scene(splats=splats), tmp_path / "scene")
    out = tmp_path / "orbit.mp4"
    args = ["render", str(scene), "--orbit", "6", "--width", "80", "--height", "48", "--elevation", "0", "-o", str(out)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    with av.open(str(out)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 6
    assert decoded[0].shape == (48, 80, 3)
    save_artifact("cli_orbit", np.concatenate(decoded, axis=1))
    # green in the middle of every frame, dark in the corners
    centre = np.array([f[22:26, 38:42].reshape(-1, 3).mean(0) for f in decoded])
    assert (centre[:, 1] > 180).all() and (centre[:, [0, 2]] < 40).all(), centre
    assert max(int(f[:4, :4].max()) for f in decoded) < 20


def test_render_rejects_cameras_and_orbit_together(three_splat_scene, tmp_path):
    cams = tmp_path / "cams.json"
    cams.write_text("{}")
    args = ["render", str(three_splat_scene), "--cameras", str(cams), "--orbit", "3", "-o", str(tmp_path / "x")]
    result = CliRunner().invoke(_app(), args)
    assert isinstance(result.exception, ShapeError) and "not both" in str(result.exception)


def test_render_rejects_unknown_output_suffix(three_splat_scene, tmp_path):
    result = CliRunner().invoke(_app(), ["render", str(three_splat_scene), "-o", str(tmp_path / "x.gif")])
    assert isinstance(result.exception, ShapeError) and ".mp4" in str(result.exception)


def test_scene_orbit_looks_at_the_capture_cameras_target():
    from render.gl.headless import scene_orbit
    from scenes import Camera

    target = np.array([1.0, 2.0, 0.5])
    capture = [
        Camera.look_at(target + [3 * np.cos(a), 3 * np.sin(a), 1.0], target, width=64, height=48) for a in (0, 1, 2)
    ]
    splats = Splats.from_activated([[0, 0, 0]], [[1, 0, 0, 0]], [[0.1] * 3], [0.5], [[1, 1, 1]])
    orbit = scene_orbit(Scene(splats=splats, capture_cameras=capture), 8)
    for cam in orbit:
        centre = np.linalg.inv(cam.viewmat)[:3, 3]
        p = cam.viewmat[:3, :3] @ target + cam.viewmat[:3, 3]
        assert p[0] == pytest.approx(0, abs=1e-6) and p[1] == pytest.approx(0, abs=1e-6)  # on the optical axis
        assert np.linalg.norm(centre - target) == pytest.approx(np.sqrt(10), rel=1e-6)
        assert (cam.width, cam.height) == (64, 48)
        assert cam.viewmat[1, 2] < 0  # image down (camera +y) points down in the world: +Z is up on screen
    # evenly spaced in azimuth: consecutive camera centres are equally far apart
    centres = np.array([np.linalg.inv(c.viewmat)[:3, 3] for c in orbit])
    steps = np.linalg.norm(np.diff(np.vstack([centres, centres[:1]]), axis=0), axis=1)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-6)
