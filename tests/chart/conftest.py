"""Rendering charts/experiment with the real helm, for the chart tests."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO, TOOLS_BIN, tool

CHART = REPO / "charts" / "experiment"
VERSIONS = yaml.safe_load((REPO / "versions.yml").read_text())
KUBE_VERSION = VERSIONS["lab_kubernetes_version"].lstrip("v")
PODMONITOR_CRD = (
    TOOLS_BIN.parent.parent
    / "crds"
    / f"prometheus-operator-{VERSIONS['lab_prometheus_operator_version']}"
    / "monitoring.coreos.com_podmonitors.yaml"
)


def _podmonitor_schema() -> dict[str, Any]:
    if not PODMONITOR_CRD.is_file():
        pytest.fail(
            f"{PODMONITOR_CRD} is missing: run `make setup` (tools/setup.d/50-podmonitor-crd.sh)"
        )
    crd = yaml.safe_load(PODMONITOR_CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]


def _unknown_fields(obj: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Fields the API server would prune (a CRD schema does not forbid them, it drops them)."""
    found: list[str] = []
    if isinstance(obj, dict) and "properties" in schema:
        for key, value in obj.items():
            if key not in schema["properties"]:
                found.append(f"{path}.{key}")
            else:
                found += _unknown_fields(value, schema["properties"][key], f"{path}.{key}")
    elif isinstance(obj, list) and "items" in schema:
        for index, item in enumerate(obj):
            found += _unknown_fields(item, schema["items"], f"{path}[{index}]")
    return found


def validate(obj: dict[str, Any]) -> None:
    """Validate one rendered object: the Kubernetes OpenAPI schemas (strict) of the lab's
    version, or for a PodMonitor the Prometheus Operator CRD's schema, with no unknown fields."""
    if obj["apiVersion"] == "monitoring.coreos.com/v1":
        schema = _podmonitor_schema()
        jsonschema.validate(obj, schema)
        assert _unknown_fields(obj, schema, obj["kind"]) == []
        return
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def helm_template(
    values: dict[str, Any],
    tmp_path: Path,
    *,
    release: str = "nuclab-exp-purple",
    api_versions: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    cmd = [
        tool("helm"), "template", release, str(CHART), "--namespace", "nuclab",
        "--kube-version", KUBE_VERSION, "--values", str(values_file),
    ]  # fmt: skip
    for api in api_versions:
        cmd += ["--api-versions", api]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.fixture
def render(tmp_path: Path) -> Callable[..., list[dict[str, Any]]]:
    """Render the chart with values; fail the test with helm's message if it does not render."""

    def _render(values: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
        proc = helm_template(values, tmp_path, **kwargs)
        assert proc.returncode == 0, proc.stderr
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return _render


@pytest.fixture
def reject(tmp_path: Path) -> Callable[..., str]:
    """Render values that must be refused; return helm's error message."""

    def _reject(values: dict[str, Any]) -> str:
        proc = helm_template(values, tmp_path)
        assert proc.returncode != 0, f"helm accepted {values}"
        return proc.stderr

    return _reject
