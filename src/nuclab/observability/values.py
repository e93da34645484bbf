"""Render the observability roles' values files with Ansible, without touching a cluster.

Runs the ``values`` tasks of the monitoring, logging and kepler roles on localhost against an
inventory and returns the rendered files (YAML parsed; the Alloy configuration as text).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from nuclab.errors import NuclabError

REPO = Path(__file__).resolve().parents[3]
ROLES = ("monitoring", "logging", "kepler")
PLAYBOOK = """\
- name: Render the observability values
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Run the {{ pair[0] }} tasks of {{ pair[1] }}
      ansible.builtin.include_role:
        name: "{{ pair[1] }}"
        tasks_from: "{{ pair[0] }}"
      # Every role's checks first, as playbooks/monitoring.yml does: bad input writes nothing.
      loop: "{{ ['preflight', 'values'] | product(['monitoring', 'logging', 'kepler']) }}"
      loop_control:
        loop_var: pair
"""


def run_values(
    outdir: Path, inventory: Path | None = None, extra_vars: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook of the roles' preflight and values tasks; the completed process."""
    outdir.mkdir(parents=True, exist_ok=True)
    playbook = outdir / "render.yml"
    playbook.write_text(PLAYBOOK)
    extra = {"lab_artifacts_dir": str(outdir / "artifacts"), **(extra_vars or {})}
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
    }
    ansible = Path(sys.executable).with_name("ansible-playbook")
    args = [str(ansible), "-i", str(inventory or REPO / "inventory/sim"), str(playbook)]
    args += ["-e", yaml.safe_dump(extra, default_flow_style=True).strip()]
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, check=False)


def render_values(
    outdir: Path, inventory: Path | None = None, extra_vars: dict[str, Any] | None = None
) -> dict[str, Any]:
    """File name -> parsed content of everything the roles render into the values folder."""
    proc = run_values(outdir, inventory, extra_vars)
    if proc.returncode != 0:
        raise NuclabError(
            f"rendering the values failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
        )
    values = outdir / "artifacts" / "values"
    out: dict[str, Any] = {}
    for path in sorted(values.iterdir()):
        text = path.read_text()
        out[path.name] = yaml.safe_load(text) if path.suffix == ".yaml" else text
    return out
