"""SPZ v1-v4: the conformance fixtures, round trips within the quantisation, hand-built edge cases, biker.spz."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from scenes import FormatError
from scenes.formats import decode_splats, read_splats, write_splats
from scenes.formats.spz import encode
from scenes.splats import SH_C0
from tests.scenes._formats_support import activated_close, random_splats

GRID = np.array([[-1.0, 0, -1], [0, 0, -1], [-1, 0, 0], [0, 0, 0]], np.float32)  # create-fixtures.mjs, 4 splats


@pytest.mark.parametrize("name", ["minimal-raw.spz", "minimal-v2.spz", "minimal-v3.spz", "minimal-v4.spz"])
def test_fixtures_decode_to_the_generator_values(shared_data, name):
    """splat-transform's create-fixtures.mjs: a 2x2 grid, scale 0.1, opacity 230/255 (raw, v2: bytes written by
    hand) or 0.9 (v3, v4: written by Niantic's encoder from RDF, so stored y and z are flipped)."""
    s = read_splats(shared_data / "splats" / "fixtures" / name)
    assert len(s) == 4 and s.sh_degree == 0
    gx, gz = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])
    if name in ("minimal-raw.spz", "minimal-v2.spz"):
        np.testing.assert_array_equal(s.means, GRID)
        np.testing.assert_allclose(s.opacities, 230 / 255, atol=1e-6)
        r, g = np.round((gx + 1) / 3 * 255), np.round((gz + 1) / 3 * 255)
        np.testing.assert_allclose(s.sh[:, 0, 0], (r / 255 - 0.5) / 0.15, atol=1e-5)  # bytes read as SPZ colour
        np.testing.assert_allclose(s.sh[:, 0, 1], (g / 255 - 0.5) / 0.15, atol=1e-5)
        np.testing.assert_allclose(s.unit_quats, [[1, 0, 0, 0]] * 4, atol=0.01)  # xyz bytes 128 = +0.004
    else:
        np.testing.assert_array_equal(s.means, GRID * [1, -1, -1])
        np.testing.assert_allclose(s.opacities, 0.9, atol=0.5 / 255)
        rgb = np.stack([(gx + 1) / 3, (gz + 1) / 3, np.full(4, 0.5)], 1)
        np.testing.assert_allclose(s.colors, rgb, atol=0.5 * SH_C0 / (0.15 * 255) + 1e-6)
        np.testing.assert_allclose(np.abs(s.unit_quats[:, 0]), 1.0, atol=1e-6)
    np.testing.assert_allclose(s.scales, 0.1, rtol=np.exp(1 / 32) - 1)


def _bounds(version: int) -> dict:
    return dict(
        means=0.5 / 4096 + 1e-6,
        log_scales=1 / 32 + 1e-5,
        opacity=0.5 / 255 + 1e-6,
        sh=8.5 / 128 + 1e-6,  # 4-bit bands 2-3: bucket 16, +-8 plus the 0.5 rounding
        # v3+: 9 bits + sign for the three smallest; v2: 8-bit xyz with w = sqrt(1 - |xyz|^2), poor near w = 0
        quat_dot=1 - 2e-5 if version >= 3 else 0.99,
    )


@pytest.mark.parametrize("version", [2, 3, 4])
@pytest.mark.parametrize("degree", [0, 1, 3])
def test_roundtrip_within_quantisation(tmp_path, version, degree):
    s = random_splats(300, degree, seed=version * 10 + degree)
    lost = write_splats(s, tmp_path / "a.spz", version=version)
    data = (tmp_path / "a.spz").read_bytes()
    assert data[:4] == b"NGSP" if version == 4 else data[:2] == b"\x1f\x8b"
    r = read_splats(tmp_path / "a.spz")
    assert len(r) == 300 and r.sh_degree == degree
    activated_close(r, s, **_bounds(version))
    np.testing.assert_allclose(r.sh[:, 0], s.sh[:, 0], atol=0.5 / (0.15 * 255) + 1e-6)
    if degree:
        np.testing.assert_allclose(r.sh[:, 1:4], s.sh[:, 1:4], atol=4.5 / 128 + 1e-6)  # band 1: 5 bits
    assert any("positions quantised to 2^-12 m" in x for x in lost)


def test_eight_bit_sh_and_clipping_are_reported(tmp_path):
    s = random_splats(200, 3, in_range=False, seed=3)
    lost = write_splats(s, tmp_path / "a.spz", sh1_bits=8, sh_rest_bits=8)
    r = read_splats(tmp_path / "a.spz")
    expected = np.clip(s.sh[:, 1:], -1.0, 127 / 128)
    np.testing.assert_allclose(r.sh[:, 1:], expected, atol=0.5 / 128 + 1e-6)
    clipped = int(np.count_nonzero((s.sh[:, 1:] < -1) | (s.sh[:, 1:] > 127 / 128)))
    scl = int(np.count_nonzero((s.log_scales < -10) | (s.log_scales > 5.96875)))
    assert clipped and f"{clipped} SH coefficient(s) outside [-1, 1] clipped" in lost
    assert scl and f"{scl} log-scale(s) outside [-10, 5.94] clipped" in lost
    np.testing.assert_allclose(r.log_scales, np.clip(s.log_scales, -10, 255 / 16 - 10), atol=1 / 32 + 1e-5)


def test_large_scene_lowers_fractional_bits(tmp_path):
    s = random_splats(50, 0, extent=5000.0)
    lost = write_splats(s, tmp_path / "big.spz")
    header = (tmp_path / "big.spz").read_bytes()[:32]
    fb = header[13]
    assert fb < 12 and 5000 * 2**fb < 2**23 <= 5000 * 2 ** (fb + 1)
    assert any(f"fractional bits lowered to {fb}" in x for x in lost)
    np.testing.assert_allclose(read_splats(tmp_path / "big.spz").means, s.means, atol=0.5 / 2**fb + 1e-3)
    with pytest.raises(FormatError, match="do not fit SPZ's 24-bit fixed point"):
        encode(s, fractional_bits=12)


def test_v4_header_and_table_of_contents(tmp_path):
    s = random_splats(10, 2)
    data, _ = encode(s, 4)
    magic, version, n, degree, fb, flags, streams, toc = struct.unpack_from("<IIIBBBBI", data)
    assert (magic, version, n, degree, fb, flags, streams, toc) == (0x5053474E, 4, 10, 2, 12, 0, 6, 32)
    assert data[20:32] == bytes(12)
    sizes = [struct.unpack_from("<QQ", data, 32 + 16 * i) for i in range(6)]
    assert [u for _, u in sizes] == [90, 10, 30, 30, 40, 10 * 8 * 3]
    assert 32 + 96 + sum(c for c, _ in sizes) == len(data)


def _legacy_stream(version: int, n: int, degree: int, fb: int, pos: bytes, rest: bytes) -> bytes:
    return struct.pack("<IIIBBBB", 0x5053474E, version, n, degree, fb, 0, 0) + pos + rest


def test_v1_float16_positions_and_degree_4_are_read():
    # v1: positions as float16, rotations as v2 (xyz bytes), by hand
    pos = np.array([[1.5, -2.0, 0.25]], "<f2").tobytes()
    body = bytes([255]) + bytes([128, 128, 128]) + bytes([160, 160, 160]) + bytes([128, 128, 128])
    s = decode_splats(gzip.compress(_legacy_stream(1, 1, 0, 0, pos, body)), "spz").splats
    np.testing.assert_array_equal(s.means, [[1.5, -2.0, 0.25]])
    np.testing.assert_allclose(s.log_scales, 0.0)  # 160 / 16 - 10
    # degree 4 (24 coefficients): bands 0-3 kept, band 4 dropped with a note
    sh = np.full((1, 24, 3), 128, np.uint8)
    sh[0, 14] = 192  # last band-3 coefficient = 0.5
    sh[0, 20] = 0  # a band-4 coefficient
    body = bytes(9) + bytes([200]) + bytes(3) + bytes(3) + bytes([128, 128, 128]) + sh.tobytes()
    d = decode_splats(gzip.compress(_legacy_stream(2, 1, 4, 12, b"", body)), "spz")
    assert d.splats.sh_degree == 3
    np.testing.assert_array_equal(d.splats.sh[0, 15], [0.5, 0.5, 0.5])
    assert any("band 4 dropped" in note for note in d.notes)


def test_malformed_headers_are_rejected():
    good, _ = encode(random_splats(5, 1), 4)
    with pytest.raises(FormatError, match="SPZ version 9 is not supported"):
        decode_splats(good[:4] + struct.pack("<I", 9) + good[8:], "spz")
    with pytest.raises(FormatError, match="claims 4000000000 splats"):
        decode_splats(good[:8] + struct.pack("<I", 4_000_000_000) + good[12:], "spz")
    with pytest.raises(FormatError, match="truncated"):
        decode_splats(good[:-10], "spz")
    legacy, _ = encode(random_splats(5, 1), 3)
    with pytest.raises(FormatError, match="truncated SPZ"):
        decode_splats(gzip.compress(gzip.decompress(legacy)[:-7]), "spz")
    with pytest.raises(FormatError, match="not an SPZ file"):
        decode_splats(b"PK\x03\x04" + bytes(40), "spz")


def test_real_biker_file(shared_data):
    s = read_splats(shared_data / "splats" / "biker.spz")
    assert len(s) == 152746 and s.sh_degree == 0
    lo, hi = s.bounds()
    assert np.all(hi - lo > 0.5) and np.all(hi - lo < 10)  # a person-sized object, metres
    assert 1e-3 < np.median(s.scales) < 3e-2
    assert 0.1 < s.opacities.mean() < 0.9
    # re-encoding the decoded values reproduces them exactly (they sit on the format's grid)
    again = decode_splats(encode(s, 4)[0], "spz").splats
    activated_close(again, s, means=1e-7, log_scales=1e-6, opacity=1e-6, sh=1e-6, quat_dot=1 - 1e-6)
