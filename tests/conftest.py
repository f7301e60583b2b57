"""Shared fixtures: the third-party data beside the checkout, seeds, GPU detection."""

from __future__ import annotations

import os
from pathlib import Path

# OpenMP threads that busy-wait starve the next operation on a shared 2-core machine (measured
# 5x slower training); must be set before torch or numba start their thread pools.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HYBRID_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (third-party files); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"third-party data not found at {SHARED_DATA} (set HYBRID_SHARED_DATA)")
    return SHARED_DATA


def has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not has_cuda(), reason="needs a CUDA GPU (gsplat)")
