"""Observability glue: Grafana dashboards and the PromQL they hold.

``dashboards`` builds the six dashboards the monitoring role provisions; ``queries`` extracts
and instantiates their expressions. (The stand-in exporters that prove the queries isolate
experiments on a real Prometheus are test equipment: ``tests/harness/simlab.py``.)
"""

from __future__ import annotations
