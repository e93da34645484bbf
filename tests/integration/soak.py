"""The reference experiment's 5-minute soak on the real nodes, kept beside the other lab tests.

The soak is mostly waiting: five peers at the reference figures must stay Ready, with no restart,
for 5 minutes. It starts before the first test that uses the lab (tests/integration/conftest.py)
and a thread reads its pods every 15 s while the other tests run; the soak test in
test_real_nodes.py waits for whatever is left of the 5 minutes and then asserts on what was read.
The other tests' experiments are their own (other names, other pods), as experiments side by
side are on a real lab.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.integration.realnodes import nuclab, pods, running_pods

NAME = "reference"
SECONDS = 300
POLL = 15.0

# The reference figures, exactly: 5 peers, 1440 B every 2000 ms, 0.05 CPU, 16 MiB,
# 16 Mbit/s up and down, connect-to 5; on the real nodes only.
REFERENCE = (
    "--peers", "5", "--msg-size", "1440", "--msg-rate", "2000", "--cpu", "0.05", "--ram", "16",
    "--downlink-bw", "16", "--uplink-bw", "16", "--connect-to", "5", "--label", "node-kind=real",
)  # fmt: skip


class Soak:
    """The `reference` experiment, its peers as they first ran, and what a thread saw since."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.error = ""  # why the soak could not start, reported by the soak test
        self.problems: list[str] = []  # a peer not ready, restarted, replaced or gone
        self.peers: list[Any] = []
        self.started = 0.0
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="reference-soak", daemon=True)

    def start(self) -> None:
        proc = nuclab("create", "--name", NAME, *REFERENCE, "-q", check=False)
        if proc.returncode != 0:
            self.error = f"nuclab create --name {NAME} exited {proc.returncode}: {proc.stderr}"
            return
        self.peers = running_pods(self.core, NAME, 5)
        self.started = time.monotonic()
        self._thread.start()

    def _watch(self) -> None:
        uids = {p.metadata.name: p.metadata.uid for p in self.peers}
        while not self._stop.wait(POLL):
            try:
                found = {p.metadata.name: p for p in pods(self.core, NAME)}
            except Exception as exc:  # the API not answering is a problem of the lab, kept
                self._saw(f"listing the peers failed: {exc}")
                continue
            self.polls += 1
            for name, uid in uids.items():
                pod = found.get(name)
                if pod is None or pod.metadata.uid != uid:
                    self._saw(f"{name} was deleted or replaced")
                    continue
                for status in pod.status.container_statuses or []:
                    if not status.ready:
                        self._saw(f"{name} ({status.name}) is not ready")
                    if status.restart_count:
                        self._saw(f"{name} ({status.name}) restarted: {status.last_state}")

    def _saw(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def wait(self, seconds: float = SECONDS) -> float:
        """Wait until the peers have run ``seconds``; stop watching; return how long they ran."""
        assert not self.error, self.error
        left = self.started + seconds - time.monotonic()
        if left > 0:
            time.sleep(left)
        self._stop.set()
        self._thread.join()
        return time.monotonic() - self.started

    def delete(self) -> None:
        self._stop.set()
        nuclab("delete", NAME, "--no-export", "-q", check=False)
