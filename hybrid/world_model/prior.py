"""The residual's shipped prior: a network trained on simulated interventions where the truth is known.

``prior.safetensors`` beside this module is made by ``tools/world_model_prior.py`` (seeded box
worlds under random lights, edited by our physics, the truth rendered by PyBullet's
TinyRenderer). Per-scene training starts from it (``TrainConfig.init = "prior"``) instead of
from random weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hybrid.world_model.residual import ResidualNet
from scenes.errors import FormatError, ShapeError

__all__ = ["PRIOR_PATH", "load_prior", "prior_metadata"]

log = logging.getLogger(__name__)

PRIOR_PATH = Path(__file__).with_name("prior.safetensors")


def load_prior(path: Path | str | None = None) -> ResidualNet | None:
    """The prior network, or None (with a warning) when its file is missing."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path) if path is not None else PRIOR_PATH
    if not path.exists():
        log.warning("no world-model prior at %s: training the residual from random weights "
                    "(make it with `python tools/world_model_prior.py`)", path)  # fmt: skip
        return None
    try:
        arrays = load_file(str(path))
        width = int(np.asarray(arrays.get("config.width", [16])).reshape(-1)[0])
        return ResidualNet.from_arrays(arrays, width)
    except (SafetensorError, OSError, KeyError, RuntimeError, ValueError, ShapeError) as exc:
        raise FormatError(f"{path}: not a world-model prior ({exc}); rebuild it with "
                          "`python tools/world_model_prior.py`") from exc  # fmt: skip


def prior_metadata(path: Path | str | None = None) -> dict[str, str]:
    """How the prior was made (corpus seeds, samples, steps, losses), from the file's header."""
    from safetensors import safe_open

    with safe_open(str(Path(path) if path is not None else PRIOR_PATH), framework="numpy") as f:
        return dict(f.metadata() or {})
