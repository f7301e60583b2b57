"""``hybrid convert``: every real splat file into every writable format and back, within the format's quantisation."""

from __future__ import annotations

import re

import numpy as np
import pytest
from typer.testing import CliRunner

from hybrid.cli import app
from scenes import FormatError, Splats
from scenes.formats import read_splats
from scenes.formats.compressed_ply import CHUNK
from scenes.splats import SH_C0

REAL = ["donut_fused.ply", "guitar.compressed.ply", "biker.spz", "supersplat_test64.compressed.ply"]
TARGETS = [
    ("ply", ".ply", []),
    ("splat", ".splat", []),
    ("spz2", ".spz", ["--spz-version", "2"]),
    ("spz3", ".spz", ["--spz-version", "3"]),
    ("spz4", ".spz", []),
    ("compressed", ".compressed.ply", ["--keep-order"]),
]


def _convert(*args) -> str:
    res = CliRunner().invoke(app, ["convert", *map(str, args)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _chunk_half_step(values: np.ndarray, bits: tuple[int, ...]) -> np.ndarray:
    c = np.arange(len(values)) // CHUNK
    starts = np.arange(0, len(values), CHUNK)
    lo = np.minimum.reduceat(values, starts)[c]
    hi = np.maximum.reduceat(values, starts)[c]
    return (hi - lo) / (2.0 ** np.array(bits) - 1) / 2


def _check_within_quantisation(kind: str, src: Splats, out: Splats) -> None:
    assert len(out) == len(src)
    dot = np.abs((src.unit_quats.astype(np.float64) * out.unit_quats).sum(1))
    if kind == "ply":
        for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            np.testing.assert_array_equal(getattr(out, f), getattr(src, f))
        return
    np.testing.assert_allclose(out.opacities, src.opacities, atol=0.5 / 255 + 1e-6)
    if kind == "splat":
        np.testing.assert_array_equal(out.means, src.means)
        np.testing.assert_allclose(out.log_scales, src.log_scales, atol=2e-6)
        np.testing.assert_allclose(out.colors, np.clip(src.colors, 0, 1), atol=0.5 / 255 + 1e-6)
        assert dot.min() > 1 - 1e-4 and out.sh_degree == 0
    elif kind.startswith("spz"):
        np.testing.assert_allclose(out.means, src.means, atol=0.5 / 4096 + 1e-6)
        np.testing.assert_allclose(out.log_scales, np.clip(src.log_scales, -10, 255 / 16 - 10), atol=1 / 32 + 1e-5)
        dc = np.clip(src.sh[:, 0], -127.5 / 38.25, 127.5 / 38.25)
        np.testing.assert_allclose(out.sh[:, 0], dc, atol=0.5 / 38.25 + 1e-5)
        if src.sh_degree:
            np.testing.assert_allclose(out.sh[:, 1:], np.clip(src.sh[:, 1:], -1, 127 / 128), atol=8.5 / 128 + 1e-6)
        assert dot.min() > (0.99 if kind == "spz2" else 1 - 2e-5)
    else:  # compressed PLY in the input order
        assert np.all(np.abs(out.means - src.means) <= _chunk_half_step(src.means, (11, 10, 11)) + 1e-5)
        ls = np.clip(src.log_scales, -20, 20)
        assert np.all(np.abs(out.log_scales - ls) <= _chunk_half_step(ls, (11, 10, 11)) + 1e-4)
        rgb = src.sh[:, 0] * SH_C0 + 0.5
        assert np.all(np.abs(out.colors - rgb) <= _chunk_half_step(rgb, (8, 8, 8)) + 1e-5)
        if src.sh_degree:
            np.testing.assert_allclose(out.sh[:, 1:], np.clip(src.sh[:, 1:], -4, 4), atol=1 / 32 + 1e-6)
        assert dot.min() > 1 - 2e-6


@pytest.mark.parametrize("name", REAL)
def test_convert_every_real_file_to_every_format_and_back(tmp_path, shared_data, name):
    src_path = shared_data / "splats" / name
    src = read_splats(src_path)
    for kind, suffix, extra in TARGETS:
        out = tmp_path / f"{kind}{suffix}"
        text = _convert(src_path, out, *extra)
        assert f"{len(src):,}" in text and "SH degree" in text and "bounds min" in text
        assert re.search(r"lost\s+│ nothing", text) if kind == "ply" else "quantised" in text
        back = tmp_path / f"{kind}.back.ply"
        _convert(out, back)
        _check_within_quantisation(kind, src, read_splats(back))


def test_summary_format_option_and_errors(tmp_path, shared_data):
    src = shared_data / "splats" / "supersplat_test64.compressed.ply"
    text = _convert(src, tmp_path / "x.bin", "--format", "splat")
    assert "compressed_ply -> splat" in text and "SH bands 1-3 dropped" in text
    assert len(read_splats(tmp_path / "x.bin", format="splat")) == 64
    with pytest.raises(FormatError, match="exists; pass --overwrite"):
        CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "x.bin")], catch_exceptions=False)
    with pytest.raises(FormatError, match="ksplat is read-only"):
        CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "y.ksplat")], catch_exceptions=False)
    with pytest.raises(FormatError, match="cannot tell the format from the extension '.xyz'"):
        CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "y.xyz")], catch_exceptions=False)
