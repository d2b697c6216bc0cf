"""Loading the real ``ttnn`` wheel for host-side cross-checks (no Tenstorrent hardware needed).

The wheel's host conversions run when ``TT_METAL_MOCK_CLUSTER_DESC_PATH`` names a cluster descriptor;
when it is unset, the project writes its own single-chip N150 descriptor (:mod:`.mock_cluster`) and
points the variable at it. Importing ttnn can abort the process on a broken setup, so the import is first tried in a
subprocess and a failure becomes a reason to skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from .mock_cluster import write_mock_cluster_descriptor

MOCK_ENV = "TT_METAL_MOCK_CLUSTER_DESC_PATH"
REAL_TTNN_VERSION = "0.81.1"

_PROBE = "import torch, ttnn; ttnn.to_torch(ttnn.from_torch(torch.ones(32, 32), dtype=ttnn.bfloat8_b, layout=ttnn.TILE_LAYOUT))"


class RealTtnnUnavailable(RuntimeError):
    """The real wheel cannot be used here; the message says why."""


def _configure_environment() -> None:
    if os.environ.get(MOCK_ENV):
        if not Path(os.environ[MOCK_ENV]).is_file():
            raise RealTtnnUnavailable(f"${MOCK_ENV}={os.environ[MOCK_ENV]} is not a file")
        return
    os.environ[MOCK_ENV] = str(write_mock_cluster_descriptor())


@lru_cache(maxsize=1)
def load_real_ttnn() -> ModuleType:
    """The real ``ttnn`` module, ready for host conversions; raises :class:`RealTtnnUnavailable`."""
    try:
        import importlib.util

        if importlib.util.find_spec("ttnn") is None:
            raise RealTtnnUnavailable(f"the ttnn wheel is not installed for Python {sys.version.split()[0]} "
                                      f"(it exists for cp310/cp312: run `tox -e conformance`)")
    except ValueError as exc:  # pragma: no cover - broken installs
        raise RealTtnnUnavailable(f"ttnn import spec: {exc}") from exc
    _configure_environment()
    probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        tail = (probe.stderr or probe.stdout).strip().splitlines()[-3:]
        raise RealTtnnUnavailable(f"real ttnn fails its host-conversion probe (rc {probe.returncode}): {' | '.join(tail)}")
    import ttnn

    version = _installed_version()
    if version and version != REAL_TTNN_VERSION:
        raise RealTtnnUnavailable(f"ttnn {version} is installed; the conformance suite targets {REAL_TTNN_VERSION}")
    return ttnn


def _installed_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("ttnn")
    except Exception:
        return None
