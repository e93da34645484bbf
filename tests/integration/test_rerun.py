"""``nuclab campaign`` and ``nuclab rerun`` on the simulated lab's real nodes.

A campaign of 2 message sizes x 2 repeats is killed (SIGKILL, as a machine that loses power)
while its second run runs, then resumed: 4 datasets, each exported from what the lab's Prometheus
scraped of its peers, one comparison, no experiment left behind. Its first dataset is then run
again under another name and exported again; the second dataset names the first as its parent.
A dataset this lab cannot reproduce (another chart version) is refused, one line per
difference, with nothing created, unless ``--allow-drift``, which records the difference.

Everything is real: the experiments' peers run on the real nodes, the lab's own Prometheus
scrapes them, ``nuclab export`` reads it and the lab's API, the deletes run experiment.yml.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from nuclab import rerun, spec
from tests.integration.conftest import SIM_INVENTORY
from tests.integration.realnodes import NUCLAB, REAL, nuclab, wait_for
from tests.integration.realnodes import pods as peer_pods

CAMPAIGN = "cmp"
RUNS = [f"{CAMPAIGN}-{i}" for i in range(1, 5)]
SIZES = [512, 1440]
DURATION = 20  # seconds a campaign's run: at least one scrape of its peers (every 15 s)
SECOND, DRIFTED, HALF = "rr-again", "rr-drift", "rr-half"
RUN_SECONDS = 40  # the rerun's: a few scrapes of its probes' RTT histograms (every 15 s)
# Each peer's uplink (Mbit/s) and ms between its messages: the first size's 50 messages a
# second, and the other peer's it relays (about 0.5 Mbit/s on the wire), fit in it (measured on
# the real nodes: p50 0.34 ms, p99 43 ms), and not in half of it (p50 59 ms, p99 1.7 s).
MSG_RATE, UPLINK = 20, 0.8


def _export(name: str, out: Path) -> dict[str, Any]:
    nuclab("export", name, "-o", str(out))
    return json.loads((out / "manifest.json").read_text())


def _record(out: Path) -> dict[str, str]:
    path = out / "campaign.json"
    if not path.is_file():
        return {}
    return {r["name"]: r["status"] for r in json.loads(path.read_text())["runs"]}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Campaign:
    out: Path
    cut: dict[str, str]  # the record when the campaign was killed
    status: list[list[str]]  # `nuclab campaign status` then
    first_digest: str  # the first dataset's manifest then
    resumed: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def campaign(
    sim_lab: Path, core_api: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Campaign]:
    """The campaign, killed while its second run's peers run on the real nodes, then resumed."""
    work = tmp_path_factory.mktemp("campaign")
    out = work / "out"
    body = {
        "name": CAMPAIGN,
        "experiment": {"peers": 2, "msg_rate": MSG_RATE, "uplink_bw": UPLINK, "cpu": 0.05,
                       "ram": 16, "probe": True, "node_labels": {"node-kind": "real"}},
        "grid": {"msg_size": SIZES},
        "repeats": 2,
        "duration": f"{DURATION}s",
        "output": str(out),
    }  # fmt: skip
    path = work / "campaign.yml"
    path.write_text(yaml.safe_dump({"campaign": body}))
    try:
        first = subprocess.Popen(
            [NUCLAB, "campaign", "run", str(path), "-i", str(SIM_INVENTORY), "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(
                lambda: _record(out).get(RUNS[1]) == "running"
                and len(peer_pods(core_api, RUNS[1])) == 2,
                240, f"the second run ({RUNS[1]}) to run", step=0.5,
            )  # fmt: skip
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=30)
        cut = _record(out)
        status = subprocess.run(
            [NUCLAB, "campaign", "status", str(path)], capture_output=True, text=True, check=True
        ).stdout.splitlines()[1:]
        digest = _digest(out / RUNS[0] / "manifest.json")
        resumed = nuclab("campaign", "run", str(path), "-q", check=False)
        yield Campaign(out, cut, [line.split() for line in status], digest, resumed)
    finally:
        for name in (*RUNS, SECOND, DRIFTED, HALF):
            nuclab("delete", name, "--no-export", "-q", check=False)


def test_a_campaign_cut_off_mid_run_resumes_and_ends_with_four_datasets_and_a_comparison(
    campaign: Campaign, core_api: Any
) -> None:
    out = campaign.out
    assert campaign.cut == {RUNS[0]: "done", RUNS[1]: "running"}
    assert [(row[0], row[3]) for row in campaign.status] == [
        (RUNS[0], "done"), (RUNS[1], "running"), (RUNS[2], "to"), (RUNS[3], "to"),
    ]  # fmt: skip
    resumed = campaign.resumed
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"campaign {CAMPAIGN}: 4 done, 0 failed of 4 runs" in resumed.stdout, resumed.stdout
    assert _record(out) == dict.fromkeys(RUNS, "done")
    assert _digest(out / RUNS[0] / "manifest.json") == campaign.first_digest, "done: not redone"
    for i, name in enumerate(RUNS):
        manifest = rerun.load_manifest(out / name)  # whole: every file's checksum holds
        fields = spec.from_values(manifest["spec"])
        assert fields["msg_size"] == SIZES[i // 2] and fields["peers"] == 2, fields
        assert len(manifest["pods"]) == 2 and {p["node"] for p in manifest["pods"]} <= REAL
        scraped = [m for m in manifest["metrics"] if m.startswith("nuclab_peer_")]
        assert scraped, f"{name}: no peer series scraped: {sorted(manifest['metrics'])}"
        assert peer_pods(core_api, name) == [], f"{name} was left running"
    compared = json.loads((out / "compare.json").read_text())
    assert [n.split()[0] for n in compared["datasets"]] == RUNS, compared["datasets"]
    assert (out / "compare.html").stat().st_size > 0
    assert RUNS[3] in resumed.stdout  # the comparison's table


@pytest.fixture(scope="module")
def first(campaign: Campaign) -> Path:
    """The campaign's first dataset: 2 peers with the probe, on the real nodes."""
    return campaign.out / RUNS[0]


@dataclass
class Rerun:
    created: subprocess.CompletedProcess[str]
    running: list[Any]  # its peer pods, once they ran
    out: Path  # its dataset
    manifest: dict[str, Any]


def _rerun(dataset: Path, name: str, out: Path, core_api: Any, *flags: str) -> Rerun:
    """``nuclab rerun`` of ``dataset`` as ``name``, run for RUN_SECONDS, exported, deleted."""
    created = nuclab("rerun", str(dataset), "--name", name, *flags, "-q")
    running = peer_pods(core_api, name)
    time.sleep(RUN_SECONDS)
    manifest = _export(name, out)
    nuclab("delete", name, "--no-export", "-q")
    return Rerun(created, running, out, manifest)


@pytest.fixture(scope="module")
def again(first: Path, core_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Rerun:
    """The first dataset run again as it was, under another name."""
    return _rerun(first, SECOND, tmp_path_factory.mktemp("again") / "ds", core_api)


def test_a_rerun_is_the_same_experiment_and_its_dataset_names_its_parent(
    first: Path, again: Rerun
) -> None:
    parent = json.loads((first / "manifest.json").read_text())
    assert f"a rerun of '{RUNS[0]}'" in again.created.stdout, again.created.stdout
    assert len(again.running) == 2 and {p.spec.node_name for p in again.running} <= REAL
    child = again.manifest

    # the same spec, under the new name
    ours = spec.from_values(child["spec"])
    theirs = spec.from_values(parent["spec"])
    assert ours == {**theirs, "name": SECOND}
    assert child["chart"] == parent["chart"]
    assert {i["digest"] for i in child["images"]} == {i["digest"] for i in parent["images"]}
    # the parent, named so that it can be found and checked
    assert child["rerun_of"] == {
        "dataset": str(first.resolve()),
        "manifest_sha256": hashlib.sha256((first / "manifest.json").read_bytes()).hexdigest(),
        "experiment": RUNS[0],
        "created": parent["created"],
        "drift": [],
        "changed": {},
    }
    assert parent["rerun_of"] is None
    # the rerun measured: every peer's RTT histogram and delivered messages are in its dataset
    assert any(m.startswith("nuclab_peer_rtt_seconds") for m in child["metrics"])

    # and the two compare: the rerun measured delivery, RTT and CPU
    proc = subprocess.run(
        [NUCLAB, "compare", str(first), str(again.out), "-o", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)["figures"]
    for key in ("messages_delivered", "rtt_p50_ms", "cpu_cores_per_peer"):
        assert (figures[key]["values"][1] or 0) > 0, (key, figures[key])


def test_a_rerun_with_half_the_bandwidth_is_a_regression_compare_names(
    again: Rerun, core_api: Any, tmp_path: Path
) -> None:
    # The same experiment with half its uplink: its peers now offer more than their link
    # carries (the node agent holds the limit from the first byte), so messages wait, and
    # compare against the full-bandwidth run fails, naming what moved.
    half = _rerun(again.out, HALF, tmp_path / "half", core_api, "--uplink-bw", str(UPLINK / 2))
    assert f"uplink_bw: {UPLINK!r} -> {UPLINK / 2!r} (recorded)" in half.created.stdout
    assert spec.from_values(half.manifest["spec"])["uplink_bw"] == UPLINK / 2
    assert half.manifest["rerun_of"]["changed"] == {"uplink_bw": {"from": UPLINK, "to": UPLINK / 2}}
    latency = ("delivery_p50_ms", "delivery_p99_ms")
    proc = subprocess.run(
        [NUCLAB, "compare", str(again.out), str(half.out), "-o", "json",
         *(a for key in latency for a in ("--max-regression", f"{key}=50%"))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    figures = json.loads(proc.stdout)["figures"]
    shown = {key: figures[key]["values"] for key in (*latency, "throughput_msg_s")}
    assert proc.returncode == 4, (proc.stderr, shown)
    moved = [line for line in proc.stderr.splitlines() if line.startswith("nuclab: regression:")]
    assert {key for key in latency if any(key in line for line in moved)} == set(latency), (
        moved,
        shown,
    )


def test_a_dataset_this_lab_cannot_reproduce_is_refused_unless_drift_is_allowed(
    first: Path, core_api: Any, tmp_path: Path
) -> None:
    other = tmp_path / "other-chart"
    shutil.copytree(first, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["chart"]["version"] = "0.0.1"
    (other / "manifest.json").write_text(json.dumps(manifest))

    refused = nuclab("rerun", str(other), "--name", DRIFTED, "-q", check=False)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.splitlines()
    installed = json.loads((first / "manifest.json").read_text())["chart"]["version"]
    want = f"nuclab: rerun: chart: the run used experiment chart 0.0.1; this lab has {installed}"
    assert lines[0] == want, lines
    assert lines[1].startswith("nuclab: error: 1 difference(s)") and len(lines) == 2, lines
    assert peer_pods(core_api, DRIFTED) == [], "nothing was created"

    allowed = nuclab("rerun", str(other), "--name", DRIFTED, "--allow-drift", "-q")
    assert "recorded: chart: the run used experiment chart 0.0.1" in allowed.stderr
    pods = wait_for(lambda: peer_pods(core_api, DRIFTED), 60, f"the peers of {DRIFTED}")
    record = json.loads(pods[0].metadata.annotations[rerun.PARENT_ANNOTATION])
    assert record["drift"] == [lines[0].removeprefix("nuclab: rerun: ")]
    assert record["dataset"] == str(other.resolve())
    nuclab("delete", DRIFTED, "--no-export", "-q")
