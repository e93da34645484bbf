"""Every query nuclab ships: dashboard targets and variables, recording rules and alerts.

``instantiate`` replaces Grafana's variables the way Grafana does before sending a query, so
tests and tools can run the exact text of a panel against a Prometheus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

VARIABLE = re.compile(r"\$(__[a-z_]+|[a-z]+)")
LABEL_VALUES = re.compile(
    r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$"
)


@dataclass(frozen=True)
class Expression:
    source: str  # "<dashboard> / <panel>" or "<group> / <rule>"
    expr: str
    language: str  # promql | logql
    kind: str  # panel | variable | record | alert

    @property
    def variables(self) -> set[str]:
        return set(VARIABLE.findall(self.expr))


def dashboard_expressions(doc: dict[str, Any]) -> list[Expression]:
    title = doc["title"]
    out = []
    for panel in doc.get("panels", []):
        for target in panel.get("targets", []):
            language = "logql" if target["datasource"]["type"] == "loki" else "promql"
            out.append(Expression(f"{title} / {panel['title']}", target["expr"], language, "panel"))
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            out.append(
                Expression(f"{title} / ${var['name']}", var["query"]["query"], "promql", "variable")
            )
    return out


def rule_expressions(path: Path) -> list[Expression]:
    doc = yaml.safe_load(path.read_text())
    out = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            kind = "record" if "record" in rule else "alert"
            name = rule.get("record") or rule["alert"]
            out.append(Expression(f"{group['name']} / {name}", rule["expr"], "promql", kind))
    return out


def instantiate(expr: str, values: dict[str, str]) -> str:
    """The query text with ``$name`` replaced; an unknown variable raises ``KeyError``."""

    def sub(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return VARIABLE.sub(sub, expr)


def label_values(query: str) -> tuple[str | None, str]:
    """``label_values(selector, label)`` -> (selector, label); ValueError on anything else."""
    match = LABEL_VALUES.match(query.strip())
    if not match:
        raise ValueError(f"not a label_values() query: {query!r}")
    return match.group("selector"), match.group("label")


STREAM_SELECTOR = re.compile(r"\{(?P<matchers>[^{}]*)\}")
MATCHER = re.compile(r'^\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"[^"]*"\s*$')
LINE_FILTER = re.compile(r"(\|=|!=|\|~|!~)\s*(`[^`]*`|\"[^\"]*\")")


def logql_problems(expr: str) -> list[str]:
    """What is wrong with a LogQL query nuclab writes (no Loki runs here; a structural check).

    Checks balanced brackets, one stream selector whose matchers are well formed and include
    ``experiment="$experiment"``, and line filters with quoted arguments.
    """
    problems = []
    for left, right in ("()", "[]", "{}"):
        if expr.count(left) != expr.count(right):
            problems.append(f"unbalanced {left}{right}")
    selectors = STREAM_SELECTOR.findall(expr)
    if len(selectors) != 1:
        problems.append(f"expected one stream selector, found {len(selectors)}")
    for selector in selectors:
        matchers = [m for m in selector.split(",") if m.strip()]
        bad = [m for m in matchers if not MATCHER.match(m)]
        if bad:
            problems.append(f"malformed matchers {bad}")
        if 'experiment="$experiment"' not in [m.strip() for m in matchers]:
            problems.append('stream selector lacks experiment="$experiment"')
    rest = STREAM_SELECTOR.sub("", expr)
    for op in re.findall(r"\|=|\|~|!~", rest):
        if not LINE_FILTER.search(rest):
            problems.append(f"line filter {op} without a quoted argument")
    return problems
