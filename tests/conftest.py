"""Shared test helpers: where the repo and its tools are."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nuclab import paths

REPO = Path(__file__).resolve().parents[1]
TOOLS_BIN = paths.tools_bin()


def tool(name: str) -> str:
    """Path of a tool `make setup` builds (or of one on PATH); a clear failure when missing."""
    candidate = TOOLS_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} not found in {TOOLS_BIN} or on PATH: run `make setup`")
    raise AssertionError  # unreachable: pytest.fail raises


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
