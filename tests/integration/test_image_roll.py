"""A new nuclab tools image under the same tag replaces the pods of nuclab's DaemonSets, on the
simulated lab's real API and real nodes.

The nodes keep the image a tag named when they imported it, and a DaemonSet whose pod template
is unchanged keeps its pods: without more, a lab updated to a new nuclab would go on running the
old network agent and node probe. Their pod template carries the image's content key
(``nuclab.io/image-key``, roles/nuclab_image/tasks/key.yml), so a new image rolls them. Here the
"new image" is the lab's own with another key label, tagged under the same name in podman (where
the simulated lab, like a bare-metal controller, reads it); the old tag is restored after.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, config

from tests.conftest import REPO
from tests.integration.conftest import run_playbook
from tests.integration.realnodes import wait_for

IMAGE = "localhost/nuclab/tools:0.1.0"
KEY = "io.nuclab.image-key"
ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "tools" / "containers.conf")}


def _podman(*argv: str) -> str:
    done = subprocess.run(["podman", *argv], capture_output=True, text=True, env=ENV, check=False)
    assert done.returncode == 0, f"podman {' '.join(argv)}: {done.stderr[-2000:]}"
    return done.stdout


def _agents(core: Any) -> dict[str, str]:
    """Each running net agent pod's UID and the image key its template gave it."""
    pods = core.list_namespaced_pod(
        "kube-system", label_selector="app.kubernetes.io/name=nuclab-net-agent"
    ).items
    return {
        p.metadata.uid: (p.metadata.annotations or {}).get("nuclab.io/image-key", "")
        for p in pods
        if p.metadata.deletion_timestamp is None
    }


def _rolled(apps: Any, core: Any, key: str, old: set[str]) -> bool:
    ds = apps.read_namespaced_daemon_set("nuclab-net-agent", "kube-system")
    status = ds.status
    done = (
        status.observed_generation == ds.metadata.generation
        and status.updated_number_scheduled == status.desired_number_scheduled
        and status.number_ready == status.desired_number_scheduled
    )
    agents = _agents(core)
    return bool(
        done
        and len(agents) == status.desired_number_scheduled
        and set(agents.values()) == {key}
        and not old & set(agents)
    )


def test_a_new_image_under_the_same_tag_replaces_the_agent_pods(
    sim_lab: Path, tmp_path: Path
) -> None:
    api = config.new_client_from_config(str(sim_lab))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    inspect = json.loads(_podman("image", "inspect", IMAGE))[0]
    original, key = inspect["Id"], inspect["Labels"][KEY]
    before = _agents(core)
    # The template carries the key of the image the nodes hold.
    assert before and set(before.values()) == {key}, before

    other = f"rolltest-{uuid.uuid4().hex[:8]}"
    (tmp_path / "Containerfile").write_text(f"FROM {original}\n")
    derived, rolled = "", set()
    try:
        derived = _podman("build", "--network=none", "--pull=never", "-q", "--label",
                          f"{KEY}={other}", "-t", IMAGE, str(tmp_path)).strip()  # fmt: skip
        run_playbook("playbooks/network.yml")
        wait_for(lambda: _rolled(apps, core, other, set(before)), 300, "the agents' new pods")
        rolled = set(_agents(core))
    finally:
        _podman("tag", original, IMAGE)
        if derived:
            _podman("rmi", derived)
        run_playbook("playbooks/network.yml")
    # Back on the lab's image: replaced once more.
    wait_for(lambda: _rolled(apps, core, key, set(before) | rolled), 300, "the agents back")
    second = run_playbook("playbooks/network.yml")
    assert "changed=0" in second.stdout.split("PLAY RECAP")[-1]
