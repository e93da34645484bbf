"""tools/specgen.py: the checked-in generated files are what the spec's tables make, and a change
to one row of a table reaches the CLI's help, the chart's schema and the docs with no other
edit."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from nuclab import spec
from nuclab.commands import experiment as cmd
from nuclab.errors import NuclabError
from tests.conftest import load_tool

REPO = Path(__file__).resolve().parents[2]


specgen = load_tool("specgen")


def test_checked_in_files_are_what_the_tables_generate(tmp_path: Path) -> None:
    assert specgen.main(["--repo", str(REPO), "--out", str(tmp_path)]) == 0
    for path in specgen.GENERATED:
        assert (tmp_path / path).read_text() == (REPO / path).read_text(), (
            f"{path} is not what nuclab.spec's tables generate: run `make generate`"
        )


def with_limits(table: specgen.Table, name: str, **limits: Any) -> specgen.Table:
    """``table`` with the number of the row ``name`` changed."""
    return tuple(
        dataclasses.replace(row, number=dataclasses.replace(row.number, **limits))
        if row.name == name and row.number
        else row
        for row in table
    )


def create_help(fields: specgen.Table) -> str:
    parser = argparse.ArgumentParser()
    cmd.add_spec_flags(parser, fields)
    return " ".join(parser.format_help().split())


def test_one_range_changed_in_the_table_reaches_help_schema_and_docs() -> None:
    fields = with_limits(spec.FIELD_TABLE, "msg_rate", maximum=1_800_000)
    files = specgen.generate(REPO, fields)
    schema = json.loads(files[specgen.SCHEMA])
    assert schema["properties"]["experiment"]["properties"]["msgInterval"]["maximum"] == 1_800_000
    assert "| `msg_rate` |" in files[specgen.DOCS]
    assert "| 1 to 1800000 |" in files[specgen.DOCS]
    assert "| 1 to 3600000 |" not in files[specgen.DOCS]
    help_text = create_help(fields)
    assert "--msg-rate MSG_RATE milliseconds between two messages: 1 to 1800000" in help_text
    # Nothing else changes: the other generated files, the other rules.
    current = specgen.generate(REPO)
    assert files[specgen.PLAYBOOK] == current[specgen.PLAYBOOK]
    assert files[specgen.LOADGEN_DOCS] == current[specgen.LOADGEN_DOCS]
    old = json.loads(current[specgen.SCHEMA])
    old["properties"]["experiment"]["properties"]["msgInterval"]["maximum"] = 1_800_000
    assert schema == old


def test_a_loadgen_range_changed_in_its_table_reaches_the_schema_and_its_docs() -> None:
    loadgen = with_limits(spec.LOADGEN_TABLE, "ram", minimum=128)
    files = specgen.generate(REPO, loadgen=loadgen)
    schema = json.loads(files[specgen.SCHEMA])
    resources = schema["properties"]["loadgen"]["properties"]["resources"]["properties"]
    assert resources["memory"]["minimum"] == 128
    row = "| 128 to 65536; limit = request | `loadgen.resources.memory` |"
    assert row in files[specgen.LOADGEN_DOCS]


def test_a_new_field_reaches_the_schema_the_playbook_the_docs_and_the_cli() -> None:
    row = spec.Field(
        "fanout", "number", "experiment.fanout", 3, "peers each message is sent to",
        flag="--fanout", number=spec.Number("fanout", "peers", 1, 64),
    )  # fmt: skip
    fields = (*spec.FIELD_TABLE, row)
    files = specgen.generate(REPO, fields)
    schema = json.loads(files[specgen.SCHEMA])
    assert schema["properties"]["experiment"]["properties"]["fanout"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 64,
        "description": "peers each message is sent to",
    }
    playbook = yaml.safe_load(files[specgen.PLAYBOOK])
    assert playbook[0]["vars"]["_experiment_fields"] == [*spec.FIELDS, "fanout"]
    assert (
        "| `fanout` | peers each message is sent to | peers | `3` | 1 to 64 |"
        in files[specgen.DOCS]
    )
    assert "--fanout FANOUT peers each message is sent to: 1 to 64" in create_help(fields)


def test_a_field_whose_chart_object_is_not_in_the_schema_is_refused() -> None:
    row = spec.Field("colour", "bool", "paint.colour", False, "paint the peers")
    with pytest.raises(NuclabError, match=r"no object paint for the field at paint\.colour"):
        specgen.generate(REPO, (*spec.FIELD_TABLE, row))


def test_generated_parts_need_their_markers(tmp_path: Path) -> None:
    for path in specgen.GENERATED:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text((REPO / path).read_text())
    docs = tmp_path / specgen.DOCS
    docs.write_text(docs.read_text().replace("END generated", "END"))
    assert specgen.main(["--repo", str(tmp_path)]) == 2
