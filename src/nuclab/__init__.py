"""nuclab: distributed-systems experiments on small bare-metal K3s clusters."""

from __future__ import annotations

__version__ = "0.1.0"
