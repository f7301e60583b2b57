"""Splats following bodies: quaternion algebra, SH rotation, the compiled rig against its reference."""

from __future__ import annotations

import numpy as np
import pytest

from physics.transforms import (
    SplatRig,
    eval_sh,
    matrix_to_quat,
    pose_compose,
    pose_inverse,
    quat_multiply,
    quat_normalize,
    quat_to_matrix,
    rotate_sh,
    transform_splats_reference,
)
from scenes import ShapeError, Splats

C1 = 0.4886025119029199


def random_poses(rng, n):
    return np.concatenate([rng.normal(size=(n, 3)), quat_normalize(rng.normal(size=(n, 4)))], 1)


def random_splats(rng, n, degree=3):
    k = (degree + 1) ** 2
    return Splats(rng.normal(size=(n, 3)), rng.normal(size=(n, 4)), rng.normal(size=(n, 3)) - 3,
                  rng.normal(size=n), rng.normal(size=(n, k, 3)) * 0.3)  # fmt: skip


def test_quaternions_agree_with_rotation_matrices():
    rng = np.random.default_rng(1)
    a, b = quat_normalize(rng.normal(size=(50, 4))), quat_normalize(rng.normal(size=(50, 4)))
    np.testing.assert_allclose(quat_to_matrix(quat_multiply(a, b)), quat_to_matrix(a) @ quat_to_matrix(b), atol=1e-12)
    q = matrix_to_quat(quat_to_matrix(a))
    np.testing.assert_allclose(np.abs(np.sum(q * a, axis=1)), 1.0, atol=1e-12)  # same rotation, sign aside
    # 90 degrees about z maps x to y
    qz = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    np.testing.assert_allclose(quat_to_matrix(qz) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    p = random_poses(rng, 5)
    np.testing.assert_allclose(pose_compose(p, pose_inverse(p))[:, :3], 0, atol=1e-12)


def test_rotated_sh_is_the_rotated_colour_function():
    rng = np.random.default_rng(2)
    sh = rng.normal(size=(64, 16, 3))
    for _ in range(5):
        R = quat_to_matrix(quat_normalize(rng.normal(size=4)))
        d = rng.normal(size=(64, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        # the moved object seen along d shows what the object at rest showed along R^T d
        np.testing.assert_allclose(eval_sh(rotate_sh(sh, R), d), eval_sh(sh, d @ R), atol=1e-10)


def test_band_one_rotation_matches_the_closed_form():
    # band 1 of the 3DGS basis is C1 * v . d with v = (-c3, -c1, c2); rotating the object maps v -> R v
    rng = np.random.default_rng(3)
    sh = np.zeros((1, 4, 1))
    sh[0, 1:, 0] = rng.normal(size=3)
    R = quat_to_matrix(quat_normalize(rng.normal(size=4)))
    c1, c2, c3 = sh[0, 1:, 0]
    v = R @ np.array([-c3, -c1, c2])
    np.testing.assert_allclose(rotate_sh(sh, R)[0, 1:, 0], [-v[1], v[2], -v[0]], atol=1e-12)
    np.testing.assert_allclose(rotate_sh(sh, np.eye(3)), sh, atol=1e-12)


@pytest.mark.parametrize("sh_mode", ["view_dir", "rotate_sh"])
def test_rig_matches_the_reference_and_skips_unmoved_bodies(sh_mode):
    rng = np.random.default_rng(4)
    splats = random_splats(rng, 3000)
    perm = rng.permutation(3000)
    groups = [perm[:700], perm[700:1500], perm[1500:2600]]  # interleaved; 400 splats stay static
    rest = random_poses(rng, 3)
    rig = SplatRig(splats, groups, rest, sh_mode=sh_mode)
    poses = random_poses(rng, 3)
    means, quats, sh, _ = rig.apply(poses)
    ref = transform_splats_reference(splats, groups, rest, poses, rotate_colors=sh_mode == "rotate_sh")
    np.testing.assert_allclose(means, ref[0], atol=1e-5)
    np.testing.assert_allclose(quats, ref[1], atol=1e-5)
    np.testing.assert_allclose(sh, ref[2], atol=1e-5)
    static = perm[2600:]
    np.testing.assert_array_equal(means[static], splats.means[static])
    poses2 = poses.copy()
    poses2[1] = random_poses(rng, 1)[0]  # only body 1 moves
    means, quats, sh, _ = rig.apply(poses2)
    ref = transform_splats_reference(splats, groups, rest, poses2, rotate_colors=sh_mode == "rotate_sh")
    np.testing.assert_allclose(means, ref[0], atol=1e-5)
    np.testing.assert_allclose(sh, ref[2], atol=1e-5)
    # view-dependent colour is the same in both modes: the colour of the rotated SH along the true direction
    cam = np.array([4.0, -3.0, 2.0])
    d = ref[0] - cam
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    truth = transform_splats_reference(splats, groups, rest, poses2, rotate_colors=True)[2]
    np.testing.assert_allclose(rig.colors(cam), np.maximum(eval_sh(truth, d), 0.0), atol=1e-4)


def test_moved_gaussian_covariance_is_R_sigma_RT():
    rng = np.random.default_rng(5)
    splats = random_splats(rng, 10, degree=0)
    rest, pose = random_poses(rng, 1), random_poses(rng, 1)
    rig = SplatRig(splats, [np.arange(10)], rest)
    _, quats, _, _ = rig.apply(pose)

    def cov(q, s):
        R = quat_to_matrix(q)
        return R @ np.diag(s**2) @ R.T

    Rd = quat_to_matrix(pose_compose(pose, pose_inverse(rest))[0, 3:])
    for i in range(10):
        before = cov(splats.quats[i], splats.scales[i])
        np.testing.assert_allclose(cov(quats[i], splats.scales[i]), Rd @ before @ Rd.T, atol=1e-6)


def test_hidden_bodies_vanish_and_come_back():
    rng = np.random.default_rng(6)
    splats = random_splats(rng, 100, degree=0)
    rig = SplatRig(splats, [np.arange(40), np.arange(40, 90)], random_poses(rng, 2))
    _, _, _, op = rig.apply(rig.rest_poses, visible=np.array([True, False]))
    assert np.all(op[40:90] == -100.0)
    np.testing.assert_array_equal(op[:40], splats.opacity_logits[:40])
    _, _, _, op = rig.apply(rig.rest_poses, visible=np.array([True, True]))
    np.testing.assert_array_equal(op, splats.opacity_logits)


def test_rig_rejects_bad_groups_and_poses():
    rng = np.random.default_rng(7)
    splats = random_splats(rng, 10, degree=0)
    with pytest.raises(ShapeError, match=r"body 1 shares splats with another body"):
        SplatRig(splats, [np.arange(5), np.arange(4, 8)], random_poses(rng, 2))
    with pytest.raises(ShapeError, match=r"out of range for 10 splats"):
        SplatRig(splats, [np.array([3, 12])], random_poses(rng, 1))
    rig = SplatRig(splats, [np.arange(5)], random_poses(rng, 1))
    with pytest.raises(ShapeError, match=r"expected 1 poses, got 2"):
        rig.apply(random_poses(rng, 2))
    with pytest.raises(ShapeError, match=r"sh_mode must be one of"):
        SplatRig(splats, [np.arange(5)], random_poses(rng, 1), sh_mode="fast")
    with pytest.raises(ShapeError, match=r"the quaternion of body 0 has zero length"):
        rig.apply(np.array([[0.0, 0, 0, 0, 0, 0, 0]]))


def test_compiled_pose_packing_matches_the_numpy_composition():
    from physics._kernels import rig_pack
    from physics.transforms import _pack

    rng = np.random.default_rng(11)
    poses = np.concatenate([rng.normal(size=(50, 3)), rng.normal(size=(50, 4)) * 3], 1)  # unnormalised quaternions
    rest_inv = pose_inverse(random_poses(rng, 50))
    P = np.full((50, 16), np.nan, np.float32)
    assert rig_pack(poses, rest_inv, P) == -1
    np.testing.assert_allclose(P, _pack(pose_compose(poses, rest_inv)), atol=2e-6)
