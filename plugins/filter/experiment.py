"""Filters of the experiment role: thin wrappers over ``nuclab.spec`` and ``nuclab.experiments``.

Each filter checks its input's type, calls the nuclab package and turns a ``NuclabError`` into
``AnsibleFilterError("<filter>: <message>")``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from nuclab import experiments, spec
    from nuclab.errors import NuclabError
except ImportError:  # an Ansible outside the project's venv: use the repo's source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from nuclab import experiments, spec
    from nuclab.errors import NuclabError


def _mapping(filter_name: str, what: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AnsibleFilterError(f"{filter_name}: expected {what} (a mapping), got {value!r}")
    return dict(value)


def _list(filter_name: str, what: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise AnsibleFilterError(f"{filter_name}: expected {what} (a list), got {value!r}")
    return list(value)


def nuclab_experiment_name(name: Any) -> str:
    """The experiment's name, checked (a DNS-1123 label short enough for every object)."""
    try:
        return spec.check_name(name)
    except NuclabError as exc:
        raise AnsibleFilterError(f"nuclab_experiment_name: {exc}") from exc


def nuclab_experiment_fullname(name: Any) -> str:
    """The release and StatefulSet name: ``nuclab-exp-<name>``."""
    try:
        return spec.fullname(name)
    except NuclabError as exc:
        raise AnsibleFilterError(f"nuclab_experiment_fullname: {exc}") from exc


def nuclab_experiment_spec(
    raw: Any, defaults: Any = None, base: Any = None, create: bool = True
) -> dict[str, Any]:
    """A checked spec with every field: ``raw`` over ``base`` over ``defaults`` over nuclab's."""
    name = "nuclab_experiment_spec"
    raw_map = _mapping(name, "an experiment spec", raw)
    try:
        return spec.parse(
            raw_map,
            defaults=_mapping(name, "defaults", defaults),
            base=_mapping(name, "a base spec", base),
            create=bool(create),
        ).as_dict()
    except NuclabError as exc:
        raise AnsibleFilterError(f"{name}: {exc}") from exc


def nuclab_experiment_from_values(values: Any) -> dict[str, Any]:
    """The spec fields a release was installed with ({} for no release)."""
    return spec.from_values(_mapping("nuclab_experiment_from_values", "chart values", values))


def nuclab_experiment_values(
    checked: Any, overrides: Any = None, current: Any = None
) -> dict[str, Any]:
    """Chart values: the spec's over ``overrides`` over the release's ``current`` values."""
    name = "nuclab_experiment_values"
    data = _mapping(name, "a checked spec (from nuclab_experiment_spec)", checked)
    try:
        parsed = spec.parse(data, create=data.get("peers") != 0)
    except NuclabError as exc:
        raise AnsibleFilterError(f"{name}: {exc}") from exc
    return experiments.deep_merge(
        _mapping(name, "current values", current),
        _mapping(name, "chart value overrides", overrides),
        spec.to_values(parsed),
    )


def nuclab_experiment_rows(statefulsets: Any) -> list[dict[str, Any]]:
    """One row per experiment (EXPERIMENT, FULLNAME, SCALE, RUNNING, STARTED AT, AGE)."""
    items = _list("nuclab_experiment_rows", "StatefulSets", statefulsets)
    return experiments.experiment_rows(items)


def nuclab_experiment_table(rows: Any) -> list[str]:
    """Rows as the lines of a table."""
    items = _list("nuclab_experiment_table", "rows", rows)
    return experiments.format_rows(items, "table").splitlines()


def nuclab_experiment_netem_refusal(checked: Any, nodes: Any) -> str:
    """Why the experiment's network emulation cannot run on this lab (a matrix zone no node
    carries, netem on nodes without it); '' when it can, or when it asks for none."""
    name = "nuclab_experiment_netem_refusal"
    full = _mapping(name, "a checked spec", checked)
    refusal = experiments.network_refusal(full, _list(name, "Node objects", nodes))
    if not refusal:
        return ""
    field, value, reason = refusal
    return f"experiment '{full.get('name')}': {field}: {value!r} is not allowed; {reason}"


class FilterModule:
    """Experiment filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "nuclab_experiment_name": nuclab_experiment_name,
            "nuclab_experiment_fullname": nuclab_experiment_fullname,
            "nuclab_experiment_spec": nuclab_experiment_spec,
            "nuclab_experiment_from_values": nuclab_experiment_from_values,
            "nuclab_experiment_values": nuclab_experiment_values,
            "nuclab_experiment_rows": nuclab_experiment_rows,
            "nuclab_experiment_netem_refusal": nuclab_experiment_netem_refusal,
            "nuclab_experiment_table": nuclab_experiment_table,
        }
