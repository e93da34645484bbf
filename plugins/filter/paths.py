"""Filter ``nuclab_cache_path``: a path inside nuclab's cache (``nuclab.paths.cache_dir``), so
that playbooks and Python agree on where ``make setup`` put things (``XDG_CACHE_HOME`` too)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from nuclab import paths
except ImportError:  # an Ansible outside the project's venv: use the repo's source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from nuclab import paths


def nuclab_cache_path(relative: Any) -> str:
    """``<cache>/<relative>``, the cache as the controller's environment sets it."""
    if not isinstance(relative, str) or Path(relative).is_absolute() or ".." in relative:
        raise AnsibleFilterError(
            f"nuclab_cache_path: expected a relative path inside the cache, got {relative!r}"
        )
    return str(paths.cache_dir() / relative)


class FilterModule:
    """Path filters."""

    def filters(self) -> dict[str, Any]:
        return {"nuclab_cache_path": nuclab_cache_path}
