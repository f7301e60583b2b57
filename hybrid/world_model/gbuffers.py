"""The engine's G-buffers for one camera: what the residual network is conditioned on.

One ``render.rasterize`` call draws the relit colour with alpha, expected depth and the id of
the dominant splat per pixel; per-splat quantities (normal, visibility now and at capture,
whether it moved) are looked up through those ids. When something moved, a second call draws
the moved splats' coverage at rest: where it was and is no longer is *disoccluded*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hybrid.world_model.relight import Relighting, ShadeResult, dc_colors, with_extra
from physics.transforms import eval_sh, quat_angle_deg
from scenes.errors import ShapeError
from scenes.scene import Camera, Scene
from scenes.splats import Splats

__all__ = ["SplatState", "GBuffers", "render_gbuffers", "EDIT_SHADING_EPS"]

EDIT_SHADING_EPS = 0.02  # a pixel counts as edited where the shading changed by more than this
EDIT_VIS_EPS = 0.25  # ... and its visibility from the light changed by more than this (a shadow came or went)


@dataclass(frozen=True, eq=False)
class SplatState:
    """The scene's N splats as they are now (scene order), and which of them moved since capture."""

    means: np.ndarray  # [N, 3] current positions
    quats: np.ndarray  # [N, 4] current unit wxyz rotations
    scales: np.ndarray  # [N, 3] standard deviations
    opacities: np.ndarray  # [N] current opacities in [0, 1] (0 for removed objects)
    moved: np.ndarray  # [N] bool: the splat's object moved, was removed, or the splat is new
    view_colors: Callable[[np.ndarray], np.ndarray]  # campos [3] -> [N, 3] baked colour seen from there
    # spawned meshes as surface splats (colour = albedo): new, lit and shadowed like the rest
    extra: Splats | None = None

    @classmethod
    def rest(cls, scene: Scene) -> SplatState:
        """The scene as captured: nothing moved."""
        s = scene.splats
        sh = s.sh

        def colors(campos: np.ndarray) -> np.ndarray:
            if s.sh_degree == 0:
                return dc_colors(sh)
            dirs = s.means - np.asarray(campos, np.float32)[None]
            dirs /= np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-12)
            return np.maximum(eval_sh(sh, dirs), 0.0).astype(np.float32)

        return cls(s.means, s.unit_quats.astype(np.float32), s.scales.astype(np.float32),
                   s.opacities.astype(np.float32), np.zeros(len(s), bool), colors)  # fmt: skip

    @classmethod
    def of_world(cls, world, *, tolerance: float = 3e-3, angle_tolerance_deg: float = 0.5) -> SplatState:
        """The splats of a :class:`hybrid.world.World` now; an object moved once it left its rest pose.

        Left it by more than ``tolerance`` metres or ``angle_tolerance_deg``: a lifted collider is not
        exactly at rest, and an object that settles by a millimetre has not moved for the picture
        (flagged, it opened the residual's gate around an untouched object).
        """
        scene = world.scene
        means, quats, _, logits = world.splat_arrays()
        opac = (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)
        moved = np.zeros(len(means), bool)
        alive = world.poses()
        for obj, group in zip(scene.objects, world.rig.groups, strict=True):
            pose = alive.get(obj.name)
            if pose is None:  # removed
                moved[group] = True
                continue
            dp = np.linalg.norm(np.asarray(pose["position"]) - obj.position)
            turn = quat_angle_deg(pose["quaternion"], obj.quaternion)
            if dp > tolerance or turn > angle_tolerance_deg:
                moved[group] = True
        s = scene.splats
        if s.sh_degree > 0 and world.rig.sh_mode == "view_dir":
            colors = world.rig.colors
        else:
            sh, pos = world.rig.sh.copy(), means.copy()

            def colors(campos: np.ndarray) -> np.ndarray:
                if s.sh_degree == 0:
                    return dc_colors(sh)
                return np.maximum(eval_sh(sh, _unit(pos - np.asarray(campos, np.float32)[None])), 0.0).astype(
                    np.float32
                )

        norm = np.linalg.norm(quats, axis=1, keepdims=True)
        return cls(means.copy(), (quats / norm).astype(np.float32), s.scales.astype(np.float32), opac, moved, colors,
                   world.asset_splats())  # fmt: skip


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True, eq=False)
class GBuffers:
    """Per-pixel buffers of one camera, ``[H, W, C]`` float32 tensors, premultiplied (no background)."""

    relit: Tensor  # [H, W, 3] relit colour
    alpha: Tensor  # [H, W, 1] coverage
    depth: Tensor  # [H, W, 1] expected camera z (0 where nothing)
    normals: Tensor  # [H, W, 3] normal of the dominant splat, camera frame (OpenCV)
    vis_now: Tensor  # [H, W, 1] visibility from the light now
    vis_capture: Tensor  # [H, W, 1] visibility from the capture light at rest
    moved: Tensor  # [H, W, 1] 1 where the dominant splat belongs to something that moved
    disoccluded: Tensor  # [H, W, 1] coverage by moved splats at rest that is gone now
    edit: Tensor  # [H, W, 1] 1 where anything changed: moved, disoccluded, or shading changed
    baked: Tensor | None = None  # [H, W, 3] the engine-only colour (lighting baked in), when asked

    @property
    def size(self) -> tuple[int, int]:
        return int(self.alpha.shape[0]), int(self.alpha.shape[1])


def _t(a) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _same_light(a, b) -> bool:
    """Whether two lights light the scene alike (direction, colour, ambient)."""
    return all(np.allclose(np.asarray(getattr(a, k), np.float64), np.asarray(getattr(b, k), np.float64), atol=1e-6)
               for k in ("direction", "color", "ambient", "intensity"))  # fmt: skip


def render_gbuffers(
    relighting: Relighting,
    scene: Scene,
    state: SplatState,
    camera: Camera,
    shade: ShadeResult,
    *,
    baked: bool = False,  # also rasterize the baked (engine-only) colour
    backend: str | None = None,
    supersample: int | None = None,  # samples per pixel side; None: as the capture needs (render.supersample)
) -> GBuffers:
    """Rasterize the relit splats for ``camera`` and gather the per-pixel G-buffers.

    With ``supersample`` k > 1 the camera is drawn k times finer and every buffer box-filtered back
    to its pixels (``edit``: set where any sample is; depth alpha-weighted); ``None`` picks k from how
    much more coarsely the camera sees the splats than the capture did.
    """
    from render.rasterize import rasterize
    from render.supersample import resolve, resolve_max, supersampled

    n = len(state.means)
    if n != len(relighting.albedo):
        raise ShapeError(f"render_gbuffers: the state has {n} splats, the relighting {len(relighting.albedo)}")
    view = state.view_colors(camera.position)
    dc = dc_colors(scene.splats.sh)
    relit = relighting.colors(shade, view, dc, state.moved)
    extra = state.extra if state.extra is not None and len(state.extra) else None
    if extra is not None:  # spawned meshes: their colour is their albedo, shaded like the scene's splats
        if shade.extra_shading is None or len(shade.extra_shading) != len(extra):
            raise ShapeError("render_gbuffers: the state has spawned assets the lighting was not computed for; "
                             "shade the state with WorldModel.shade(state)")  # fmt: skip
        albedo = np.clip(extra.colors, 0.0, 1.0)
        relit = np.concatenate([relit, (albedo * shade.extra_shading).astype(np.float32)])
        view = np.concatenate([view, albedo.astype(np.float32)])
    ss, cam = supersampled(supersample, scene, camera, state.means)
    V, K = _t(cam.viewmat[None]), _t(cam.K[None])
    m, q, s, o = (_t(a) for a in with_extra(state.means, state.quats, state.scales, state.opacities, extra))
    w, h = cam.width, cam.height
    res = rasterize(m, q, s, o, _t(relit), V, K, w, h, render_mode="RGB+ED", backend=backend)
    alpha = res.alphas[0]
    depth = torch.where(alpha > 1e-4, res.depths[0], torch.zeros_like(res.depths[0]))
    ids = res.splat_ids[0]  # [H, W]
    valid = (ids >= 0).unsqueeze(-1).float()
    idx = ids.clamp_min(0)
    R = camera.viewmat[:3, :3]
    dS = np.abs(shade.shading - relighting.shading_capture).max(axis=1)
    per_splat = np.concatenate([
        shade.normals @ R.T,  # camera-frame normals
        shade.vis[:, None], relighting.vis_capture[:, None], state.moved[:, None].astype(np.float32),
        ((np.abs(shade.vis - relighting.vis_capture) > EDIT_VIS_EPS) & (dS > EDIT_SHADING_EPS))[:, None].astype(np.float32),
    ], axis=1)  # fmt: skip
    if extra is not None:  # new things: moved, lit as now (no capture shadow to compare with)
        k = len(extra)
        per_splat = np.concatenate([per_splat, np.concatenate([
            shade.extra_normals @ R.T, shade.extra_vis[:, None], shade.extra_vis[:, None], np.ones((k, 1)),
            np.zeros((k, 1))], axis=1).astype(np.float32)])  # fmt: skip
    feats = _t(per_splat)[idx] * valid  # [H, W, 7]
    moved_px = feats[..., 5:6]
    disocc = torch.zeros_like(alpha)
    if state.moved.any():
        rest = scene.splats
        flag = np.repeat(state.moved[:, None].astype(np.float32), 3, axis=1)
        cov = rasterize(_t(rest.means), _t(rest.unit_quats), _t(rest.scales), _t(rest.opacities), _t(flag), V, K, w, h,
                        backend=backend).colors[0][..., :1]  # fmt: skip
        disocc = (cov - moved_px * alpha).clamp(0.0, 1.0)
    edit = torch.maximum(moved_px, (disocc > 0.05).float())
    if _same_light(shade.light, relighting.light):
        # a shadow that came or went opens the gate only under the capture light: the residual learned to correct
        # shadows of moved things there. It never saw another light (one capture), so under a light edit the
        # explicit layer's shadows stand (on lifted scenes the gate there cost `full` 0.13-0.17 dB against `relight`)
        edit = torch.maximum(edit, feats[..., 6:7])
    baked_img = None
    if baked:
        baked_img = rasterize(m, q, s, o, _t(view), V, K, w, h, backend=backend).colors[0]
    if ss > 1:  # back to the camera's pixels; depth: alpha-weighted
        cover = resolve(alpha, ss)
        depth = torch.where(cover > 1e-4, resolve(depth * alpha, ss) / cover.clamp_min(1e-4), torch.zeros_like(cover))
        relit, feats, moved_px, disocc = (
            resolve(res.colors[0], ss),
            resolve(feats, ss),
            resolve(moved_px, ss),
            resolve(disocc, ss),
        )
        edit, alpha = resolve_max(edit, ss), cover
        baked_img = None if baked_img is None else resolve(baked_img, ss)
    else:
        relit = res.colors[0]
    return GBuffers(relit, alpha, depth, feats[..., 0:3], feats[..., 3:4], feats[..., 4:5], moved_px, disocc,
                    edit, baked_img)  # fmt: skip
