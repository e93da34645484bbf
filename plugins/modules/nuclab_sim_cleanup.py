#!/usr/bin/python
# Copyright: nuclab contributors
# Apache License 2.0
"""Ansible module: remove what the simulated lab's real nodes left: pods, mounts, cgroups."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nuclab_sim_cleanup
short_description: Remove the pods, mounts and cgroups the real nodes left
description:
  - Pods outlive their kubelet and containerd (each container has a shim of its own). Once
    those are stopped, this kills every process in the nodes' cgroup tree and every shim
    started for a containerd under I(state_dir), unmounts every mount under I(state_dir)
    (pod volumes, root file systems, network namespaces), and removes the cgroups under
    I(cgroup_root) in every hierarchy.
options:
  state_dir:
    description: The simulated lab's state directory (the real nodes live under it).
    type: path
    required: true
  cgroup_root:
    description: The real nodes' cgroup root, relative to each hierarchy (C(nuclab/sim)).
    type: str
    required: true
author: nuclab contributors
"""

EXAMPLES = r"""
- name: Remove the real nodes' pods, mounts and cgroups
  nuclab_sim_cleanup:
    state_dir: /repo/inventory/sim/.state
    cgroup_root: nuclab/sim
"""

RETURN = r"""
killed:
  description: Number of processes killed.
  returned: always
  type: int
unmounted:
  description: Number of mounts removed.
  returned: always
  type: int
"""

import contextlib
import os
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule

CGROUP_FS = "/sys/fs/cgroup"


def _hierarchies() -> list[str]:
    """Mount points of every cgroup hierarchy (v1 controllers and the unified one)."""
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) > 2 and parts[2] in ("cgroup", "cgroup2"):
                found.append(parts[1])
    return found


def _cgroup_pids(root: str) -> set[int]:
    pids: set[int] = set()
    for top in _hierarchies():
        base = os.path.join(top, root)
        for dirpath, _dirs, files in os.walk(base):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(dirpath, "cgroup.procs"), encoding="ascii") as h:
                        pids.update(int(p) for p in h.read().split())
                except (OSError, ValueError):
                    continue
    return pids


def _shim_pids(state_dir: str) -> set[int]:
    """The containerd shims started for a containerd whose socket is under the lab's state
    (only shims: the playbook running this module may name the state folder too)."""
    pids: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = [part.decode(errors="replace") for part in handle.read().split(b"\0")]
        except OSError:
            continue
        if not os.path.basename(argv[0]).startswith("containerd-shim") or "-address" not in argv:
            continue
        address = argv[argv.index("-address") + 1 :][:1]
        if address and os.path.realpath(address[0]).startswith(state_dir + "/"):
            pids.add(int(entry))
    return pids


def _mounts_under(path: str) -> list[str]:
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return found


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state_dir": {"type": "path", "required": True},
            "cgroup_root": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    state_dir = os.path.realpath(module.params["state_dir"])
    root = module.params["cgroup_root"].strip("/")
    if not root:
        module.fail_json(msg="cgroup_root is empty: refusing to clean every cgroup")

    pids = _cgroup_pids(root) | _shim_pids(state_dir)
    mounts = _mounts_under(state_dir)
    cgroups = [
        dirpath
        for top in _hierarchies()
        for dirpath, _dirs, _files in os.walk(os.path.join(top, root), topdown=False)
    ]
    if module.check_mode or not (pids or mounts or cgroups):
        module.exit_json(changed=bool(pids or mounts or cgroups), killed=0, unmounted=0)

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_cgroup_pids(root) or _shim_pids(state_dir)):
        time.sleep(0.1)

    unmounted = 0
    for point in sorted(mounts, key=len, reverse=True):  # the deepest first
        proc = subprocess.run(["umount", "-l", point], capture_output=True, text=True, check=False)
        unmounted += proc.returncode == 0

    left = []
    for path in cgroups:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            left.append(f"{path}: {exc.strerror}")
    if left:
        module.fail_json(msg="cgroups still in use: " + "; ".join(left[:5]))
    for top in _hierarchies():  # the parents nuclab made, once nothing else is in them
        parent = os.path.dirname(root)
        while parent:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(top, parent))
            parent = os.path.dirname(parent)
    module.exit_json(changed=True, killed=len(pids), unmounted=unmounted)


if __name__ == "__main__":
    main()
