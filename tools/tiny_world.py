"""Seeded box worlds rendered by an independent renderer (PyBullet's TinyRenderer, shadows on).

Shared by the world-model benchmark (``tools/bench/world_model.py``) and the corpus tool of the
residual's prior (``tools/world_model_prior.py``): a textured ground with three textured boxes
settled by PyBullet, an orbit of capture frames under a light, and the scene's splats either
built from the known geometry with their colours fitted to the frames through
``render.rasterize`` (``build_scene``) or lifted from the frames by ``hybrid.lift``, its objects
found by the product's segmentation seeded on each box or given the splats inside the boxes'
known poses (``lift_scene``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from scenes import Camera, ColliderMesh, Ground, Light, Scene, SceneObject, Splats  # noqa: E402

W, H, SS = 160, 120, 2  # benchmark image size and TinyRenderer supersampling
FOV = 45.0
NEAR, FAR = 0.1, 10.0  # TinyRenderer's shadow test is reliable with these planes and light distance 10
LIGHT_DISTANCE = 10.0
AMBIENT, DIFFUSE = 0.35, 0.65  # TinyRenderer light coefficients (specular off)
L0 = np.array([0.5, -0.35, 0.8]) / np.linalg.norm([0.5, -0.35, 0.8])  # capture light
L1 = np.array([-0.45, 0.55, 0.7]) / np.linalg.norm([-0.45, 0.55, 0.7])  # light edit: turned, same height
L2 = np.array([-0.7, 0.45, 0.55]) / np.linalg.norm([-0.7, 0.45, 0.55])  # light edit: turned and lower (evening)
LIGHT_EDITS = {"light turned": L1, "light lower": L2}
PUSH_TIMES = (0.4, 1.0, 2.0)
CAPTURE_FRAMES = 24
GROUND_SPACING, BOX_SPACING = 0.012, 0.01  # splat spacing on the ground (near the boxes) and on the box faces, m
CAPTURE_W, CAPTURE_H = 320, 240  # the orbit's frame size (the sample video's); ground truth is scored at W x H
CHANGED = 10.0 / 255  # a pixel changed in the ground truth when a channel moved by more than this


# ------------------------------------------------------------------------------------------- ground truth
def cam_look(eye, target=(0.0, 0.0, 0.1), w=W, h=H) -> Camera:
    return Camera.look_at(eye, target, fov_y_deg=FOV, width=w, height=h)


class TinyScene:
    """A PyBullet client with the textured ground and boxes, rendered by TinyRenderer."""

    def __init__(self, seed: int, tmp: Path) -> None:
        import pybullet as p
        from make_sample_video import GROUND_HALF, _box_mesh, _box_texture, _ground_texture

        self.p = p
        self.client = c = p.connect(p.DIRECT)
        rng = np.random.default_rng(seed)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        png = tmp / f"ground{seed}.png"
        _ground_texture(rng).save(png)
        g = GROUND_HALF
        gv = p.createVisualShape(p.GEOM_MESH, vertices=[[-g, -g, 0], [g, -g, 0], [g, g, 0], [-g, g, 0]],
                                 indices=[0, 1, 2, 0, 2, 3], uvs=[[0, 0], [1, 0], [1, 1], [0, 1]],
                                 normals=[[0, 0, 1]] * 4, physicsClientId=c)  # fmt: skip
        gc = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c)
        ground = p.createMultiBody(0, gc, gv, physicsClientId=c)
        p.changeVisualShape(ground, -1, textureUniqueId=p.loadTexture(str(png), physicsClientId=c),
                            rgbaColor=[1, 1, 1, 1], physicsClientId=c)  # fmt: skip
        self.boxes = []
        n = 3
        angles = rng.permutation(np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 2 * np.pi))
        for k in range(n):
            half = tuple(float(v) for v in rng.uniform([0.1, 0.1, 0.08], [0.2, 0.2, 0.22]))
            r = rng.uniform(0.3, 0.55)
            pos = (r * np.cos(angles[k]), r * np.sin(angles[k]), half[2] + 0.01)
            colour = tuple(int(v) for v in rng.integers(40, 220, 3))
            tex = tmp / f"box{seed}_{k}.png"
            _box_texture(rng, colour).save(tex)
            vs = p.createVisualShape(p.GEOM_MESH, **_box_mesh(half), physicsClientId=c)
            cs = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
            orn = p.getQuaternionFromEuler([0, 0, rng.uniform(0, np.pi)])
            mass = float(rng.uniform(1.0, 4.0))
            b = p.createMultiBody(mass, cs, vs, basePosition=pos, baseOrientation=orn, physicsClientId=c)
            p.changeVisualShape(b, -1, textureUniqueId=p.loadTexture(str(tex), physicsClientId=c),
                                rgbaColor=[1, 1, 1, 1], physicsClientId=c)  # fmt: skip
            self.boxes.append({"id": b, "name": f"box{k}", "half": np.array(half), "mass": mass})
        for _ in range(480):
            p.stepSimulation(physicsClientId=c)
        for box in self.boxes:
            pos, q = p.getBasePositionAndOrientation(box["id"], physicsClientId=c)
            box["position"] = np.array(pos)
            box["quaternion"] = np.array([q[3], q[0], q[1], q[2]])

    def set_poses(self, poses: dict) -> None:
        for box in self.boxes:
            pose = poses.get(box["name"])
            if pose is None:
                continue
            w, x, y, z = pose["quaternion"]
            self.p.resetBasePositionAndOrientation(box["id"], pose["position"], [x, y, z, w],
                                                   physicsClientId=self.client)  # fmt: skip

    def follow(self, scene: Scene, poses: dict) -> dict:
        """The true boxes' poses when each moves as the scene's object of its name moved from its rest pose.

        ``poses``: object name -> {"position", "quaternion" (wxyz)}, as ``World.poses`` gives them. With the
        boxes' own poses as the objects' rest poses (``assign_boxes``) this is ``poses`` itself; with detected
        objects (``detect_boxes``: hull colliders, their own frames) it carries each object's rigid motion
        since rest over to the true box matched to it.
        """
        from physics.transforms import pose_compose, pose_relative

        out = {}
        objects = {o.name: o for o in scene.objects}
        for box in self.boxes:
            o, pose = objects.get(box["name"]), poses.get(box["name"])
            if o is None or pose is None:
                continue
            motion = pose_relative(np.r_[pose["position"], pose["quaternion"]], np.r_[o.position, o.quaternion])
            now = pose_compose(motion, np.r_[box["position"], box["quaternion"]])
            out[box["name"]] = {"position": now[:3].tolist(), "quaternion": now[3:].tolist()}
        return out

    def render(self, cam: Camera, light: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # rgb [H,W,3], depth [H,W]
        p = self.p
        w, h = cam.width * SS, cam.height * SS
        c2w = cam.c2w
        eye = c2w[:3, 3]
        view = p.computeViewMatrix(eye, eye + c2w[:3, 2], -c2w[:3, 1])
        proj = p.computeProjectionMatrixFOV(FOV, w / h, NEAR, FAR)
        _, _, rgba, depth, _ = p.getCameraImage(
            w, h, view, proj, renderer=p.ER_TINY_RENDERER, shadow=1, lightDirection=list(light),
            lightDistance=LIGHT_DISTANCE, lightAmbientCoeff=AMBIENT, lightDiffuseCoeff=DIFFUSE,
            lightSpecularCoeff=0.0, physicsClientId=self.client)  # fmt: skip
        img = np.asarray(rgba, np.uint8).reshape(h, w, 4)[..., :3].astype(np.float32) / 255
        img = img.reshape(cam.height, SS, cam.width, SS, 3).mean(axis=(1, 3))
        d = np.asarray(depth, np.float32).reshape(h, w)
        z = FAR * NEAR / (FAR - (FAR - NEAR) * d)  # OpenGL depth buffer -> distance along the axis
        return img, z

    def close(self) -> None:
        self.p.disconnect(self.client)


def capture_orbit(tiny: TinyScene, light: np.ndarray = L0) -> list[tuple[Camera, np.ndarray, np.ndarray]]:
    """The orbit the scene is built from: (camera, image, TinyRenderer depth) under the capture light (L0)."""
    captures = []
    for i in range(CAPTURE_FRAMES):
        a = 2 * np.pi * i / CAPTURE_FRAMES
        cam = cam_look([2.0 * np.cos(a), 2.0 * np.sin(a), 1.9 + 0.15 * np.sin(3 * a)], w=CAPTURE_W, h=CAPTURE_H)
        img, depth = tiny.render(cam, light)
        captures.append((cam, img, depth))
    return captures


# ------------------------------------------------------------------------------------------- splats
def _quat_to_z(normal: np.ndarray) -> np.ndarray:  # [N, 3] -> [N, 4] wxyz rotations taking +Z to normal
    z = np.array([0.0, 0.0, 1.0])
    q = np.concatenate([(1.0 + normal @ z)[:, None], np.cross(np.broadcast_to(z, normal.shape), normal)], axis=-1)
    flip = q[:, 0] < 1e-9
    q[flip] = [0.0, 1.0, 0.0, 0.0]
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def geometry_splats(tiny: TinyScene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Points, normals and sizes on the ground (finer near the boxes) and on every box face; box index ranges."""
    from physics.transforms import quat_to_matrix

    pts, nrm, size, groups = [], [], [], []
    for r0 in np.arange(0.0, 7.0, 0.25):  # rings of a jittered square grid (no Poisson gaps), coarser far away
        s = GROUND_SPACING * max(1.0, (r0 + 0.125) / 0.9)
        g = np.arange(-(r0 + 0.25), r0 + 0.25 + s, s)
        gx, gy = np.meshgrid(g, g)
        xy = np.stack([gx.ravel(), gy.ravel()], -1) + rng.uniform(-0.3 * s, 0.3 * s, (gx.size, 2))
        rr = np.linalg.norm(xy, axis=1)
        xy = xy[(rr >= r0) & (rr < r0 + 0.25)]
        n = len(xy)
        pts.append(np.concatenate([xy, np.zeros((n, 1))], -1))
        nrm.append(np.tile([0.0, 0.0, 1.0], (n, 1)))
        size.append(np.full(n, s))
    count = sum(len(p) for p in pts)
    for box in tiny.boxes:
        half = box["half"]
        R = quat_to_matrix(box["quaternion"])
        start = count
        for axis in range(3):
            for sign in (-1.0, 1.0):
                u, v = [a for a in range(3) if a != axis]
                s = BOX_SPACING
                gu = np.arange(-half[u] + s / 2, half[u], s)
                gv = np.arange(-half[v] + s / 2, half[v], s)
                a, b = np.meshgrid(gu, gv)
                f = np.zeros((a.size, 3))
                f[:, u], f[:, v], f[:, axis] = a.ravel(), b.ravel(), sign * half[axis]
                nn = np.zeros((a.size, 3))
                nn[:, axis] = sign
                pts.append(f @ R.T + box["position"])
                nrm.append(nn @ R.T)
                size.append(np.full(a.size, s))
                count += a.size
        groups.append((start, count))
    return np.concatenate(pts), np.concatenate(nrm), np.concatenate(size), groups


def fit_colours(points, normals, captures) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour of each point over the capture frames that see it (depth-tested); seen mask."""
    acc = np.zeros((len(points), 3))
    cnt = np.zeros(len(points))
    for cam, img, depth in captures:
        p = points @ cam.viewmat[:3, :3].T + cam.viewmat[:3, 3]
        z = p[:, 2]
        ok = z > 0.05
        u = np.where(ok, cam.K[0, 0] * p[:, 0] / np.maximum(z, 1e-6) + cam.K[0, 2], -1)
        v = np.where(ok, cam.K[1, 1] * p[:, 1] / np.maximum(z, 1e-6) + cam.K[1, 2], -1)
        ok &= (u >= 0) & (u < cam.width - 1) & (v >= 0) & (v < cam.height - 1)
        facing = np.einsum("nc,nc->n", normals, cam.position[None] - points) > 0
        ok &= facing
        idx = np.nonzero(ok)[0]
        du, dv = (u[idx] * SS).astype(int), (v[idx] * SS).astype(int)
        zt = depth[np.clip(dv, 0, depth.shape[0] - 1), np.clip(du, 0, depth.shape[1] - 1)]
        vis = np.abs(zt - z[idx]) < 0.015 + 0.01 * z[idx]
        idx = idx[vis]
        x, y = u[idx], v[idx]
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        col = (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy) + img[y0 + 1, x0] * (1 - fx) * fy
               + img[y0 + 1, x0 + 1] * fx * fy)  # fmt: skip
        acc[idx] += col
        cnt[idx] += 1
    seen = cnt > 0
    return acc / np.maximum(cnt, 1)[:, None], seen


def optimise_colours(means, quats, scales, opacities, colours, captures, steps: int, log=None) -> np.ndarray:
    """Splat colours fitted through ``render.rasterize`` to the capture frames (L2, Adam), geometry fixed.

    The photometric step of lifting without its geometry: per-splat averages of the frames are
    blurred twice (the frame's pixels, then the splat's footprint); fitting the renders to the
    frames undoes most of that.
    """
    import torch

    from render.rasterize import rasterize

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    m, q, sc, op = t(means), t(quats), t(scales), t(opacities)
    logit = torch.logit(t(np.clip(colours, 0.02, 0.98))).requires_grad_(True)
    opt = torch.optim.Adam([logit], lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=0.005)
    rng = np.random.default_rng(0)
    for step in range(steps):
        cam, img, _ = captures[int(rng.integers(len(captures)))]
        res = rasterize(m, q, sc, op, torch.sigmoid(logit), t(cam.viewmat[None]), t(cam.K[None]), cam.width,
                        cam.height)  # fmt: skip
        loss = ((res.colors[0] - t(img)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log and (step + 1) % 100 == 0:
            log(f"  colours: step {step + 1}/{steps}, capture PSNR {-10 * np.log10(max(loss.item(), 1e-12)):.2f} dB")
    return torch.sigmoid(logit).detach().numpy()


def build_scene(tiny: TinyScene, captures, seed: int, colour_steps: int = 0, log=None, rough: float = 0.0) -> Scene:
    """The scene's splats from the known geometry, colours from the frames; ``rough`` (m) makes them lift-like.

    With ``rough > 0`` the splats imitate a lift's: centres off the surface by ~``rough``, axes
    tilted up to ~25 degrees, thick and uneven (blobs, not surface elements); the colour fit
    then bakes what it can, as a lift's training does.
    """
    import trimesh

    rng = np.random.default_rng(seed)
    pts, nrm, size, groups = geometry_splats(tiny, rng)
    colours, seen = fit_colours(pts, nrm, captures)
    keep = np.nonzero(seen)[0]
    remap = np.full(len(pts), -1)
    remap[keep] = np.arange(len(keep))
    n = len(keep)
    scales = np.stack([size[keep] * 0.6, size[keep] * 0.6, size[keep] * 0.05], -1)
    axes = nrm[keep]
    if rough > 0:
        r2 = np.random.default_rng(seed + 7919)
        pts = pts.copy()
        pts[keep] += r2.normal(0.0, rough, (n, 3)) * [0.5, 0.5, 1.0] + axes * r2.normal(0.0, rough, (n, 1))
        axes = axes + r2.normal(0.0, 0.3, (n, 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        scales = scales * r2.uniform(0.7, 1.8, (n, 3))
        scales[:, 2] += rough * r2.uniform(0.3, 1.2, n)
    quats = _quat_to_z(axes)
    colours = np.clip(colours[keep], 0, 1)
    if colour_steps:
        colours = optimise_colours(pts[keep], quats, scales, np.full(n, 0.95), colours, captures, colour_steps, log)
    splats = Splats.from_activated(pts[keep], quats, scales, np.full(n, 0.95), colours)
    objects = []
    for box, (a, b) in zip(tiny.boxes, groups, strict=True):
        idx = remap[a:b]
        idx = idx[idx >= 0]
        mesh = trimesh.creation.box(2 * box["half"])
        objects.append(SceneObject(box["name"], idx, ColliderMesh(mesh.vertices, mesh.faces), mass=box["mass"],
                                   friction=0.8, restitution=0.0, position=tuple(box["position"]),
                                   quaternion=tuple(box["quaternion"])))  # fmt: skip
    return Scene(splats, objects=tuple(objects), ground=Ground(friction=0.9, restitution=0.0), light=Light(),
                 capture_cameras=tuple(c for c, _, _ in captures))  # fmt: skip


# ------------------------------------------------------------------------------------------- lifted
def lift_scene(tiny: TinyScene, captures, seed: int, tmp: Path, log=None, cache: Path | None = None,
               steps: int | None = None, objects: str = "detect", preset: str = "fast") -> tuple[Scene, dict]:  # fmt: skip
    """The capture orbit lifted by ``hybrid.lift`` (``preset``, known cameras, on the CPU), with its objects.

    ``objects``: ``"detect"``, the objects are what the product finds (``detect_boxes``:
    ``segment_scene`` and ``refine_with_views``, as ``hybrid demo`` runs them), each named after the
    true box it stands on; ``"known"``, the splats inside each box's known pose (grown by 10 % + 2 cm)
    are that box's and the colliders are the true boxes (``assign_boxes``).

    ``steps`` replaces the preset's optimisation steps (fast 800, quality 7000). With ``cache``, the
    lift is kept in ``cache/lifted{seed}`` (``cache/lifted{seed}_steps{steps}`` with other steps,
    ``_quality`` added for the quality preset) and reused by later runs (the orbit is deterministic
    for a seed).
    """
    from PIL import Image

    from hybrid.lift.pipeline import lift, preset_options
    from scenes.cameras import write_transforms_json

    name = f"lifted{seed}" if steps is None else f"lifted{seed}_steps{steps}"
    name += "" if preset == "fast" else f"_{preset}"
    if cache is not None and (cache / name / "lift_info.json").exists():  # a lift of the same orbit
        lifted_dir = cache / name
        info = json.loads((lifted_dir / "lift_info.json").read_text())
        return _objects(objects)(tiny, captures, lifted_dir, info, log)
    src = tmp / f"capture{seed}"
    src.mkdir(parents=True, exist_ok=True)
    names = []
    for i, (_, img, _) in enumerate(captures):
        names.append(f"frame_{i:05d}.png")
        Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(src / names[-1])
    write_transforms_json(src / "transforms.json", [c for c, _, _ in captures], names)

    def progress(stage, info):
        if log and (stage != "train" or info.get("step", 1) % 200 == 0):
            log(f"  lift: {stage} {info.get('step', '')} {info.get('splats', '')}")

    lifted_dir = (cache or tmp) / name
    overrides = {} if steps is None else {"steps": steps}
    rep = lift(
        src / "transforms.json", lifted_dir, preset_options(preset, device="cpu", **overrides), progress=progress
    )
    info = {"heldout_psnr": rep.heldout_psnr, "lift_s": rep.data["timings_s"].get("total", float("nan"))}
    (lifted_dir / "lift_info.json").write_text(json.dumps(info))
    return _objects(objects)(tiny, captures, lifted_dir, info, log)


def _objects(how: str):
    if how not in ("known", "detect"):
        raise ValueError(f"objects: 'known' or 'detect', not {how!r}")
    return assign_boxes if how == "known" else detect_boxes


def assign_boxes(tiny: TinyScene, captures, lifted_dir: Path, info: dict, log=None) -> tuple[Scene, dict]:
    """The lifted scene with each splat inside a box's known pose given to that box; the rest is ground."""
    import trimesh

    from physics.transforms import quat_to_matrix
    from scenes import load_scene

    lifted = load_scene(lifted_dir, load_weights=False)
    means = np.asarray(lifted.splats.means, np.float64)
    owner = np.full(len(means), -1)
    objects = []
    for k, box in enumerate(tiny.boxes):
        local = (means - box["position"]) @ quat_to_matrix(box["quaternion"])  # world -> box frame
        inside = np.all(np.abs(local) <= box["half"] * 1.1 + 0.02, axis=1) & (owner < 0)
        owner[inside] = k
        mesh = trimesh.creation.box(2 * box["half"])
        objects.append(SceneObject(box["name"], np.nonzero(inside)[0], ColliderMesh(mesh.vertices, mesh.faces),
                                   mass=box["mass"], friction=0.8, restitution=0.0, position=tuple(box["position"]),
                                   quaternion=tuple(box["quaternion"])))  # fmt: skip
    info = {**info, "box_splats": [len(o.splat_indices) for o in objects]}
    if log:
        log(f"  lifted: {len(means)} splats in {info['lift_s']:.0f} s, held-out PSNR {info['heldout_psnr']:.2f} dB; "
            f"box splats {info['box_splats']}")  # fmt: skip
    scene = Scene(lifted.splats, objects=tuple(objects), ground=Ground(friction=0.9, restitution=0.0), light=Light(),
                  capture_cameras=tuple(c for c, _, _ in captures))  # fmt: skip
    return scene, info


def detect_boxes(tiny: TinyScene, captures, lifted_dir: Path, info: dict, log=None) -> tuple[Scene, dict]:
    """The lifted scene's objects as the product finds them when a person points at each box.

    ``segment_scene`` with a seed on each true box's top face (``hybrid objects --detect --object
    x,y,z``: the clusters the seeds hit, a cluster that holds two boxes split between them), hull
    colliders, masses from the density, settling; then ``refine_with_views`` (the capture views' vote
    on the splats at each object's edges), as ``hybrid demo`` runs it. Objects are named after their boxes.
    """
    from hybrid.objects import refine_with_views
    from physics.segment import segment_scene
    from scenes import load_scene

    lifted = load_scene(lifted_dir, load_weights=False)
    seeds = np.array([b["position"] + [0.0, 0.0, b["half"][2]] for b in tiny.boxes])  # [B, 3] top-face centres
    scene = segment_scene(lifted, seeds=seeds, names=[b["name"] for b in tiny.boxes])
    scene, added = refine_with_views(scene)
    info = {**info, "box_splats": [len(o.splat_indices) for o in scene.objects]}
    if log:
        log(f"  lifted: {len(scene.splats)} splats in {info['lift_s']:.0f} s, held-out PSNR "
            f"{info['heldout_psnr']:.2f} dB; detected box splats {info['box_splats']} ({added} by the views)")  # fmt: skip
    return scene.with_(light=Light(), capture_cameras=tuple(c for c, _, _ in captures)), info
