"""PlayCanvas compressed PLY: round trips within each chunk's quantisation, the real SuperSplat files, gsplat."""

from __future__ import annotations

import numpy as np
import pytest

from scenes import FormatError
from scenes.formats import decode_splats, read_splats, write_splats
from scenes.formats.compressed_ply import CHUNK, encode, morton_order
from scenes.splats import SH_C0
from tests.scenes._formats_support import activated_close, random_splats


def _chunk_step(values: np.ndarray, bits=(11, 10, 11)) -> np.ndarray:
    """Per-splat half quantisation step given 256-splat chunks in file order: (max - min) / (2^bits - 1) / 2."""
    n = len(values)
    c = np.arange(n) // CHUNK
    lo = np.minimum.reduceat(values, np.arange(0, n, CHUNK))[c]
    hi = np.maximum.reduceat(values, np.arange(0, n, CHUNK))[c]
    return (hi - lo) / (2.0 ** np.array(bits[: values.shape[1]]) - 1) / 2


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_roundtrip_within_chunk_quantisation(tmp_path, degree):
    s = random_splats(700, degree, seed=degree)  # 3 chunks, the last one partial
    lost = write_splats(s, tmp_path / "a.compressed.ply", morton=False)
    r = read_splats(tmp_path / "a.compressed.ply")
    assert len(r) == 700 and r.sh_degree == degree
    assert np.all(np.abs(r.means - s.means) <= _chunk_step(s.means) + 1e-5)
    assert np.all(np.abs(r.log_scales - s.log_scales) <= _chunk_step(s.log_scales) + 1e-5)
    rgb = s.sh[:, 0] * SH_C0 + 0.5
    assert np.all(np.abs(r.colors - rgb) <= _chunk_step(rgb, (8, 8, 8)) + 1e-5)
    activated_close(r, s, means=1.0, log_scales=1.0, opacity=0.5 / 255 + 1e-6, sh=9.0, quat_dot=1 - 2e-6)
    if degree:
        np.testing.assert_allclose(r.sh[:, 1:], s.sh[:, 1:], atol=1 / 64 + 1e-6)  # 8 bits over [-4, 4]
    assert not any("Morton" in x for x in lost)


def test_morton_order_is_a_permutation_with_tighter_chunks(tmp_path):
    s = random_splats(8192, 1, seed=4)
    lost = write_splats(s, tmp_path / "m.compressed.ply")
    assert any("Morton order" in x for x in lost)
    r = read_splats(tmp_path / "m.compressed.ply")
    order = morton_order(s.means)
    assert sorted(order.tolist()) == list(range(8192))
    t = s.subset(order)
    assert np.all(np.abs(r.means - t.means) <= _chunk_step(t.means) + 1e-5)
    # each of the 32 Morton chunks covers ~1/32 of the box, ~(1/32)^(1/3) = 0.31 of the scene along an axis
    assert _chunk_step(t.means).mean() < 0.5 * _chunk_step(s.means).mean()


def test_header_layout_matches_supersplat(tmp_path, shared_data):
    data, _ = encode(random_splats(10, 3))
    ours = [ln for ln in data[: data.index(b"end_header")].decode().splitlines() if not ln.startswith("comment")]
    ref = (shared_data / "splats" / "supersplat_test64.compressed.ply").read_bytes()
    theirs = [ln for ln in ref[: ref.index(b"end_header")].decode().splitlines() if not ln.startswith("comment")]
    assert [ln for ln in ours if not ln.startswith("element")] == [ln for ln in theirs if not ln.startswith("element")]
    assert ours[2:3] == ["element chunk 1"] and "element vertex 10" in ours and "element sh 10" in ours


def test_real_supersplat_files(shared_data):
    g = read_splats(shared_data / "splats" / "guitar.compressed.ply")
    assert len(g) == 90854 and g.sh_degree == 0
    lo, hi = g.bounds()
    assert np.all(hi - lo > 0.5) and np.all(hi - lo < 10)
    assert 1e-3 < np.median(g.scales) < 3e-2
    t = read_splats(shared_data / "splats" / "supersplat_test64.compressed.ply")
    assert len(t) == 64 and t.sh_degree == 3
    assert np.all(np.abs(t.sh[:, 1:]) <= 4.0)
    # 8-bit SH and alpha sit on the format's grid whatever the chunk bounds: re-encoding reproduces them
    again = decode_splats(encode(t, morton=False)[0], "compressed_ply").splats
    np.testing.assert_array_equal(again.sh[:, 1:], t.sh[:, 1:])
    np.testing.assert_allclose(again.opacities, t.opacities, atol=1e-6)
    assert np.all(np.abs(again.means - t.means) <= _chunk_step(t.means) + 1e-6)


def test_schema_errors(shared_data):
    ref = (shared_data / "splats" / "supersplat_test64.compressed.ply").read_bytes()
    bad = ref.replace(b"element chunk 1", b"element chunk 2", 1)
    with pytest.raises(FormatError, match=r"2 chunks for 64 splats; expected ceil\(64 / 256\) = 1"):
        decode_splats(bad, "compressed_ply")
    bad = ref.replace(b"property uint packed_scale", b"property float packed_scale", 1)
    with pytest.raises(FormatError, match="packed_scale"):
        decode_splats(bad, "compressed_ply")
    with pytest.raises(FormatError, match="truncated"):
        decode_splats(ref[:-100], "compressed_ply")


def _gsplat_export(s, fmt, path):
    torch = pytest.importorskip("torch")
    exporter = pytest.importorskip("gsplat.exporter", reason="gsplat not installed (pip install gsplat==1.5.3)")
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
         dict(means=s.means, scales=s.log_scales, quats=s.quats, opacities=s.opacity_logits).items()}  # fmt: skip
    exporter.export_splats(**t, sh0=torch.from_numpy(s.sh[:, :1].copy()), shN=torch.from_numpy(s.sh[:, 1:].copy()),
                           format=fmt, save_to=str(path))  # fmt: skip
    order = exporter.sort_centers(torch.from_numpy(s.means), torch.arange(len(s))).numpy()
    return order


def test_gsplat_compressed_ply_agrees_with_our_reader_and_writer(tmp_path):
    s = random_splats(600, 3, seed=9)
    s = s.with_(opacity_logits=np.abs(s.opacity_logits))  # gsplat drops opacities <= 1/255
    order = _gsplat_export(s, "ply_compressed", tmp_path / "g.compressed.ply")
    theirs = read_splats(tmp_path / "g.compressed.ply")
    t = s.subset(order)
    assert np.all(np.abs(theirs.means - t.means) <= _chunk_step(t.means) + 1e-5)
    np.testing.assert_allclose(theirs.sh[:, 1:], t.sh[:, 1:], atol=1 / 64 + 1e-6)
    # our writer, given gsplat's order, stores the same grid (float32 vs float64 arithmetic: within one step)
    write_splats(t, tmp_path / "o.compressed.ply", morton=False)
    ours = read_splats(tmp_path / "o.compressed.ply")
    assert np.all(np.abs(ours.means - theirs.means) <= 2 * _chunk_step(t.means) + 1e-6)
    activated_close(ours, theirs, means=1.0, log_scales=0.01, opacity=1.01 / 255, sh=1e-6, quat_dot=1 - 1e-5)


def test_gsplat_degree0_compressed_ply_has_an_empty_sh_element(tmp_path):
    """gsplat writes 'element sh N' with no properties for SH degree 0; we read it, splat-transform rejects it."""
    s = random_splats(300, 0, seed=2).with_(opacity_logits=np.full(300, 3.0, np.float32))
    _gsplat_export(s, "ply_compressed", tmp_path / "g0.compressed.ply")
    data = (tmp_path / "g0.compressed.ply").read_bytes()
    assert b"element sh 300\nend_header" in data
    with pytest.raises(FormatError, match="'sh' element must hold uchar f_rest_0"):
        read_splats(tmp_path / "g0.compressed.ply")
