"""Where nuclab keeps what ``make setup`` builds and downloads: the one cache path.

``$NUCLAB_CACHE`` if set, else ``$XDG_CACHE_HOME/nuclab``, else ``~/.cache/nuclab`` (the
Makefile's rule). Python code calls ``cache_dir``; playbooks the filter ``nuclab_cache_path``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(environ: dict[str, str] | None = None) -> Path:
    """The cache folder, from ``environ`` (default: this process's environment)."""
    env = os.environ if environ is None else environ
    if env.get("NUCLAB_CACHE"):
        return Path(env["NUCLAB_CACHE"])
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "nuclab"


def tools_bin(environ: dict[str, str] | None = None) -> Path:
    """The Go tools ``make setup`` builds (helm, kwok, kube-*)."""
    return cache_dir(environ) / "tools" / "bin"
