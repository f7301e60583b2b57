"""Is there a display for a window? Checked before anything heavy is imported or loaded."""

from __future__ import annotations

import os
import sys

from scenes.errors import BackendError

__all__ = ["NO_DISPLAY_HINT", "check_display"]

NO_DISPLAY_HINT = (
    "the viewer needs a display; render headless instead with `hybrid render SCENE -o out.mp4` "
    "(or run the viewer under a virtual display: `xvfb-run hybrid view SCENE`)"
)


def check_display() -> None:
    """Raise :class:`BackendError` (with the headless alternative) where no window can possibly open."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise BackendError(f"no display: neither DISPLAY nor WAYLAND_DISPLAY is set; {NO_DISPLAY_HINT}")
