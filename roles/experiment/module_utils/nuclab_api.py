# Copyright: nuclab contributors
# Apache License 2.0
"""What the role's modules share: nuclab's API client (nuclab.kube, nuclab.deploy), imported
from the installed package or from the source tree the role passes as ``src``."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any


def nuclab_modules(module: Any) -> tuple[ModuleType, ModuleType]:
    """``(nuclab.deploy, nuclab.kube)``; fails the module when neither source has them."""
    try:
        from nuclab import deploy, kube
    except ImportError:
        src = module.params.get("src")
        if not src:
            module.fail_json(msg="the nuclab package is not importable and src is not set")
        sys.path.insert(0, src)
        from nuclab import deploy, kube
    return deploy, kube
