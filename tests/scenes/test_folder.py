"""The scene folder: round trip, versioning, path escapes, and atomic saves under real crashes and a full disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from scenes import Camera, ColliderMesh, Ground, Light, Scene, SceneError, SceneObject, load_scene, save_scene
from tests.scenes.test_scene_model import random_splats


def make_scene(n: int = 50, seed: int = 0) -> Scene:
    trimesh = pytest.importorskip("trimesh")
    box = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    s = random_splats(n, degree=3, seed=seed)
    objs = (
        SceneObject(
            "red box",
            np.arange(0, 10),
            ColliderMesh(box.vertices, box.faces),
            mass=2.0,
            friction=0.4,
            position=(0.1, 0.2, 0.1),
            quaternion=(0.9, 0, 0, 0.1),
        ),
        SceneObject("../evil/name", np.arange(10, 20), None, mass=0.5),
    )
    ground = Ground((0, 0, 1), 0.0, ColliderMesh(box.vertices * 5, box.faces, "mesh"))
    cams = (Camera.look_at((2, 2, 1), (0, 0, 0), width=64, height=48, name="f0.png"),)
    weights = {"world_model": {"conv1.weight": np.arange(12, dtype=np.float32).reshape(3, 4)}}
    return Scene(s, objs, ground, Light(direction=(1, 0, 1), intensity=2.0), cams, weights, {"source": "test"})


def assert_same(a: Scene, b: Scene) -> None:
    np.testing.assert_array_equal(a.splats.means, b.splats.means)
    np.testing.assert_array_equal(a.splats.sh, b.splats.sh)
    assert [o.name for o in a.objects] == [o.name for o in b.objects]
    for oa, ob in zip(a.objects, b.objects):
        np.testing.assert_array_equal(oa.splat_indices, ob.splat_indices)
        assert (oa.mass, oa.friction, oa.restitution) == (ob.mass, ob.friction, ob.restitution)
        np.testing.assert_allclose(oa.position, ob.position)
        np.testing.assert_allclose(oa.quaternion, ob.quaternion)
        assert (oa.collider is None) == (ob.collider is None)
        if oa.collider is not None:
            np.testing.assert_allclose(oa.collider.vertices, ob.collider.vertices)
    assert a.light == b.light
    np.testing.assert_allclose(a.capture_cameras[0].viewmat, b.capture_cameras[0].viewmat)
    np.testing.assert_array_equal(a.weights["world_model"]["conv1.weight"], b.weights["world_model"]["conv1.weight"])
    assert a.metadata == b.metadata


def test_round_trip(tmp_path):
    scene = make_scene()
    save_scene(scene, tmp_path / "s")
    back = load_scene(tmp_path / "s")
    assert_same(scene, back)
    manifest = json.loads((tmp_path / "s" / "scene.json").read_text())
    assert manifest["version"] == 1 and manifest["splats"] == "splats.ply"
    # Object names never become paths outside colliders/.
    assert all(o["collider"] is None or o["collider"].startswith("colliders/") for o in manifest["objects"])
    assert (tmp_path / "s" / "weights" / "world_model.safetensors").exists()


def test_resave_keeps_other_files_and_replaces_scene(tmp_path):
    save_scene(make_scene(seed=0), tmp_path / "s")
    (tmp_path / "s" / "report.json").write_text("{}")
    new = make_scene(seed=1)
    save_scene(new, tmp_path / "s")
    assert (tmp_path / "s" / "report.json").read_text() == "{}"
    assert_same(new, load_scene(tmp_path / "s"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_unknown_version_and_escaping_paths(tmp_path):
    save_scene(make_scene(), tmp_path / "s")
    mpath = tmp_path / "s" / "scene.json"
    m = json.loads(mpath.read_text())
    mpath.write_text(json.dumps({**m, "version": 99}))
    with pytest.raises(SceneError, match=r"manifest version 99 is not supported; this runtime reads versions 1\.\.1"):
        load_scene(tmp_path / "s")
    mpath.write_text(json.dumps({**m, "splats": "../../etc/passwd"}))
    with pytest.raises(SceneError, match="escapes the scene folder"):
        load_scene(tmp_path / "s")
    mpath.write_text(json.dumps({**m, "splats": "/etc/passwd"}))
    with pytest.raises(SceneError, match="escapes the scene folder"):
        load_scene(tmp_path / "s")
    with pytest.raises(SceneError, match="not a scene folder"):
        load_scene(tmp_path)


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(SceneError, match="non-empty folder without scene.json"):
        save_scene(make_scene(), tmp_path / "photos")
    assert (tmp_path / "photos" / "a.jpg").read_bytes() == b"x"


_SAVER = textwrap.dedent(
    """
    import sys, resource, signal
    from tests.scenes.test_folder import make_scene
    from scenes import save_scene
    limit = int(sys.argv[2])
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    print("ready", flush=True)
    for i in range(1000):
        save_scene(make_scene(n=20000, seed=i + 1), sys.argv[1])
    """
)


def _saver(path, limit=0):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.Popen(
        [sys.executable, "-c", _SAVER, str(path), str(limit)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_crash_mid_save_leaves_a_loadable_scene(tmp_path):
    """SIGKILL a process that saves over and over: the folder always loads, as the old or a new scene."""
    path = tmp_path / "s"
    save_scene(make_scene(n=20000, seed=0), path)
    rng = np.random.default_rng(0)
    for _ in range(4):
        proc = _saver(path)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        scene = load_scene(path)
        assert len(scene.splats) == 20000 and [o.name for o in scene.objects] == ["red box", "../evil/name"]


def test_full_disk_mid_save_keeps_previous_scene(tmp_path):
    path = tmp_path / "s"
    first = make_scene(n=20000, seed=0)
    save_scene(first, path)
    proc = _saver(path, limit=200_000)  # the splat file alone needs ~5 MB
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "File too large" in err
    assert_same(first, load_scene(path))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"
