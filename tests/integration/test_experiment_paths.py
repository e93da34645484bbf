"""`nuclab create`/`scale` (their own path, nuclab.deploy) and experiment.yml make one release.

On the simulated lab: the same spec file through both paths gives the same chart values and the
same rendered manifest, and each path sees the other's release as unchanged (no new revision);
a release whose last revision failed is applied again by both, as kubernetes.core.helm does.
`nuclab create` of a name that runs is refused unless `--update` is given.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nuclab import deploy, kube
from tests.conftest import tool
from tests.integration.conftest import SIM_KUBECONFIG, ansible_env, run_playbook
from tests.integration.test_experiment import NAMESPACE, nuclab

NAME = "twin"
FULL = f"nuclab-exp-{NAME}"
SPEC = """experiment:
  name: twin
  peers: 3
  msg_size: 512
  cpu: 0.02
  ram: 12
  uplink_bw: 0.5
  zones: [zone-a, zone-b]
  params: {topic: t1}
"""


def helm(*args: str) -> str:
    proc = subprocess.run(
        [tool("helm"), *args, "-n", NAMESPACE, "--kubeconfig", str(SIM_KUBECONFIG)],
        env=ansible_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def release() -> tuple[dict, str, int]:
    """The release's values, rendered manifest and number of revisions."""
    values = json.loads(helm("get", "values", FULL, "-o", "json"))
    history = json.loads(helm("history", FULL, "-o", "json"))
    return values, helm("get", "manifest", FULL), len(history)


@pytest.fixture
def spec_file(sim_lab: Path, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "twin.yml"
    path.write_text(SPEC)
    if FULL in nuclab("list").stdout:
        nuclab("delete", NAME, "--quiet")
    yield path
    nuclab("delete", NAME, "--quiet", check=False)


def test_cli_and_playbook_make_the_identical_release(sim_lab: Path, spec_file: Path) -> None:
    run_playbook("experiment.yml", "-e", f"@{spec_file}")
    by_playbook = release()
    assert by_playbook[2] == 1

    proc = nuclab("create", "-f", str(spec_file), "--update")
    assert "Install or upgrade" not in proc.stderr  # the CLI's own path: nothing to change
    assert release() == by_playbook
    # helm's record as the CLI reads it (Secrets, not the helm binary) is what helm shows
    found = deploy.read_release(kube.Kube(str(sim_lab)), NAMESPACE, FULL)
    assert found is not None
    assert (found.values, found.status) == (by_playbook[0], "deployed")
    namespace = kube.Kube(str(sim_lab)).get(f"/api/v1/namespaces/{NAMESPACE}")
    assert deploy.NAMESPACE_LABELS.items() <= namespace["metadata"]["labels"].items()

    nuclab("delete", NAME, "--quiet")
    proc = nuclab("create", "-f", str(spec_file))
    assert "[INFO] Install or upgrade the experiment's release (nuclab-exp-twin)" in proc.stderr
    assert "3 of 3 peers ready" in proc.stderr
    assert release() == by_playbook  # same values, same manifest, one revision

    again = run_playbook("experiment.yml", "-e", f"@{spec_file}")
    assert "changed=0" in again.stdout

    nuclab("scale", NAME, "4", "--quiet")
    scaled = release()
    assert (scaled[0]["experiment"]["peers"], scaled[2]) == (4, 2)
    again = run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "peers=4")
    assert "changed=0" in again.stdout


def _fail_last_revision(sim_lab: Path) -> None:
    """Mark the release's last revision failed in helm's own record (its Secret), as a helm
    upgrade that died half-way leaves it."""
    api = kube.Kube(str(sim_lab))
    found = api.get(
        f"/api/v1/namespaces/{NAMESPACE}/secrets?labelSelector=owner%3Dhelm%2Cname%3D{FULL}"
    )["items"]
    last = max(found, key=lambda s: int(s["metadata"]["labels"]["version"]))
    record = deploy.release_record(last)
    record["info"]["status"] = "failed"
    data = base64.b64encode(base64.b64encode(gzip.compress(json.dumps(record).encode())))
    patch = {"metadata": {"labels": {"status": "failed"}}, "data": {"release": data.decode()}}
    subprocess.run(
        [tool("kubectl"), "--kubeconfig", str(sim_lab), "-n", NAMESPACE, "patch", "secret",
         last["metadata"]["name"], "--type", "merge", "-p", json.dumps(patch)],
        check=True, capture_output=True,
    )  # fmt: skip
    status = json.loads(helm("status", FULL, "-o", "json"))["info"]["status"]
    assert status == "failed"


def test_both_front_doors_apply_a_failed_release_again(sim_lab: Path, spec_file: Path) -> None:
    nuclab("create", "-f", str(spec_file), "--quiet")
    revisions = release()[2]

    _fail_last_revision(sim_lab)
    # the same values: applied again all the same
    proc = nuclab("create", "-f", str(spec_file), "--update")
    assert "[INFO] Install or upgrade the experiment's release" in proc.stderr
    assert release()[2] == revisions + 1
    assert json.loads(helm("status", FULL, "-o", "json"))["info"]["status"] == "deployed"

    _fail_last_revision(sim_lab)
    again = run_playbook("experiment.yml", "-e", f"@{spec_file}")
    assert "changed=0" not in again.stdout
    assert release()[2] == revisions + 2
    assert json.loads(helm("status", FULL, "-o", "json"))["info"]["status"] == "deployed"


def test_create_refuses_a_name_that_runs_and_update_changes_it(
    sim_lab: Path, spec_file: Path
) -> None:
    nuclab("create", "-f", str(spec_file), "--quiet")
    before = release()
    refusal = (
        f"nuclab: error: name: '{NAME}' is not allowed; a name no experiment has in namespace "
        f"{NAMESPACE}: '{NAME}' runs there (nuclab scale {NAME} <peers> changes its peers, "
        "nuclab create --update its spec)"
    )
    for via in ([], ["--via-playbook"]):
        proc = nuclab("create", "-f", str(spec_file), "--peers", "5", "-q", *via, check=False)
        assert (proc.returncode, proc.stderr.splitlines()) == (2, [refusal]), via
        assert release() == before  # no new revision, the same values
    nuclab("create", "--name", NAME, "--peers", "4", "--update", "-q")
    values, _, revisions = release()
    assert (values["experiment"]["peers"], revisions) == (4, before[2] + 1)
    # the fields not given keep the release's values
    assert values["experiment"]["msgSize"] == before[0]["experiment"]["msgSize"] == 512
