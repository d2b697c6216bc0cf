"""tox plugin of this repository: find the Python the conformance environment needs when PATH alone does not.

The real ttnn wheel exists for CPython 3.12 and 3.10 only. pyenv installs every version side by side but its
``python3.12`` shim runs only when that version is activated, so on a machine whose active Python is 3.11 tox
would find no usable ``python3.12``. Before tox looks for interpreters, this plugin links an installed one
(from ``$PYENV_ROOT`` or ``~/.pyenv``) into ``.tox/interpreters`` and puts that directory first on PATH. It
changes nothing when ``python3.12`` or ``python3.10`` already runs, and only those names are linked. With
neither, tox fails the conformance environment, saying which interpreter it could not find (``tox.ini``
does not skip missing interpreters: a skipped environment is not a pass).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from tox.plugin import impl

#: The interpreters of the conformance environment, in tox.ini's order of preference.
CONFORMANCE_PYTHONS = ("python3.12", "python3.10")


def _runs(executable: str) -> bool:
    try:
        return subprocess.run([executable, "-c", "pass"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parents[1].name))


def installed_interpreter(name: str, roots: list[Path]) -> Path | None:
    """The newest pyenv-installed ``name`` (``python3.12``) under ``roots`` that runs, if any."""
    version = name.removeprefix("python")
    for root in roots:
        candidates = sorted((root / "versions").glob(f"{version}.*/bin/{name}"), key=_version_key, reverse=True)
        for candidate in candidates:
            if re.fullmatch(rf"{re.escape(version)}\.\d+", candidate.parents[1].name) and _runs(str(candidate)):
                return candidate
    return None


def _pyenv_roots() -> list[Path]:
    roots = [Path(os.environ["PYENV_ROOT"])] if os.environ.get("PYENV_ROOT") else []
    return roots + [Path.home() / ".pyenv"]


def link_conformance_python(link_dir: Path) -> Path | None:
    """Make a conformance interpreter resolvable on PATH; returns the linked interpreter (None: nothing to do
    or nothing found)."""
    if any(_runs(name) for name in CONFORMANCE_PYTHONS):
        return None
    for name in CONFORMANCE_PYTHONS:
        found = installed_interpreter(name, _pyenv_roots())
        if found is None:
            continue
        link_dir.mkdir(parents=True, exist_ok=True)
        link = link_dir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(found)
        os.environ["PATH"] = f"{link_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return found
    return None


@impl
def tox_add_core_config(core_conf: Any, state: Any) -> None:
    link_conformance_python(Path(core_conf["tox_root"]) / ".tox" / "interpreters")
