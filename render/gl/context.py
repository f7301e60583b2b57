"""Creating ModernGL contexts (headless EGL or a window's) and checking their error state."""

from __future__ import annotations

import os

from scenes._deps import require
from scenes.errors import BackendError

__all__ = ["create_context", "check_gl_error", "MIN_GL_VERSION"]

MIN_GL_VERSION = 330  # instancing, transform feedback and texelFetch are all core in 3.3

_BACKENDS = ("egl", "window")


def create_context(backend: str = "egl", *, require_version: int = MIN_GL_VERSION):
    """A ModernGL context: ``"egl"`` a standalone headless one, ``"window"`` the current window's.

    ``"egl"`` needs libEGL and a driver (Mesa llvmpipe on a CPU machine, the NVIDIA driver on a
    GPU); ``"window"`` attaches to the GL context a GLFW window has made current. A context that
    cannot be created, or is older than ``require_version`` (e.g. 330 for GL 3.3), raises
    :class:`BackendError`. Set ``HYBRID_EGL_DEVICE`` to pick an EGL device index.
    """
    if backend not in _BACKENDS:
        raise BackendError(f"create_context: backend must be one of {_BACKENDS}, got {backend!r}")
    moderngl = require("moderngl", "GL rendering")
    try:
        if backend == "egl":
            kwargs = {}
            device = os.environ.get("HYBRID_EGL_DEVICE")
            if device is not None:
                kwargs["device_index"] = int(device)
            ctx = moderngl.create_standalone_context(require=require_version, backend="egl", **kwargs)
        else:
            ctx = moderngl.create_context(require=require_version)
    except Exception as exc:  # noqa: BLE001 - glcontext raises bare Exception for every failure
        if backend == "egl":
            hint = (
                "a headless EGL context needs libEGL and a GL driver: on Debian/Ubuntu "
                "`apt-get install libegl1 libgl1-mesa-dri` (Mesa llvmpipe works without a GPU)"
            )
        else:
            hint = "no current GL window; create one first (GLFW) or render headless with `hybrid render`"
        raise BackendError(
            f"could not create a GL {require_version // 100}.{require_version % 100 // 10} "
            f"context with backend {backend!r} ({exc}); {hint}"
        ) from exc
    return ctx


def check_gl_error(ctx, where: str) -> None:
    """Raise :class:`BackendError` naming ``where`` when ``ctx`` has a pending GL error."""
    err = ctx.error
    if err != "GL_NO_ERROR":
        raise BackendError(f"GL error {err} after {where}")
