"""Overlays drawn over the composited view: the selection outline and the collider wireframes.

Outline: two passes on the viewer's GL context. The collider (posed like the body) is rasterised
into a coverage mask the size of the viewport with the scene camera's projection; a fullscreen
pass then colours the pixels just outside the mask. It is drawn on top of everything (a selection
cue, not scene content), and only inside the silhouette's screen box.

Wireframes: the collider's feature edges (edges between faces that are not coplanar, so a
triangulated box shows its 12 edges) as GL lines over the view, at the window's resolution.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np

from render.gl.camera import gl_projection
from scenes._deps import require
from scenes.errors import BackendError

__all__ = ["OutlinePass", "WireframePass", "ImagePass", "feature_edges"]


@cache
def _source(name: str) -> str:
    return resources.files("hybrid.viewer").joinpath("shaders", name).read_text(encoding="utf-8")


def _program(ctx, vertex: str, fragment: str):
    try:
        return ctx.program(vertex_shader=_source(vertex), fragment_shader=_source(fragment))
    except Exception as exc:  # noqa: BLE001 - moderngl raises a bare Error with the driver log
        raise BackendError(f"viewer GL program {vertex} + {fragment} failed to build: {exc}") from exc


class OutlinePass:
    """Draws the outline of one posed mesh (the selected object's collider) into a framebuffer."""

    def __init__(self, ctx, color=(1.0, 0.78, 0.1, 1.0), radius: int = 3) -> None:
        self.ctx = ctx
        self.color = tuple(float(c) for c in color)  # RGBA
        self.radius = int(radius)  # pixels
        self._mask_prog = _program(ctx, "outline_mask.vert", "outline_mask.frag")
        self._rim_prog = _program(ctx, "fullscreen.vert", "outline.frag")
        self._rim_vao = ctx.vertex_array(self._rim_prog, [])
        self._mesh_key = None
        self._vbo = self._vao = None
        self._vertices = np.zeros((0, 3))
        self._mask = self._mask_fbo = None

    def _set_mesh(self, key, vertices: np.ndarray, faces: np.ndarray) -> None:
        if key == self._mesh_key:
            return
        for obj in (self._vao, self._vbo):
            if obj is not None:
                obj.release()
        tris = np.ascontiguousarray(np.asarray(vertices, np.float32)[np.asarray(faces).reshape(-1)])
        self._vbo = self.ctx.buffer(tris.tobytes())
        self._vao = self.ctx.vertex_array(self._mask_prog, [(self._vbo, "3f", "in_position")])
        self._vertices = np.asarray(vertices, np.float64)
        self._mesh_key = key

    def _ensure_mask(self, width: int, height: int) -> None:
        if self._mask is not None and self._mask.size == (width, height):
            return
        for obj in (self._mask_fbo, self._mask):
            if obj is not None:
                obj.release()
        self._mask = self.ctx.texture((width, height), 1, dtype="f1")
        self._mask_fbo = self.ctx.framebuffer([self._mask])

    def screen_box(self, model: np.ndarray, viewmat: np.ndarray, K: np.ndarray, width: int, height: int):
        """Pixel box ``(x0, y0, x1, y1)`` (row 0 at the top) of the mesh's vertices, or None when behind."""
        pts = self._vertices @ model[:3, :3].T + model[:3, 3]
        cam = pts @ viewmat[:3, :3].T + viewmat[:3, 3]
        front = cam[:, 2] > 1e-3
        if not front.any():
            return None
        if not front.all():  # crosses the camera plane: the whole view
            return (0, 0, width, height)
        uv = cam[:, :2] / cam[:, 2:3] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
        x0, y0 = np.floor(uv.min(0)).astype(int) - self.radius - 1
        x1, y1 = np.ceil(uv.max(0)).astype(int) + self.radius + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x0 >= x1 or y0 >= y1:
            return None
        return (int(x0), int(y0), int(x1), int(y1))

    def draw(
        self,
        framebuffer,
        viewport: tuple[int, int, int, int],  # (x, y, width, height) of the view in the framebuffer, GL origin
        key,  # identifies the mesh (re-uploaded when it changes)
        vertices: np.ndarray,  # [V, 3] in the object frame
        faces: np.ndarray,  # [F, 3]
        model: np.ndarray,  # [4, 4] object -> world
        viewmat: np.ndarray,  # [4, 4] world-to-camera, OpenCV
        K: np.ndarray,  # [3, 3] intrinsics for the viewport's size
        near: float = 0.01,
        far: float = 1000.0,
    ) -> None:
        moderngl = require("moderngl", "GL rendering")
        ctx = self.ctx
        vx, vy, w, h = viewport
        self._set_mesh(key, vertices, faces)
        box = self.screen_box(model, viewmat, K, w, h)
        if box is None:
            return
        self._ensure_mask(w, h)
        mvp = gl_projection(K, w, h, near, far) @ viewmat @ model
        self._mask_fbo.use()
        ctx.viewport = (0, 0, w, h)
        self._mask_fbo.clear(0.0, 0.0, 0.0, 0.0)
        ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE | moderngl.BLEND)
        self._mask_prog["u_mvp"].write(np.ascontiguousarray(mvp.T, np.float32).tobytes())
        self._vao.render(moderngl.TRIANGLES)

        framebuffer.use()
        ctx.viewport = viewport
        x0, y0, x1, y1 = box  # image rows from the top -> GL rows from the bottom
        ctx.scissor = (vx + x0, vy + h - y1, x1 - x0, y1 - y0)
        ctx.enable(moderngl.BLEND)
        ctx.blend_func = (moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA)
        self._mask.use(0)
        prog = self._rim_prog
        prog["u_mask"].value = 0
        prog["u_origin"].value = (vx, vy)
        prog["u_radius"].value = self.radius
        prog["u_color"].value = self.color
        try:
            self._rim_vao.render(moderngl.TRIANGLES, vertices=3)
        finally:
            ctx.scissor = None
            ctx.disable(moderngl.BLEND)
            ctx.enable(moderngl.DEPTH_TEST)

    def release(self) -> None:
        for obj in (self._vao, self._vbo, self._mask_fbo, self._mask, self._rim_vao, self._rim_prog, self._mask_prog):
            if obj is not None:
                obj.release()


def feature_edges(vertices: np.ndarray, faces: np.ndarray, angle_deg: float = 1.0) -> np.ndarray:  # [E, 2]
    """Edges of a triangle mesh that border one face only or two faces meeting at more than ``angle_deg``."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f) == 0:
        return np.zeros((0, 2), np.int64)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    owner = np.tile(np.arange(len(f)), 3)
    key = np.sort(edges, axis=1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, owner = key[order], owner[order]
    same = np.all(key[1:] == key[:-1], axis=1)
    keep = np.ones(len(key), bool)
    cos_limit = np.cos(np.radians(angle_deg))
    pairs = np.nonzero(same)[0]
    flat = np.einsum("ij,ij->i", n[owner[pairs]], n[owner[pairs + 1]]) > cos_limit
    keep[pairs[flat]] = False  # a shared edge between coplanar faces: neither copy is drawn
    keep[pairs[flat] + 1] = False
    keep[pairs[~flat] + 1] = False  # a shared crease: draw it once
    return key[keep]


class WireframePass:
    """Draws posed meshes as their feature edges, in one colour, over the bound framebuffer."""

    def __init__(self, ctx, color=(0.15, 1.0, 0.35, 0.9)) -> None:
        self.ctx = ctx
        self.color = tuple(float(c) for c in color)
        self._prog = _program(ctx, "outline_mask.vert", "wire.frag")
        self._meshes: dict = {}  # key -> (vbo, vao)

    def draw(self, framebuffer, viewport, items, viewmat: np.ndarray, K: np.ndarray,
             near: float = 0.01, far: float = 1000.0) -> None:  # fmt: skip
        """``items``: iterable of ``(key, vertices [V, 3], faces [F, 3], model [4, 4])``."""
        moderngl = require("moderngl", "GL rendering")
        ctx = self.ctx
        proj = gl_projection(K, viewport[2], viewport[3], near, far) @ viewmat
        framebuffer.use()
        ctx.viewport = viewport
        ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        ctx.enable(moderngl.BLEND)
        ctx.blend_func = (moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA)
        self._prog["u_color"].value = self.color
        try:
            for key, vertices, faces, model in items:
                vao = self._vao(key, vertices, faces)
                self._prog["u_mvp"].write(np.ascontiguousarray((proj @ model).T, np.float32).tobytes())
                vao.render(moderngl.LINES)
        finally:
            ctx.disable(moderngl.BLEND)
            ctx.enable(moderngl.DEPTH_TEST)

    def _vao(self, key, vertices, faces):
        got = self._meshes.get(key)
        if got is None:
            edges = feature_edges(vertices, faces)
            lines = np.ascontiguousarray(np.asarray(vertices, np.float32)[edges.reshape(-1)])
            vbo = self.ctx.buffer(lines.tobytes())
            got = (vbo, self.ctx.vertex_array(self._prog, [(vbo, "3f", "in_position")]))
            self._meshes[key] = got
        return got[1]

    def forget(self, key) -> None:
        got = self._meshes.pop(key, None)
        if got is not None:
            got[1].release()
            got[0].release()

    def release(self) -> None:
        for key in list(self._meshes):
            self.forget(key)
        self._prog.release()


class ImagePass:
    """Shows an RGB image (e.g. a world-model frame) over a viewport, linearly upscaled."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self._prog = _program(ctx, "fullscreen.vert", "image.frag")
        self._vao = ctx.vertex_array(self._prog, [])
        self._tex = None

    def draw(self, framebuffer, viewport, image: np.ndarray) -> None:  # image [H, W, 3] uint8, row 0 at the top
        moderngl = require("moderngl", "GL rendering")
        image = np.ascontiguousarray(image, np.uint8)
        h, w = image.shape[:2]
        if self._tex is None or self._tex.size != (w, h):
            if self._tex is not None:
                self._tex.release()
            self._tex = self.ctx.texture((w, h), 3, dtype="f1")
            self._tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self._tex.write(image[::-1].tobytes())  # GL rows go bottom up
        self.ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST)
        framebuffer.use()
        self.ctx.viewport = viewport
        self._tex.use(0)
        self._prog["u_image"].value = 0
        self._prog["u_origin"].value = (viewport[0], viewport[1])
        self._prog["u_size"].value = (float(viewport[2]), float(viewport[3]))
        self._vao.render(moderngl.TRIANGLES, vertices=3)
        self.ctx.enable(moderngl.DEPTH_TEST)

    def release(self) -> None:
        for obj in (self._vao, self._prog, self._tex):
            if obj is not None:
                obj.release()
