"""One cache path: NUCLAB_CACHE, else XDG_CACHE_HOME/nuclab, else ~/.cache/nuclab, the same for
Python (nuclab.paths) and playbooks (filter nuclab_cache_path) as for the Makefile."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from nuclab import paths

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"NUCLAB_CACHE": "/c", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/c"),
        ({"XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/x/nuclab"),
        ({"NUCLAB_CACHE": "", "XDG_CACHE_HOME": "", "HOME": "/h"}, "/h/.cache/nuclab"),
    ],
)
def test_cache_dir_honours_nuclab_cache_then_xdg(environ: dict[str, str], expected: str) -> None:
    assert paths.cache_dir(environ) == Path(expected)
    assert paths.tools_bin(environ) == Path(expected) / "tools" / "bin"


@pytest.mark.parametrize("environ", [{"XDG_CACHE_HOME": "/x"}, {"NUCLAB_CACHE": "/c"}, {}])
def test_the_makefile_agrees(environ: dict[str, str]) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": "/h", **environ}
    out = subprocess.run(
        ["make", "-s", "-C", str(REPO), "--eval", "show:\n\t@echo $(NUCLAB_CACHE)", "show"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(out) == paths.cache_dir(env)


def _filter():
    found = importlib.util.spec_from_file_location("p", REPO / "plugins/filter/paths.py")
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module.FilterModule().filters()["nuclab_cache_path"]


def test_the_filter_is_the_same_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUCLAB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    assert _filter()("tools/bin/helm") == "/x/nuclab/tools/bin/helm"


@pytest.mark.parametrize("bad", ["/etc", "../x", 5, None])
def test_the_filter_keeps_inside_the_cache(bad: object) -> None:
    with pytest.raises(AnsibleFilterError, match="nuclab_cache_path"):
        _filter()(bad)
