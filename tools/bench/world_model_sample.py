"""The world model on the product's own scene: `hybrid demo`'s push scored against the sample video's truth.

The bundled sample (``assets/sample.mp4``) was rendered by TinyRenderer from a known PyBullet scene
(``tools/make_sample_video.py``, recorded in ``assets/sample_gt.json``). This rebuilds that scene,
moves each true box as our ``World`` moved the lifted object matched to it (the rigid motion since
rest, carried into the true frame by the similarity between the lifted and the true capture
cameras), and renders the truth at the demo's two push cameras. Engine-only, relight and full are
scored over the whole image and over the pixels whose truth changed (as in
``tools/bench/world_model.py``); ``--out`` gets a PNG per camera: truth at rest | truth after |
engine-only | relight | full.

    python tools/bench/world_model_sample.py [--scene out/demo] [--times 0.6,1.2,2.5] [--events FILE] [--out DIR]

Run ``hybrid demo -o out/demo`` first (``make demo``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see docs/lift.md (Environment)
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tools"))

from _machine import machine_line  # noqa: E402  (tools/bench/ is on sys.path when run as a script)

CHANGED = 10.0 / 255  # a pixel changed in the truth when a channel moved by more than this (world_model.py's)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    e = (a - b) ** 2
    e = e[mask] if mask is not None else e
    return float(10 * np.log10(1.0 / max(float(e.mean()), 1e-12)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scene", type=Path, default=ROOT / "out" / "demo", help="the folder `hybrid demo` wrote")
    ap.add_argument("--times", default="0.6,1.2,2.5", help="seconds after the start to score (the push is at 0.3)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the comparison PNGs")
    ap.add_argument("--events", type=Path, default=None,
                    help="an events JSON to score instead of the demo's push (SCENE/push/events.json)")  # fmt: skip
    a = ap.parse_args()

    import make_sample_video as sample
    import pybullet as p
    from PIL import Image
    from scipy.spatial.transform import Rotation

    from hybrid.lift.align import fit_similarity
    from hybrid.world import World
    from hybrid.world_model import SplatState, WorldModel, apply_world_model
    from physics.events import load_events
    from physics.transforms import quat_to_matrix
    from scenes import Camera, load_scene, read_cameras_file

    push = a.scene / "push"
    if not (push / "events.json").exists():
        sys.exit(f"{push / 'events.json'} not found: run `hybrid demo -o {a.scene}` first")
    scene = load_scene(a.scene)
    truth_json = json.loads((ROOT / "assets" / "sample_gt.json").read_text())
    true_cams = [Camera.from_dict(c) for c in truth_json["cameras"]]
    frame = [int(re.search(r"(\d+)", c.name).group(1)) for c in scene.capture_cameras]
    s, R, t = fit_similarity(np.array([c.position for c in scene.capture_cameras]),
                         np.array([c.position for c in true_cams])[frame])  # fmt: skip
    boxes = truth_json["objects"]
    centres = np.array([b["position"] for b in boxes])
    match = {}  # lifted object -> index of the true box nearest its splats' centre
    for o in scene.objects:
        c = s * np.average(scene.splats.means[o.splat_indices], axis=0) @ R.T + t
        match[o.name] = int(np.argmin(np.linalg.norm(centres - c, axis=1)))
    client = p.connect(p.DIRECT)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sample.simulate(client, Path(tmp), truth_json["seed"])  # the ground is body 0, the boxes 1..n in order
        rest = [p.getBasePositionAndOrientation(i + 1, physicsClientId=client) for i in range(len(boxes))]
        cams = read_cameras_file(push / "cameras.json")
        picks = [0, len(scene.capture_cameras) // 2]  # the demo's push cameras
        c2ws = [np.linalg.inv(true_cams[frame[i]].viewmat) for i in picks]

        def truth() -> list[np.ndarray]:
            frames = sample.render_frames(client, c2ws, cams[0].width, cams[0].height)
            return [f.astype(np.float32) / 255 for f in frames]

        before = truth()
        world = World(scene, events=load_events(a.events or push / "events.json"))
        full, off = WorldModel(scene, "full"), WorldModel(scene, "off")
        scores: dict[str, list] = {}
        panels = []
        times = [float(v) for v in a.times.split(",")]
        for when in times:
            world.advance_to(when)
            poses = world.poses()
            for o in scene.objects:
                start = np.eye(4)
                start[:3, :3], start[:3, 3] = quat_to_matrix(np.asarray(o.quaternion, np.float64)), o.position
                now = np.eye(4)
                now[:3, :3] = quat_to_matrix(np.asarray(poses[o.name]["quaternion"], np.float64))
                now[:3, 3] = poses[o.name]["position"]
                move = now @ np.linalg.inv(start)  # the motion since rest, lifted frame
                rot = R @ move[:3, :3] @ R.T  # ... in the true frame (the scale cancels)
                shift = t - rot @ t + s * R @ move[:3, 3]
                pos0, q0 = rest[match[o.name]]
                orn = rot @ np.array(p.getMatrixFromQuaternion(q0)).reshape(3, 3)
                p.resetBasePositionAndOrientation(match[o.name] + 1, (rot @ np.asarray(pos0) + shift).tolist(),
                                                  Rotation.from_matrix(orn).as_quat().tolist(),
                                                  physicsClientId=client)  # fmt: skip
            after = truth()
            state = SplatState.of_world(world)
            frames = full.render(state, cams, keep_gbuffers=True)
            engine = off.images(state, cams)
            for ci in range(len(cams)):
                changed = np.abs(after[ci] - before[ci]).max(axis=-1) > CHANGED
                preds = {"engine-only": engine[ci], "relight": apply_world_model("relight", frames[ci].gbuffers),
                         "full": frames[ci].image}  # fmt: skip
                for method, pred in preds.items():
                    pred = np.clip(pred, 0.0, 1.0)
                    scores.setdefault(method, []).append((psnr(pred, after[ci]), psnr(pred, after[ci], changed),
                                                          float(changed.mean())))  # fmt: skip
                if when == times[-1]:
                    panels.append([before[ci], after[ci], *(np.clip(v, 0, 1) for v in preds.values())])
    finally:
        p.disconnect(client)
    print(f"machine: {machine_line()}")
    print(f"scene: {a.scene} ({len(scene.splats):,} splats); objects -> true boxes: "
          + ", ".join(f"{k} -> {boxes[v]['name']}" for k, v in match.items()))  # fmt: skip
    print(
        f"push cameras {picks}, times {times} s; changed pixels {100 * np.mean([x[2] for x in scores['full']]):.1f} %"
    )
    print("\n| method | PSNR whole image | PSNR changed pixels |\n|---|---|---|")
    for method, rows in scores.items():
        v = np.array(rows)
        print(f"| {method} | {v[:, 0].mean():.2f} | {v[:, 1].mean():.2f} |")
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        for ci, row in enumerate(panels):
            strip = np.concatenate(row, axis=1)
            Image.fromarray((strip * 255 + 0.5).astype(np.uint8)).save(a.out / f"sample_push_c{ci}.png")
        print(f"\npanels in {a.out}/: truth at rest | truth after | engine-only | relight | full")


if __name__ == "__main__":
    main()
