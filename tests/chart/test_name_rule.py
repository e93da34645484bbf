"""The experiment name rule is nuclab.spec's, and every gate a name passes applies that rule:
the spec, the export (its checks, dataset folder and selectors), the role filter, the chart's
values.schema.json and its _helpers.tpl. A name of the maximum length passes them all; one
character more, or a name outside the pattern, is refused by each of them."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from nuclab import spec
from nuclab.errors import ValidationError
from nuclab.export.run import ExportOptions, default_selectors, validate
from tests.chart.conftest import helm_template
from tests.conftest import REPO

LONGEST = "x" + "-" * (spec.NAME_MAX - 2) + "9"  # the maximum length, '-' wherever allowed
TOO_LONG = "a" * (spec.NAME_MAX + 1)
# Names around the pattern's edges; the spec decides which are allowed, the others must agree.
EDGES = ["a", "9", "a-b", "a--b", "-a", "a-", "A", "a_b", "a.b", "ä", LONGEST, TOO_LONG]
# Those helm takes as a release name nuclab-exp-<name> (it refuses the others itself).
RELEASE_EDGES = ["a", "9", "a-b", "a--b", "-a", "a.b", LONGEST, TOO_LONG]

Render = Callable[..., list[dict[str, Any]]]


def _filters() -> dict[str, Callable[..., Any]]:
    """The role's filters, loaded as Ansible loads them (from the file, not as a package)."""
    found = importlib.util.spec_from_file_location("f", REPO / "plugins/filter/experiment.py")
    assert found is not None and found.loader is not None
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module.FilterModule().filters()


FILTERS = _filters()


def allowed_by_spec(name: str) -> bool:
    try:
        spec.check_name(name)
    except ValidationError:
        return False
    return True


def chart_values(name: str, **loadgen: Any) -> dict[str, Any]:
    values = spec.to_values(spec.parse({"name": "purple", "loadgen": loadgen}))
    values["experiment"]["name"] = name
    return values


def test_the_edges_cover_both_answers() -> None:
    answers = {name: allowed_by_spec(name) for name in EDGES}
    assert answers[LONGEST] and not answers[TOO_LONG]
    assert len(LONGEST) == spec.NAME_MAX
    assert {True, False} == set(answers.values())


def test_the_longest_name_passes_the_spec_and_keeps_every_name_a_label() -> None:
    parsed = spec.parse({"name": LONGEST})
    assert parsed.name == LONGEST
    # The StatefulSet's pods are labelled controller-revision-hash=<fullname>-<10 characters>.
    assert len(f"{parsed.fullname}-{'h' * 10}") == 63


@pytest.mark.parametrize("name", EDGES)
def test_the_export_applies_the_spec_rule(name: str, tmp_path: Path) -> None:
    output = tmp_path / "datasets" / name
    opts = ExportOptions(experiment=name, prometheus_url="http://127.0.0.1:1", output=output)
    if allowed_by_spec(name):
        validate(opts)
        pods = default_selectors(name, "nuclab")[1]
        assert f'pod=~"{spec.fullname(name)}-[0-9]+"' in pods
    else:
        with pytest.raises(ValidationError) as exc:
            validate(opts)
        assert exc.value.field == "experiment"
        assert exc.value.allowed == spec.NAME_ALLOWED
    assert not output.exists()  # checking writes nothing


@pytest.mark.parametrize("name", EDGES)
def test_the_role_filters_apply_the_spec_rule(name: str) -> None:
    if allowed_by_spec(name):
        assert FILTERS["nuclab_experiment_name"](name) == name
        assert FILTERS["nuclab_experiment_fullname"](name) == spec.fullname(name)
    else:
        with pytest.raises(AnsibleFilterError, match=str(spec.NAME_MAX)):
            FILTERS["nuclab_experiment_name"](name)


@pytest.mark.parametrize("name", EDGES)
def test_the_chart_schema_applies_the_spec_rule(name: str, tmp_path: Path) -> None:
    """experiment.name given in the values: values.schema.json is the gate."""
    proc = helm_template(chart_values(name), tmp_path, release="nuclab-exp-x")
    if allowed_by_spec(name):
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0
        assert "experiment.name" in proc.stderr or "/experiment/name" in proc.stderr


@pytest.mark.parametrize("name", RELEASE_EDGES)
def test_the_chart_helper_applies_the_spec_rule(name: str, tmp_path: Path) -> None:
    """No experiment.name: the chart takes it from the release name, which the schema cannot
    see, so _helpers.tpl is the gate (a short fullnameOverride keeps its own limit out of it)."""
    values = {**chart_values(""), "fullnameOverride": "nuclab-exp-x"}
    proc = helm_template(values, tmp_path, release=f"nuclab-exp-{name}")
    if allowed_by_spec(name):
        assert proc.returncode == 0, proc.stderr
        assert f"nuclab.io/experiment: {name}" in proc.stdout.replace('"', "")
    else:
        assert proc.returncode != 0
        assert "experiment.name" in proc.stderr and str(spec.NAME_MAX) in proc.stderr


@pytest.mark.parametrize("loadgen", [False, True], ids=["peers", "peers-and-loadgen"])
def test_the_longest_name_renders_objects_whose_names_and_labels_fit(
    render: Render, loadgen: bool
) -> None:
    values = chart_values(LONGEST, enabled=loadgen)
    objects = render(values, release=spec.fullname(LONGEST))
    kinds = {obj["kind"] for obj in objects}
    assert {"StatefulSet", "Service", "ConfigMap"} <= kinds
    assert ("Job" in kinds) == loadgen
    for obj in objects:
        meta = obj["metadata"]
        # Services, StatefulSets (their pods' hostnames) and label values are DNS labels.
        assert len(meta["name"]) <= 63, meta["name"]
        for value in (meta.get("labels") or {}).values():
            assert len(str(value)) <= 63, (obj["kind"], value)
        assert meta["labels"]["nuclab.io/experiment"] == LONGEST
    statefulset = next(obj for obj in objects if obj["kind"] == "StatefulSet")
    assert len(statefulset["metadata"]["name"]) + len("-") + 10 <= 63
