"""tools/rolespecs.py: docs/roles.md is what the roles' argument specs and defaults say, and a
changed description or default reaches it with no other edit."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.conftest import load_tool

REPO = Path(__file__).resolve().parents[2]


rolespecs = load_tool("rolespecs")


def test_docs_roles_md_is_what_the_argument_specs_generate(tmp_path: Path) -> None:
    assert rolespecs.main(["--repo", str(REPO), "--out", str(tmp_path)]) == 0
    assert (tmp_path / rolespecs.DOC).read_text() == (REPO / rolespecs.DOC).read_text(), (
        "docs/roles.md is not what the roles' argument specs generate: run `make generate`"
    )


def test_every_role_and_variable_is_documented() -> None:
    page = (REPO / rolespecs.DOC).read_text()
    for spec in sorted(REPO.glob("roles/*/meta/argument_specs.yml")):
        role = spec.parent.parent.name
        assert f"\n## {role}\n" in page, role
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            for name in entry.get("options") or {}:
                assert f"| `{name}` |" in page, f"{role}: {name}"


def test_a_changed_description_and_default_reach_the_page(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "roles", copy / "roles")
    spec = copy / "roles" / "kafka" / "meta" / "argument_specs.yml"
    spec.write_text(
        spec.read_text().replace(
            "Namespace of the operator, the cluster and its topics.", "Where Kafka lives (changed)."
        )
    )
    defaults = copy / "roles" / "kafka" / "defaults" / "main.yml"
    defaults.write_text(
        defaults.read_text().replace("kafka_namespace: kafka", "kafka_namespace: k2")
    )
    page = rolespecs.render(copy)
    assert "| `kafka_namespace` | str | `k2` | Where Kafka lives (changed). |" in page
    assert page != (REPO / rolespecs.DOC).read_text()
