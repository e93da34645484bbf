"""Shared test helpers: where the repo and its tools are."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

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


def load_tool(name: str, folder: str = "tools") -> ModuleType:
    """<folder>/<name>.py, a tool of the checkout (not a module of the package), loaded by path."""
    found = importlib.util.spec_from_file_location(name, REPO / folder / f"{name}.py")
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def peer_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    """nuclab-peer built from src/agents (tools/build-agents.sh, the image's build too)."""
    out = tmp_path_factory.mktemp("agents")
    done = subprocess.run(
        ["bash", str(REPO / "tools" / "build-agents.sh"), "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"tools/build-agents.sh: {done.stderr[-2000:]}"
    return str(out / "nuclab-peer")
