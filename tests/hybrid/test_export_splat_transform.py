"""Our exports through an independent tool, PlayCanvas @playcanvas/splat-transform 3.7.0 (npm):
our file -> their reader -> their writer -> our reader agrees; their KHR_gaussian_splatting GLB writer -> our glb
reader; their SH rotation (``-r``) agrees with ours."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from scipy.spatial import cKDTree

from hybrid.export import export_scene
from scenes.export import read_glb_splats, rotate_sh
from scenes.formats import read_splats
from tests.scenes.test_gltf_support import make_scene, node_module


def splat_transform(*args: str) -> None:
    cli = node_module("@playcanvas/splat-transform") / "bin" / "cli.mjs"
    proc = subprocess.run(["node", str(cli), "-q", "-w", *map(str, args)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def fit_rotation(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R and translation t with b = R a + t (Kabsch), from corresponding points."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    ca, cb = a.mean(0), b.mean(0)
    U, _, Vt = np.linalg.svd((b - cb).T @ (a - ca))
    R = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    return R, cb - R @ ca


@pytest.fixture(scope="module")
def scene():
    return make_scene(seed=3)


# (format, position atol, log-scale atol, opacity atol, SH-rest atol) of their re-encoding of our file
FORMATS = [
    ("ply", 1e-6, 1e-6, 1e-6, 1e-6),
    ("spz", 1e-6, 1e-6, 1e-6, 1e-6),
    ("splat", 1e-6, 1e-6, 1e-6, None),
    ("compressed-ply", 2e-3, 0.05, 0.01, 0.05),
]


@pytest.mark.parametrize(("fmt", "pos_tol", "scale_tol", "alpha_tol", "sh_tol"), FORMATS)
def test_their_reader_and_ply_writer_agree_with_our_file(scene, tmp_path, fmt, pos_tol, scale_tol, alpha_tol, sh_tol):
    result = export_scene(scene, tmp_path, fmt)
    ours = read_splats(result.path)
    splat_transform(result.path, tmp_path / "theirs.ply")  # their reader (of our format) -> their PLY writer
    theirs = read_splats(tmp_path / "theirs.ply")
    assert len(theirs) == len(ours) == len(scene.splats)
    if fmt == "compressed-ply":  # they decode chunks in their own order: pair splats by position
        dist, idx = cKDTree(theirs.means).query(ours.means)
        assert len(np.unique(idx)) == len(ours)
        theirs = theirs.subset(idx)
    np.testing.assert_allclose(theirs.means, ours.means, atol=pos_tol)
    np.testing.assert_allclose(theirs.log_scales, ours.log_scales, atol=scale_tol)
    np.testing.assert_allclose(theirs.opacities, ours.opacities, atol=alpha_tol)
    dots = np.abs(np.sum(theirs.unit_quats * ours.unit_quats, axis=1))
    assert dots.min() > 0.999
    np.testing.assert_allclose(theirs.sh[:, 0], ours.sh[:, 0], atol=max(sh_tol or 0, 1e-5))
    if sh_tol is not None:
        assert theirs.sh_degree == ours.sh_degree == 3
        np.testing.assert_allclose(theirs.sh[:, 1:], ours.sh[:, 1:], atol=sh_tol)


def test_their_glb_writer_is_read_by_our_glb_reader(scene, tmp_path):
    """splat-transform's KHR_gaussian_splatting GLB holds its PLY-space data turned 180 degrees about Z
    (their Transform.PLY); our reader recovers exactly that, SH included."""
    result = export_scene(scene, tmp_path, "ply")
    ours = read_splats(result.path)
    splat_transform(result.path, tmp_path / "theirs.glb")
    glb = read_glb_splats(tmp_path / "theirs.glb", frame="gltf")
    R, t = fit_rotation(ours.means, glb.means)
    np.testing.assert_allclose(R, np.diag([-1.0, -1.0, 1.0]), atol=1e-6)
    np.testing.assert_allclose(glb.means, ours.means @ R.T + t, atol=1e-5)
    np.testing.assert_allclose(glb.log_scales, ours.log_scales, atol=1e-5)
    np.testing.assert_allclose(glb.opacities, ours.opacities, atol=1e-6)
    np.testing.assert_allclose(glb.sh, rotate_sh(ours.sh, R), atol=1e-5)


def test_their_sh_rotation_agrees_with_ours(scene, tmp_path):
    result = export_scene(scene, tmp_path, "ply")
    ours = read_splats(result.path)
    splat_transform(result.path, "-r", "30,40,50", tmp_path / "rotated.ply")
    theirs = read_splats(tmp_path / "rotated.ply")
    R, t = fit_rotation(ours.means, theirs.means)
    assert np.degrees(np.arccos((np.trace(R) - 1) / 2)) > 30  # a general rotation, not a sign flip
    np.testing.assert_allclose(theirs.means, ours.means @ R.T + t, atol=1e-5)
    np.testing.assert_allclose(theirs.sh, rotate_sh(ours.sh, R), atol=1e-5)
