"""charts/experiment/README.md is what helm-docs (built by `make setup-tests`) writes from the
chart's Chart.yaml, values.yaml and README.md.gotmpl: a value, a comment or a version changed
without `make generate` fails here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "charts" / "experiment" / "README.md"


def chart_docs(*args: str, repo: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(repo / "tools" / "chart-docs.sh"), *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_chart_readme_is_what_helm_docs_writes() -> None:
    proc = chart_docs("--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == README.read_text(), "charts/experiment/README.md is stale: make generate"


def test_a_changed_value_comment_reaches_the_readme(tmp_path: Path) -> None:
    """The check can fail: a copy of the chart with one comment changed is documented anew."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "charts", copy / "charts")
    (copy / "tools").mkdir()
    shutil.copy(REPO / "tools" / "chart-docs.sh", copy / "tools")
    values = copy / "charts" / "experiment" / "values.yaml"
    text = values.read_text()
    old = "# -- Seconds a peer has to stop."
    assert old in text
    values.write_text(text.replace(old, "# -- Seconds a peer has to stop (changed)."))
    proc = chart_docs("--dry-run", repo=copy)
    assert proc.returncode == 0, proc.stderr
    assert "Seconds a peer has to stop (changed)." in proc.stdout
    assert proc.stdout != README.read_text()
