"""Optional imports: an actionable error when missing, and no banner on the user's terminal."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scenes import MissingDependencyError
from scenes._deps import available, require


def test_a_missing_package_says_how_to_install_it():
    with pytest.raises(MissingDependencyError, match="pip install"):
        require("no_such_package_hybrid", "testing")
    assert not available("no_such_package_hybrid")


def test_pybullet_loads_without_its_build_banner():
    """PyBullet prints "pybullet build time: ..." to stderr from C on import; our commands do not show it."""
    pytest.importorskip("pybullet")
    code = ("import sys; from scenes._deps import require; p = require('pybullet'); "
            "c = p.connect(p.DIRECT); p.disconnect(c); print('still here', file=sys.stderr)")  # fmt: skip
    ours = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ours.stderr == "still here\n"  # no banner, and stderr works again afterwards
    # (PyBullet 3.2.7 itself: `python -c "import pybullet"` writes "pybullet build time: <date>" to stderr)
