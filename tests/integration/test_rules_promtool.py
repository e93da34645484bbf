"""nuclab's rules with the real promtool (Debian package): syntax, unit tests, and coverage."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from nuclab.observability.queries import rule_expressions

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "roles/monitoring/files/rules/nuclab.rules.yml"
TESTS = REPO / "prometheus/tests/nuclab.rules.test.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: it comes from the Debian package prometheus (make setup)"
    return subprocess.run([promtool, *args], capture_output=True, text=True, check=False)


def test_promtool_check_rules_accepts_the_rules() -> None:
    proc = _promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rule_expressions(RULES))} rules found" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    proc = _promtool("test", "rules", str(TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_rule_and_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    tested_exprs = " ".join(t["expr"] for case in tests for t in case.get("promql_expr_test", []))
    tested_alerts = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])}
    fired = {
        t["alertname"]
        for case in tests
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    for rule in rule_expressions(RULES):
        name = rule.source.split(" / ")[1]
        if rule.kind == "record":
            assert name in tested_exprs, f"recording rule {name} has no promql_expr_test"
        else:
            assert name in tested_alerts, f"alert {name} has no alert_rule_test"
            assert name in fired, f"alert {name} is never shown to fire"


def test_a_broken_rule_is_rejected(tmp_path: Path) -> None:
    """The check can fail: promtool rejects a rule whose PromQL does not parse."""
    broken = tmp_path / "broken.rules.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - record: a:b\n        expr: sum(\n")
    assert _promtool("check", "rules", str(broken)).returncode != 0
