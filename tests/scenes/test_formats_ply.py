"""Inria 3DGS PLY: exact round trips, files laid out by other writers, truncation, the real donut file, gsplat."""

from __future__ import annotations

import re

import numpy as np
import pytest

from scenes import FormatError, Splats
from scenes.formats import read_splats, write_splats
from tests.scenes._formats_support import random_splats

STANDARD = (
    ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    + [f"f_rest_{i}" for i in range(45)]
    + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
)


def _assert_same(a: Splats, b: Splats) -> None:
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_roundtrip_is_exact_with_extras_and_inf_opacity(tmp_path, degree):
    s = random_splats(50, degree, seed=degree, in_range=False)
    logits = s.opacity_logits.copy()
    logits[[3, 7]] = np.inf
    s = s.with_(opacity_logits=logits, extra={"confidence": np.linspace(0, 1, 50, dtype=np.float32),
                                              "label": np.arange(50, dtype=np.uint8)})  # fmt: skip
    assert write_splats(s, tmp_path / "a.ply") == ()
    r = read_splats(tmp_path / "a.ply")
    _assert_same(r, s)
    assert np.isposinf(r.opacity_logits[[3, 7]]).all()
    assert r.extra["label"].dtype == np.uint8
    np.testing.assert_array_equal(r.extra["label"], s.extra["label"])
    np.testing.assert_array_equal(r.extra["confidence"], s.extra["confidence"])


def test_writes_the_standard_layout(tmp_path):
    s = random_splats(3, 3)
    write_splats(s, tmp_path / "a.ply")
    data = (tmp_path / "a.ply").read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode().splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    assert "element vertex 3" in lines
    assert [ln.split()[2] for ln in lines if ln.startswith("property")] == STANDARD
    assert all(ln.startswith("property float ") for ln in lines if ln.startswith("property"))
    # decode the body independently: 62 float32 columns, f_rest channel-major, normals zero
    body = np.frombuffer(data[end:], "<f4").reshape(3, 62)
    np.testing.assert_array_equal(body[:, 0:3], s.means)
    np.testing.assert_array_equal(body[:, 3:6], 0)
    np.testing.assert_array_equal(body[:, 6:9], s.sh[:, 0])
    np.testing.assert_array_equal(body[:, 9:24], s.sh[:, 1:, 0])  # all red coefficients first
    np.testing.assert_array_equal(body[:, 24:39], s.sh[:, 1:, 1])
    np.testing.assert_array_equal(body[:, 54], s.opacity_logits)
    np.testing.assert_array_equal(body[:, 58:62], s.quats)


def _hand_written(n: int, order: list[tuple[str, str]], byteorder: str, rng) -> tuple[bytes, dict]:
    dtype = np.dtype([(name, byteorder + t) for name, t in order])
    arr = np.zeros(n, dtype)
    for name, _ in order:
        arr[name] = rng.integers(1, 200, n) if name == "label" else rng.normal(size=n)
    enc = "binary_little_endian" if byteorder == "<" else "binary_big_endian"
    names = {"f4": "float", "f8": "double", "u1": "uchar"}
    header = f"ply\nformat {enc} 1.0\ncomment written by hand\nelement vertex {n}\n"
    header += "".join(f"property {names[t]} {name}\n" for name, t in order) + "end_header\n"
    return header.encode() + arr.tobytes(), {name: arr[name].astype(np.float64) for name, _ in order}


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_reads_any_property_order_types_and_byte_order(tmp_path, byteorder):
    rng = np.random.default_rng(1)
    props = [("rot_2", "f4"), ("label", "u1"), ("f_dc_1", "f8"), ("x", "f4"), ("scale_0", "f4"), ("opacity", "f8"),
             ("f_dc_0", "f4"), ("rot_0", "f4"), ("z", "f8"), ("scale_2", "f4"), ("y", "f4"), ("rot_3", "f4"),
             ("f_dc_2", "f4"), ("scale_1", "f4"), ("rot_1", "f4")]  # fmt: skip
    props += [(f"f_rest_{i}", "f4") for i in (8, 0, 1, 2, 3, 4, 5, 6, 7)]
    data, cols = _hand_written(20, props, byteorder, rng)
    (tmp_path / "h.ply").write_bytes(data)
    s = read_splats(tmp_path / "h.ply")
    f32 = lambda name: cols[name].astype(np.float32)  # noqa: E731
    np.testing.assert_array_equal(s.means, np.stack([f32("x"), f32("y"), f32("z")], 1))
    np.testing.assert_array_equal(s.quats, np.stack([f32(f"rot_{i}") for i in range(4)], 1))
    np.testing.assert_array_equal(s.log_scales[:, 1], f32("scale_1"))
    np.testing.assert_array_equal(s.opacity_logits, f32("opacity"))
    np.testing.assert_array_equal(s.sh[:, 0, 1], f32("f_dc_1"))
    assert s.sh_degree == 1
    for i in range(9):  # f_rest_i is coefficient i % 3 + 1 of channel i // 3
        np.testing.assert_array_equal(s.sh[:, i % 3 + 1, i // 3], f32(f"f_rest_{i}"))
    np.testing.assert_array_equal(s.extra["label"], cols["label"].astype(np.uint8))


def test_reads_ascii(tmp_path):
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]  # fmt: skip
    rows = [[0.5, -1, 2, 0.1, 0.2, 0.3, 1.5, -3, -3.5, -4, 1, 0, 0, 0], [1, 2, 3, 0, 0, 0, -2, -1, -1, -1, 0, 0, 0, 2]]
    text = "ply\nformat ascii 1.0\nelement vertex 2\n" + "".join(f"property float {n}\n" for n in names)
    text += "end_header\n" + "\n".join(" ".join(map(str, r)) for r in rows) + "\n"
    (tmp_path / "a.ply").write_text(text)
    s = read_splats(tmp_path / "a.ply")
    np.testing.assert_array_equal(s.means, np.array([[0.5, -1, 2], [1, 2, 3]], np.float32))
    np.testing.assert_array_equal(s.quats[1], [0, 0, 0, 2])
    np.testing.assert_array_equal(s.opacity_logits, np.array([1.5, -2], np.float32))


def test_truncated_file_reports_expected_and_actual_size(tmp_path):
    write_splats(random_splats(100, 3), tmp_path / "a.ply")
    data = (tmp_path / "a.ply").read_bytes()
    header_len = data.index(b"end_header\n") + len(b"end_header\n")
    assert len(data) == header_len + 100 * 62 * 4
    (tmp_path / "t.ply").write_bytes(data[:-1000])
    with pytest.raises(FormatError, match="truncated") as info:
        read_splats(tmp_path / "t.ply")
    msg = str(info.value)
    assert re.search(rf"expected size {len(data)}\b", msg), msg
    assert re.search(rf"has {len(data) - 1000} bytes", msg), msg


def test_missing_properties_and_bad_sh_counts_are_rejected(tmp_path):
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2"]  # fmt: skip
    head = "ply\nformat binary_little_endian 1.0\nelement vertex 1\n" + "".join(f"property float {n}\n" for n in names)
    (tmp_path / "m.ply").write_bytes((head + "end_header\n").encode() + bytes(4 * len(names)))
    with pytest.raises(FormatError, match=r"lacks the 3DGS properties \['rot_3'\]"):
        read_splats(tmp_path / "m.ply")
    names += ["rot_3"] + [f"f_rest_{i}" for i in range(10)]
    head = "ply\nformat binary_little_endian 1.0\nelement vertex 1\n" + "".join(f"property float {n}\n" for n in names)
    (tmp_path / "r.ply").write_bytes((head + "end_header\n").encode() + bytes(4 * len(names)))
    with pytest.raises(FormatError, match="10 f_rest properties"):
        read_splats(tmp_path / "r.ply")


def test_invalid_splats_raise_or_are_dropped_with_a_warning(tmp_path):
    s = random_splats(5, 0)
    write_splats(s, tmp_path / "a.ply")
    data = bytearray((tmp_path / "a.ply").read_bytes())
    start = data.index(b"end_header\n") + len(b"end_header\n")
    row = 17 * 4  # x y z nx ny nz f_dc*3 opacity scale*3 rot*4
    data[start + 2 * row : start + 2 * row + 4] = np.float32(np.nan).tobytes()  # x of splat 2
    (tmp_path / "nan.ply").write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"1 of 5 splat\(s\) have non-finite values .* \(first at index 2\)"):
        read_splats(tmp_path / "nan.ply")
    with pytest.warns(UserWarning, match="dropped 1 of 5 invalid"):
        r = read_splats(tmp_path / "nan.ply", drop_invalid=True)
    np.testing.assert_array_equal(r.means, s.means[[0, 1, 3, 4]])


def test_nonzero_normals_are_kept_and_written_back(tmp_path):
    s = random_splats(4, 0).with_(extra={"nx": np.ones(4, np.float32), "ny": np.zeros(4, np.float32),
                                         "nz": np.full(4, 2.0, np.float32)})  # fmt: skip
    write_splats(s, tmp_path / "n.ply")
    r = read_splats(tmp_path / "n.ply")
    np.testing.assert_array_equal(r.extra["nx"], 1.0)
    np.testing.assert_array_equal(r.extra["nz"], 2.0)
    assert "ny" not in r.extra or np.all(r.extra["ny"] == 0)


def test_real_donut_file(shared_data):
    path = shared_data / "splats" / "donut_fused.ply"
    s = read_splats(path)
    assert len(s) == 45624 and s.sh_degree == 0
    # independent decode: the header's property order, float32 columns straight from the bytes
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    names = [ln.split()[2] for ln in data[:end].decode().splitlines() if ln.startswith("property")]
    table = np.frombuffer(data[end:], "<f4").reshape(45624, len(names))
    col = {n: table[:, i] for i, n in enumerate(names)}
    np.testing.assert_array_equal(s.means[:, 2], col["z"])
    np.testing.assert_array_equal(s.quats[:, 0], col["rot_0"])
    np.testing.assert_array_equal(s.sh[:, 0, 2], col["f_dc_2"])
    # a trained donut: ~20 cm across, sub-centimetre Gaussians, opacities spread over (0, 1)
    lo, hi = s.bounds()
    assert np.all(hi - lo < 0.5) and np.all(hi - lo > 0.05)
    assert 1e-4 < np.median(s.scales) < 1e-2
    assert 0.2 < s.opacities.mean() < 0.9
    assert np.all(np.linalg.norm(s.quats, axis=1) > 0)


def test_gsplat_exporter_ply_reads_back_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    exporter = pytest.importorskip("gsplat.exporter", reason="gsplat not installed (pip install gsplat==1.5.3)")
    s = random_splats(64, 3, seed=5)
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
         dict(means=s.means, scales=s.log_scales, quats=s.quats, opacities=s.opacity_logits).items()}  # fmt: skip
    exporter.export_splats(**t, sh0=torch.from_numpy(s.sh[:, :1]), shN=torch.from_numpy(s.sh[:, 1:]), format="ply",
                           save_to=str(tmp_path / "g.ply"))  # fmt: skip
    _assert_same(read_splats(tmp_path / "g.ply"), s)
    # and the same values written by us read back identically
    write_splats(s, tmp_path / "ours.ply")
    _assert_same(read_splats(tmp_path / "ours.ply"), read_splats(tmp_path / "g.ply"))


def test_why_we_do_not_delegate_to_gsplat_exporter(tmp_path):
    """gsplat 1.5.3's exporter filters rows with ``isinf(opacities).any(dim=0)``, a scalar that is true for every
    row once one opacity is +inf (which real files hold): it writes an empty file. Our writer keeps every splat."""
    torch = pytest.importorskip("torch")
    exporter = pytest.importorskip("gsplat.exporter", reason="gsplat not installed (pip install gsplat==1.5.3)")
    s = random_splats(10, 0, seed=6)
    logits = s.opacity_logits.copy()
    logits[3] = np.inf
    s = s.with_(opacity_logits=logits)
    data = exporter.export_splats(
        torch.from_numpy(s.means), torch.from_numpy(s.log_scales), torch.from_numpy(s.quats),
        torch.from_numpy(s.opacity_logits), torch.from_numpy(s.sh[:, :1].copy()), torch.zeros(10, 0, 3), format="ply",
    )  # fmt: skip
    assert b"element vertex 0\n" in data
    write_splats(s, tmp_path / "ours.ply")
    r = read_splats(tmp_path / "ours.ply")
    assert len(r) == 10 and np.isposinf(r.opacity_logits[3])
