"""The chart's values.schema.json (the second gate) agrees with nuclab.spec (the first)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from nuclab import spec

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "charts/experiment/values.schema.json").read_text())


def _rule(path: str) -> dict:
    node = SCHEMA
    for part in path.split("."):
        node = node["properties"][part]
    return node


@pytest.mark.parametrize(
    "row", [row for row in spec.FIELD_TABLE if row.number], ids=lambda row: row.name
)
def test_schema_ranges_match_the_spec(row: spec.Field) -> None:
    number = row.number
    assert number is not None
    rule = _rule(row.chart)
    low = "exclusiveMinimum" if number.exclusive_minimum else "minimum"
    assert rule[low] == (0 if number.pause else number.minimum)
    assert rule["maximum"] == number.maximum
    types = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
    assert ("integer" if number.integer else "number") in types
    assert ("null" in types) == number.optional
    if not number.integer:
        assert rule["multipleOf"] == number.step


def test_schema_name_and_peers_match_the_spec() -> None:
    experiment = SCHEMA["properties"]["experiment"]["properties"]
    assert experiment["name"]["maxLength"] == spec.NAME_MAX
    # empty is allowed: the chart then takes the name from the release (nuclab-exp-<name>)
    assert experiment["name"]["pattern"] == f"^({spec.NAME_RE.pattern[1:-1]})?$"
    assert experiment["peers"]["minimum"] == 0  # 0 pauses; creating with 0 is the spec's call
    assert experiment["peers"]["maximum"] == spec.PEERS_MAX
    assert SCHEMA["properties"]["placement"]["properties"]["role"]["enum"] == list(spec.ROLES)


def test_schema_closes_every_object() -> None:
    def walk(node: dict, path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, path
            for key, child in node["properties"].items():
                walk(child, f"{path}.{key}")

    walk(SCHEMA, "values")


def test_playbook_flat_fields_are_the_spec_fields() -> None:
    play = yaml.safe_load((REPO / "playbooks/experiment.yml").read_text())[0]
    assert tuple(play["vars"]["_experiment_fields"]) == spec.FIELDS


def test_sim_inventory_defaults_are_a_valid_spec() -> None:
    group_vars = yaml.safe_load((REPO / "inventory/sim/group_vars/all/experiment.yml").read_text())
    parsed = spec.parse({"name": "purple"}, defaults=group_vars["experiment_defaults"])
    assert parsed.peers == 5


def test_example_spec_file_is_the_reference_experiment() -> None:
    data = yaml.safe_load((REPO / "experiments/purple.yml").read_text())
    parsed = spec.parse(data["experiment"])
    assert (parsed.name, parsed.peers, parsed.msg_size, parsed.msg_rate) == (
        "purple",
        5,
        1440,
        2000,
    )
    assert (parsed.cpu, parsed.ram, parsed.uplink_bw, parsed.downlink_bw) == (0.05, 16, 16, 16)
    assert parsed.probe is True  # the RTT matrix the reference lab planned


def test_schema_probe_switch_is_a_boolean_like_the_spec_field() -> None:
    assert SCHEMA["properties"]["probe"]["properties"]["enabled"]["type"] == "boolean"


def test_schema_params_and_node_labels_match_the_spec() -> None:
    params = SCHEMA["properties"]["experiment"]["properties"]["params"]
    assert params["maxProperties"] == spec.PARAMS_MAX
    assert params["additionalProperties"]["maxLength"] == spec.PARAM_VALUE_MAX
    labels = SCHEMA["properties"]["placement"]["properties"]["nodeLabels"]
    assert [labels["propertyNames"]["not"]["const"]] == list(spec.RESERVED_NODE_LABELS)


def test_the_charts_defaults_are_the_tables() -> None:
    """values.yaml gives each field the table's default (a plain `helm install` is nuclab's)."""
    chart = yaml.safe_load((REPO / "charts/experiment/values.yaml").read_text())
    from_spec = spec.to_values(spec.parse({"name": "purple"}))

    def at(values: dict, path: str) -> object:
        for part in path.split("."):
            values = values[part]
        return values

    for row in spec.FIELD_TABLE:
        if row.kind == "name":
            assert at(chart, row.chart) == ""  # the release's name
        elif row.kind == "image":
            image = at(chart, row.chart)
            assert {key: image[key] for key in ("repository", "tag")} == at(from_spec, row.chart)
        elif row.kind != "loadgen":  # test_loadgen_spec compares the loadgen block
            assert at(chart, row.chart) == at(from_spec, row.chart), row.name


def test_schema_matrix_entries_are_the_specs_checked_entries() -> None:
    """network.matrix: closed objects with every key the spec writes, its ranges and units."""
    rule = _rule("network.matrix")
    assert rule["type"] == "array"
    item = rule["items"]
    assert item["additionalProperties"] is False
    assert item["required"] == list(spec.MATRIX_KEYS) == list(item["properties"])
    for key, number in spec.MATRIX_NUMBERS.items():
        assert item["properties"][key]["minimum"] == number.minimum, key
        assert item["properties"][key]["maximum"] == number.maximum, key
        assert item["properties"][key]["multipleOf"] == number.step, key
    assert item["properties"]["rate"]["type"] == ["number", "null"]
    assert item["properties"]["symmetric"]["type"] == "boolean"
    zone = re.compile(item["properties"]["from"]["pattern"])
    assert zone.match("zone-a") and not zone.match("") and not zone.match("-a")
    checked = spec.parse(
        {"name": "purple", "matrix": [{"from": "zone-a", "to": "zone-b", "rate": 0.1}]}
    )
    jsonschema.validate(spec.to_values(checked)["network"]["matrix"], rule)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{**checked.matrix[0], "loss": 150}], rule)
