"""Camera files at the edges: nerfstudio / instant-ngp ``transforms.json`` and COLMAP text/binary models.

Inside the project cameras are OpenCV (x right, y down, z forward) world-to-camera.
``transforms.json`` stores OpenGL-axes (x right, y up, z back) camera-to-world matrices.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

from scenes.errors import FormatError
from scenes.scene import OPENGL_TO_OPENCV, Camera

__all__ = ["read_transforms_json", "write_transforms_json", "read_cameras_file", "read_colmap_model", "quat_to_rotmat"]


def quat_to_rotmat(q: np.ndarray) -> np.ndarray:
    """[..., 4] wxyz quaternions (any norm) -> [..., 3, 3] rotation matrices."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def _intrinsics(frame: dict, root: dict, where: str) -> tuple[np.ndarray, int, int]:
    def get(key, default=None):
        if key in frame:
            return frame[key]
        if key in root:
            return root[key]
        return default

    w, h = get("w"), get("h")
    if w is None or h is None:
        raise FormatError(f"{where}: no image size: give 'w' and 'h' (globally or per frame)")
    fx, fy = get("fl_x"), get("fl_y")
    if fx is None:
        angle = get("camera_angle_x")
        if angle is None:
            raise FormatError(f"{where}: no focal length: give 'fl_x' (and 'fl_y') or 'camera_angle_x'")
        fx = 0.5 * float(w) / math.tan(0.5 * float(angle))
    if fy is None:
        angle_y = get("camera_angle_y")
        fy = 0.5 * float(h) / math.tan(0.5 * float(angle_y)) if angle_y is not None else fx
    cx, cy = get("cx", float(w) / 2), get("cy", float(h) / 2)
    K = np.array([[float(fx), 0, float(cx)], [0, float(fy), float(cy)], [0, 0, 1]])
    return K, int(w), int(h)


def read_transforms_json(
    path: str | Path, *, default_size: tuple[int, int] | None = None
) -> tuple[list[Camera], list[Path]]:
    """Read a nerfstudio / instant-ngp / Blender ``transforms.json``.

    Returns the cameras (OpenCV world-to-camera) and the image paths resolved relative to
    the file (a Blender-style path without extension gets ``.png``). ``default_size``
    ``(w, h)`` is used when the file gives no size (Blender files; read it from the images).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    try:
        root = json.loads(path.read_text())
    except FileNotFoundError:
        raise FormatError(f"{path}: camera file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(root, dict) or not isinstance(root.get("frames"), list) or not root["frames"]:
        raise FormatError(f"{path}: expected an object with a non-empty 'frames' list (nerfstudio transforms.json)")
    if default_size and ("w" not in root or "h" not in root):
        root = {**root, "w": root.get("w", default_size[0]), "h": root.get("h", default_size[1])}
    cams, images = [], []
    for i, frame in enumerate(root["frames"]):
        where = f"{path}: frame {i}"
        if not isinstance(frame, dict) or "transform_matrix" not in frame:
            raise FormatError(f"{where}: missing 'transform_matrix'")
        c2w = np.asarray(frame["transform_matrix"], np.float64)
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0, 0, 0, 1]])
        if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
            raise FormatError(f"{where}: 'transform_matrix' must be a finite 4x4 matrix")
        K, w, h = _intrinsics(frame, root, where)
        c2w_cv = c2w @ OPENGL_TO_OPENCV
        name = str(frame.get("file_path", f"frame_{i:05d}"))
        cams.append(Camera(K, np.linalg.inv(c2w_cv), w, h, name=name))
        img = (path.parent / name) if "file_path" in frame else None
        if img is not None and not img.suffix:
            img = img.with_suffix(".png")
        images.append(img)
    return cams, images


def read_cameras_file(path: str | Path) -> list[Camera]:
    """Cameras of a ``transforms.json`` camera file (as ``hybrid render/simulate --cameras`` take)."""
    return read_transforms_json(path)[0]


def write_transforms_json(path: str | Path, cameras: list[Camera], image_paths: list[str] | None = None) -> None:
    """Write cameras as nerfstudio ``transforms.json`` (per-frame intrinsics, OpenGL camera-to-world)."""
    frames = []
    for i, cam in enumerate(cameras):
        c2w_gl = cam.c2w @ OPENGL_TO_OPENCV
        frame = {
            "file_path": image_paths[i] if image_paths else (cam.name or f"frame_{i:05d}.png"),
            "transform_matrix": c2w_gl.tolist(),
            "fl_x": float(cam.K[0, 0]),
            "fl_y": float(cam.K[1, 1]),
            "cx": float(cam.K[0, 2]),
            "cy": float(cam.K[1, 2]),
            "w": cam.width,
            "h": cam.height,
        }
        frames.append(frame)
    Path(path).write_text(json.dumps({"camera_model": "OPENCV", "frames": frames}, indent=1))


# ------------------------------------------------------------------------------------------ COLMAP
_COLMAP_MODELS = {  # id -> (name, number of params)
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
}


def _K_from_colmap(model: str, params: list[float]) -> np.ndarray:
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        f, cx, cy = params[:3]
        fx = fy = f
    else:
        fx, fy, cx, cy = params[:4]
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)


def read_colmap_model(path: str | Path) -> tuple[list[Camera], list[str], np.ndarray]:
    """Read a COLMAP sparse model folder (text or binary): cameras, image names and the 3D points [P, 6] (xyz rgb).

    Distortion parameters are ignored (undistort the images first for strongly distorted lenses).
    """
    path = Path(path)
    if (path / "cameras.bin").exists():
        cams_raw, imgs_raw, pts = _read_colmap_bin(path)
    elif (path / "cameras.txt").exists():
        cams_raw, imgs_raw, pts = _read_colmap_txt(path)
    else:
        raise FormatError(f"{path}: not a COLMAP model (no cameras.bin or cameras.txt)")
    cameras, names = [], []
    for img in sorted(imgs_raw, key=lambda r: r["name"]):
        cam = cams_raw.get(img["camera_id"])
        if cam is None:
            raise FormatError(f"{path}: image {img['name']} refers to missing camera {img['camera_id']}")
        V = np.eye(4)
        V[:3, :3] = quat_to_rotmat(np.asarray(img["qvec"]))
        V[:3, 3] = img["tvec"]
        cameras.append(Camera(_K_from_colmap(cam["model"], cam["params"]), V, cam["width"], cam["height"], img["name"]))
        names.append(img["name"])
    return cameras, names, pts


def _read_colmap_txt(path: Path):
    cams = {}
    for line in (path / "cameras.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        cams[int(parts[0])] = {
            "model": parts[1],
            "width": int(parts[2]),
            "height": int(parts[3]),
            "params": [float(v) for v in parts[4:]],
        }
    imgs = []
    lines = [ln for ln in (path / "images.txt").read_text().splitlines() if not ln.startswith("#")]
    for line in lines[::2]:
        parts = line.split()
        if len(parts) < 10:
            continue
        imgs.append(
            {
                "qvec": [float(v) for v in parts[1:5]],
                "tvec": [float(v) for v in parts[5:8]],
                "camera_id": int(parts[8]),
                "name": parts[9],
            }
        )
    pts = []
    p3d = path / "points3D.txt"
    if p3d.exists():
        for line in p3d.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                parts = line.split()
                pts.append([*(float(v) for v in parts[1:4]), *(float(v) / 255.0 for v in parts[4:7])])
    return cams, imgs, np.asarray(pts, np.float64).reshape(-1, 6)


def _read_colmap_bin(path: Path):
    def read(f, fmt):
        size = struct.calcsize(fmt)
        data = f.read(size)
        if len(data) != size:
            raise FormatError(f"{f.name}: truncated COLMAP binary file")
        return struct.unpack("<" + fmt, data)

    cams = {}
    with open(path / "cameras.bin", "rb") as f:
        (n,) = read(f, "Q")
        for _ in range(n):
            cam_id, model_id, w, h = read(f, "iiQQ")
            if model_id not in _COLMAP_MODELS:
                raise FormatError(f"{path / 'cameras.bin'}: unsupported camera model id {model_id}")
            name, nparams = _COLMAP_MODELS[model_id]
            cams[cam_id] = {"model": name, "width": w, "height": h, "params": list(read(f, "d" * nparams))}
    imgs = []
    with open(path / "images.bin", "rb") as f:
        (n,) = read(f, "Q")
        for _ in range(n):
            vals = read(f, "idddddddi")
            name = b""
            while (c := f.read(1)) not in (b"\0", b""):
                name += c
            (npts,) = read(f, "Q")
            f.seek(24 * npts, 1)
            imgs.append({"qvec": vals[1:5], "tvec": vals[5:8], "camera_id": vals[8], "name": name.decode()})
    pts = []
    p3d = path / "points3D.bin"
    if p3d.exists():
        with open(p3d, "rb") as f:
            (n,) = read(f, "Q")
            for _ in range(n):
                vals = read(f, "QdddBBBd")
                pts.append([*vals[1:4], *(v / 255.0 for v in vals[4:7])])
                (tl,) = read(f, "Q")
                f.seek(8 * tl, 1)
    return cams, imgs, np.asarray(pts, np.float64).reshape(-1, 6)
