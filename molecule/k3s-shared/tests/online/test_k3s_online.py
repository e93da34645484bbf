"""After online.yml: the lab converged in online mode with a new nuclab tools image archive."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ARCHIVE = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "images" / "nuclab-tools.tar"
DEST = "/var/lib/rancher/k3s/agent/images/nuclab-tools.tar"


def test_the_new_image_reached_the_node_and_was_imported_once(host) -> None:
    # Imported with `k3s ctr --namespace k8s.io images import` while K3s ran (recorded by the
    # test double: no containerd runs here). The first archive was copied before K3s first
    # started, so K3s' own import at start took it and the role imported nothing then.
    digest = hashlib.sha256(ARCHIVE.read_bytes()).hexdigest()
    assert host.file(DEST).sha256sum == digest
    log = host.file("/var/lib/rancher/k3s/test-double/imports.log").content_string
    assert [line.split()[1:] for line in log.splitlines()] == [[digest, DEST]]


def test_nothing_was_downloaded_and_k3s_did_not_restart(host) -> None:
    # The pinned version is installed: online mode neither fetches nor runs the installer, and
    # a new image needs no restart (the one start is the first converge's).
    assert not host.file("/usr/local/lib/nuclab-k3s-install.sh").exists
    starts = host.file("/var/lib/rancher/k3s/test-double/starts.log").content_string
    assert len(starts.splitlines()) == 1, starts
