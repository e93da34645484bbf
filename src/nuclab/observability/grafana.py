"""Small builders for Grafana dashboard JSON (schema 39, timeseries/stat/table/logs panels).

Only what nuclab's dashboards use; the output is plain dicts that ``json.dumps`` writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}
SCHEMA_VERSION = 39
PANEL_WIDTH = 12
PANEL_HEIGHT = 8
GRID_COLUMNS = 24

Json = dict[str, Any]


@dataclass(frozen=True)
class Query:
    """One query of a panel: PromQL (``prometheus``) or LogQL (``loki``)."""

    expr: str
    legend: str = ""
    datasource: str = "prometheus"
    instant: bool = False

    def target(self, ref_id: str) -> Json:
        source = PROMETHEUS if self.datasource == "prometheus" else LOKI
        target: Json = {"datasource": dict(source), "expr": self.expr, "refId": ref_id}
        if self.legend:
            target["legendFormat"] = self.legend
        if self.instant:
            target["instant"] = True
            target["range"] = False
        return target


@dataclass
class Panel:
    """A panel; ``kind`` is a Grafana panel type (timeseries, stat, table, logs)."""

    title: str
    queries: list[Query]
    kind: str = "timeseries"
    unit: str = "short"
    description: str = ""
    width: int = PANEL_WIDTH
    height: int = PANEL_HEIGHT
    options: Json = field(default_factory=dict)

    def to_json(self, panel_id: int, x: int, y: int) -> Json:
        datasource = LOKI if all(q.datasource == "loki" for q in self.queries) else PROMETHEUS
        panel: Json = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": dict(datasource),
            "gridPos": {"x": x, "y": y, "w": self.width, "h": self.height},
            "targets": [q.target(chr(ord("A") + i)) for i, q in enumerate(self.queries)],
            "options": dict(self.options),
        }
        if self.kind != "logs":
            panel["fieldConfig"] = {"defaults": {"unit": self.unit}, "overrides": []}
        return panel


def query_variable(
    name: str, label: str, query: str, *, multi: bool, include_all: bool, datasource: Json
) -> Json:
    """A template variable filled from a ``label_values(...)`` query."""
    variable: Json = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": dict(datasource),
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "current": {},
        "options": [],
        "hide": 0,
    }
    if include_all:
        variable["allValue"] = ".*"
    return variable


def layout(panels: list[Panel]) -> list[Json]:
    """Place panels left to right, wrapping at Grafana's 24 columns."""
    out: list[Json] = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > GRID_COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        out.append(panel.to_json(panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return out


def dashboard(
    uid: str, title: str, description: str, variables: list[Json], panels: list[Panel]
) -> Json:
    """A complete dashboard document as Grafana's provisioning reads it."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["nuclab"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": variables},
        "panels": layout(panels),
    }
