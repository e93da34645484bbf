"""The experiment spec's `loadgen` fields: defaults, limits, merging over a running experiment,
the chart values they become, and the chart schema's second gate agreeing with them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from nuclab import spec
from nuclab.errors import ValidationError

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "charts/experiment/values.schema.json").read_text())
LOADGEN_SCHEMA = SCHEMA["properties"]["loadgen"]["properties"]
CHART_DEFAULTS = yaml.safe_load((REPO / "charts/experiment/values.yaml").read_text())["loadgen"]


def loadgen(**fields: Any) -> dict[str, Any]:
    return spec.parse({"name": "purple", "loadgen": fields}).loadgen


def test_off_by_default_with_the_lab_targets() -> None:
    checked = spec.parse({"name": "purple"}).loadgen
    assert checked == spec.LOADGEN_DEFAULTS
    assert checked["enabled"] is False
    assert (checked["mode"], checked["bootstrap"], checked["url"]) == ("kafka", "", "")


def test_the_default_image_is_the_lab_tools_version() -> None:
    versions = yaml.safe_load((REPO / "versions.yml").read_text())
    assert spec.LOADGEN_DEFAULTS["image"] == (
        f"localhost/nuclab/tools:{versions['lab_nuclab_tools_version']}"
    )


def test_the_chart_defaults_are_the_spec_defaults() -> None:
    """values.yaml and to_values of the default spec agree (a plain `helm install` is nuclab's)."""
    from_spec = spec.to_values(spec.parse({"name": "purple"}))["loadgen"]
    chart_only = {"cluster", "namespace", "port"}  # the lab Kafka's coordinates (kafka role)
    chart = {**CHART_DEFAULTS, "kafka": {
        k: v for k, v in CHART_DEFAULTS["kafka"].items() if k not in chart_only
    }}  # fmt: skip
    assert chart == from_spec
    assert CHART_DEFAULTS["kafka"]["cluster"] == "lab"  # roles/kafka: kafka_cluster_name
    assert CHART_DEFAULTS["kafka"]["namespace"] == "kafka"  # roles/kafka: kafka_namespace


def test_a_partial_loadgen_keeps_what_the_experiment_runs_with() -> None:
    running = spec.to_values(
        spec.parse({"name": "purple", "loadgen": {"enabled": True, "mode": "http", "rate": 50}})
    )
    base = spec.from_values(running)
    checked = spec.parse({"name": "purple", "loadgen": {"rate": 80}}, base=base, create=False)
    assert (checked.loadgen["enabled"], checked.loadgen["mode"]) == (True, "http")
    assert checked.loadgen["rate"] == 80


def test_lab_defaults_apply_under_the_spec() -> None:
    checked = spec.parse(
        {"name": "purple", "loadgen": {"enabled": True}},
        defaults={"loadgen": {"pushgateway": "", "cpu": 1}},
    )
    assert (checked.loadgen["pushgateway"], checked.loadgen["cpu"]) == ("", 1)


def test_values_round_trip() -> None:
    checked = spec.parse({"name": "purple", "loadgen": {
        "enabled": True, "mode": "kafka", "bootstrap": "b:9092", "topic": "t", "rate": 2.5,
        "unit": "mbit", "schedule": "1..5 : 10s, 5:1m", "size": 2048, "image": "r/x:1",
        "cpu": 0.25, "ram": 128, "args": ["-X", "a=b"],
    }})  # fmt: skip
    assert checked.loadgen["schedule"] == "1..5:10s,5:1m"  # the chart's schema has no spaces
    values = spec.to_values(checked)
    assert values["loadgen"]["resources"] == {"cpu": 0.25, "memory": 128}
    assert values["loadgen"]["image"] == {"repository": "r/x", "tag": "1"}
    assert spec.parse(spec.from_values(values)) == checked


def test_enabled_as_text_from_extra_vars() -> None:
    assert loadgen(enabled="True")["enabled"] is True


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"rate": 0}, "loadgen.rate"),
        ({"rate": -5}, "loadgen.rate"),
        ({"rate": 1_000_001}, "loadgen.rate"),
        ({"duration": 0}, "loadgen.duration"),
        ({"duration": 1.5}, "loadgen.duration"),
        ({"size": 0}, "loadgen.size"),
        ({"size": 16 * 1024 * 1024 + 1}, "loadgen.size"),
        ({"ram": 32}, "loadgen.ram"),
        ({"cpu": 0}, "loadgen.cpu"),
        ({"mode": "udp"}, "loadgen.mode"),
        ({"unit": "gbit"}, "loadgen.unit"),
        ({"mode": "http", "unit": "mbit"}, "loadgen.unit"),
        ({"arrivals": "bursty"}, "loadgen.arrivals"),
        ({"schedule": "100:30s,"}, "loadgen.schedule"),
        ({"schedule": "0:30s"}, "loadgen.schedule"),
        ({"schedule": "10:25h"}, "loadgen.schedule"),
        ({"bootstrap": "kafka"}, "loadgen.bootstrap"),
        ({"topic": "a b"}, "loadgen.topic"),
        ({"url": "ftp://x/"}, "loadgen.url"),
        ({"pushgateway": "pushgateway:9091"}, "loadgen.pushgateway"),
        ({"image": "Bad Image"}, "loadgen.image"),
        ({"args": "--seed 1"}, "loadgen.args"),
        ({"enabled": "yes"}, "loadgen.enabled"),
        ({"rtae": 10}, "loadgen.rtae"),
    ],
)
def test_bad_loadgen_fields_are_refused_naming_the_field(
    fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        loadgen(**fields)
    assert caught.value.field == named
    assert str(caught.value).startswith(f"{named}: ")


def test_loadgen_that_is_no_mapping_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"^loadgen: 'on' is not allowed"):
        spec.parse({"name": "purple", "loadgen": "on"})


@pytest.mark.parametrize(
    "row", [row for row in spec.LOADGEN_TABLE if row.number], ids=lambda row: row.name
)
def test_schema_ranges_match_the_spec(row: spec.Field) -> None:
    number = row.number
    assert number is not None
    rule = SCHEMA["properties"]["loadgen"]
    for part in row.chart.split("."):
        rule = rule["properties"][part]
    low = "exclusiveMinimum" if number.exclusive_minimum else "minimum"
    assert rule[low] == number.minimum
    assert rule["maximum"] == number.maximum
    assert rule["type"] == ("integer" if number.integer else "number")
    if not number.integer:
        assert rule["multipleOf"] == number.step


def test_schema_choices_match_the_spec() -> None:
    assert LOADGEN_SCHEMA["mode"]["enum"] == list(spec.LOADGEN_MODES)
    assert LOADGEN_SCHEMA["unit"]["enum"] == list(spec.LOADGEN_UNITS)
    assert LOADGEN_SCHEMA["http"]["properties"]["arrivals"]["enum"] == list(spec.LOADGEN_ARRIVALS)


def test_example_spec_file_with_a_load_generator() -> None:
    data = yaml.safe_load((REPO / "experiments/purple-loadgen.yml").read_text())
    checked = spec.parse(data["experiment"])
    assert checked.loadgen["enabled"] is True
    assert (checked.loadgen["mode"], checked.loadgen["rate"]) == ("http", 200)
    assert spec.to_values(checked)["loadgen"]["http"]["url"] == ""  # the experiment's Service


def _filters() -> dict[str, Any]:
    path = REPO / "plugins/filter/experiment.py"
    loader = importlib.util.spec_from_file_location("nuclab_filter_experiment_lg", path)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module.FilterModule().filters()


def test_the_playbook_filters_carry_loadgen_into_chart_values() -> None:
    filters = _filters()
    running = {"loadgen": {"enabled": True, "mode": "kafka", "rate": 50, "topic": "results"}}
    checked = filters["nuclab_experiment_spec"](
        {"name": "purple", "loadgen": {"rate": 75}},
        base=filters["nuclab_experiment_from_values"](
            spec.to_values(spec.parse({"name": "purple", **running}))
        ),
        create=False,
    )
    values = filters["nuclab_experiment_values"](checked)
    assert values["loadgen"]["enabled"] is True
    assert (values["loadgen"]["rate"], values["loadgen"]["kafka"]["topic"]) == (75, "results")
    with pytest.raises(AnsibleFilterError, match=r"nuclab_experiment_spec: loadgen\.size: 0 "):
        filters["nuclab_experiment_spec"]({"name": "purple", "loadgen": {"size": 0}})
