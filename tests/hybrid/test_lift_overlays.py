"""Static overlays (watermarks, badges) burnt into the sample video are found and excluded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from hybrid.lift.decode import decode_video
from hybrid.lift.overlays import detect_static_overlay, static_share
from hybrid.lift.train import photometric_loss
from tests.hybrid.test_lift_decode import SAMPLE, write_video

pytest.importorskip("av")


def burn_watermark(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A semi-transparent caption bottom-right and an opaque striped badge top-left; returns (frames, truth)."""
    from PIL import Image, ImageDraw, ImageFont

    T, H, W = frames.shape[:3]
    layer = Image.new("L", (W, H), 0)
    draw = ImageDraw.Draw(layer)
    try:
        font = ImageFont.load_default(size=18)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    draw.text((W - 120, H - 30), "AI VIDEO", fill=255, font=font)
    alpha = np.asarray(layer, np.float32)[..., None] / 255.0 * 0.6
    badge = np.zeros((H, W), bool)
    badge[8:30, 8:60] = True
    out = frames.astype(np.float32) * (1 - alpha) + 255.0 * alpha
    out[:, badge] = (30, 30, 200)
    out[:, 12:26, 12:56:4] = 255
    return out.round().clip(0, 255).astype(np.uint8), (alpha[..., 0] > 0.05) | badge


@pytest.fixture(scope="module")
def watermarked(tmp_path_factory) -> tuple[Path, np.ndarray]:
    frames = decode_video(SAMPLE).images
    burnt, truth = burn_watermark(frames)
    path = write_video(tmp_path_factory.mktemp("wm") / "watermarked.mp4", burnt)  # through H.264 like a real file
    return path, truth


def test_burnt_in_watermark_is_detected(watermarked):
    path, truth = watermarked
    fs = decode_video(path)
    res = detect_static_overlay(fs.images)
    assert res.found
    recall = (res.mask & truth).sum() / truth.sum()
    outside = res.mask & ~ndimage.binary_dilation(truth, iterations=4)
    assert recall > 0.97, recall
    assert outside.mean() < 0.01, outside.mean()
    assert len(res.boxes) == 2
    (x0, y0, x1, y1) = min(res.boxes)  # the badge
    assert x0 <= 8 and y0 <= 8 and x1 >= 60 and y1 >= 30


def test_clean_video_has_no_overlay():
    fs = decode_video(SAMPLE)
    res = detect_static_overlay(fs.images)
    assert not res.found and res.fraction == 0.0
    assert static_share(fs.images) < 0.01


def test_static_camera_is_not_mistaken_for_an_overlay(shared_data):
    fs = decode_video(shared_data / "video" / "static_camera_box.mp4")
    assert static_share(fs.images) > 0.1
    res = detect_static_overlay(fs.images)
    assert not res.found and "static camera" in res.note


def test_photo_set_of_a_centred_object_is_not_an_overlay(shared_data):
    from hybrid.lift.decode import read_image_folder

    fs = read_image_folder(shared_data / "temple")  # 16 photos, bright temple centred on black
    res = detect_static_overlay(fs.images)
    assert not res.found and "24" in res.note


def test_overlay_is_excluded_from_features(watermarked, tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    from hybrid.lift.sfm import SfmOptions, _extract, write_frames

    path, truth = watermarked
    fs = decode_video(path)
    mask = detect_static_overlay(fs.images).mask
    names = list(fs.names[:3])
    for use_mask in (False, True):
        work = tmp_path / f"m{int(use_mask)}"
        mask_path = write_frames(fs.images[:3], names, work / "images", mask if use_mask else None)
        _extract(pycolmap, work / "db.db", work / "images", names, SfmOptions(max_features=2048), mask_path,
                 "SIMPLE_PINHOLE")  # fmt: skip
        db = pycolmap.Database.open(str(work / "db.db"))
        kp = np.concatenate([db.read_keypoints(im.image_id)[:, :2] for im in db.read_all_images()])
        db.close()
        on_overlay = truth[kp[:, 1].astype(int).clip(0, 239), kp[:, 0].astype(int).clip(0, 319)].sum()
        if use_mask:
            assert on_overlay == 0
        else:
            assert on_overlay > 20  # without the mask SIFT loves the caption and the badge


def test_overlay_is_excluded_from_the_loss():
    rng = np.random.default_rng(0)
    pred = torch.rand(48, 64, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    target = torch.from_numpy(rng.random((48, 64, 3)).astype(np.float32))
    valid = torch.ones(48, 64, dtype=torch.bool)
    valid[5:20, 10:30] = False
    other = target.clone()
    other[5:20, 10:30] = 1.0 - other[5:20, 10:30]  # change only masked pixels
    a = photometric_loss(pred, target, valid, 0.2)
    b = photometric_loss(pred, other, valid, 0.2)
    assert float(a.detach()) == pytest.approx(float(b.detach()), abs=1e-7)
    a.backward()
    assert pred.grad[11:14, 16:24].abs().max() == 0  # beyond the SSIM window (5 px) nothing pulls the splats


@pytest.mark.slow
def test_overlay_is_not_baked_into_the_scene(watermarked, tmp_path):
    """End to end: the lifted scene renders the scene under the caption and the badge, not the overlay."""
    from dataclasses import replace

    from hybrid.lift.pipeline import lift, preset_options

    path, truth = watermarked
    opts = preset_options("fast", "cpu", steps=400)
    opts = replace(opts, select=replace(opts.select, max_frames=40), align=replace(opts.align, camera_height=2.2),
                   keep_work=True)  # fmt: skip
    rep = lift(path, tmp_path / "scene", opts)
    assert rep.data["overlay"]["found"]
    from PIL import Image

    from scenes import load_scene
    from scenes.scene import Camera

    scene = load_scene(tmp_path / "scene")
    clean = decode_video(SAMPLE).images
    frames = decode_video(path).images
    import render

    cam: Camera = scene.capture_cameras[0]  # a held-out frame (every 8th, starting at 0)
    k = int(cam.name.split("_")[1].split(".")[0])
    t = scene.splats.to_torch()
    out = render.rasterize(t["means"], t["quats"], t["scales"], t["opacities"], t["sh"],
                           torch.tensor(cam.viewmat, dtype=torch.float32)[None],
                           torch.tensor(cam.K, dtype=torch.float32)[None], cam.width, cam.height)  # fmt: skip
    img = (out.colors[0].clamp(0, 1).numpy() * 255).astype(np.float32)
    Image.fromarray(img.astype(np.uint8)).save(tmp_path / "render.png")
    err_clean = np.abs(img[truth] - clean[k][truth]).mean()
    err_marked = np.abs(img[truth] - frames[k][truth]).mean()
    assert err_clean < 0.6 * err_marked, (err_clean, err_marked)
