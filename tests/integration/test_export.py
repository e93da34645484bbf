"""``nuclab export`` against a real Prometheus (Debian package) loaded with known samples, and a
real Loki loaded with known log lines.

The samples are generated here, written as OpenMetrics and backfilled with ``promtool tsdb
create-blocks-from openmetrics``; a Prometheus started on loopback serves them. The export must
return exactly those values, across windows longer than one 11,000-point chunk.

The log lines are pushed through Loki's push API into a single-binary Loki (``lab_loki_version``,
built by ``make setup`` from Loki's Go module; see ``tests/integration/localloki.py``) for two
experiments. The export must return exactly the first experiment's lines, in time order, across
several ``query_range`` pages. One failure a real Loki cannot be made to produce on demand (an
error on the second page of a query) is injected by ``FailOnSecondPage``, a small proxy in front
of the real Loki: it is a stand-in for that failure only.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from nuclab.cli import main as nuclab
from nuclab.errors import NuclabError
from nuclab.export.cluster import parse_time
from nuclab.export.dataset import sha256
from nuclab.export.loki import Loki
from nuclab.net import free_port
from tests.conftest import tool
from tests.harness.prometheus import local_prometheus
from tests.integration.conftest import run_playbook
from tests.integration.localloki import local_loki, push, query_range_requests
from tests.integration.realnodes import REAL, REAL_CLIENT

STEP = 1
POINTS = 12_500  # > 11,000: every export below needs two chunks per metric
T0 = (int(time.time()) // 3600 - 30) * 3600  # 30 h ago, on the hour: inside default retention
LIVE_FROM = int(time.time()) - 1800  # "live" data around now, for the Helm-release window


def synthetic() -> dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, float]]]:
    """(metric, labels) -> [(unix seconds, value)]: the ground truth of every test here."""
    rng = random.Random(7)
    data = {}
    ts = [T0 + i * STEP for i in range(POINTS)]
    for peer in ("nuclab-exp-exp1-0", "nuclab-exp-exp1-1"):
        sent = 0.0
        key = ("nuclab_peer_messages_sent_total", (("experiment", "exp1"), ("peer", peer)))
        data[key] = []
        for t in ts:
            sent += rng.randint(0, 3)
            data[key].append((t, sent))
        mem = ("container_memory_working_set_bytes", (("namespace", "nuclab"), ("pod", peer)))
        data[mem] = [(t, float(rng.randint(10_000_000, 16_000_000))) for t in ts]
    rtt = (("experiment", "exp1"), ("source", "nuclab-exp-exp1-0"), ("target", "nuclab-exp-exp1-1"))
    data[("nuclab_peer_rtt_seconds_sum", rtt)] = [(t, round(rng.random(), 6)) for t in ts]
    data[("nuclab_peer_rtt_seconds_count", rtt)] = [(t, float(i)) for i, t in enumerate(ts)]
    for le in ("0.001", "+Inf"):
        key = ("nuclab_peer_rtt_seconds_bucket", tuple(sorted((*rtt, ("le", le)))))
        data[key] = [(t, float(i // (2 if le == "0.001" else 1))) for i, t in enumerate(ts)]
    # Another experiment's series: must never leak into exp1's dataset.
    data[("nuclab_peer_messages_sent_total", (("experiment", "other"), ("peer", "x")))] = [
        (t, 1.0) for t in ts
    ]
    live = [LIVE_FROM + i for i in range(3600)]
    data[("nuclab_peer_messages_sent_total", (("experiment", "live"), ("peer", "l0")))] = [
        (t, float(i)) for i, t in enumerate(live)
    ]
    return data


@pytest.fixture(scope="module")
def truth() -> dict:
    return synthetic()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, truth: dict) -> Iterator[str]:
    with local_prometheus(tmp_path_factory.mktemp("prometheus"), truth) as url:
        yield url


LINES = 12_000  # > 2 x the client's 5,000-line page: the export reads at least three pages
TWIN = 4_999  # the last line of the first page; two more lines share its nanosecond


def log_truth() -> list[tuple[int, dict[str, str], str]]:
    """(timestamp ns, stream labels, line) of every line pushed to Loki, in time order."""
    base = T0 * 1_000_000_000
    out = [
        (base + i * 1_000_000_000 + i % 3,
         {"experiment": "exp1", "pod": f"nuclab-exp-exp1-{i % 2}"},
         f"sending at {datetime.fromtimestamp(T0 + i, UTC):%Y-%m-%dT%H:%M:%S}.000000Z seq={i}")
        for i in range(LINES)
    ]  # fmt: skip
    # Same nanosecond, other streams, other lines: paging must keep all three, once each.
    twin = out[TWIN][0]
    out += [(twin, {"experiment": "exp1", "pod": pod}, f"twin of {TWIN} in {pod}") for pod in "yz"]
    # Another experiment in the same window, interleaved: never part of exp1's dataset.
    out += [
        (base + i * 7_000_000_000 + 1, {"experiment": "exp2", "pod": "nuclab-exp-exp2-0"},
         f"exp2 line {i}")
        for i in range(LINES // 7)
    ]  # fmt: skip
    out.sort(key=lambda e: e[0])
    return out


@pytest.fixture(scope="module")
def logs() -> list[tuple[int, dict[str, str], str]]:
    return log_truth()


@pytest.fixture(scope="module")
def loki(tmp_path_factory: pytest.TempPathFactory, logs: list) -> Iterator[str]:
    """A real Loki holding ``logs`` (pushed through its push API); yields its base URL."""
    with local_loki(tmp_path_factory.mktemp("loki")) as url:
        streams: dict[tuple[tuple[str, str], ...], list[tuple[int, str]]] = {}
        for ts, labels, line in logs:
            streams.setdefault(tuple(sorted(labels.items())), []).append((ts, line))
        push(url, [(dict(k), v) for k, v in streams.items()])
        yield url


def _ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 UTC time with nine fraction digits."""
    sec = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    assert text[19] == "." and text.endswith("Z") and len(text) == 30, text
    return int(sec.timestamp()) * 1_000_000_000 + int(text[20:29])


def _assert_same_lines_in_order(got: list[tuple[int, str]], want: list[tuple[int, str]]) -> None:
    """``got`` is ``want`` in time order; lines of one nanosecond may come in any order."""
    assert [ts for ts, _ in got] == sorted(ts for ts, _ in got), "not in time order"
    assert len(got) == len(want)
    assert sorted(got) == sorted(want)  # every line, once


class FailOnSecondPage(BaseHTTPRequestHandler):
    """STAND-IN FOR A FAILURE, not for Loki: forwards requests to the real Loki at ``upstream``
    but answers 500 to every ``query_range`` after the first (a Loki that breaks mid-export)."""

    upstream: ClassVar[str] = ""
    pages: ClassVar[int] = 0

    def do_GET(self) -> None:
        cls = type(self)
        if urlsplit(self.path).path == "/loki/api/v1/query_range":
            cls.pages += 1
            if cls.pages > 1:
                return self._send(500, b"injected failure on page 2")
        with urllib.request.urlopen(f"{cls.upstream}{self.path}", timeout=60) as resp:
            return self._send(resp.status, resp.read())

    def _send(self, code: int, raw: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_loki(loki: str) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FailOnSecondPage)
    FailOnSecondPage.upstream, FailOnSecondPage.pages = loki, 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _export(
    prom: str, out: Path, *extra: str, start: int = T0, end: int = T0 + (POINTS - 1) * STEP
) -> int:
    return nuclab(
        ["export", "exp1", "--prometheus-url", prom, "--output", str(out), "--step", str(STEP),
         "--start", _iso(start), "--end", _iso(end), *extra]
    )  # fmt: skip


def _rows(path: Path) -> dict[tuple[str, tuple], list[tuple[int, float]]]:
    table = pq.read_table(path).to_pylist()
    out: dict[tuple[str, tuple], list[tuple[int, float]]] = {}
    for row in table:
        labels = tuple(
            sorted(
                (k, v)
                for k, v in row.items()
                if k not in ("metric", "timestamp", "value") and v is not None
            )
        )
        ts = row["timestamp"]
        assert ts.tzinfo is not None and ts.utcoffset().total_seconds() == 0
        out.setdefault((row["metric"], labels), []).append((int(ts.timestamp()), row["value"]))
    return out


def test_export_returns_exactly_the_backfilled_samples_across_chunks(
    prometheus: str, truth: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exp1"
    assert _export(prometheus, out, "--csv") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["prometheus"]["chunks_per_metric"] == 2
    assert manifest["window"] == {
        "start": _iso(T0),
        "end": _iso(T0 + POINTS - 1),
        "source": "flags",
    }
    got: dict = {}
    for f in sorted((out / "metrics").glob("*.parquet")):
        got |= _rows(f)
    want = {
        k: v
        for k, v in truth.items()
        if ("experiment", "other") not in k[1] and ("experiment", "live") not in k[1]
    }
    assert set(got) == set(want)
    for key, points in want.items():
        assert got[key] == points, key  # every timestamp, every value, exactly
    # One file per family: the histogram's _bucket, _sum and _count together.
    names = sorted(p.name for p in (out / "metrics").iterdir())
    assert names == [
        "container_memory_working_set_bytes.csv", "container_memory_working_set_bytes.parquet",
        "nuclab_peer_messages_sent_total.csv", "nuclab_peer_messages_sent_total.parquet",
        "nuclab_peer_rtt_seconds.csv", "nuclab_peer_rtt_seconds.parquet",
    ]  # fmt: skip
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == {f"metrics/{n}" for n in names}
    for rel, entry in listed.items():
        assert sha256(out / rel) == entry["sha256"]
        assert (out / rel).stat().st_size == entry["bytes"]
    csv_head = (
        (out / "metrics" / "nuclab_peer_messages_sent_total.csv").read_text().splitlines()[:2]
    )
    assert csv_head[0] == '"metric","timestamp","value","experiment","peer"'
    assert csv_head[1].startswith(
        f'"nuclab_peer_messages_sent_total",{datetime.fromtimestamp(T0, UTC):%Y-%m-%d %H:%M:%S}'
    )
    assert manifest["nuclab"]["version"]
    assert "exported exp1:" in capsys.readouterr().out
    # The report renders from what the export wrote.
    assert nuclab(["report", str(out), "-o", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    for figure in ("Memory per peer", "Messages published per peer", "RTT percentiles"):
        assert f'<img alt="{figure}" src="data:image/png;base64,' in page
    assert not list(tmp_path.glob(".*partial*")) and not list(tmp_path.glob(".report*"))


def test_report_refuses_an_exported_file_changed_afterwards(
    prometheus: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exp1"
    assert _export(prometheus, out, end=T0 + 600) == 0
    rel = "metrics/container_memory_working_set_bytes.parquet"
    want = next(f["sha256"] for f in json.loads((out / "manifest.json").read_text())["files"]
                if f["path"] == rel)  # fmt: skip
    with (out / rel).open("ab") as fh:  # a byte appended after the export
        fh.write(b"\0")
    capsys.readouterr()
    assert nuclab(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{rel} has sha256 {sha256(out / rel)}, the manifest expects {want}" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (out / "report.html").exists()


# -- coverage: a window that starts before what retention left -------------------------------
# Ten hours of samples backfilled in 2 h blocks into a Prometheus started with a 4 h retention:
# opening the TSDB deletes the blocks more than 4 h older than the newest, for real.

RET_T0 = (int(time.time()) // 7200 - 12) * 7200  # on a block boundary, 24 h back
RET_END = RET_T0 + 10 * 3600 - 60
RET_SERIES = ("nuclab_peer_messages_sent_total", (("experiment", "exp1"), ("peer", "r0")))


@pytest.fixture(scope="module")
def retained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(URL, the oldest sample the server answers queries with) of a Prometheus whose
    retention dropped the first hours of ``RET_SERIES``."""
    points = [(RET_T0 + i * 60, float(i)) for i in range(600)]
    with local_prometheus(tmp_path_factory.mktemp("retained"), {RET_SERIES: points}, "4h") as url:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
            own = resp.read().decode()
        assert re.search(r"^prometheus_tsdb_time_retentions_total [1-9]", own, re.M), own
        query = (
            f"{url}/api/v1/query_range?query={RET_SERIES[0]}&start={RET_T0}&end={RET_END}&step=60"
        )
        with urllib.request.urlopen(query, timeout=10) as resp:
            held = json.load(resp)["data"]["result"][0]["values"]
        assert RET_T0 < held[0][0] < RET_END  # retention took the window's first hours
        yield url, int(held[0][0])


def test_export_says_and_records_what_retention_dropped_from_the_window(
    retained: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, oldest = retained
    out = tmp_path / "exp1"
    assert _export(url, out, "--step", "60", start=RET_T0, end=RET_END) == 0
    err = capsys.readouterr().err.strip().splitlines()
    missing = oldest - RET_T0
    assert err == [
        f"nuclab: warning: experiment 'exp1': the window {_iso(RET_T0)} to {_iso(RET_END)} "
        f"starts before the oldest sample Prometheus holds, {_iso(oldest)}: its first "
        f"{missing // 3600}h00m00s ({100 * missing / (RET_END - RET_T0):.0f}%) is missing (gone "
        "with retention, or never scraped); manifest.json records the coverage"
    ]
    coverage = json.loads((out / "manifest.json").read_text())["coverage"]
    assert coverage == {
        "requested": [_iso(RET_T0), _iso(RET_END)],
        "held": [_iso(oldest), _iso(RET_END)],
        "complete": False,
        "missing_seconds": missing,
        "oldest_sample": _iso(oldest),
        "source": "prometheus_tsdb_lowest_timestamp",
    }
    (rows,) = _rows(out / "metrics/nuclab_peer_messages_sent_total.parquet").values()
    assert rows[0][0] == oldest  # what the dataset holds starts where the coverage says


def test_export_require_complete_refuses_a_window_retention_cut(
    retained: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, oldest = retained
    out = tmp_path / "exp1"
    code = _export(url, out, "--step", "60", "--require-complete", start=RET_T0, end=RET_END)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"starts before the oldest sample Prometheus holds, {_iso(oldest)}: its first" in err
    assert err.strip().endswith("nothing was written (--require-complete)")
    assert list(tmp_path.iterdir()) == []
    # A window inside what is held is complete: exported, no warning, recorded so.
    assert _export(url, out, "--step", "60", "--require-complete", start=oldest, end=RET_END) == 0
    assert "warning" not in capsys.readouterr().err
    coverage = json.loads((out / "manifest.json").read_text())["coverage"]
    assert coverage["complete"] is True and coverage["missing_seconds"] == 0
    assert coverage["held"] == coverage["requested"] == [_iso(oldest), _iso(RET_END)]


def test_export_role_shows_the_coverage_warning_and_can_require_completeness(
    retained: tuple[str, int], tmp_path: Path
) -> None:
    """playbooks/export.yml with a fixed window and no lab API (export_kubeconfig empty)."""
    url, oldest = retained
    out = tmp_path / "ds"
    args = ["playbooks/export.yml", "-e", "name=exp1", "-e", f"export_prometheus_url={url}",
            "-e", f"export_output={out}", "-e", "export_kubeconfig=", "-e", "export_step=60",
            "-e", f"export_start={_iso(RET_T0)}", "-e", f"export_end={_iso(RET_END)}"]  # fmt: skip
    refused = run_playbook(*args, "-e", "export_require_complete=true", check=False)
    said = " ".join(refused.stdout.split())  # Ansible wraps long values over lines
    assert refused.returncode != 0
    assert "nothing was written (--require-complete)" in said, said[-2000:]
    assert not out.exists()
    done = run_playbook(*args)
    said = " ".join(done.stdout.split())
    assert f"the oldest sample Prometheus holds, {_iso(oldest)}" in said, said[-2000:]
    assert json.loads((out / "manifest.json").read_text())["coverage"]["complete"] is False


def test_export_writes_exactly_the_experiments_loki_lines_as_json_lines(
    prometheus: str, loki: str, logs: list, tmp_path: Path
) -> None:
    out = tmp_path / "exp1"
    before = query_range_requests(loki)
    assert _export(prometheus, out, "--loki-url", loki) == 0
    pages = query_range_requests(loki) - before
    records = [json.loads(x) for x in (out / "logs" / "logs.jsonl").read_text().splitlines()]
    want = [e for e in logs if e[1]["experiment"] == "exp1"]
    _assert_same_lines_in_order(
        [(_ns(r["time"]), r["line"]) for r in records], [(ts, line) for ts, _, line in want]
    )
    pushed = {line: labels for _, labels, line in want}
    for r in records:  # each line with its own stream's labels (Loki may add labels of its own)
        assert pushed[r["line"]].items() <= r["labels"].items(), r
    assert pages >= 3  # 12,002 lines at 5,000 a page, counted by Loki itself
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["logs"]["lines"] == len(want)
    assert manifest["logs"]["query"] == '{experiment="exp1"}'
    # this Loki deletes nothing (no compactor retention): it holds the whole window
    assert manifest["logs"]["coverage"]["complete"] is True
    assert manifest["logs"]["coverage"]["oldest_sample"] == "1970-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def loki_one_day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Loki whose compactor deletes lines older than a day (Loki's shortest retention)."""
    with local_loki(tmp_path_factory.mktemp("loki-1d"), retention="24h") as url:
        yield url


def test_export_says_what_loki_retention_dropped_and_can_refuse(
    prometheus: str, loki_one_day: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The window (30 h ago) is older than the day this Loki keeps: the metrics are exported,
    one line says the logs are gone, and the manifest records it; --require-complete refuses."""
    out = tmp_path / "exp1"
    before = time.time()
    assert _export(prometheus, out, "--loki-url", loki_one_day) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(
        f"nuclab: warning: experiment 'exp1': Loki holds no log line of the window {_iso(T0)} to "
    ), err
    assert err[0].endswith("; manifest.json records the coverage"), err
    coverage = json.loads((out / "manifest.json").read_text())["logs"]["coverage"]
    assert coverage["complete"] is False and coverage["held"] is None
    assert coverage["missing_seconds"] == (POINTS - 1) * STEP
    assert coverage["source"].startswith("loki limits_config.retention_period")
    oldest = datetime.fromisoformat(coverage["oldest_sample"]).timestamp()
    assert before - 86400 - 5 <= oldest <= time.time() - 86400 + 5  # now minus a day
    refused = tmp_path / "refused"
    code = _export(prometheus, refused, "--loki-url", loki_one_day, "--require-complete")
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "Loki holds no log line of the window" in err
    assert err.strip().endswith("nothing was written (--require-complete)")
    assert not refused.exists()


@pytest.mark.parametrize("limit", [4, 5, 7])
def test_loki_client_pages_a_real_loki_without_losing_or_repeating_lines(
    limit: int, loki: str, logs: list
) -> None:
    """Small pages around the three lines of one nanosecond: page edges fall on and next to it."""
    twin = next(ts for ts, _, line in logs if line.endswith(f"seq={TWIN}"))
    start, end = twin - 10 * 1_000_000_000, twin + 10 * 1_000_000_000
    want = [(ts, line) for ts, labels, line in logs
            if labels["experiment"] == "exp1" and start <= ts < end]  # fmt: skip
    before = query_range_requests(loki)
    got = list(Loki(loki).entries('{experiment="exp1"}', start, end, limit=limit))
    assert query_range_requests(loki) - before >= len(want) // limit
    _assert_same_lines_in_order([(ts, line) for ts, _, line in got], want)
    assert all(labels["experiment"] == "exp1" for _, labels, _ in got)


def test_loki_client_refuses_to_drop_lines_that_share_a_nanosecond_beyond_a_page(
    loki: str, logs: list
) -> None:
    """Three lines of one nanosecond and pages of 2: the third cannot be reached by time."""
    twin = next(ts for ts, _, line in logs if line.endswith(f"seq={TWIN}"))
    start, end = twin - 10 * 1_000_000_000, twin + 10 * 1_000_000_000
    with pytest.raises(NuclabError, match=f"at least 2 lines .* at one nanosecond \\({twin}\\)"):
        list(Loki(loki).entries('{experiment="exp1"}', start, end, limit=2))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("prometheus-down", "Prometheus at http://127.0.0.1:{dead} is unreachable"),
        ("loki-down", "Loki at http://127.0.0.1:{dead} is unreachable"),
        ("no-data", "Prometheus has no data between"),
        (
            "window-gone",
            "(Prometheus holds no sample of the window {t0_7200} to {t0_3600}: it "
            "holds nothing older than {t0}); nothing was written",
        ),
        ("exists", "output: "),
        ("local-time", "--start: '2025-01-01T10:00:00' is not allowed"),
        ("loki-bad-query", "answered 400: "),
        ("loki-fails-midway", "answered 500: injected failure on page 2"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(  # noqa: PLR0917 (pytest fixtures)
    case: str, message: str, prometheus: str, request: pytest.FixtureRequest, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    dead = free_port()
    out = tmp_path / "exp1"
    extra: list[str] = []
    prom = prometheus
    kwargs: dict = {}
    if case == "prometheus-down":
        prom = f"http://127.0.0.1:{dead}"
    elif case == "loki-down":
        extra = ["--loki-url", f"http://127.0.0.1:{dead}"]
    elif case in ("no-data", "window-gone"):
        kwargs = {"start": T0 - 7200, "end": T0 - 3600}
    elif case == "exists":
        out.mkdir()
        (out / "keep.txt").write_text("a previous dataset")
    elif case == "loki-bad-query":  # the real Loki refuses LogQL it cannot parse
        extra = ["--loki-url", request.getfixturevalue("loki"), "--log-query", "{experiment=}"]
    elif case == "loki-fails-midway":  # the real Loki behind FailOnSecondPage
        extra = ["--loki-url", request.getfixturevalue("failing_loki")]
    if case == "local-time":
        argv = ["export", "exp1", "--prometheus-url", prom, "--output", str(out),
                "--start", "2025-01-01T10:00:00", "--end", "2025-01-01T11:00:00Z"]  # fmt: skip
        code = nuclab(argv)
    else:
        code = _export(prom, out, *extra, **kwargs)
    err = capsys.readouterr().err
    assert code != 0
    times = {"t0": _iso(T0), "t0_7200": _iso(T0 - 7200), "t0_3600": _iso(T0 - 3600)}
    assert message.format(dead=dead, **times) in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if case == "exists":
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name != "exp1"], "a partial folder was left"


# -- the window from the experiment's Helm release, on the simulated lab ----------------------
# A real ``helm install`` of a tiny chart named like an experiment release writes a real release
# record (a Secret in namespace nuclab); the export reads first-deployed and, after ``helm
# uninstall --keep-history``, the deletion time from it, and the lab's nodes into the manifest.

RELEASE = "nuclab-exp-live"


def _helm(kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(
        [tool("helm"), "--kubeconfig", str(kubeconfig), "-n", "nuclab", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def release(sim_lab: Path, tmp_path: Path) -> Iterator[Path]:
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: experiment\nversion: 0.0.1-test\nappVersion: '0.1.0'\n"
    )
    (chart / "values.yaml").write_text("peers: 1\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-test\n"
        "  labels:\n    nuclab.io/experiment: live\ndata:\n  peers: {{ .Values.peers | quote }}\n"
    )
    subprocess.run(
        [tool("helm"), "--kubeconfig", str(sim_lab), "-n", "nuclab", "uninstall", RELEASE],
        capture_output=True, check=False,
    )  # fmt: skip
    _helm(sim_lab, "install", RELEASE, str(chart), "--create-namespace", "--set", "peers=3")
    try:
        yield sim_lab
    finally:
        subprocess.run(
            [tool("helm"), "--kubeconfig", str(sim_lab), "-n", "nuclab", "uninstall", RELEASE],
            capture_output=True, check=False,
        )  # fmt: skip


def _status(kubeconfig: Path) -> dict:
    return json.loads(_helm(kubeconfig, "status", RELEASE, "-o", "json"))["info"]


def test_export_reads_the_window_and_provenance_from_the_release(
    release: Path,
    prometheus: str,
    tmp_path: Path,
) -> None:
    first = parse_time(_status(release)["first_deployed"])
    out = tmp_path / "running"
    before = datetime.now(UTC)
    code = nuclab(
        ["export", "live", "--prometheus-url", prometheus, "--kubeconfig", str(release),
         "--output", str(out), "--step", "1"]
    )  # fmt: skip
    assert code == 0
    m = json.loads((out / "manifest.json").read_text())
    start, end = parse_time(m["window"]["start"]), parse_time(m["window"]["end"])
    assert m["window"]["source"] == "helm-release"
    assert abs((start - first).total_seconds()) < 0.001  # first deployed
    assert before <= end <= datetime.now(UTC)  # still running: up to now
    assert m["spec"] == {"peers": 3}
    assert m["chart"] == {"name": "experiment", "version": "0.0.1-test", "appVersion": "0.1.0"}
    assert m["release"]["status"] == "deployed"
    names = {n["name"] for n in m["nodes"]}
    assert "nuc-master" in names and "nuc-1" in names
    assert all("nuclab.io/role" in n["labels"] and n["capacity"] for n in m["nodes"])
    # The real nodes' kubelets report this machine's kernel and architecture (compare and rerun
    # say what differs between labs).
    real = [n for n in m["nodes"] if n["name"] in REAL | {REAL_CLIENT}]
    assert len(real) == 3
    for node in real:
        assert (node["kernel"], node["architecture"]) == (os.uname().release, "amd64"), node
    ts = pq.read_table(out / "metrics" / "nuclab_peer_messages_sent_total.parquet")["timestamp"]
    assert ts.to_pylist()[0] >= start.replace(microsecond=0)

    _helm(release, "uninstall", RELEASE, "--keep-history")
    deleted = parse_time(_status(release)["deleted"])
    out2 = tmp_path / "deleted"
    code = nuclab(
        ["export", "live", "--prometheus-url", prometheus, "--kubeconfig", str(release),
         "--output", str(out2), "--step", "1"]
    )  # fmt: skip
    assert code == 0
    m2 = json.loads((out2 / "manifest.json").read_text())
    assert abs((parse_time(m2["window"]["end"]) - deleted).total_seconds()) < 0.001
    assert m2["release"]["status"] == "uninstalled"


def test_export_of_an_unknown_experiment_names_the_missing_release(
    sim_lab: Path,
    prometheus: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = nuclab(
        ["export", "nosuch", "--prometheus-url", prometheus, "--kubeconfig", str(sim_lab),
         "--output", str(tmp_path / "x")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3
    assert "no Helm release 'nuclab-exp-nosuch' in namespace 'nuclab'" in err
    assert not list(tmp_path.iterdir())


def test_export_playbook_writes_the_dataset_once_and_is_idempotent(
    release: Path, prometheus: str, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    args = ["playbooks/export.yml", "-e", "name=live", "-e", f"export_prometheus_url={prometheus}",
            "-e", f"export_output={out}", "-e", "export_step=1"]  # fmt: skip
    first = run_playbook(*args)
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=1\s", first.stdout), first.stdout[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["experiment"] == "live" and manifest["window"]["source"] == "helm-release"
    second = run_playbook(*args)
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=0\s", second.stdout), second.stdout[-2000:]
    assert json.loads((out / "manifest.json").read_text()) == manifest  # never overwritten


def test_export_playbook_fails_clearly_when_prometheus_is_unreachable(
    release: Path, tmp_path: Path
) -> None:
    dead = free_port()
    out = tmp_path / "ds"
    proc = run_playbook(
        "playbooks/export.yml", "-e", "name=live", "-e",
        f"export_prometheus_url=http://127.0.0.1:{dead}", "-e", f"export_output={out}",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert f"Prometheus at http://127.0.0.1:{dead} is unreachable" in proc.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["chart"], "nothing of the dataset is left"
