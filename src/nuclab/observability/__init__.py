"""Observability glue: Grafana dashboards, the PromQL they hold, and a local Prometheus lab.

``dashboards`` builds the six dashboards the monitoring role provisions; ``queries`` extracts
and instantiates their expressions; ``simlab`` serves the series a cluster would give two
experiments so a real Prometheus can prove the queries isolate them.
"""

from __future__ import annotations
