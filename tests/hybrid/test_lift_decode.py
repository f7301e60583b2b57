"""Frame decoding and selection on real video files (PyAV, no mocks)."""

from __future__ import annotations

import json
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from hybrid.lift.decode import SelectOptions, decode_video, read_image_folder, select_frames, sharpness
from hybrid.lift.errors import LiftError
from scenes.errors import FormatError

av = pytest.importorskip("av")

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "sample.mp4"


def write_video(path: Path, frames, fps: int = 12, codec: str = "libx264") -> Path:
    """Encode [H, W, 3] uint8 frames (one encoded frame per input frame)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(fps, 1))
        s.width, s.height = frames[0].shape[1], frames[0].shape[0]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "18"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def set_mp4_rotation(path: Path, out: Path, matrix_abcd: tuple[float, float, float, float]) -> Path:
    """Copy an mp4 with the track header (tkhd) display matrix replaced (ISO/IEC 14496-12, 16.16 fixed)."""
    data = bytearray(path.read_bytes())
    i = data.find(b"tkhd")
    version = data[i + 4]
    off = i + 4 + 4 + (20 if version == 0 else 32) + 8 + 8  # after the times, track id, duration, layer/volume
    a, b, c, d = (struct.pack(">i", int(round(v * 65536))) for v in matrix_abcd)
    zero = struct.pack(">i", 0)
    data[off : off + 36] = a + b + zero + c + d + zero + zero + zero + struct.pack(">i", 1 << 30)
    out.write_bytes(bytes(data))
    return out


def test_sample_video_decodes_every_frame_of_its_ground_truth():
    gt = json.loads((ROOT / "assets" / "sample_gt.json").read_text())
    fs = decode_video(SAMPLE, SelectOptions())
    assert len(fs) == len(gt["cameras"]) == 60
    assert fs.size == (gt["cameras"][0]["width"], gt["cameras"][0]["height"]) == (320, 240)
    assert fs.counts["duplicates"] == 0 and fs.counts["blurry"] == 0
    assert list(fs.source_indices) == list(range(60))
    assert fs.rotation == 0 and fs.notes == ()


def test_rotation_metadata_is_applied_like_a_player(tmp_path):
    # A frame with a white marker in its top-left corner; the display matrix of a phone held upright
    # (a=0, b=1, c=-1, d=0) means "rotate 90 degrees clockwise": the marker must end up top-right.
    frames = []
    for k in range(4):
        f = np.full((48, 64, 3), 40, np.uint8)
        f[:12, :16] = 255
        f[40:, 30 + k : 34 + k] = 120  # a little change so frames are not duplicates
        frames.append(f)
    plain = write_video(tmp_path / "plain.mp4", frames)
    rotated = set_mp4_rotation(plain, tmp_path / "rot.mp4", (0, 1, -1, 0))
    fs = decode_video(rotated, SelectOptions(dedup=0))
    assert fs.rotation == 90
    assert fs.size == (48, 64)  # width and height swap
    img = fs.images[0].astype(int)
    assert img[2:10, -14:-2].mean() > 200  # top-right corner is the marker
    assert img[2:10, 2:14].mean() < 80  # top-left is not
    assert decode_video(plain, SelectOptions(dedup=0)).rotation == 0


def test_near_duplicates_blur_and_cap(tmp_path):
    from PIL import Image, ImageFilter

    base = decode_video(SAMPLE).images[:20]
    frames, blurred = [], set()
    for i, f in enumerate(base):
        if i in (5, 13):
            f = np.asarray(Image.fromarray(f).filter(ImageFilter.GaussianBlur(3)))
            blurred.add(i)
        frames += [f, f, f]  # every frame shown three times, as frozen generated videos do
    fs = decode_video(write_video(tmp_path / "dup.mp4", frames), SelectOptions(max_frames=100))
    assert fs.counts["duplicates"] == 40  # two repeats of each of the 20 frames
    assert fs.counts["blurry"] == 2
    assert len(fs) == 18
    assert not {int(i) // 3 for i in fs.source_indices} & blurred
    capped = decode_video(SAMPLE, SelectOptions(max_frames=12))
    assert len(capped) == 12 and capped.counts["capped"] == 48
    slices = np.linspace(0, 60, 13).round().astype(int)
    for k, idx in enumerate(capped.source_indices):  # one frame from each equal slice of time
        assert slices[k] <= idx < slices[k + 1]


def test_resolution_cap_downscales():
    fs = decode_video(SAMPLE, SelectOptions(max_size=160))
    assert fs.size == (160, 120) and fs.scale == pytest.approx(0.5)


def test_selection_keeps_sharpest_frame_per_slice():
    rng = np.random.default_rng(0)
    sharp = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    flat = np.full((32, 32, 3), 128, np.uint8)
    images = [flat + i for i in range(6)] + [sharp]  # the sharp frame is the 7th
    assert sharpness(sharp) > 100 * sharpness(flat + 1)
    keep, counts = select_frames(images, list(range(7)), SelectOptions(max_frames=1, blur=0, dedup=0), video=True)
    assert keep == [6] and counts["capped"] == 6


def test_broken_header_video_keeps_what_decodes(shared_data):
    path = shared_data / "video" / "broken_header_tree.avi"
    fs = decode_video(path)
    assert fs.counts["decoded"] == 68  # the header claims 444
    assert len(fs) >= 60
    assert any("444" in n and "68" in n for n in fs.notes)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "empty"), (b"hello, this is not a video\n" * 20, "not a readable video")],
)
def test_empty_or_non_video_file_fails_clearly(tmp_path, content, match):
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=match):
        decode_video(path)


def test_missing_input_fails_clearly(tmp_path):
    with pytest.raises(LiftError, match="not found"):
        decode_video(tmp_path / "nope.mp4")


def test_image_folder_natural_order_and_one_size(tmp_path, shared_data):
    from PIL import Image

    src = sorted((shared_data / "temple").glob("*.png"))[:3]
    for i, p in zip((10, 2, 1), src):
        Image.open(p).save(tmp_path / f"img{i}.png")
    fs = read_image_folder(tmp_path, SelectOptions(max_size=320))
    assert fs.names == ("img1.png", "img2.png", "img10.png")
    assert fs.size == (320, 240)
    Image.new("RGB", (50, 40)).save(tmp_path / "odd.png")
    with pytest.raises(FormatError, match="different sizes"):
        read_image_folder(tmp_path)
