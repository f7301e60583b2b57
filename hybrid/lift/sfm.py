"""Camera recovery with pycolmap: SIFT, sequential (or exhaustive) matching with loop closure,
incremental mapping with one shared camera whose focal length is estimated.

Failures stop with a :class:`~hybrid.lift.errors.ReconstructionError` that says how many
frames registered, why (no parallax, too little texture, ...) and what to supply instead.
A static camera is caught before mapping (mapping a static shot is slow and meaningless):
when a large share of the matches between frames far apart in time do not move, the
camera did not move either. For known cameras :func:`triangulate_known` only triangulates
points (the initialisation of the splats) and never changes the cameras.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybrid.lift.errors import ReconstructionError
from scenes._deps import require
from scenes.scene import Camera

__all__ = ["SfmOptions", "SfmResult", "run_sfm", "triangulate_known", "parallax_check", "write_frames"]

log = logging.getLogger(__name__)

CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")  # pinhole only: the rasterizer has no lens distortion


@dataclass(frozen=True)
class SfmOptions:
    """Settings of the reconstruction."""

    camera_model: str = "SIMPLE_PINHOLE"  # COLMAP model of the shared camera (SIMPLE_PINHOLE or PINHOLE)
    max_features: int = 4096  # SIFT features per frame
    overlap: int = 10  # each frame is matched with this many following frames
    exhaustive_below: int = 40  # up to this many frames every pair is matched (unordered photos)
    loop_closure: int = 3  # extra pairs per frame between look-alike frames far apart in time (0: off)
    min_registered: float = 0.6  # fail when fewer than this share of the frames register
    static_share: float = 0.15  # fail as "no parallax" when this median share of matches does not move
    max_runtime: float = 600.0  # seconds for incremental mapping before it stops with what it has
    num_threads: int = -1  # -1: all cores; used only when not ``deterministic``
    seed: int = 0  # COLMAP's random seed (RANSAC), for repeatable runs
    # one thread throughout: multi-threaded COLMAP (extraction, matching and mapping each) gives a different
    # reconstruction on every run even with the same seed (sample video: camera paths up to 1.8 m apart in the SfM
    # frame, and the lifted splats and object outlines with them); on one thread it repeats bit for bit, ~3 s
    # slower on the sample's 60 frames (17-20 s against 14-17 s on 2 cores)
    deterministic: bool = True

    @property
    def threads(self) -> int:
        """COLMAP's ``num_threads``: 1 when deterministic, else ``num_threads``."""
        return 1 if self.deterministic else self.num_threads


@dataclass(frozen=True, eq=False)
class SfmResult:
    """Cameras and sparse points; ``cameras[i]`` is None for a frame that did not register."""

    cameras: tuple[Camera | None, ...]  # [T] one per input frame, in input order
    points: np.ndarray  # [P, 3] triangulated points (SfM frame)
    colors: np.ndarray  # [P, 3] their colours in [0, 1]
    stats: dict = field(default_factory=dict)  # registered, points, reprojection error, focal, timings

    @property
    def registered(self) -> np.ndarray:
        """[T] bool: which frames have a camera."""
        return np.array([c is not None for c in self.cameras])


# --------------------------------------------------------------------------------------- helpers
def write_frames(images: np.ndarray, names: list[str], folder: Path, mask: np.ndarray | None = None) -> Path | None:
    """Write frames as PNG into ``folder`` (and the overlay mask as COLMAP's camera mask); returns the mask path."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for img, name in zip(images, names):
        target = folder / name
        if not target.exists():
            Image.fromarray(img).save(target, compress_level=1)
    if mask is None or not mask.any():
        return None
    path = folder.parent / "overlay_mask.png"
    Image.fromarray(np.where(mask, 0, 255).astype(np.uint8)).save(path)  # COLMAP: black pixels are ignored
    return path


class _quiet_colmap:
    """Keep COLMAP's INFO/WARNING log lines (thousands per run) off the terminal unless debugging."""

    def __enter__(self):
        pycolmap = require("pycolmap", "camera recovery")
        self.previous = pycolmap.logging.minloglevel
        if not log.isEnabledFor(logging.DEBUG):
            pycolmap.logging.minloglevel = 2  # ERROR and FATAL only
        return self

    def __exit__(self, *exc):
        import pycolmap

        pycolmap.logging.minloglevel = self.previous
        return False


def _device(pycolmap):
    return pycolmap.Device.cuda if pycolmap.has_cuda else pycolmap.Device.cpu


def _extract(
    pycolmap,
    db: Path,
    image_dir: Path,
    names: list[str],
    opts: SfmOptions,
    mask_path: Path | None,
    camera_model: str,
    single: bool = True,
) -> None:
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    if mask_path is not None:
        reader.camera_mask_path = str(mask_path)
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = opts.threads
    extraction.sift.max_num_features = opts.max_features
    pycolmap.extract_features(
        db,
        image_dir,
        names,
        camera_mode=pycolmap.CameraMode.SINGLE if single else pycolmap.CameraMode.PER_IMAGE,
        reader_options=reader,
        extraction_options=extraction,
        device=_device(pycolmap),
    )


def _thumbs(images: np.ndarray) -> np.ndarray:
    """[T, D] zero-mean unit-norm colour thumbnails (about 32 px wide) for look-alike search."""
    T, H, W = images.shape[:3]
    step = max(1, W // 32)
    h, w = (H // step) * step, (W // step) * step
    t = images[:, :h, :w].astype(np.float32).reshape(T, h // step, step, w // step, step, 3).mean(axis=(2, 4))
    t = t.reshape(T, -1)
    t -= t.mean(axis=1, keepdims=True)
    return t / (np.linalg.norm(t, axis=1, keepdims=True) + 1e-6)


def loop_pairs(images: np.ndarray, names: list[str], overlap: int, per_frame: int) -> list[tuple[str, str]]:
    """Pairs of look-alike frames further apart in time than ``overlap`` (orbits come back to the start)."""
    T = len(images)
    if per_frame <= 0 or T <= overlap + 1:
        return []
    th = _thumbs(images)
    sim = th @ th.T
    pairs = set()
    for i in range(T):
        far = np.array([j for j in range(T) if abs(i - j) > overlap])
        if far.size == 0:
            continue
        best = far[np.argsort(-sim[i, far])[:per_frame]]
        for j in best:
            if sim[i, j] > 0.3:
                pairs.add((min(i, int(j)), max(i, int(j))))
    return [(names[i], names[j]) for i, j in sorted(pairs)]


def _match(pycolmap, db: Path, work: Path, images: np.ndarray, names: list[str], opts: SfmOptions) -> str:
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = opts.threads
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = opts.seed  # -1 (COLMAP's default) seeds every pair's RANSAC from the clock
    if len(names) <= opts.exhaustive_below:
        pycolmap.match_exhaustive(
            db, matching_options=matching, verification_options=verification, device=_device(pycolmap)
        )
        return "exhaustive"
    pairing = pycolmap.SequentialPairingOptions()
    pairing.overlap = opts.overlap
    pairing.quadratic_overlap = True
    pycolmap.match_sequential(
        db,
        matching_options=matching,
        pairing_options=pairing,
        verification_options=verification,
        device=_device(pycolmap),
    )
    pairs = loop_pairs(images, names, opts.overlap, opts.loop_closure)
    if pairs:
        path = work / "loop_pairs.txt"
        path.write_text("".join(f"{a} {b}\n" for a, b in pairs))
        imported = pycolmap.ImportedPairingOptions()
        imported.match_list_path = str(path)
        pycolmap.match_image_pairs(
            db,
            matching_options=matching,
            pairing_options=imported,
            verification_options=verification,
            device=_device(pycolmap),
        )
    return f"sequential (overlap {opts.overlap}) + {len(pairs)} loop-closure pairs"


def parallax_check(db_path: Path, min_gap: int = 4) -> dict:
    """Share of raw matches that do not move (< 1.5 px) between frames at least ``min_gap`` apart.

    Returns ``{"pairs": n, "static_share": median share, "median_flow": px}``; a static camera
    (with or without moving things in view) has a large static share.
    """
    pycolmap = require("pycolmap", "camera recovery")
    db = pycolmap.Database.open(str(db_path))
    try:
        order = {im.image_id: k for k, im in enumerate(sorted(db.read_all_images(), key=lambda im: im.name))}
        ids, matches = db.read_all_matches()
        shares, flows, cache = [], [], {}

        def kp(i):
            if i not in cache:
                cache[i] = db.read_keypoints(i)[:, :2]
            return cache[i]

        for pid, m in zip(ids, matches):
            i, j = pycolmap.pair_id_to_image_pair(pid)
            if abs(order[i] - order[j]) < min_gap or len(m) < 20:
                continue
            d = np.linalg.norm(kp(i)[m[:, 0]] - kp(j)[m[:, 1]], axis=1)
            shares.append(float((d < 1.5).mean()))
            flows.append(float(np.median(d)))
    finally:
        db.close()
    if not shares:
        return {"pairs": 0, "static_share": float("nan"), "median_flow": float("nan")}
    return {"pairs": len(shares), "static_share": float(np.median(shares)), "median_flow": float(np.median(flows))}


def _map(pycolmap, db: Path, image_dir: Path, out: Path, opts: SfmOptions, relaxed: bool):
    """Incremental mapping with one shared camera; the largest model, or None."""
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = opts.threads
    options.random_seed = opts.seed
    options.max_runtime_seconds = int(opts.max_runtime)
    options.multiple_models = False
    options.ba_refine_principal_point = False
    if relaxed:
        options.mapper.abs_pose_min_num_inliers = 15
        options.mapper.abs_pose_min_inlier_ratio = 0.15
        options.mapper.max_reg_trials = 5
    out.mkdir(parents=True, exist_ok=True)
    recs = pycolmap.incremental_mapping(db, image_dir, out, options=options)
    if not recs:
        return None
    return max(recs.values(), key=lambda r: r.num_reg_images())


def _camera_from_colmap(image, camera) -> Camera:
    V = np.eye(4)
    V[:3, :4] = image.cam_from_world().matrix()
    fx, fy, cx, cy = camera.focal_length_x, camera.focal_length_y, camera.principal_point_x, camera.principal_point_y
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    return Camera(K, V, camera.width, camera.height, image.name)


def _points(rec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pts = list(rec.points3D.values())
    if not pts:
        return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)
    xyz = np.array([p.xyz for p in pts], np.float64)
    rgb = np.array([p.color for p in pts], np.float64) / 255.0
    err = np.array([p.error for p in pts], np.float64)
    return xyz, rgb, err


# --------------------------------------------------------------------------------------- SfM
def run_sfm(
    images: np.ndarray,  # [T, H, W, 3] uint8 frames in time order
    names: list[str],  # [T] unique file names
    work: Path,  # scratch folder (images, database)
    opts: SfmOptions | None = None,
    mask: np.ndarray | None = None,  # [H, W] bool, True where features must not be taken (overlays)
) -> SfmResult:
    """Recover one shared pinhole camera and a pose per frame; see the module docstring for failures."""
    with _quiet_colmap():
        return _run_sfm(images, names, work, opts, mask)


def _run_sfm(images, names, work, opts, mask) -> SfmResult:
    pycolmap = require("pycolmap", "camera recovery")
    opts = opts or SfmOptions()
    if opts.camera_model not in CAMERA_MODELS:
        raise ValueError(f"camera_model: must be one of {', '.join(CAMERA_MODELS)}; got {opts.camera_model!r}")
    T = len(names)
    if T < 3:
        raise ReconstructionError(
            f"only {T} frame(s) to reconstruct from; structure from motion needs at least 3 views of the scene "
            "(give a longer video, or a transforms.json with known cameras)",
            registered=0,
            total=T,
            reason="too few frames",
        )
    work, image_dir, mask_path, db = _prepare_workspace(pycolmap, images, names, work, mask, opts.seed)
    stats: dict = {"frames": T}
    if T > opts.exhaustive_below:
        _quick_static_check(pycolmap, images, names, work, opts, mask_path, stats)
    t0 = time.perf_counter()
    _extract(pycolmap, db, image_dir, names, opts, mask_path, opts.camera_model)
    stats["extract_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats["matching"] = _match(pycolmap, db, work, images, names, opts)
    stats["match_s"] = time.perf_counter() - t0

    if T > opts.exhaustive_below:  # a video: is the camera moving at all?
        px = parallax_check(db)
        stats["parallax"] = px
        if px["pairs"] and px["static_share"] > opts.static_share:
            _raise_static(T, px["static_share"])
        if px["pairs"] == 0:
            _raise_unmatched(T, db)

    t0 = time.perf_counter()
    rec = _map(pycolmap, db, image_dir, work / "sparse", opts, relaxed=False)
    if rec is None or rec.num_reg_images() < T:
        # Second try with a lower bar for registering a frame (COLMAP's default wants 30 inliers).
        first = 0 if rec is None else rec.num_reg_images()
        retry = _map(pycolmap, db, image_dir, work / "sparse_relaxed", opts, relaxed=True)
        if retry is not None and retry.num_reg_images() > first:
            rec = retry
            stats["relaxed_registration"] = f"{first} -> {retry.num_reg_images()} frames"
    stats["map_s"] = time.perf_counter() - t0
    if rec is None:
        _raise_unmatched(T, db, mapped=True)
    by_name = {im.name: im for im in rec.images.values() if im.has_pose}
    cameras = tuple(
        _camera_from_colmap(by_name[n], rec.cameras[by_name[n].camera_id]) if n in by_name else None for n in names
    )
    n_reg = sum(c is not None for c in cameras)
    xyz, rgb, err = _points(rec)
    stats.update(
        registered=n_reg,
        points=len(xyz),
        reprojection_error=float(rec.compute_mean_reprojection_error()) if len(xyz) else float("nan"),
        focal=[float(c.K[0, 0]) for c in cameras if c is not None][:1],
    )
    if n_reg < max(3, opts.min_registered * T):
        missing = [n for n, c in zip(names, cameras) if c is None]
        why = _why_few(cameras, xyz)
        raise ReconstructionError(
            f"only {n_reg} of {T} frames registered ({why}); unregistered: {_short(missing)}. "
            "Give a video whose camera moves steadily around a textured, static scene, more frames "
            "(--max-frames), or known cameras (a transforms.json or a COLMAP model).",
            registered=n_reg,
            total=T,
            reason=why,
        )
    centres = np.array([c.position for c in cameras if c is not None])
    depth = np.median(np.linalg.norm(xyz - np.median(centres, 0), axis=1)) if len(xyz) else 0.0
    spread = float(np.linalg.norm(centres.max(0) - centres.min(0)))
    stats["baseline_over_depth"] = float(spread / depth) if depth > 0 else float("nan")
    if depth > 0 and spread / depth < 0.02:
        raise ReconstructionError(
            f"{n_reg} of {T} frames registered but the camera centres span only {spread / depth:.1%} of the "
            "scene depth: the camera barely moves (no parallax; a pure rotation or a static shot). "
            "Give a video whose camera moves around the scene, or known cameras.",
            registered=n_reg,
            total=T,
            reason="no parallax",
        )
    keep = err < 4.0
    return SfmResult(cameras, xyz[keep], rgb[keep], stats)


def _raise_static(T: int, share: float) -> None:
    raise ReconstructionError(
        f"0 of {T} frames registered: the camera barely moves (no parallax): {share:.0%} of the feature "
        "matches between frames far apart stay at the same pixels. Lifting needs a camera that moves around "
        "the scene (an orbit or a walk past it); give such a video, or images with known cameras "
        "(a transforms.json or a COLMAP model).",
        registered=0,
        total=T,
        reason="no parallax",
    )


def _quick_static_check(pycolmap, images, names, work: Path, opts: SfmOptions, mask_path, stats: dict) -> None:
    """Fail fast on a static camera: if many image edges never move, match 12 frames spread over the video."""
    from hybrid.lift.overlays import static_share

    share = static_share(images)
    stats["static_edge_share"] = share
    if share < 0.08:
        return
    pick = np.linspace(0, len(names) - 1, 12).round().astype(int)
    db = work / "precheck.db"
    for suffix in ("", "-shm", "-wal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    sub = [names[i] for i in pick]
    _extract(pycolmap, db, work / "images", sub, opts, mask_path, opts.camera_model)
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = opts.threads
    pycolmap.match_exhaustive(db, matching_options=matching, device=_device(pycolmap))
    px = parallax_check(db, min_gap=2)
    stats["precheck"] = px
    if px["pairs"] and px["static_share"] > opts.static_share:
        _raise_static(len(names), px["static_share"])


def _short(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "") if items else "none"


def _why_few(cameras, xyz) -> str:
    reg = [i for i, c in enumerate(cameras) if c is not None]
    if len(xyz) < 50:
        return "too few points could be triangulated: too little texture or parallax"
    gaps = np.diff(reg) if len(reg) > 1 else np.array([])
    if gaps.size and gaps.max() > 5:
        return "the frames split into parts that share too few features (fast motion, blur or a cut)"
    return "the other frames share too few features with the reconstructed ones"


def _raise_unmatched(T: int, db: Path, mapped: bool = False) -> None:
    pycolmap = require("pycolmap", "camera recovery")
    d = pycolmap.Database.open(str(db))
    try:
        kps = [d.num_keypoints_for_image(im.image_id) for im in d.read_all_images()]
        verified = d.num_verified_image_pairs()
    finally:
        d.close()
    median_kp = int(np.median(kps)) if kps else 0
    if median_kp < 100:
        why = f"too little texture: a median of {median_kp} SIFT features per frame"
    elif verified == 0:
        why = "no two frames share enough features to estimate their geometry"
    else:
        why = "no pair of frames with enough parallax to start the reconstruction" if mapped else "too few matches"
    raise ReconstructionError(
        f"0 of {T} frames registered ({why}). Give a video whose camera moves around a textured static scene, "
        "or known cameras (a transforms.json or a COLMAP model).",
        registered=0,
        total=T,
        reason=why,
    )


# --------------------------------------------------------------------------------------- known cameras
def triangulate_known(
    images: np.ndarray,  # [T, H, W, 3] uint8
    names: list[str],  # [T]
    cameras: list[Camera],  # [T] known cameras (sizes must match the images)
    work: Path,
    opts: SfmOptions | None = None,
    mask: np.ndarray | None = None,  # [H, W] bool
) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate SIFT matches with fixed, known cameras: ``(points [P, 3], colours [P, 3])``.

    The cameras are not changed. Returns empty arrays when nothing could be triangulated.
    """
    with _quiet_colmap():
        return _triangulate_known(images, names, cameras, work, opts, mask)


def _prepare_workspace(pycolmap, images, names, work, mask, seed: int):
    """Write the frames (and mask) for COLMAP into ``work``, start a fresh database, seed COLMAP."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    image_dir = work / "images"
    mask_path = write_frames(images, names, image_dir, mask)
    db = work / "database.db"
    for suffix in ("", "-shm", "-wal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    pycolmap.set_random_seed(seed)
    return work, image_dir, mask_path, db


def _triangulate_known(images, names, cameras, work, opts, mask) -> tuple[np.ndarray, np.ndarray]:
    pycolmap = require("pycolmap", "camera recovery")
    opts = opts or SfmOptions()
    work, image_dir, mask_path, db = _prepare_workspace(pycolmap, images, names, work, mask, opts.seed)
    _extract(pycolmap, db, image_dir, names, opts, mask_path, "PINHOLE", single=False)
    _match(pycolmap, db, work, images, names, opts)
    rec = pycolmap.Reconstruction()
    d = pycolmap.Database.open(str(db))
    try:
        by_name = {im.name: im for im in d.read_all_images()}
        for name, cam in zip(names, cameras):
            im = by_name[name]
            dbcam = d.read_camera(im.camera_id)
            dbcam.params = [cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2]]
            d.update_camera(dbcam)
            rec.add_camera_with_trivial_rig(dbcam)
            image = pycolmap.Image(name=name, camera_id=im.camera_id, image_id=im.image_id)
            pose = pycolmap.Rigid3d(np.asarray(cam.viewmat[:3, :4], np.float64))
            rec.add_image_with_trivial_frame(image, pose)
    finally:
        d.close()
    out = work / "triangulated"
    out.mkdir(exist_ok=True)
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = opts.threads
    options.random_seed = opts.seed
    rec = pycolmap.triangulate_points(rec, db, image_dir, out, options=options)
    xyz, rgb, err = _points(rec)
    keep = err < 4.0
    return xyz[keep], rgb[keep]
