"""Lifting: a video, an image folder or a capture with known cameras -> a splat scene folder.

The front door is :func:`lift` (what ``hybrid lift`` runs) with options from
:func:`preset_options`; the stages live in ``decode``, ``overlays``, ``sfm``, ``align`` and
``train``. Names are imported on first use, so ``import hybrid.lift`` stays light.
"""

from __future__ import annotations

import importlib

__all__ = [
    "lift",
    "preset_options",
    "LiftOptions",
    "LiftReport",
    "PRESETS",
    "LiftError",
    "ReconstructionError",
    "Interrupted",
]

_WHERE = {
    "lift": "pipeline",
    "preset_options": "pipeline",
    "LiftOptions": "pipeline",
    "LiftReport": "pipeline",
    "PRESETS": "pipeline",
    "LiftError": "errors",
    "ReconstructionError": "errors",
    "Interrupted": "errors",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"hybrid.lift.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'hybrid.lift' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
