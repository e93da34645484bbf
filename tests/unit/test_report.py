"""``nuclab report`` renders a self-contained page with every figure from a dataset folder."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from nuclab.cli import main as nuclab
from nuclab.export.dataset import DatasetWriter, families, series_table, sha256
from nuclab.export.prom import Series
from nuclab.histogram import histogram_quantile
from nuclab.probe.metrics import RTT_BUCKETS
from nuclab.report.data import Dataset

T0 = 1_760_000_000
N = 300
PEERS = [f"nuclab-exp-demo-{i}" for i in range(5)]


def _series(labels: dict[str, str], values: list[float]) -> Series:
    return Series(dict(labels), [(T0 + i) * 1000 for i in range(N)], [float(v) for v in values])


def _histogram(name: str, labels: dict[str, str], seconds: float, spread: float, seed: int):
    """Buckets of ``N`` seconds of one observation a second, normally distributed around
    ``seconds``; returns (metric -> [Series])."""
    rng = np.random.default_rng(seed)
    obs = np.abs(rng.normal(seconds, spread, N))
    out: dict[str, list[Series]] = {f"{name}_bucket": [], f"{name}_sum": [], f"{name}_count": []}
    for le in [*RTT_BUCKETS, math.inf]:
        cum = np.cumsum(obs <= le)
        out[f"{name}_bucket"].append(
            _series({**labels, "le": "+Inf" if le == math.inf else str(le)}, list(cum))
        )
    out[f"{name}_sum"].append(_series(labels, list(np.cumsum(obs))))
    out[f"{name}_count"].append(_series(labels, list(range(1, N + 1))))
    return out


def make_dataset(path: Path) -> Path:
    metrics: dict[str, list[Series]] = {}

    def add(name: str, s: Series) -> None:
        metrics.setdefault(name, []).append(s)

    for i, pod in enumerate(PEERS):
        pod_labels = {"namespace": "nuclab", "pod": pod}
        add(
            "container_cpu_usage_seconds_total",
            _series(pod_labels, [0.05 * (i + 1) * t for t in range(N)]),
        )
        add(
            "container_memory_working_set_bytes",
            _series(pod_labels, [(10 + i) * 2**20 + t * 1000 for t in range(N)]),
        )
        add(
            "container_network_transmit_bytes_total",
            _series(pod_labels, [t * 2e5 * (i + 1) for t in range(N)]),
        )
        add(
            "container_network_receive_bytes_total",
            _series(pod_labels, [t * 1e5 * (i + 1) for t in range(N)]),
        )
        peer = {"experiment": "demo", "peer": pod}
        add("nuclab_peer_messages_sent_total", _series(peer, [t // 2 for t in range(N)]))
        add("nuclab_peer_messages_received_total", _series(peer, [2 * t for t in range(N)]))
        for name, group in _histogram(
            "nuclab_peer_delivery_latency_seconds", peer, 0.02, 0.005, i
        ).items():
            metrics.setdefault(name, []).extend(group)
        for j, target in enumerate(PEERS):
            if target == pod:
                continue
            labels = {"experiment": "demo", "source": pod, "target": target}
            hist = _histogram(
                "nuclab_peer_rtt_seconds", labels, 0.001 * (1 + i + j), 0.0002, 10 * i + j
            )
            for name, group in hist.items():
                metrics.setdefault(name, []).extend(group)
    writer = DatasetWriter(path)
    files = {}
    for family, members in families(metrics).items():
        table = series_table((m, metrics[m]) for m in members)
        rel = f"metrics/{family}.parquet"
        writer.write_table(rel, table, csv=False)
        files[family] = {"file": rel, "metrics": members, "rows": table.num_rows}
    writer.commit(
        {
            "experiment": "demo",
            "window": {"start": "2025-10-09T08:53:20Z", "end": "2025-10-09T08:58:19Z"},
            "spec": {"peers": 5, "msg_size": 1440},
            "metrics": files,
            "nodes": [{"name": "nuc-1", "labels": {"nuclab.io/role": "worker"},
                       "capacity": {"cpu": "4"}, "kubelet_version": "v1.35.4+k3s1"}],
        }
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("report") / "demo")


def test_report_is_one_self_contained_page_with_every_figure(demo: Path, tmp_path: Path) -> None:
    ds = demo
    assert nuclab(["report", str(ds)]) == 0
    page = (ds / "report.html").read_text()
    assert "<title>nuclab report: demo</title>" in page
    titles = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [t for t, _ in titles] == [
        "CPU per peer", "Memory per peer", "Network up per peer", "Network down per peer",
        "Messages published per peer", "Messages received per peer", "RTT heatmap",
        "RTT percentiles", "Delivery latency",
    ]  # fmt: skip
    for title, data in titles:
        png = base64.b64decode(data)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000, title
        (tmp_path / f"{title.replace(' ', '_')}.png").write_bytes(png)  # to look at
    assert not re.search(r'(src|href)="(?!data:)', page), "the page must not load anything"
    assert "No data for this" not in page
    assert "nuc-1" in page and "nuclab.io/role=worker" in page


def test_report_says_which_figures_have_no_data(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    writer = DatasetWriter(path)
    writer.commit({"experiment": "empty", "window": {}, "metrics": {}})
    assert nuclab(["report", str(path), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert page.count("No data for this in the dataset") == 9
    assert "data:image/png" not in page


def test_report_of_a_folder_that_is_not_a_dataset_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert nuclab(["report", str(tmp_path)]) == 3
    assert "no manifest.json (not a nuclab dataset)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _refused(ds: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``nuclab report`` of ``ds`` exits 2 with one line and writes no page; returns the line."""
    assert nuclab(["report", str(ds)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (ds / "report.html").exists() and not list(ds.glob(".report*"))
    return err


def _expected(ds: Path, rel: str) -> str:
    manifest = json.loads((ds / "manifest.json").read_text())
    return next(f["sha256"] for f in manifest["files"] if f["path"] == rel)


RTT_FILE = "metrics/nuclab_peer_rtt_seconds.parquet"


def _copy(demo: Path, tmp_path: Path) -> Path:
    """The demo dataset as exported (without the page an earlier test rendered into it)."""
    return Path(shutil.copytree(demo, tmp_path / "demo", ignore=shutil.ignore_patterns("*.html")))


def test_report_refuses_a_file_changed_after_the_export(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = _copy(demo, tmp_path)
    with (ds / RTT_FILE).open("r+b") as fh:  # one byte flipped: still a readable size
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    err = _refused(ds, capsys)
    assert f"{RTT_FILE} has sha256 {sha256(ds / RTT_FILE)}" in err
    assert f"the manifest expects {_expected(ds, RTT_FILE)}" in err


def test_report_refuses_a_dataset_with_a_listed_file_missing(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = _copy(demo, tmp_path)
    (ds / RTT_FILE).unlink()
    err = _refused(ds, capsys)
    assert f"{RTT_FILE} is missing; the manifest lists it (sha256 {_expected(ds, RTT_FILE)})" in err


def test_report_refuses_a_metric_file_without_a_checksum(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = _copy(demo, tmp_path)
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["path"] != RTT_FILE]
    (ds / "manifest.json").write_text(json.dumps(manifest))
    err = _refused(ds, capsys)
    assert f"{RTT_FILE} is not listed in manifest.json files (no checksum to check it)" in err


def test_dataset_reads_back_what_the_export_writer_wrote(demo: Path) -> None:
    ds = Dataset(demo)
    mem = ds.metric("container_memory_working_set_bytes", "container_memory_working_set_bytes")
    assert len(mem) == 5
    first = next(s for s in mem if s.peer == PEERS[0])
    assert first.t[0] == T0 and first.v[1] - first.v[0] == 1000
    assert json.loads((demo / "manifest.json").read_text())["spec"]["peers"] == 5


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 2.0), (0.25, 1.0), (0.75, 2.5), (1.0, 3.0)],
)
def test_histogram_quantile_interpolates_like_promql(q: float, expected: float) -> None:
    bounds = np.array([1.0, 2.0, 3.0, math.inf])
    counts = np.array([1.0, 2.0, 4.0, 4.0])  # cumulative
    assert histogram_quantile(q, bounds, counts) == pytest.approx(expected)


def test_a_restarted_peers_histogram_counts_from_zero_after_the_reset() -> None:
    """A peer that restarts starts its buckets at zero again: the window's increase is what it
    counted before plus what it counted after, as PromQL's increase says (not last - first)."""
    from nuclab.report.data import Series as Samples
    from nuclab.report.data import bucket_increase, overall_percentiles

    t = np.arange(6, dtype=float)
    before_after = np.array([0.0, 10, 20, 5, 15, 25])  # +20, reset to 5, +20: 45 in all
    buckets = [
        Samples("lat_bucket", {"le": "0.01"}, t, before_after),
        Samples("lat_bucket", {"le": "+Inf"}, t, before_after),
    ]
    bounds, counts = bucket_increase(buckets)
    assert list(bounds) == [0.01, math.inf] and list(counts) == [45.0, 45.0]
    assert overall_percentiles(buckets)["p50"] == pytest.approx(0.005)


def test_cadvisor_series_count_each_pod_once() -> None:
    """cAdvisor's pod-level series beside its containers' would count a pod twice; a pod with
    only the pod-level series (the simulated lab's kubelets) keeps it."""
    from nuclab.report.data import Series as DataSeries
    from nuclab.report.data import once_per_pod

    def series(pod: str, container: str | None) -> DataSeries:
        labels = {"pod": pod} | ({"container": container} if container is not None else {})
        return DataSeries("container_cpu_usage_seconds_total", labels, np.zeros(1), np.zeros(1))

    full = [series("a", None), series("a", "peer"), series("a", "probe"), series("a", "POD")]
    only_pod = [series("b", None)]
    kept = once_per_pod(full + only_pod)
    assert sorted((s.peer, s.labels.get("container")) for s in kept) == [
        ("a", "peer"),
        ("a", "probe"),
        ("b", None),
    ]


def test_a_rate_spans_a_window_so_a_scrape_read_twice_is_no_zero() -> None:
    """An export's step as long as the scrape interval holds a scrape twice now and then: the
    next step then holds two intervals' growth. Over a 60 s window the rate stays the counter's
    1/s, where step-by-step differences gave 0 and then 2."""
    from nuclab.report.data import Series as DataSeries
    from nuclab.report.data import rate

    t = np.arange(0, 301, 15, dtype=float)
    v = t.copy()
    v[4::5] = v[3::5][: len(v[4::5])]  # every fifth step reads the scrape before it again
    _, per_second = rate(DataSeries("x_total", {}, t, v))
    assert len(per_second) == len(t) - 1
    late = per_second[4:]  # once a whole window is behind
    assert np.all(np.abs(late - 1.0) <= 0.25), late
    v[10:] -= 100  # a restart: counted from zero, never negative
    v[10:] = np.maximum(v[10:], 0)
    assert np.all(rate(DataSeries("x_total", {}, t, v))[1] >= 0)
