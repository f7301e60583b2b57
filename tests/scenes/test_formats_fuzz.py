"""Fuzzing the readers: truncated, bit-flipped, overwritten and header-edited files (generated and real) must give
:class:`FormatError` or valid splats; never another exception, a hang or a large allocation."""

from __future__ import annotations

import gzip
import re
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenes import FormatError, Splats
from scenes.formats import compressed_ply, decode_splats, spz
from scenes.formats import splat as splat_format
from tests.scenes._formats_support import random_splats

MB = 1 << 20


def _ply_bytes() -> bytes:
    import tempfile
    from pathlib import Path

    from scenes.formats import write_splats

    s = random_splats(40, 3, seed=1)
    s = s.with_(extra={"label": (s.means[:, 0] > 0).astype("u1")})
    with tempfile.TemporaryDirectory() as d:
        write_splats(s, Path(d) / "a.ply")
        return (Path(d) / "a.ply").read_bytes()


def _ascii_ply() -> bytes:
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]  # fmt: skip
    text = (
        "ply\nformat ascii 1.0\nelement vertex 3\n" + "".join(f"property float {n}\n" for n in names) + "end_header\n"
    )
    return (text + "\n".join(" ".join(str(0.1 * (i + j + 1)) for j in range(14)) for i in range(3)) + "\n").encode()


SEEDS = {
    "ply": _ply_bytes(),
    "ply-ascii": _ascii_ply(),
    "compressed_ply": compressed_ply.encode(random_splats(300, 3, seed=2))[0],
    "splat": splat_format.encode(random_splats(20, 0, seed=3))[0].tobytes(),
    "spz-v2": spz.encode(random_splats(30, 2, seed=4), 2)[0],
    "spz-v3": spz.encode(random_splats(30, 3, seed=5), 3)[0],
    "spz-v4": spz.encode(random_splats(30, 3, seed=6), 4)[0],
    "spz-raw": gzip.decompress(spz.encode(random_splats(30, 1, seed=7), 3)[0]),
}
FORMAT_OF = {"ply-ascii": "ply", "spz-v2": "spz", "spz-v3": "spz", "spz-v4": "spz", "spz-raw": "spz"}


def _decode_or_format_error(data: bytes, fmt: str, memory_limit: int) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        result = decode_splats(data, fmt, source="fuzz")
        assert isinstance(result.splats, Splats)
    except FormatError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= memory_limit, f"{fmt}: {peak / MB:.1f} MB allocated for {len(data)} input bytes"
    assert time.perf_counter() - t0 < 5.0


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "header-number"]))
        if not data:
            break
        # half of the positions land in the first 256 bytes, where the headers are
        pos = draw(st.one_of(st.integers(0, min(255, len(data) - 1)), st.integers(0, len(data) - 1)))
        if kind == "truncate":
            del data[pos:]
        elif kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos : pos + len(chunk)] = chunk
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:  # replace one decimal number in a text header by another (PLY element counts, ...)
            head = bytes(data[:2000])
            numbers = [m.span() for m in re.finditer(rb"\d+", head)]
            if numbers:
                a, b = draw(st.sampled_from(numbers))
                value = draw(st.sampled_from([0, 1, 2, 255, 256, 257, 2**31, 2**32 - 1, 2**63, 10**30]))
                data[a:b] = str(value).encode()
    return bytes(data)


FUZZ = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_files_decode(name):
    d = decode_splats(SEEDS[name], FORMAT_OF.get(name, name))
    assert len(d.splats) > 0


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_mutated_files_raise_format_error_only(name):
    seed, fmt = SEEDS[name], FORMAT_OF.get(name, name)

    @FUZZ
    @given(mutated(seed))
    def run(data: bytes) -> None:
        _decode_or_format_error(data, fmt, 16 * MB + 40 * len(seed))

    run()


@pytest.mark.parametrize("fmt", ["ply", "compressed_ply", "splat", "spz", "ksplat"])
def test_random_bytes_raise_format_error_only(fmt):
    prefixes = {"ply": b"ply\nformat binary_little_endian 1.0\n", "spz": b"NGSP", "ksplat": b"\x00\x01"}

    @settings(max_examples=80, deadline=None, derandomize=True)
    @given(st.binary(max_size=5000), st.booleans())
    def run(body: bytes, prefixed: bool) -> None:
        data = prefixes.get(fmt, b"") + body if prefixed else body
        _decode_or_format_error(data, fmt, 16 * MB)

    run()


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("donut_fused.ply", "ply"),
        ("biker.spz", "spz"),
        ("guitar.compressed.ply", "compressed_ply"),
        ("fixtures/minimal.ksplat", "ksplat"),
        ("fixtures/minimal-v2.spz", "spz"),
    ],  # fmt: skip
)
def test_mutated_real_files_raise_format_error_only(shared_data, name, fmt):
    seed = (shared_data / "splats" / name).read_bytes()

    @settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
              HealthCheck.data_too_large])  # fmt: skip
    @given(mutated(seed))
    def run(data: bytes) -> None:
        _decode_or_format_error(data, fmt, 64 * MB + 40 * len(seed))

    run()


@pytest.mark.parametrize("count", [10**6, 2**32 - 1, 10**15])
def test_huge_declared_counts_are_rejected_before_allocating(count):
    ply = SEEDS["ply"].replace(b"element vertex 40", f"element vertex {count}".encode(), 1)
    with pytest.raises(FormatError, match="truncated PLY"):
        _raise(ply, "ply")
    v4 = bytearray(SEEDS["spz-v4"])
    v4[8:12] = min(count, 2**32 - 1).to_bytes(4, "little")
    with pytest.raises(FormatError, match="claims"):
        _raise(bytes(v4), "spz")


def _raise(data: bytes, fmt: str) -> None:
    tracemalloc.start()
    try:
        decode_splats(data, fmt)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 4 * MB


def test_mutated_ply_files_on_disk_raise_format_error_only(tmp_path):
    """The streaming reader used for PLY files on disk (not the in-memory decoder) under the same mutations."""
    from scenes.formats import read_splats

    path = tmp_path / "m.ply"

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
              HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(mutated(SEEDS["ply"]))
    def run(data: bytes) -> None:
        path.write_bytes(data)
        try:
            assert isinstance(read_splats(path, format="ply"), Splats)
        except FormatError:
            pass

    run()
