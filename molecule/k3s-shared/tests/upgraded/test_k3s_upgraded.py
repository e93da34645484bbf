"""After playbooks/upgrade.yml to a newer (test double) release: every node runs it, each K3s
restarted exactly once, servers one after the other in inventory order."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

NEXT = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "k3s-test-double-next"


def _starts(host) -> list[list[str]]:
    log = host.file("/var/lib/rancher/k3s/test-double/starts.log").content_string
    return [line.split() for line in log.splitlines()]


def test_binary_reports_the_new_version(host) -> None:
    version = (NEXT / "VERSION").read_text().strip()
    assert version in host.check_output("/usr/local/bin/k3s --version")


def test_k3s_restarted_exactly_once_into_the_new_version(host) -> None:
    version = (NEXT / "VERSION").read_text().strip()
    starts = _starts(host)
    assert len(starts) == 2, starts
    assert starts[1][2] == version
    unit = "k3s" if "server" in host.lab["group_names"] else "k3s-agent"
    assert host.service(unit).is_running


def test_servers_restarted_one_after_the_other(host) -> None:
    servers = sorted(host.lab["groups"]["server"])
    if host.backend.get_hostname() != servers[0] or len(servers) == 1:
        return
    import testinfra  # noqa: PLC0415

    restarts = [_starts(testinfra.get_host(f"podman://{name}"))[1][0] for name in servers]
    # ISO timestamps sort as times; serial: 1 leaves seconds between two servers' restarts.
    assert restarts == sorted(restarts)
    assert len(set(restarts)) == len(restarts), restarts


def test_the_changed_image_was_imported_once_into_the_running_k3s(host) -> None:
    # The side effect changed the archive while K3s ran: the role copied it and ran
    # `k3s ctr --namespace k8s.io images import` once (recorded by the test double: no
    # containerd runs here, so what the import would do inside containerd is not shown).
    source = NEXT.parent / "images" / "nuclab-tools.tar"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = "/var/lib/rancher/k3s/agent/images/nuclab-tools.tar"
    assert host.file(dest).sha256sum == digest
    log = host.file("/var/lib/rancher/k3s/test-double/imports.log").content_string
    imports = [line.split()[1:] for line in log.splitlines()]
    # The last import is this one, and the only one of it (k3s-agents' online side effect
    # imported another archive before).
    assert imports[-1] == [digest, dest] and imports.count([digest, dest]) == 1, imports
