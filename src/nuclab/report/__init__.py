"""Reports of exported datasets: one self-contained HTML page with PNG figures."""

from __future__ import annotations
