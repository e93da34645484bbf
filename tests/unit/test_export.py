"""Export logic that needs no server: chunk planning, queries, families, times, releases."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nuclab.errors import ValidationError
from nuclab.export import cluster, prom
from nuclab.export.coverage import Coverage
from nuclab.export.dataset import DatasetWriter, families
from nuclab.export.run import ExportOptions, parse_utc, validate


def test_chunks_cover_the_window_once_with_at_most_max_points() -> None:
    chunks = prom.plan_chunks(0, 25_000_000, 1000)  # 25,001 points at 1 s
    assert [(c.start_ms, c.end_ms) for c in chunks] == [
        (0, 10_999_000), (11_000_000, 21_999_000), (22_000_000, 25_000_000),
    ]  # fmt: skip
    points = [(c.end_ms - c.start_ms) // 1000 + 1 for c in chunks]
    assert max(points) <= 11_000 and sum(points) == 25_001


def test_a_short_window_is_one_chunk_and_an_empty_one_none() -> None:
    assert len(prom.plan_chunks(0, 60_000, 15_000)) == 1
    assert prom.plan_chunks(10, 0, 1000) == []


def test_metric_query_ors_the_selectors() -> None:
    q = prom.metric_query("up", ['{experiment="a"}', '{namespace="nuclab", pod=~"x-.*"}'])
    assert (
        q == '{__name__="up", experiment="a"} or {__name__="up", namespace="nuclab", pod=~"x-.*"}'
    )
    assert prom.metric_query("up", ["{}"]) == '{__name__="up"}'


def test_histogram_parts_share_a_family() -> None:
    got = families(["a_bucket", "a_sum", "a_count", "b_total", "c_count", "c_sum"])
    assert got == {"a": ["a_bucket", "a_count", "a_sum"], "b_total": ["b_total"],
                   "c_count": ["c_count"], "c_sum": ["c_sum"]}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-09-20T11:57:09Z", datetime(2025, 9, 20, 11, 57, 9, tzinfo=UTC)),
        ("2025-09-20T13:57:09+02:00", datetime(2025, 9, 20, 11, 57, 9, tzinfo=UTC)),
        ("1758369429", datetime(2025, 9, 20, 11, 57, 9, tzinfo=UTC)),
    ],
)
def test_times_are_utc(text: str, expected: datetime) -> None:
    assert parse_utc("--start", text) == expected


def test_local_times_are_refused() -> None:
    with pytest.raises(ValidationError, match="--start"):
        parse_utc("--start", "2025-09-20 11:57:09")


def test_helm_times_with_nanoseconds_and_offsets() -> None:
    t = cluster.parse_time("2025-09-20T13:57:09.123456789+02:00")
    assert t == datetime(2025, 9, 20, 11, 57, 9, 123456, tzinfo=UTC)


def _secret_data(release: dict) -> str:
    inner = base64.b64encode(gzip.compress(json.dumps(release).encode())).decode()
    return base64.b64encode(inner.encode()).decode()


def test_release_window_from_first_deployment_to_deletion() -> None:
    revs = [
        {"version": 2, "info": {"first_deployed": "2025-09-20T11:57:09Z",
                                "deleted": "2025-09-20T12:30:00.5Z"}},
        {"version": 1, "info": {"first_deployed": "2025-09-20T11:57:09Z", "deleted": ""}},
    ]  # fmt: skip
    decoded = [cluster.decode_release(_secret_data(r)) for r in revs]
    info = cluster.ReleaseInfo("nuclab-exp-a", sorted(decoded, key=lambda r: r["version"]))
    start, end = info.window()
    assert start == datetime(2025, 9, 20, 11, 57, 9, tzinfo=UTC)
    assert end == datetime(2025, 9, 20, 12, 30, 0, 500000, tzinfo=UTC)
    revs[0]["info"]["deleted"] = ""
    running = cluster.ReleaseInfo("x", [revs[1], revs[0]])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert running.window(now) == (start, now)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"experiment": "Bad_Name"}, "experiment"),
        ({"workers": 0}, "workers"),
        ({"start": datetime(2025, 1, 1, tzinfo=UTC)}, "start/end"),
        (
            {"start": datetime(2025, 1, 2, tzinfo=UTC), "end": datetime(2025, 1, 1, tzinfo=UTC)},
            "end",
        ),
    ],
)
def test_options_are_checked_before_anything_happens(
    change: dict, field: str, tmp_path: Path
) -> None:
    opts = ExportOptions(experiment="a", prometheus_url="http://127.0.0.1:1", output=tmp_path / "d")
    for k, v in change.items():
        setattr(opts, k, v)
    with pytest.raises(ValidationError) as exc:
        validate(opts)
    assert exc.value.field == field
    assert list(tmp_path.iterdir()) == []


def test_an_aborted_dataset_leaves_nothing(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "d")
    writer.path("metrics/x.parquet").write_bytes(b"half")
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_committed_dataset_appears_whole(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "d")
    writer.path("logs/logs.jsonl").write_text("{}\n")
    writer.add("logs/logs.jsonl", 1)
    assert not (tmp_path / "d").exists()  # nothing visible until the commit
    writer.commit({"experiment": "d"})
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["files"][0]["path"] == "logs/logs.jsonl" and manifest["files"][0]["rows"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


H = 3_600_000  # one hour in ms


def test_coverage_of_a_window_retention_cut_says_how_much_is_missing() -> None:
    cut = Coverage(0, 10 * H, 4 * H)
    assert cut.complete is False and cut.held == (4 * H, 10 * H) and cut.missing_ms == 4 * H
    assert cut.problem("http://p") == (
        "the window 1970-01-01T00:00:00Z to 1970-01-01T10:00:00Z starts before the oldest sample "
        "Prometheus holds, 1970-01-01T04:00:00Z: its first 4h00m00s (40%) is missing (gone with "
        "retention, or never scraped)"
    )
    whole = Coverage(4 * H, 10 * H, 4 * H)
    assert whole.complete is True and whole.problem("http://p") is None
    assert whole.manifest()["held"] == whole.manifest()["requested"]


def test_coverage_of_an_empty_or_silent_prometheus() -> None:
    # An empty TSDB reports the head's initial minimum, the largest int64, as its lowest timestamp.
    empty = Coverage(0, H, int(float(2**63 - 1)))
    assert empty.gone and empty.held is None and empty.missing_ms == H
    assert empty.manifest()["oldest_sample"] == "never"
    unknown = Coverage(0, H, None)
    assert unknown.complete is None and not unknown.gone
    assert "does not report its oldest sample" in (unknown.problem("http://p") or "")
    assert unknown.manifest()["complete"] is None


def test_loki_retention_from_its_config() -> None:
    from nuclab.export.loki import duration_ms, retention_ms

    assert duration_ms("1d") == 86_400_000 and duration_ms("1w3d") == 10 * 86_400_000
    assert duration_ms("1h30m") == 5_400_000 and duration_ms("500ms") == 500
    assert duration_ms("0s") == 0 and duration_ms("1.5h") is None and duration_ms("") is None
    on = "compactor:\n  retention_enabled: true\nlimits_config:\n  retention_period: 2d\n"
    assert retention_ms(on) == 2 * 86_400_000
    assert retention_ms(on.replace("true", "false")) == 0  # the compactor deletes nothing
    assert retention_ms("compactor:\n  retention_enabled: true\n") is None  # no period said
    assert retention_ms(": not yaml: [") is None
