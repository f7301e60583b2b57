"""Errors of the lifting pipeline."""

from __future__ import annotations

from scenes.errors import HybridError

__all__ = ["LiftError", "ReconstructionError", "Interrupted"]


class LiftError(HybridError, RuntimeError):
    """A lifting stage could not produce its result from this input."""


class ReconstructionError(LiftError):
    """Structure from motion failed or registered too few frames.

    ``registered`` and ``total`` count frames; ``reason`` is a short diagnosis
    (e.g. ``"no parallax"``) that the message explains.
    """

    def __init__(self, message: str, *, registered: int = 0, total: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.registered = registered
        self.total = total
        self.reason = reason


class Interrupted(LiftError):
    """Training was interrupted (Ctrl-C); a checkpoint was saved at ``path`` to resume from."""

    def __init__(self, message: str, path=None, step: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.step = step
