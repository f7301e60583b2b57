"""Typed errors shared by every package of the runtime.

They subclass the builtins they refine, so ``except ValueError`` still catches a
:class:`ShapeError`. Each names the argument or file and the value received.
"""

from __future__ import annotations

__all__ = [
    "HybridError",
    "ShapeError",
    "FormatError",
    "SceneError",
    "BackendError",
    "MissingDependencyError",
    "PhysicsError",
]


class HybridError(Exception):
    """Base class of every error the runtime raises on purpose."""


class ShapeError(HybridError, ValueError):
    """An array has the wrong shape, dtype or contains non-finite values."""


class FormatError(HybridError, ValueError):
    """A file is malformed, truncated or of an unsupported version."""


class SceneError(HybridError, ValueError):
    """A scene folder or manifest is invalid (unknown version, escaping path, ...)."""


class BackendError(HybridError, RuntimeError):
    """A requested backend (rasterizer, GL context, ...) is not available."""


class MissingDependencyError(HybridError, ImportError):
    """An optional package is needed for a feature and is not installed."""


class PhysicsError(HybridError, RuntimeError):
    """The physics simulation diverged or an intervention is invalid."""
