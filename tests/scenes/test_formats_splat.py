"""antimatter15 ``.splat`` and GaussianSplats3D ``.ksplat``: fixtures, round trips, gsplat's .splat writer."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from scenes import FormatError
from scenes.formats import decode_splats, read_splats, write_splats
from scenes.splats import SH_C0
from tests.scenes._formats_support import activated_close, random_splats

GRID = np.array([[-1.0, 0, -1], [0, 0, -1], [-1, 0, 0], [0, 0, 0]], np.float32)


@pytest.mark.parametrize("name", ["minimal.splat", "minimal.ksplat"])
def test_fixtures_decode_to_the_generator_values(shared_data, name):
    """create-fixtures.mjs: 2x2 grid, linear scale 0.1, colour ((gx+1)/3, (gz+1)/3, 0.5), alpha 230, quaternion
    stored as (0, 0, 0, 1) in the file's first-to-last order (wxyz here: a half turn about z)."""
    s = read_splats(shared_data / "splats" / "fixtures" / name)
    np.testing.assert_array_equal(s.means, GRID)
    np.testing.assert_allclose(s.scales, 0.1, rtol=1e-6)
    gx, gz = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])
    rgb = np.stack([np.round((gx + 1) / 3 * 255), np.round((gz + 1) / 3 * 255), np.full(4, 128)], 1) / 255
    np.testing.assert_allclose(s.colors, rgb, atol=1e-6)
    np.testing.assert_allclose(s.opacities, 230 / 255, atol=1e-6)
    np.testing.assert_allclose(s.unit_quats, [[0, 0, 0, 1]] * 4, atol=1e-6)


@pytest.mark.parametrize("degree", [0, 2])
def test_splat_roundtrip_within_8_bit_quantisation(tmp_path, degree):
    s = random_splats(500, degree, seed=degree)
    lost = write_splats(s, tmp_path / "a.splat")
    assert (tmp_path / "a.splat").stat().st_size == 500 * 32
    r = read_splats(tmp_path / "a.splat")
    assert r.sh_degree == 0
    # rotation bytes round(q * 128 + 128): each component within 0.5/128 before renormalisation
    activated_close(r, s, means=0, log_scales=2e-6, opacity=0.5 / 255 + 1e-6, sh=0.5 / 255 / SH_C0 + 1e-5,
                    quat_dot=1 - 1e-4)  # fmt: skip
    assert ("SH bands 1-2 dropped (.splat keeps only the base colour)" in lost) == (degree == 2)


def test_splat_clips_colour_and_reports_it(tmp_path):
    s = random_splats(100, 0, in_range=False, seed=7)
    rgb = s.sh[:, 0] * SH_C0 + 0.5
    outside = int(np.count_nonzero((rgb < 0) | (rgb > 1)))
    lost = write_splats(s, tmp_path / "c.splat")
    assert outside and f"{outside} colour value(s) outside [0, 1] clipped" in lost
    r = read_splats(tmp_path / "c.splat")
    np.testing.assert_allclose(r.colors, np.clip(rgb, 0, 1), atol=0.5 / 255 + 1e-6)


def test_splat_size_must_be_whole_records():
    with pytest.raises(FormatError, match=r"whole number of 32-byte records, but this one has 70 bytes"):
        decode_splats(bytes(70), "splat")


def test_gsplat_splat_writer_agrees(tmp_path):
    torch = pytest.importorskip("torch")
    exporter = pytest.importorskip("gsplat.exporter", reason="gsplat not installed (pip install gsplat==1.5.3)")
    s = random_splats(300, 0, seed=11)
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
         dict(means=s.means, scales=s.log_scales, quats=s.quats, opacities=s.opacity_logits).items()}  # fmt: skip
    exporter.export_splats(**t, sh0=torch.from_numpy(s.sh[:, :1].copy()), shN=torch.zeros(300, 0, 3), format="splat",
                           save_to=str(tmp_path / "g.splat"))  # fmt: skip
    order = exporter.sort_centers(torch.from_numpy(s.means), torch.arange(300)).numpy()
    theirs = read_splats(tmp_path / "g.splat")
    # gsplat truncates where we round: its bytes are within one step below ours
    activated_close(theirs, s.subset(order), means=0, log_scales=2e-6, opacity=1 / 255 + 1e-6,
                    sh=1 / 255 / SH_C0 + 1e-5, quat_dot=1 - 2e-4)  # fmt: skip
    write_splats(s.subset(order), tmp_path / "o.splat")
    a = np.frombuffer((tmp_path / "o.splat").read_bytes(), np.uint8).reshape(300, 32)
    b = np.frombuffer((tmp_path / "g.splat").read_bytes(), np.uint8).reshape(300, 32)
    np.testing.assert_array_equal(a[:, :12], b[:, :12])  # float32 positions identical
    sa, sb = a[:, 12:24].copy().view("<f4"), b[:, 12:24].copy().view("<f4")
    np.testing.assert_allclose(sa, sb, rtol=2.5e-7)  # linear scales: float64 exp vs torch's float32 exp, 1 ulp
    diff = a[:, 24:].astype(int) - b[:, 24:].astype(int)
    assert diff.min() >= 0 and diff.max() <= 1


def _ksplat(level: int, sh_degree: int, n: int, rng) -> tuple[bytes, dict]:
    """A one-section .ksplat written by hand following GaussianSplats3D's SplatBuffer layout (one bucket per
    section at compression levels 1-2)."""
    nsh = (0, 9, 24)[sh_degree]
    cb, sb, rb, hb = (12, 12, 16, 4) if level == 0 else (6, 6, 8, 2 if level == 1 else 1)
    per = cb + sb + rb + 4 + nsh * hb
    means = rng.uniform(-2, 2, (n, 3)).astype(np.float32)
    scales = rng.uniform(0.01, 0.3, (n, 3)).astype(np.float32)
    rot = rng.normal(size=(n, 4)).astype(np.float32)
    rgba = rng.integers(0, 256, (n, 4)).astype(np.uint8)
    sh_vals = rng.uniform(-1.5, 1.5, (n, nsh)).astype(np.float32)
    head = bytearray(4096)
    head[0:2] = bytes([0, 1])
    struct.pack_into("<IIII", head, 4, 1, 1, n, n)
    struct.pack_into("<H", head, 20, level)
    struct.pack_into("<ff", head, 36, -1.5, 1.5)
    sec = bytearray(1024)
    block, qrange = 8.0, 32767
    struct.pack_into("<IIII", sec, 0, n, n, n if level else 0, 1 if level else 0)
    struct.pack_into("<f", sec, 16, block if level else 0.0)
    struct.pack_into("<H", sec, 20, 12 if level else 0)
    struct.pack_into("<I", sec, 24, qrange if level else 0)
    struct.pack_into("<II", sec, 32, 1 if level else 0, 0)
    struct.pack_into("<H", sec, 40, sh_degree)
    buckets = np.zeros(3, np.float32).tobytes() if level else b""
    rec = np.zeros((n, per), np.uint8)
    if level == 0:
        rec[:, 0:12] = means.view(np.uint8).reshape(n, 12)
        rec[:, 12:24] = scales.view(np.uint8).reshape(n, 12)
        rec[:, 24:40] = rot.view(np.uint8).reshape(n, 16)
        expect_means = means
    else:
        step = block / 2 / qrange
        q = np.clip(np.round(means / step) + qrange, 0, 65535).astype("<u2")
        rec[:, 0:6] = q.view(np.uint8).reshape(n, 6)
        rec[:, 6:12] = scales.astype("<f2").view(np.uint8).reshape(n, 6)
        rec[:, 12:20] = rot.astype("<f2").view(np.uint8).reshape(n, 8)
        expect_means = (q.astype(np.float32) - qrange) * np.float32(step)
    c0 = cb + sb + rb
    rec[:, c0 : c0 + 4] = rgba
    if nsh:
        if level == 0:
            stored = sh_vals
            raw = sh_vals.view(np.uint8).reshape(n, nsh * 4)
        elif level == 1:
            raw = sh_vals.astype("<f2").view(np.uint8).reshape(n, nsh * 2)
            stored = sh_vals.astype(np.float16).astype(np.float32)
        else:
            raw = np.round((sh_vals + 1.5) / 3.0 * 255).astype(np.uint8)
            stored = -1.5 + raw.astype(np.float32) / 255 * 3.0
        rec[:, c0 + 4 :] = raw
    expected = dict(means=expect_means, scales=scales.astype(np.float16).astype(np.float32) if level else scales,
                    rgba=rgba, sh=stored if nsh else None)  # fmt: skip
    return bytes(head) + bytes(sec) + buckets + rec.tobytes(), expected


@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("degree", [0, 1, 2])
def test_ksplat_levels_and_sh_layout(level, degree):
    data, exp = _ksplat(level, degree, 20, np.random.default_rng(level * 3 + degree))
    s = decode_splats(data, "ksplat").splats
    np.testing.assert_allclose(s.means, exp["means"], atol=1e-6)
    np.testing.assert_allclose(s.scales, exp["scales"], rtol=1e-6)
    np.testing.assert_allclose(s.colors, exp["rgba"][:, :3] / 255, atol=1e-6)
    assert s.sh_degree == degree
    if degree:
        # stored band by band, channel outer: band 1 = R0 R1 R2 G0 G1 G2 B0 B1 B2, then band 2 = R3..R7 G3..G7 ...
        sh = exp["sh"]
        np.testing.assert_allclose(s.sh[:, 1:4, 0], sh[:, 0:3], atol=1e-6)
        np.testing.assert_allclose(s.sh[:, 1:4, 2], sh[:, 6:9], atol=1e-6)
        if degree == 2:
            np.testing.assert_allclose(s.sh[:, 4:9, 1], sh[:, 14:19], atol=1e-6)


def test_ksplat_inconsistent_counts_are_rejected():
    data, _ = _ksplat(1, 0, 10, np.random.default_rng(0))
    bad = bytearray(data)
    struct.pack_into("<I", bad, 16, 11)  # header splat count
    with pytest.raises(FormatError, match="declares 11 splats but its sections hold 10"):
        decode_splats(bytes(bad), "ksplat")
    with pytest.raises(FormatError, match="truncated"):
        decode_splats(data[:-5], "ksplat")
