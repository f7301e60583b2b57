"""The viewer session on a headless EGL context: real renderer, real physics, no window.

Clicks are pixels of the view; the pixel of a box is found by projecting its centre with the
session's own camera. Images are saved to ``artifacts/viewer/session_*.png``.
"""

from __future__ import annotations

import numpy as np
import pytest

from scenes.errors import BackendError, MissingDependencyError, PhysicsError
from tests.hybrid.viewer_support import BOXES, box_asset, build_scene, save_artifact

W, H = 800, 450


@pytest.fixture(scope="module")
def scene_path(tmp_path_factory):
    return build_scene(tmp_path_factory.mktemp("viewer") / "scene")


@pytest.fixture(scope="module")
def gl():
    from render.gl import create_context

    try:
        ctx = create_context("egl")
    except (BackendError, MissingDependencyError) as exc:
        pytest.skip(f"no EGL GL context: {exc}")
    yield ctx
    ctx.release()


@pytest.fixture
def session(scene_path, gl):
    from hybrid.viewer import ViewerSession
    from scenes import load_scene

    s = ViewerSession(load_scene(scene_path), gl, (W, H))
    s.target = gl.simple_framebuffer((W, H))  # stands in for the window
    yield s
    assert gl.error == "GL_NO_ERROR"
    gl.detect_framebuffer(0).use()  # never leave a released framebuffer bound
    s.target.release()
    s.release()
    assert gl.error == "GL_NO_ERROR"


def draw(s) -> np.ndarray:  # [H, W, 3] uint8 as the window would show it
    s.sync()
    s.render()
    s.compose(s.target)
    return np.frombuffer(s.target.read(components=3), np.uint8).reshape(H, W, 3)[::-1].copy()


def pixel_of(s, point) -> tuple[float, float]:
    view, K = s.viewmat_and_K()
    pc = view[:3, :3] @ np.asarray(point, float) + view[:3, 3]
    return pc[0] / pc[2] * K[0, 0] + K[0, 2], pc[1] / pc[2] * K[1, 1] + K[1, 2]


def outline_pixels(image: np.ndarray) -> np.ndarray:  # [H, W] bool: the outline's amber
    c = image.astype(int)
    return (c[..., 0] > 200) & (c[..., 1] > 150) & (c[..., 1] < 230) & (c[..., 2] < 80)


def test_cpu_gl_renders_at_reduced_internal_size_and_matches_the_rasterizer(session):
    s = session
    assert s.software_gl  # llvmpipe on this machine; on a GPU the internal size is the view's
    assert s.render_size[0] * s.render_size[1] <= 640 * 360 * 1.01
    assert s.render_size[0] / s.render_size[1] == pytest.approx(W / H, rel=0.02)
    s.render()
    gl_image = s.renderer.read().color.clip(0, 1)
    from scenes import Camera

    view, K = s.viewmat_and_K(*s.render_size)
    cpu = s.world.render([Camera(K, view, *s.render_size)])[0]
    mse = float(np.mean((gl_image - cpu) ** 2))
    psnr = 10 * np.log10(1 / mse)
    save_artifact("session_gl_vs_cpu", (np.concatenate([gl_image, cpu], 1) * 255).astype(np.uint8))
    # same splats, same camera: the GL quads agree with render.rasterize (the grid ground has many
    # splats at exactly equal depth, which a depth-writing splat pass would drop)
    assert psnr > 35, psnr


def test_click_selects_the_object_under_the_cursor_and_outlines_it(session):
    s = session
    before = draw(s)
    assert not outline_pixels(before).any()
    u, v = pixel_of(s, BOXES["red"][1])
    assert s.select_at(u, v) == "red"
    after = draw(s)
    save_artifact("session_select_red", after)
    ring = outline_pixels(after)
    ys, xs = np.nonzero(ring)
    assert ring.sum() > 100
    # the ring surrounds the red box's pixel, within its projected size
    assert xs.min() < u < xs.max() and ys.min() < v < ys.max()
    assert xs.max() - xs.min() < W / 3
    assert s.select_at(W / 2, 10) is None  # the sky: nothing selected
    assert not outline_pixels(draw(s)).any()


def test_push_moves_the_object_along_the_view_ray_and_undo_puts_it_back(session):
    s = session
    start = s.world.physics.body_poses().copy()
    image0 = draw(s)
    u, v = pixel_of(s, BOXES["red"][1])
    _, ray = s.camera.ray(u, v, W, H)
    assert s.push_at(u, v, strength=1.5) == "red"
    assert s.interventions.labels() == ["push red"]
    for _ in range(45):
        s.tick(1 / 30)
    poses = s.world.physics.body_poses()
    moved = poses[0, :3] - start[0, :3]
    horizontal = ray[:2] / np.linalg.norm(ray[:2])
    assert moved[:2] @ horizontal > 0.1  # slid away from the camera, the way the ray points
    assert np.linalg.norm(poses[1, :3] - start[1, :3]) < 0.01  # blue untouched
    image1 = draw(s)
    save_artifact("session_push_before_after", np.concatenate([image0, image1], 1))
    assert np.abs(image1.astype(int) - image0.astype(int)).sum(-1).max() > 100
    assert s.undo() == "push red"
    np.testing.assert_allclose(s.world.physics.body_poses(), start, atol=1e-9)
    s.selected = None  # the push selected red; without its outline the picture is exactly the first one
    np.testing.assert_array_equal(draw(s), image0)
    assert s.undo() is None


def test_push_impulse_scales_with_the_mass_set_in_the_panel(session):
    s = session
    phys = s.world.physics
    s.paused = True
    u, v = pixel_of(s, BOXES["blue"][1])
    s.begin_edit("mass blue")
    s.set_dynamics("blue", mass=2.0)
    assert s.dynamics("blue")[0] == 2.0
    s.push_at(u, v, strength=1.0)
    lin, _ = phys.velocity("blue")
    assert np.linalg.norm(lin) == pytest.approx(0.5, rel=1e-6)  # dv = J / m
    s.undo()  # the push
    s.undo()  # the mass edit
    assert s.dynamics("blue")[0] == 1.0
    s.push_at(u, v, strength=1.0)
    assert np.linalg.norm(phys.velocity("blue")[0]) == pytest.approx(1.0, rel=1e-6)
    s.set_dynamics("blue", friction=0.1)
    assert s.dynamics("blue")[1] == 0.1
    assert s.push_at(W / 2, H - 5) is None  # the ground is not an object
    assert s.message == "nothing to push there"
    with pytest.raises(PhysicsError, match="would move at"):  # refused by physics: the message says why
        s.world.physics.push(s.pick(u, v).point, [0, 0, 500.0])
    assert s.push_at(u, v, strength=500.0) is None
    assert s.message.startswith("push refused") and "limits" in s.message


def test_drag_pushes_towards_the_release_point(session):
    s = session
    start = s.world.physics.pose("blue")
    u, v = pixel_of(s, BOXES["blue"][1])
    assert s.drag_push(u, v, u + 120, v) == "blue"  # drag to the right on screen
    for _ in range(30):
        s.tick(1 / 30)
    moved = s.world.physics.pose("blue")[:3] - start[:3]
    assert moved @ s.camera.right > 0.05
    assert abs(moved @ s.camera.right) > 3 * abs(moved @ s.camera.forward)


def test_spawn_reset_and_undo_of_the_reset(session, tmp_path):
    s = session
    asset = box_asset(tmp_path / "crate.glb")
    name = s.spawn(asset, mass=0.5)
    assert name == "crate" and "crate" in s.world.physics.names
    for _ in range(30):
        s.tick(1 / 30)
    resting = s.world.physics.pose("crate")
    assert resting[2] == pytest.approx(0.1, abs=0.01)  # a 0.2 m box resting on the ground
    s.reset()
    assert s.world.physics.names == ("red", "blue")
    s.undo()  # undo the reset: the crate comes back where it was
    assert s.world.physics.names == ("red", "blue", "crate")
    np.testing.assert_allclose(s.world.physics.pose("crate"), resting, atol=1e-9)
    s.undo()  # undo the spawn
    assert s.world.physics.names == ("red", "blue")
    assert s.spawn(tmp_path / "missing.glb") is None
    assert "spawn failed" in s.message


def test_light_changes_meshes_and_leaves_splats_alone(session, tmp_path):
    s = session
    s.paused = True
    s.spawn(box_asset(tmp_path / "crate.glb"), mass=0.5)
    s.selected = None
    # each view drawn twice: on llvmpipe the splat layer's first frame after a change renders at the
    # resolution the frame budget allows (timing-dependent), the second is the still view at full scale
    s.light = s.light.with_(intensity=0.0, ambient=(0.2, 0.2, 0.2))
    draw(s)
    dark = draw(s)
    s.light = s.light.with_(intensity=2.0, elevation_deg=80.0)
    draw(s)
    bright = draw(s)
    save_artifact("session_light_dark_bright", np.concatenate([dark, bright], 1))
    pose = s.world.physics.pose("crate")
    u, v = pixel_of(s, pose[:3] + [0, 0, 0.1])  # the top face
    patch = (slice(int(v) - 2, int(v) + 3), slice(int(u) - 2, int(u) + 3))
    assert bright[patch].mean() > dark[patch].mean() + 60
    changed = np.abs(bright.astype(int) - dark.astype(int)).sum(-1) > 0
    # only the crate's pixels change (a band around it for upscaling filters)
    ys, xs = np.nonzero(changed)
    assert changed.mean() < 0.05
    assert abs(xs.mean() - u) < 40 and abs(ys.mean() - v) < 40


def test_collider_wireframes_follow_the_bodies(session):
    s = session
    plain = draw(s)
    s.set_show_colliders(True)
    wired = draw(s)
    save_artifact("session_colliders", wired)
    green = (wired[..., 1].astype(int) > 200) & (wired[..., 0] < 120) & (plain[..., 1] < 200)
    assert green.sum() > 200
    for name in ("red", "blue"):
        u, v = pixel_of(s, BOXES[name][1])
        near = green[int(v) - 60 : int(v) + 60, int(u) - 60 : int(u) + 60]
        assert near.sum() > 50, name


def test_capture_cameras_and_framing(session):
    s = session
    cams = s.scene.capture_cameras
    assert s.go_to_capture_camera(1)
    for _ in range(20):
        s.camera.update(1 / 30)
    np.testing.assert_allclose(s.camera.viewmat(), cams[1].viewmat, atol=1e-12)
    assert not s.go_to_capture_camera(5)
    s.selected = "blue"
    s.frame_view()
    for _ in range(20):
        s.camera.update(1 / 30)
    u, v = pixel_of(s, BOXES["blue"][1])
    assert abs(u - W / 2) < 5 and abs(v - H / 2) < 5


def test_recorder_writes_frames_with_their_times(session, tmp_path):
    import av

    from hybrid.viewer import VideoRecorder

    s = session
    rec = VideoRecorder(tmp_path / "clip.mp4")
    for i in range(6):
        s.tick(0.1)
        s.sync()
        s.render()
        rec.add(s.read_render(), t=0.1 * i)
    path = rec.close()
    with av.open(str(path)) as f:
        frames = list(f.decode(video=0))
    assert len(frames) == 6
    assert (frames[0].width, frames[0].height) == (s.render_size[0] // 2 * 2, s.render_size[1] // 2 * 2)
    np.testing.assert_allclose([float(fr.time) for fr in frames], [0.1 * i for i in range(6)], atol=1e-3)


def test_still_view_is_redrawn_through_the_world_model(session):
    """World view "exact": once still, the view is re-rendered on the CPU rasterizer and shown instead of GL."""
    import time

    s = session
    gl_image = draw(s)
    s.set_world_view("exact")
    deadline = time.time() + 45
    while not s.showing_world_frame:
        assert time.time() < deadline, s.refiner.status
        s.update_world_frame()
        time.sleep(0.05)
    world = draw(s)
    save_artifact("session_world_frame_vs_gl", np.concatenate([world, gl_image], 1))
    assert s.refiner.status.startswith("world model (off)")
    diff = np.abs(world.astype(float) - gl_image.astype(float)).mean()
    assert 0 < diff < 3  # the same splats through the other (exact) rasterizer, upscaled the same way
    s.camera.look(30, 0)  # any change: back to GL frames until still again
    s.update_world_frame()
    assert not s.showing_world_frame
    s.set_world_view("gl")
    assert s.refiner is None


def test_turned_object_keeps_its_view_dependent_colour_like_the_world_render(scene_path, gl):
    # SH degree 3 on the boxes' splats: after physics turns them, the GL frame must still match the
    # world's own render (render.rasterize with SplatRig.colors: SH evaluated in each body's rest frame)
    from hybrid.viewer import ViewerSession, ViewerSettings
    from scenes import Camera, load_scene

    scene = load_scene(scene_path)
    rng = np.random.default_rng(3)
    sh = scene.splats.with_sh_degree(3).sh.copy()
    on_boxes = np.concatenate([o.splat_indices for o in scene.objects])  # the ground keeps flat colours: its
    sh[on_boxes, 1:] = rng.normal(0, 0.6, sh[on_boxes, 1:].shape)  # equal-depth splats blend in any order
    scene = scene.with_(splats=scene.splats.with_(sh=sh))
    s = ViewerSession(scene, gl, (W, H), ViewerSettings(render_scale=0.5))
    try:
        for name in s.world.physics.names:
            s.world.physics.set_velocity(name, linear=[0, 0, 2.0], angular=[0.0, 9.0, 4.0])
        for _ in range(4):
            s.tick(1 / 30)
        s.sync()
        turned = [np.degrees(2 * np.arccos(min(1.0, abs(s.world.physics.pose(n)[3])))) for n in s.world.physics.names]
        assert min(turned) > 30, f"the boxes should have turned: {turned}"
        s.render()
        gl_image = s.renderer.read().color.clip(0, 1)
        view, K = s.viewmat_and_K(*s.render_size)
        ref = s.world.render([Camera(K, view, *s.render_size)])[0]
        s.renderer.set_splat_rotations(None)  # rest SH in the world frame: the colour this fixes
        s.render()
        stale = s.renderer.read().color.clip(0, 1)
    finally:
        s.release()
    save_artifact("session_turned_sh", (np.concatenate([gl_image, ref, stale], 1) * 255).astype(np.uint8))

    def psnr(a, b):
        return 10 * np.log10(1 / float(np.mean((a - b) ** 2)))

    assert psnr(gl_image, ref) > 35, psnr(gl_image, ref)
    assert psnr(stale, ref) < psnr(gl_image, ref) - 3, (psnr(stale, ref), psnr(gl_image, ref))
