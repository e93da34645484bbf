"""Run results: shortfall and verdict, the results file, the timing stamp, percentiles."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from nuclab.errors import ValidationError
from nuclab.histogram import quantile
from nuclab.loadgen.payload import Payloads, read_stamp, stamp
from nuclab.loadgen.results import RunResult, check_results_path, write_results
from nuclab.loadgen.stats import PerSecond, summarize


def _result(achieved: float, target: float | None = 1000.0) -> RunResult:
    return RunResult(
        mode="kafka-produce",
        target="1000 msg/s for 10s",
        unit="msg/s",
        target_rate=target,
        achieved_rate=achieved,
        duration_s=10,
        elapsed_s=10.2,
        completed=int(achieved * 10),
        latency_s=summarize([0.001, 0.002, 0.003]),
        per_second=[1000] * 10,
    )


def test_shortfall_and_verdict() -> None:
    assert _result(990).held
    assert _result(980).held
    missed = _result(900)
    assert missed.shortfall == pytest.approx(0.1)
    assert not missed.held
    assert _result(5000, target=None).held  # max/consume runs have no target


def test_json_results_hold_everything_and_no_nan(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    res = _result(900)
    res.latency_s["p50"] = math.nan
    write_results(res, path)
    data = json.loads(path.read_text())
    assert data["held"] is False
    assert data["shortfall"] == pytest.approx(0.1)
    assert data["latency_s"]["p50"] is None
    assert data["per_second"] == [1000] * 10


def test_csv_results_are_one_flat_row(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write_results(_result(995), path)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 1
    assert float(rows[0]["achieved_rate"]) == 995
    assert rows[0]["held"] == "True"
    assert float(rows[0]["latency_p99_s"]) == pytest.approx(0.00298)


@pytest.mark.parametrize("name", ["out.txt", "out", "missing-dir/out.json"])
def test_results_path_is_checked_first(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValidationError):
        check_results_path(str(tmp_path / name))


def test_stamp_round_trip_and_foreign_keys() -> None:
    key = stamp(7, 123456789, 1_700_000_000_123_456_789)
    assert read_stamp(key) == (7, 123456789, 1_700_000_000_123_456_789)
    assert read_stamp(b"user-key") is None
    assert read_stamp(None) is None


def test_payloads_from_files_cycle_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.bin").write_bytes(b"bb")
    (tmp_path / "a.bin").write_bytes(b"a")
    p = Payloads.from_path(str(tmp_path))
    assert [next(p) for _ in range(4)] == [b"a", b"bb", b"a", b"bb"]
    assert p.max_size == 2
    with pytest.raises(ValidationError):
        Payloads.from_path(str(tmp_path / "nope"))


def test_percentiles_and_per_second_bins() -> None:
    values = sorted(float(i) for i in range(101))
    assert quantile(values, 0.5) == 50
    assert quantile(values, 0.99) == 99
    assert math.isnan(quantile([], 0.5))
    bins = PerSecond()
    for t in (0.1, 0.9, 1.0, 3.5):
        bins.add(t)
    assert bins.counts == [2, 1, 0, 1]
