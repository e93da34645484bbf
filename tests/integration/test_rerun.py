"""``nuclab rerun``: a run on the simulated lab's real nodes, exported, created again from its
dataset under another name, exported again; the second dataset names the first as its parent.
A dataset this lab cannot reproduce (another chart version) is refused, one line per
difference, with nothing created, unless ``--allow-drift``, which records the difference.

Everything is real: the experiment's peers run on the real nodes, the lab's own Prometheus
scrapes them, ``nuclab export`` reads it and the lab's API.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nuclab import rerun, spec
from tests.integration.realnodes import NUCLAB, REAL, nuclab, wait_for
from tests.integration.realnodes import pods as peer_pods

FIRST, SECOND, DRIFTED = "rr", "rr-again", "rr-drift"
RUN_SECONDS = 40  # the rerun's: a few scrapes of its probes' RTT histograms (every 15 s)
KSM_SCRAPES = 12  # two of kube-state-metrics' scrapes (every 5 s on the simulated lab)


def _export(name: str, out: Path) -> dict[str, Any]:
    nuclab("export", name, "-o", str(out))
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def first(sim_lab: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A dataset of ``rr``: 2 peers with the probe on the real nodes, exported once they run
    (what a rerun reads is the spec, chart, images and placement), then deleted."""
    out = tmp_path_factory.mktemp("rerun") / "rr"
    try:
        nuclab(
            "create", "--name", FIRST, "--peers", "2", "--msg-rate", "200", "--cpu", "0.05",
            "--ram", "16", "--label", "node-kind=real", "--probe", "-q",
        )  # fmt: skip
        time.sleep(KSM_SCRAPES)  # the pods' state in Prometheus: the export needs samples
        _export(FIRST, out)
        nuclab("delete", FIRST, "--no-export", "-q")
        yield out
    finally:
        for name in (FIRST, SECOND, DRIFTED):
            nuclab("delete", name, "--no-export", "-q", check=False)


def test_a_rerun_is_the_same_experiment_and_its_dataset_names_its_parent(
    first: Path, core_api: Any, tmp_path: Path
) -> None:
    parent = json.loads((first / "manifest.json").read_text())
    proc = nuclab("rerun", str(first), "--name", SECOND, "-q")
    assert f"a rerun of '{FIRST}'" in proc.stdout, proc.stdout
    running = peer_pods(core_api, SECOND)
    assert len(running) == 2 and {p.spec.node_name for p in running} <= REAL
    time.sleep(RUN_SECONDS)
    child = _export(SECOND, tmp_path / "again")

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
        "experiment": FIRST,
        "created": parent["created"],
        "drift": [],
    }
    assert parent["rerun_of"] is None
    # the rerun measured: every peer's RTT histogram and delivered messages are in its dataset
    assert any(m.startswith("nuclab_peer_rtt_seconds") for m in child["metrics"])
    nuclab("delete", SECOND, "--no-export", "-q")

    # and the two compare: the rerun measured delivery, RTT and CPU
    proc = subprocess.run(
        [NUCLAB, "compare", str(first), str(tmp_path / "again"), "-o", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)["figures"]
    for key in ("messages_delivered", "rtt_p50_ms", "cpu_cores_per_peer"):
        assert (figures[key]["values"][1] or 0) > 0, (key, figures[key])


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
