"""``lift``: a video, an image folder or a capture with known cameras -> a scene folder.

Stages (each timed in ``report.json``): decode and select frames; detect static overlays;
cameras (known ones kept exactly, otherwise pycolmap); gravity and scale (SfM only);
train the splats; evaluate the held-out frames (every 8th); save the scene, the report and
a side-by-side PNG. The work folder (``SCENE_DIR.lift-work`` beside the scene) keeps each
stage's output so ``resume=True`` continues after an interruption; it is removed after a
successful lift unless ``keep_work``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import resource
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from hybrid.lift.align import AlignOptions, apply_similarity, estimate_alignment
from hybrid.lift.decode import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    FrameSet,
    SelectOptions,
    decode_video,
    load_image,
    read_image_folder,
)
from hybrid.lift.errors import LiftError, ReconstructionError
from hybrid.lift.overlays import detect_static_overlay
from hybrid.lift.sfm import SfmOptions, run_sfm, triangulate_known
from hybrid.lift.train import Interrupted, TrainData, Trainer, TrainOptions, init_from_points, split_heldout
from scenes.errors import FormatError
from scenes.scene import Camera

__all__ = ["LiftOptions", "LiftReport", "PRESETS", "preset_options", "lift", "detect_input", "work_dir_for"]

log = logging.getLogger(__name__)

PRESETS = ("fast", "quality")
MIN_INIT_POINTS = 10_000  # known cameras with alpha masks and fewer triangulated points get this many carved ones
WORK_VERSION = 1


@dataclass(frozen=True)
class LiftOptions:
    """Everything ``lift`` needs; build one with :func:`preset_options`."""

    preset: str = "fast"  # the preset these options started from
    select: SelectOptions = field(default_factory=SelectOptions)
    sfm: SfmOptions = field(default_factory=SfmOptions)
    align: AlignOptions = field(default_factory=AlignOptions)
    train: TrainOptions = field(default_factory=TrainOptions)
    holdout_every: int = 8  # every n-th frame (0, n, 2n, ...) is held out for the report
    overlays: bool = True  # detect static overlays and exclude them
    images: Path | None = None  # image folder of a COLMAP model input (default: found beside it)
    keep_work: bool = False  # keep the work folder after success


@dataclass(frozen=True, eq=False)
class LiftReport:
    """The result of :func:`lift` (also written as ``SCENE_DIR/report.json``)."""

    scene_dir: Path
    data: dict  # the report.json content

    @property
    def heldout_psnr(self) -> float:
        return float(self.data["heldout"]["psnr"])


def _device_default() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a core dependency
        return "cpu"


def preset_options(preset: str | None = None, device: str | None = None, **train_overrides) -> LiftOptions:
    """Options of a preset: ``"fast"`` (the CPU default) or ``"quality"`` (the GPU default).

    ``train_overrides`` replace fields of :class:`TrainOptions` (e.g. ``steps=500``).
    """
    device = device or _device_default()
    preset = preset or ("quality" if device == "cuda" else "fast")
    if preset not in PRESETS:
        raise ValueError(f"preset: must be one of {', '.join(PRESETS)}; got {preset!r}")
    if preset == "fast":
        opts = LiftOptions(
            preset=preset,
            select=SelectOptions(max_frames=90, max_size=640),
            sfm=SfmOptions(max_features=4096, overlap=8),
            # densify every 60 steps, not gsplat's 100: 8 rounds of growth in 800 steps instead of 4; held-out
            # PSNR +1.3 dB on the sample video for 29 % more training (docs/lift.md, Presets)
            train=TrainOptions(steps=800, sh_degree=1, sh_interval=300, refine_every=60, device=device),
        )
    else:
        opts = LiftOptions(
            preset=preset,
            select=SelectOptions(max_frames=240, max_size=1600),
            sfm=SfmOptions(max_features=8192, overlap=12),
            train=TrainOptions(steps=7000, sh_degree=3, sh_interval=1000, lowres_until=0.0, device=device),
        )
    if train_overrides:
        opts = replace(opts, train=replace(opts.train, **train_overrides))
    return opts


# ------------------------------------------------------------------------------------- inputs
def detect_input(path: Path) -> str:
    """``"video"``, ``"images"``, ``"transforms"`` or ``"colmap"``; raises for anything else."""
    path = Path(path)
    if not path.exists():
        raise LiftError(f"input not found: {path}")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "transforms"
        if path.suffix.lower() in IMAGE_EXTS:
            raise FormatError(f"{path}: a single image cannot be lifted; give a video or a folder of images")
        return "video"  # any other file: PyAV decides (and says clearly when it cannot)
    if (path / "transforms.json").is_file():
        return "transforms"
    for sub in ("", "sparse/0", "sparse", "0"):
        if (path / sub / "cameras.bin").is_file() or (path / sub / "cameras.txt").is_file():
            return "colmap"
    if any(p.suffix.lower() in IMAGE_EXTS for p in path.iterdir()):
        return "images"
    if any(p.suffix.lower() in VIDEO_EXTS for p in path.iterdir()):
        raise FormatError(f"{path}: a folder of videos; give one video file")
    raise FormatError(
        f"{path}: nothing to lift here: no images, transforms.json or COLMAP model (cameras.bin/cameras.txt)"
    )


def _colmap_root(path: Path) -> Path:
    for sub in ("", "sparse/0", "sparse", "0"):
        if (path / sub / "cameras.bin").is_file() or (path / sub / "cameras.txt").is_file():
            return path / sub
    raise FormatError(f"{path}: not a COLMAP model")


def _load_known(kind: str, path: Path, opts: LiftOptions, notes: list[str]):
    """A known-camera input: ``(FrameSet, cameras, points or None, background or None, alpha masks or None)``."""
    from scenes.cameras import read_colmap_model, read_transforms_json

    background = None
    points = None
    if kind == "transforms":
        json_path = path if path.is_file() else path / "transforms.json"
        first = _first_image(json_path)
        size = None
        if first is not None:
            from PIL import Image

            with Image.open(first) as im:
                size = im.size
        cams, paths = read_transforms_json(json_path, default_size=size)
        pairs = [(c, p) for c, p in zip(cams, paths) if p is not None and p.is_file()]
        missing = len(cams) - len(pairs)
        if not pairs:
            raise FormatError(
                f"{json_path}: none of the {len(cams)} image files it lists exist (paths are relative to it)"
            )
        if missing:
            notes.append(f"{missing} of the {len(cams)} frames in {json_path.name} have no image file; skipped")
        cams = [c for c, _ in pairs]
        paths = [p for _, p in pairs]
        source = json_path
    else:
        root = _colmap_root(path)
        cams, names, pts = read_colmap_model(root)
        image_dir = opts.images or next(
            (d for d in (root / "images", root.parent / "images", root.parent.parent / "images", path / "images")
             if d.is_dir()), None)  # fmt: skip
        if image_dir is None:
            raise FormatError(f"{root}: COLMAP model found but not its images; give the image folder with --images")
        paths = [Path(image_dir) / n for n in names]
        absent = [p.name for p in paths if not p.is_file()]
        if absent:
            raise FormatError(f"{image_dir}: {len(absent)} image(s) of the COLMAP model are missing, e.g. {absent[:3]}")
        if len(pts):
            points = (pts[:, :3], pts[:, 3:6])
        source = root
    with_alpha = _has_alpha(paths[0])
    if with_alpha:
        background = (1.0, 1.0, 1.0)
        notes.append("images have an alpha channel: composited on white, trained with a white background")
    images = [load_image(p, background=background) for p in paths]
    scaled_cams, scaled_imgs, alphas = [], [], []
    for cam, img, p in zip(cams, images, paths):
        h, w = img.shape[:2]
        if (w, h) != (cam.width, cam.height):
            raise FormatError(f"{cam.name}: the image is {w}x{h} but its camera says {cam.width}x{cam.height}")
        longest = max(w, h)
        if opts.select.max_size and longest > opts.select.max_size:
            from PIL import Image

            f = opts.select.max_size / longest
            nw, nh = max(1, round(w * f)), max(1, round(h * f))
            img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.LANCZOS))
            K = cam.K.copy()
            K[0] *= nw / w  # pixel-edge convention: the principal point scales with the image
            K[1] *= nh / h
            cam = Camera(K, cam.viewmat, nw, nh, cam.name)
        if with_alpha:
            from PIL import Image

            with Image.open(p) as im:
                a = im.convert("RGBA").getchannel("A").resize((cam.width, cam.height), Image.BILINEAR)
            alphas.append(np.asarray(a) > 127)
        scaled_cams.append(cam)
        scaled_imgs.append(img)
    sizes = {im.shape for im in scaled_imgs}
    if len(sizes) > 1:
        raise FormatError(f"{source}: the images have different sizes {sorted(sizes)}; give images of one size")
    names = []
    for i, p in enumerate(paths):
        stem = Path(p).stem
        names.append(f"{i:05d}_{stem}.png")
    fs = FrameSet(np.stack(scaled_imgs), tuple(names), np.arange(len(names)), str(source),
                  scale=scaled_imgs[0].shape[1] / images[0].shape[1],
                  counts={"decoded": len(names), "kept": len(names)})  # fmt: skip
    return fs, scaled_cams, points, background, (np.stack(alphas) if alphas else None)


def _first_image(json_path: Path) -> Path | None:
    try:
        root = json.loads(json_path.read_text())
        for fr in root.get("frames", []):
            p = json_path.parent / str(fr.get("file_path", ""))
            if not p.suffix:
                p = p.with_suffix(".png")
            if p.is_file():
                return p
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return None


def _has_alpha(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as im:
        return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


# ------------------------------------------------------------------------------------- work folder
def work_dir_for(scene_dir: Path) -> Path:
    """The work folder of a lift into ``scene_dir`` (beside it, so the scene folder stays clean)."""
    scene_dir = Path(scene_dir).absolute()
    return scene_dir.parent / f"{scene_dir.name}.lift-work"


def _fingerprint(path: Path, opts: LiftOptions) -> str:
    st = path.stat()
    stages = {"path": str(path.resolve()), "size": st.st_size if path.is_file() else 0, "mtime": int(st.st_mtime),
              "select": asdict(opts.select), "sfm": asdict(opts.sfm), "align": asdict(opts.align),
              "holdout": opts.holdout_every, "overlays": opts.overlays, "version": WORK_VERSION}  # fmt: skip
    return hashlib.sha256(json.dumps(stages, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_stage(work: Path, prep: _Prepared, fingerprint: str, kind: str) -> None:
    from PIL import Image
    from safetensors.numpy import save_file

    fs = prep.frames
    img_dir = work / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for img, name in zip(fs.images, fs.names):
        if not (img_dir / name).exists():
            Image.fromarray(img).save(img_dir / name, compress_level=1)
    arrays = {"points": np.ascontiguousarray(prep.points), "colors": np.ascontiguousarray(prep.colors),
              "source_indices": np.ascontiguousarray(fs.source_indices, np.int64)}  # fmt: skip
    if prep.mask is not None:
        arrays["mask"] = np.ascontiguousarray(prep.mask, np.uint8)
    save_file(arrays, str(work / "stage.safetensors"))
    meta = {"fingerprint": fingerprint, "kind": kind, "camera_source": prep.camera_source,
            "background": list(prep.background), "overlay": prep.overlay, "alignment": prep.alignment,
            "sfm": prep.sfm_stats, "timings": prep.timings, "notes": list(prep.notes),
            "names": list(fs.names), "cameras": [c.to_dict() for c in prep.cameras], "source": fs.source,
            "fps": fs.fps, "rotation": fs.rotation, "scale": fs.scale, "counts": fs.counts,
            "frame_notes": list(fs.notes)}  # fmt: skip
    _write_json_atomic(work / "stage.json", meta, indent=1, default=_jsonable)  # last: the stage is complete


def _load_stage(work: Path) -> _Prepared:
    from PIL import Image
    from safetensors.numpy import load_file

    meta = json.loads((work / "stage.json").read_text())
    arrays = load_file(str(work / "stage.safetensors"))
    images = np.stack([np.asarray(Image.open(work / "images" / n).convert("RGB")) for n in meta["names"]])
    fs = FrameSet(images, tuple(meta["names"]), arrays["source_indices"], meta["source"], meta["fps"],
                  meta["rotation"], meta["scale"], meta["counts"], tuple(meta["frame_notes"]))  # fmt: skip
    return _Prepared(
        fs, [Camera.from_dict(c) for c in meta["cameras"]], arrays["points"], arrays["colors"],
        arrays["mask"].astype(bool) if "mask" in arrays else None, meta["camera_source"], tuple(meta["background"]),
        meta["overlay"], meta["alignment"], meta["sfm"], meta["timings"], tuple(meta["notes"]),
    )  # fmt: skip


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v)}")


# ------------------------------------------------------------------------------------- lift
def _peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(0)})"
    import torch

    return (
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {os.cpu_count()} cores)"
    )


def _random_points(
    cams: list[Camera], n: int, seed: int, images: np.ndarray | None = None, alphas: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points spread in a ball around where the cameras look (when too few could be triangulated).

    With alpha masks ([T, H, W] bool) the ball is carved to the visual hull: a point is kept
    when it falls on the object in at least 90 % of the views that see it, and takes the mean
    colour of those pixels.
    """
    centres = np.array([c.position for c in cams])
    dirs = np.array([c.c2w[:3, 2] for c in cams])
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c, d in zip(centres, dirs):  # least-squares point closest to all optical axes
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ c
    target = np.linalg.lstsq(A, b, rcond=None)[0]
    radius = 0.5 * float(np.median(np.linalg.norm(centres - target, axis=1)))
    rng = np.random.default_rng(seed)
    m = n if alphas is None else 20 * n
    v = rng.normal(size=(m, 3))
    v *= (radius * rng.random(m) ** (1 / 3) / np.linalg.norm(v, axis=1))[:, None]
    pts = target + v
    if alphas is None or images is None:
        return pts, rng.random((m, 3))
    hits = np.zeros(m)
    seen = np.zeros(m)
    colour = np.zeros((m, 3))
    for cam, alpha, img in zip(cams, alphas, images):
        Xc = pts @ cam.viewmat[:3, :3].T + cam.viewmat[:3, 3]
        front = Xc[:, 2] > 1e-6
        uv = (Xc @ cam.K.T)[:, :2] / np.where(front, Xc[:, 2], 1.0)[:, None]
        u, w = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
        inside = front & (u >= 0) & (u < cam.width) & (w >= 0) & (w < cam.height)
        seen += inside
        on = np.zeros(m, bool)
        on[inside] = alpha[w[inside], u[inside]]
        hits += on
        colour[on] += img[w[on], u[on]] / 255.0
    keep = (seen >= 3) & (hits >= 0.9 * seen)
    pts, colour = pts[keep], colour[keep] / np.maximum(hits[keep], 1)[:, None]
    if len(pts) > n:
        pick = rng.choice(len(pts), n, replace=False)
        pts, colour = pts[pick], colour[pick]
    return pts, colour


@dataclass(frozen=True, eq=False)
class _Prepared:
    """What the stages before training produce (saved in the work folder for --resume)."""

    frames: FrameSet
    cameras: list  # [T] Camera, aligned (SfM) or as given (known cameras)
    points: np.ndarray  # [P, 3] initial splat centres
    colors: np.ndarray  # [P, 3] their colours in [0, 1]
    mask: np.ndarray | None  # [H, W] overlay mask
    camera_source: str  # "sfm", "transforms" or "colmap"
    background: tuple  # training background colour
    overlay: dict | None = None
    alignment: dict | None = None
    sfm_stats: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    notes: tuple = ()


def _prepare(input_path: Path, kind: str, work: Path, opts: LiftOptions, fingerprint: str, emit) -> _Prepared:
    """Frames, cameras and initial points; saved to ``work`` so that --resume can skip them."""
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    notes: list[str] = []
    background = tuple(opts.train.background)
    emit("decode", {})
    t0 = time.perf_counter()
    known_points = known_alphas = known_cams = None
    if kind == "video":
        fs = decode_video(input_path, opts.select)
    elif kind == "images":
        fs = read_image_folder(input_path, opts.select)
    else:
        fs, known_cams, known_points, bg, known_alphas = _load_known(kind, input_path, opts, notes)
        background = bg or background
    camera_source = "sfm" if known_cams is None else kind
    notes.extend(fs.notes)
    timings["decode"] = time.perf_counter() - t0

    mask = None
    overlay = None
    if opts.overlays and kind == "video":  # photo sets: too few, too different views to tell overlays apart
        emit("overlays", {})
        t0 = time.perf_counter()
        found = detect_static_overlay(fs.images)
        timings["overlays"] = time.perf_counter() - t0
        overlay = found.to_dict()
        if found.found:
            mask = found.mask
            notes.append(f"static overlay masked: {found.fraction:.1%} of the image, boxes {list(found.boxes)}")

    emit("cameras", {})
    t0 = time.perf_counter()
    alignment = None
    sfm_stats: dict = {}
    if camera_source == "sfm":
        try:
            res = run_sfm(fs.images, list(fs.names), work / "sfm", replace(opts.sfm, seed=opts.train.seed), mask)
        except ReconstructionError as exc:
            extra = [f"decoding: {'; '.join(fs.notes)}"] if fs.notes else []
            if fs.scale < 1 and exc.reason != "no parallax":
                w, h = fs.size
                extra.append(f"the frames were downscaled to {w}x{h}: a larger --max-size keeps more features")
            if not extra:
                raise
            raise ReconstructionError(f"{exc} ({'; '.join(extra)})", registered=exc.registered, total=exc.total,
                                      reason=exc.reason) from exc  # fmt: skip
        sfm_stats = res.stats
        keep = [i for i, c in enumerate(res.cameras) if c is not None]
        if len(keep) < len(fs.names):
            notes.append(f"{len(fs.names) - len(keep)} frame(s) did not register and are not used")
        fs = _subset(fs, keep)
        timings["cameras"] = time.perf_counter() - t0
        emit("align", {})
        t0 = time.perf_counter()
        cams = [res.cameras[i] for i in keep]
        found_alignment = estimate_alignment(res.points, cams, replace(opts.align, seed=opts.train.seed))
        cams, points = apply_similarity(found_alignment, cams, res.points)
        colors = res.colors
        alignment = found_alignment.to_dict()
        if found_alignment.up_source != "ground plane":
            notes.append("no ground plane found: +Z is the cameras' average up vector")
        if found_alignment.scale_source == "prior camera height":
            notes.append(f"metric scale assumed from a camera height of {found_alignment.camera_height:.2f} m "
                         "(give --camera-height or --scale for true metres)")  # fmt: skip
        timings["align"] = time.perf_counter() - t0
    else:
        cams = known_cams
        if known_points is not None:
            points, colors = known_points
        else:
            points, colors = triangulate_known(fs.images, list(fs.names), cams, work / "sfm",
                                               replace(opts.sfm, seed=opts.train.seed))  # fmt: skip
            sfm_stats = {"triangulated_points": len(points)}
        if len(points) < (MIN_INIT_POINTS if known_alphas is not None else 500):
            carved = " (carved to the alpha masks' visual hull)" if known_alphas is not None else ""
            notes.append(f"only {len(points)} points triangulated from the known cameras: "
                         f"random points added around the cameras' focus{carved}")  # fmt: skip
            extra_p, extra_c = _random_points(cams, MIN_INIT_POINTS, opts.train.seed, fs.images, known_alphas)
            points = np.concatenate([np.asarray(points).reshape(-1, 3), extra_p])
            colors = np.concatenate([np.asarray(colors).reshape(-1, 3), extra_c])
        timings["cameras"] = time.perf_counter() - t0
    prep = _Prepared(fs, list(cams), np.asarray(points, np.float64), np.asarray(colors, np.float64), mask,
                     camera_source, tuple(background), overlay, alignment, sfm_stats, timings, tuple(notes))  # fmt: skip
    _save_stage(work, prep, fingerprint, kind)
    return prep


def lift(
    input_path: str | Path,
    scene_dir: str | Path,
    opts: LiftOptions | None = None,
    *,
    resume: bool = False,
    progress: Callable[[str, dict], None] | None = None,
) -> LiftReport:
    """Lift ``input_path`` into the scene folder ``scene_dir``; see the module docstring.

    ``progress(stage, info)`` is called at the start of each stage (``info`` empty) and at
    every training step (``stage == "train"``, ``info`` with step, loss, psnr, splats).
    """
    from scenes import Ground, Scene, save_scene

    opts = opts or preset_options()
    input_path = Path(input_path)
    scene_dir = Path(scene_dir).absolute()
    emit = progress or (lambda stage, info: None)
    kind = detect_input(input_path)
    if scene_dir.is_file() or (
        scene_dir.is_dir() and any(scene_dir.iterdir()) and not (scene_dir / "scene.json").exists()
    ):
        raise LiftError(f"{scene_dir}: exists and is not a scene folder; choose a new or empty output folder")
    work = work_dir_for(scene_dir)
    fingerprint = _fingerprint(input_path, opts)
    stage_ok = False
    if resume:
        if not (work / "stage.json").is_file():
            raise LiftError(f"--resume: no earlier run to resume in {work}; run without --resume")
        meta = json.loads((work / "stage.json").read_text())
        if meta.get("fingerprint") != fingerprint:
            raise LiftError(
                f"--resume: {work} was made from another input or other frame/camera options; "
                "run without --resume (or with the same input and options)"
            )
        stage_ok = True
    elif work.exists():
        shutil.rmtree(work)

    if stage_ok:
        emit("resume", {})
        prep = _load_stage(work)
        notes = list(prep.notes)
    else:
        try:
            prep = _prepare(input_path, kind, work, opts, fingerprint, emit)
        except BaseException:
            if not opts.keep_work:  # nothing worth resuming yet
                shutil.rmtree(work, ignore_errors=True)
            raise
        notes = list(prep.notes)
    fs, cams, mask = prep.frames, prep.cameras, prep.mask
    timings = dict(prep.timings)

    # ------------------------------------------------------------------ training
    train_idx, held_idx = split_heldout(len(cams), opts.holdout_every)
    data = TrainData(fs.images, tuple(cams), train_idx, held_idx, mask)
    topts = replace(opts.train, background=tuple(prep.background))
    trainer = Trainer(data, init_from_points(prep.points, prep.colors, topts), topts)
    resumed_from = 0
    if resume and (work / "checkpoint.json").is_file():
        trainer.load_checkpoint(work)
        resumed_from = trainer.step
        notes.append(f"resumed training at step {resumed_from}")
    emit("train", {"step": trainer.step, "steps": topts.steps, "splats": len(trainer.params["means"])})
    result = _train_with_interrupt(trainer, work, lambda info: emit("train", info))
    timings["train"] = trainer.seconds  # across interruptions

    # ------------------------------------------------------------------ evaluate, save
    emit("evaluate", {})
    t0 = time.perf_counter()
    held = trainer.evaluate(held_idx)
    train_eval = trainer.evaluate(train_idx[:: max(1, len(train_idx) // 8)])
    timings["evaluate"] = time.perf_counter() - t0

    emit("save", {})
    t0 = time.perf_counter()
    splats = result.splats
    alignment = prep.alignment
    ground = Ground() if alignment and alignment["up_source"] == "ground plane" else None  # the plane is z = 0
    report = {
        "input": str(input_path),
        "input_kind": kind,
        "preset": opts.preset,
        "device": _device_name(topts.device),
        "seed": topts.seed,
        "frames": {
            "decoded": int(fs.counts.get("decoded", len(fs.names))),
            "selected": int(fs.counts.get("kept", len(fs.names))),
            "registered": len(cams),
            "train": int(len(train_idx)),
            "heldout": int(len(held_idx)),
            "selection": fs.counts,
            "size": [int(fs.images.shape[2]), int(fs.images.shape[1])],
        },
        "heldout": {
            "psnr": round(held["psnr"], 3),
            "ssim": round(held["ssim"], 4),
            "frames": held["frames"],
            "per_frame_psnr": held["per_frame_psnr"],
        },  # fmt: skip
        "train_psnr": round(train_eval["psnr"], 3),
        "splats": len(splats),
        "sh_degree": splats.sh_degree,
        "steps": result.steps,
        "resumed_from_step": resumed_from,
        "cameras": {
            "source": prep.camera_source,
            "focal_px": round(float(cams[0].K[0, 0]), 3),
            **_sfm_summary(prep.sfm_stats),
            **(
                {"sfm_threads": opts.sfm.threads, "sfm_repeatable": opts.sfm.deterministic}
                if prep.camera_source == "sfm"
                else {}
            ),
        },  # fmt: skip
        "alignment": alignment,
        "overlay": prep.overlay,
        "units": "metres (from a prior camera height)"
        if alignment and alignment["scale_source"] == "prior camera height"
        else "metres",
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "peak_memory_mb": round(_peak_memory_mb(), 1),
        "history": result.history,
        "notes": notes,
    }
    scene = Scene(
        splats=splats,
        ground=ground,
        capture_cameras=tuple(cams),
        metadata={"lift": {k: report[k] for k in ("input", "input_kind", "preset", "heldout", "splats", "cameras",
                                                  "alignment", "units")}},
    )  # fmt: skip
    save_scene(scene, scene_dir)
    _side_by_side(trainer, fs, held_idx if len(held_idx) else train_idx[:1], scene_dir / "heldout_side_by_side.png")
    timings["save"] = time.perf_counter() - t0
    timings["total"] = sum(timings.values())  # stage times, also across a resume
    report["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    report["peak_memory_mb"] = round(_peak_memory_mb(), 1)
    (scene_dir / "report.json").write_text(json.dumps(report, indent=1, default=_jsonable) + "\n")
    if not opts.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return LiftReport(scene_dir, report)


def _sfm_summary(stats: dict) -> dict:
    out = {}
    for k in ("registered", "points", "reprojection_error", "matching", "relaxed_registration", "triangulated_points"):
        if k in stats:
            v = stats[k]
            out[k] = round(v, 4) if isinstance(v, float) else v
    return out


def _subset(fs: FrameSet, keep: list[int]) -> FrameSet:
    return FrameSet(fs.images[keep], tuple(fs.names[i] for i in keep), fs.source_indices[keep], fs.source, fs.fps,
                    fs.rotation, fs.scale, fs.counts, fs.notes)  # fmt: skip


def _train_with_interrupt(trainer: Trainer, work: Path, progress):
    """Run the trainer; the first Ctrl-C stops after the current step and saves a checkpoint."""
    stop = threading.Event()
    interrupted = {"n": 0}
    previous = None

    def handler(signum, frame):
        interrupted["n"] += 1
        if interrupted["n"] > 1:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous = signal.signal(signal.SIGINT, handler)

    def step_progress(info):
        progress(info)
        if info["step"] % 10 == 0 or info["step"] == 1:  # for scripts watching a long lift (Ctrl-C is handled now)
            _write_json_atomic(work / "progress.json", {"stage": "train", "step": info["step"], "steps": info["steps"],
                                                        "psnr": round(float(info["psnr"]), 3)})  # fmt: skip
        if stop.is_set():
            raise _Stop

    try:
        result = trainer.run(step_progress)
        trainer.save_checkpoint(work)  # the finished run can be evaluated again with --resume
        return result
    except (_Stop, KeyboardInterrupt):
        path = trainer.save_checkpoint(work)
        raise Interrupted(
            f"interrupted at step {trainer.step} of {trainer.o.steps}; checkpoint saved to {path}. "
            "Run the same command with --resume to continue.",
            path=path,
            step=trainer.step,
        ) from None
    finally:
        if in_main and previous is not None:
            signal.signal(signal.SIGINT, previous)


class _Stop(Exception):
    pass


def _write_json_atomic(path: Path, data: dict, **dumps) -> None:
    """``path`` as JSON, written to ``path.tmp`` and renamed: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, **dumps))
    tmp.replace(path)


def _side_by_side(trainer: Trainer, fs: FrameSet, indices, path: Path, rows: int = 4) -> None:
    """Held-out ground truth (left) and render (right), one row per frame (at most ``rows``)."""
    from PIL import Image

    pick = list(indices)[:: max(1, len(indices) // rows)][:rows]
    tiles = []
    for i in pick:
        gt = fs.images[int(i)]
        render = (trainer.render_image(int(i)) * 255).round().astype(np.uint8)
        gap = np.full((gt.shape[0], 4, 3), 255, np.uint8)
        tiles.append(np.concatenate([gt, gap, render], 1))
        tiles.append(np.full((4, tiles[-1].shape[1], 3), 255, np.uint8))
    Image.fromarray(np.concatenate(tiles[:-1], 0)).save(path)
