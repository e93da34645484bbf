"""Fixtures shared by the k3s-* scenarios' testinfra tests.

Molecule hands testinfra an Ansible inventory of podman hosts; testinfra's Ansible backend
would run every command through ansible (seconds each), so commands go straight through
podman exec instead, and inventory facts (groups, host vars) are read once from the inventory.
"""

from __future__ import annotations

from typing import Any

import pytest
import testinfra


@pytest.fixture
def host(_testinfra_host: Any) -> Any:
    """The same host as Molecule's, reached with podman exec."""
    name = _testinfra_host.backend.get_hostname()
    podman_host = testinfra.get_host(f"podman://{name}")
    podman_host.lab = _lab_vars(_testinfra_host, name)
    return podman_host


_CACHE: dict[str, dict[str, Any]] = {}


def _lab_vars(ansible_host: Any, name: str) -> dict[str, Any]:
    if name not in _CACHE:
        _CACHE[name] = ansible_host.ansible.get_variables()
    return _CACHE[name]
