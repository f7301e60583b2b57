"""Our readers and writers against another project's: PlayCanvas splat-transform (whose SPZ writer is Niantic's
reference encoder compiled to WASM). Skipped when splat-transform is not installed."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from scenes.formats import read_splats, write_splats
from scenes.formats.ply import element_arrays, parse_header
from tests.scenes._formats_support import activated_close, random_splats, splat_transform  # noqa: F401

FILES = [
    "fixtures/minimal.splat",
    "fixtures/minimal.ksplat",
    "fixtures/minimal-raw.spz",
    "fixtures/minimal-v2.spz",
    "fixtures/minimal-v3.spz",
    "fixtures/minimal-v4.spz",
    "biker.spz",
    "guitar.compressed.ply",
    "supersplat_test64.compressed.ply",
    "donut_fused.ply",
]


@pytest.mark.parametrize("name", FILES)
def test_our_decode_matches_splat_transform(tmp_path, shared_data, splat_transform, name):  # noqa: F811
    src = shared_data / "splats" / name
    splat_transform(src, tmp_path / "theirs.ply")
    theirs = read_splats(tmp_path / "theirs.ply")  # plain float PLY: nothing left to interpret
    ours = read_splats(src)
    # .splat: splat-transform decodes rotation bytes as b / 255 * 2 - 1, antimatter15's viewer as (b - 128) / 128
    quat = 1 - 2e-4 if name.endswith(".splat") else 1 - 1e-6
    # 8-bit alphas of 0 / 255: splat-transform's compressed-PLY reader gives -inf / +inf, we clamp to +-13.8
    activated_close(ours, theirs, means=2e-6, log_scales=2e-6, opacity=2e-6, sh=2e-6, quat_dot=quat)


def _v4_streams(data: bytes) -> list[bytes]:
    """Decompressed SPZ v4 streams, parsed here from the spec without our reader."""
    import zstandard

    n_streams, toc = data[15], struct.unpack_from("<I", data, 16)[0]
    out, pos = [], toc + 16 * n_streams
    for i in range(n_streams):
        csize, usize = struct.unpack_from("<QQ", data, toc + 16 * i)
        out.append(zstandard.ZstdDecompressor().decompress(data[pos : pos + csize], max_output_size=usize))
        pos += csize
    return out


@pytest.mark.parametrize("version", [3, 4])
def test_our_spz_writer_matches_niantics_encoder(tmp_path, splat_transform, version):  # noqa: F811
    s = random_splats(500, 3, seed=21)
    write_splats(s, tmp_path / "in.ply")
    splat_transform(tmp_path / "in.ply", "--spz-version", str(version), tmp_path / "theirs.spz")
    write_splats(s, tmp_path / "ours.spz", version=version)
    a, b = read_splats(tmp_path / "ours.spz"), read_splats(tmp_path / "theirs.spz")
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    if version == 4:
        ours, theirs = (tmp_path / "ours.spz").read_bytes(), (tmp_path / "theirs.spz").read_bytes()
        assert ours[:16] == theirs[:16]  # magic, version, count, degree, fractional bits, flags, stream count
        assert _v4_streams(ours) == _v4_streams(theirs)  # every quantised byte identical


def test_our_compressed_ply_writer_matches_splat_transform(tmp_path, splat_transform):  # noqa: F811
    s = random_splats(700, 3, seed=22)
    write_splats(s, tmp_path / "in.ply")
    splat_transform(tmp_path / "in.ply", tmp_path / "theirs.compressed.ply")
    theirs_bytes = (tmp_path / "theirs.compressed.ply").read_bytes()
    theirs = read_splats(tmp_path / "theirs.compressed.ply")
    # splat-transform sorts its own way; recover its order (positions are distinct) and write ours in that order
    d = np.linalg.norm(theirs.means[:, None, :] - s.means[None, :, :], axis=2)
    order = d.argmin(axis=1)
    assert sorted(order) == list(range(700)) and d.min(axis=1).max() < 0.01
    write_splats(s.subset(order), tmp_path / "ours.compressed.ply", morton=False)
    ours_bytes = (tmp_path / "ours.compressed.ply").read_bytes()
    names = ("chunk", "vertex", "sh")
    ea = element_arrays(ours_bytes, parse_header(ours_bytes, "ours"), names, "ours")
    eb = element_arrays(theirs_bytes, parse_header(theirs_bytes, "theirs"), names, "theirs")
    for el in names:
        assert ea[el].dtype == eb[el].dtype
        for field in ea[el].dtype.names:
            np.testing.assert_array_equal(ea[el][field], eb[el][field], err_msg=f"{el}.{field}")


@pytest.mark.parametrize(
    ("suffix", "options"),
    [
        (".ply", {}),
        (".splat", {}),
        (".spz", {"version": 2}),
        (".spz", {"version": 3}),
        (".spz", {"version": 4}),
        (".compressed.ply", {}),
    ],  # fmt: skip
)
def test_splat_transform_reads_our_files(tmp_path, splat_transform, suffix, options):  # noqa: F811
    s = random_splats(400, 0 if suffix == ".splat" else 3, seed=23)
    path = tmp_path / f"ours{suffix}"
    write_splats(s, path, **options)
    splat_transform(path, tmp_path / "back.ply")
    theirs, ours = read_splats(tmp_path / "back.ply"), read_splats(path)
    quat = 1 - 2e-4 if suffix == ".splat" else 1 - 1e-6
    activated_close(ours, theirs, means=2e-6, log_scales=2e-6, opacity=2e-6, sh=2e-6, quat_dot=quat)
