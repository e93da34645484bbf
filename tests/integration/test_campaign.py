"""``nuclab campaign`` on the simulated lab's real nodes: 2 values x 2 repeats, killed (SIGKILL,
as a machine that loses power) while its second run runs, resumed: 4 datasets, each exported from
what the lab's Prometheus scraped of its peers, one comparison, and no experiment left behind.

Everything is real: the peers run on the real nodes, the lab's Prometheus scrapes them, the
export reads it and the lab's API, the deletes run experiment.yml.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import yaml

from nuclab import rerun, spec
from tests.integration.conftest import SIM_INVENTORY
from tests.integration.realnodes import NUCLAB, REAL, nuclab, wait_for
from tests.integration.realnodes import pods as peer_pods

NAME = "cmp"
SIZES = [512, 1440]
DURATION = 20  # seconds: at least one scrape of the peers (every 15 s)


def _record(out: Path) -> dict[str, str]:
    path = out / "campaign.json"
    if not path.is_file():
        return {}
    return {r["name"]: r["status"] for r in json.loads(path.read_text())["runs"]}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_campaign_cut_off_mid_run_resumes_and_ends_with_four_datasets_and_a_comparison(
    sim_lab: Path, core_api: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    body = {
        "name": NAME,
        "experiment": {"peers": 2, "msg_rate": 200, "cpu": 0.05, "ram": 16,
                       "node_labels": {"node-kind": "real"}},
        "grid": {"msg_size": SIZES},
        "repeats": 2,
        "duration": f"{DURATION}s",
        "output": str(out),
    }  # fmt: skip
    path = tmp_path / "campaign.yml"
    path.write_text(yaml.safe_dump({"campaign": body}))
    names = [f"{NAME}-{i}" for i in range(1, 5)]
    try:
        first = subprocess.Popen(
            [NUCLAB, "campaign", "run", str(path), "-i", str(SIM_INVENTORY), "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            # cut off while the second run's peers run on the real nodes
            wait_for(
                lambda: _record(out).get(names[1]) == "running"
                and len(peer_pods(core_api, names[1])) == 2,
                240, f"the second run ({names[1]}) to run", step=0.5,
            )  # fmt: skip
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=30)
        assert _record(out) == {names[0]: "done", names[1]: "running"}
        kept = _digest(out / names[0] / "manifest.json")
        status = nuclab("campaign", "status", str(path))
        rows = [line.split() for line in status.stdout.splitlines()[1:]]
        assert [(row[0], row[3]) for row in rows] == [
            (names[0], "done"), (names[1], "running"), (names[2], "to"), (names[3], "to"),
        ]  # fmt: skip

        resumed = nuclab("campaign", "run", str(path), "-q")
        assert f"campaign {NAME}: 4 done, 0 failed of 4 runs" in resumed.stdout, resumed.stdout
    finally:
        for name in names:
            nuclab("delete", name, "--no-export", "-q", check=False)

    assert _record(out) == dict.fromkeys(names, "done")
    assert _digest(out / names[0] / "manifest.json") == kept, "a done run is not run again"
    for i, name in enumerate(names):
        manifest = rerun.load_manifest(out / name)  # whole: every file's checksum holds
        fields = spec.from_values(manifest["spec"])
        assert fields["msg_size"] == SIZES[i // 2] and fields["peers"] == 2, fields
        assert len(manifest["pods"]) == 2 and {p["node"] for p in manifest["pods"]} <= REAL
        scraped = [m for m in manifest["metrics"] if m.startswith("nuclab_peer_")]
        assert scraped, f"{name}: no peer series scraped: {sorted(manifest['metrics'])}"
        assert peer_pods(core_api, name) == [], f"{name} was left running"

    compared = json.loads((out / "compare.json").read_text())
    assert [n.split()[0] for n in compared["datasets"]] == names, compared["datasets"]
    assert (out / "compare.html").stat().st_size > 0
    assert names[3] in resumed.stdout  # the comparison's table
