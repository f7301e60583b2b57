"""Headless rendering of a scene for scripts and CI: views, orbits, PNG folders and MP4 files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from render.gl.camera import look_at
from render.gl.meshes import Mesh
from render.gl.renderer import Renderer, RenderSettings
from scenes._deps import require
from scenes.cameras import quat_to_rotmat
from scenes.errors import SceneError, ShapeError
from scenes.scene import Camera, Scene

__all__ = ["scene_orbit", "render_views", "write_video", "write_pngs", "collider_meshes"]


def _scene_center_and_radius(scene: Scene, fov_y_deg: float) -> tuple[np.ndarray, float, float]:
    """(centre [3], orbit radius, elevation in degrees) from the capture cameras, else from the splats."""
    cams = scene.capture_cameras
    if len(cams) >= 2:
        # the point nearest to every optical axis: what the capture cameras looked at
        A = np.zeros((3, 3))
        b = np.zeros(3)
        centres, axes = [], []
        for cam in cams:
            c2w = np.linalg.inv(cam.viewmat)
            c, d = c2w[:3, 3], c2w[:3, 2] / np.linalg.norm(c2w[:3, 2])
            P = np.eye(3) - np.outer(d, d)
            A += P
            b += P @ c
            centres.append(c)
            axes.append(d)
        centres = np.array(centres)
        if np.linalg.cond(A) < 1e6:
            center = np.linalg.solve(A, b)
            offsets = centres - center
            dist = np.linalg.norm(offsets, axis=1)
            # only trust it when the point is in front of the cameras
            if np.all(np.einsum("ij,ij->i", -offsets, np.array(axes)) > 0) and np.median(dist) > 0:
                elevation = np.degrees(np.arcsin(np.clip(np.median(offsets[:, 2] / dist), -1, 1)))
                return center, float(np.median(dist)), float(np.clip(elevation, 5.0, 60.0))
    means = scene.splats.means
    if len(means) == 0:
        raise SceneError("cannot place an orbit: the scene has no splats and fewer than 2 capture cameras")
    center = np.median(means, axis=0).astype(np.float64)
    extent = float(np.percentile(np.linalg.norm(means - center, axis=1), 80)) or 1.0
    radius = 1.2 * extent / np.tan(np.radians(fov_y_deg) / 2)
    return center, radius, 20.0


def scene_orbit(
    scene: Scene,
    n: int,
    *,
    width: int | None = None,  # image size; default the first capture camera's, else 1280 x 720
    height: int | None = None,
    fov_y_deg: float = 50.0,  # used when the scene has no capture camera
    elevation_deg: float | None = None,  # default: the capture cameras' median elevation, else 20
) -> list[Camera]:
    """``n`` cameras evenly spaced on a circle (Z up) around what the scene shows, looking at its centre."""
    if n < 1:
        raise ShapeError(f"orbit: the number of frames must be >= 1, got {n}")
    ref = scene.capture_cameras[0] if scene.capture_cameras else None
    if ref is not None:
        w, h = width or ref.width, height or ref.height
        if width is None and height is not None:
            w = round(ref.width * h / ref.height)
        if height is None and width is not None:
            h = round(ref.height * w / ref.width)
        K = ref.K.copy()
        K[0] *= w / ref.width
        K[1] *= h / ref.height
        fov = float(np.degrees(2 * np.arctan(0.5 * h / K[1, 1])))
    else:
        w, h = width or 1280, height or 720
        f = 0.5 * h / np.tan(np.radians(fov_y_deg) / 2)
        K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
        fov = fov_y_deg
    center, radius, elevation = _scene_center_and_radius(scene, fov)
    if elevation_deg is not None:
        elevation = elevation_deg
    start = 0.0
    if ref is not None:  # start where the first capture camera stands
        pos = np.linalg.inv(ref.viewmat)[:3, 3] - center
        start = float(np.degrees(np.arctan2(pos[1], pos[0])))
    el = np.radians(elevation)
    cams = []
    for i in range(n):
        az = np.radians(start) + 2 * np.pi * i / n
        eye = center + radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        cams.append(Camera(K, look_at(eye, center), w, h, name=f"orbit{i}"))
    return cams


def collider_meshes(scene: Scene, color=(0.1, 1.0, 0.3)) -> list[tuple[Mesh, np.ndarray]]:
    """Unlit wireframe meshes of the objects' colliders (and the ground mesh) with their world poses."""
    out = []
    for obj in scene.objects:
        if obj.collider is None:
            continue
        model = np.eye(4)
        model[:3, :3] = quat_to_rotmat(np.asarray(obj.quaternion))
        model[:3, 3] = obj.position
        mesh = Mesh(
            obj.collider.vertices, obj.collider.faces, color=color, lit=False, wireframe=True, cast_shadows=False
        )
        out.append((mesh, model))
    if scene.ground is not None and scene.ground.mesh is not None:
        g = scene.ground.mesh
        out.append((Mesh(g.vertices, g.faces, color=color, lit=False, wireframe=True, cast_shadows=False), np.eye(4)))
    return out


def render_views(
    scene: Scene,
    cameras: Iterable[Camera],
    *,
    settings: RenderSettings | None = None,
    colliders: bool = False,  # draw the colliders as wireframes
    size: tuple[int, int] | None = None,  # (width, height) to render every view at (intrinsics rescaled)
    ctx=None,  # a ModernGL context; default a new headless EGL one
) -> Iterator[np.ndarray]:  # yields [H, W, 3] uint8 per camera
    """Render ``scene`` from each camera in order (headless unless ``ctx`` is given)."""
    from render.gl.context import create_context

    own = ctx is None
    if own:
        ctx = create_context("egl")
    cameras = list(cameras)
    if not cameras:
        raise ShapeError("render_views: no cameras given")
    first = cameras[0]
    renderer = Renderer(ctx, *(size or (first.width, first.height)), settings)
    try:
        renderer.set_splats(scene.splats)
        renderer.light = scene.light
        if colliders:
            for mesh, model in collider_meshes(scene):
                renderer.add_mesh(mesh, model)
        for cam in cameras:
            if size is not None:
                cam = cam.resized(*size)
            renderer.resize(cam.width, cam.height)
            yield renderer.render_frame(cam.viewmat, cam.K).to_uint8()
    finally:
        renderer.release()
        if own:
            ctx.release()


def write_pngs(folder: str | Path, frames: Iterable[np.ndarray], pattern: str = "c{i}.png") -> list[Path]:
    """Write frames as ``folder/c0.png, c1.png, ...`` (created if missing); returns the paths."""
    pil = require("PIL.Image", "writing PNG files")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        path = folder / pattern.format(i=i)
        pil.fromarray(frame).save(path)
        paths.append(path)
    return paths


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 30.0, crf: int = 18) -> int:
    """Encode [H, W, 3] uint8 frames as H.264 MP4 with PyAV (odd sizes cropped to even); returns the count."""
    av = require("av", "writing MP4 video")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(path), mode="w") as container:
        stream = None
        for frame in frames:
            h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
            if stream is None:
                if h == 0 or w == 0:
                    raise ShapeError(
                        f"write_video: frame size {frame.shape[1]}x{frame.shape[0]} is too small for H.264"
                    )
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height = w, h
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf)}
            elif (w, h) != (stream.width, stream.height):
                raise ShapeError(f"write_video: frame {count} is {w}x{h}, the video is {stream.width}x{stream.height}")
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    if count == 0:
        path.unlink(missing_ok=True)
        raise ShapeError("write_video: no frames to write")
    return count
