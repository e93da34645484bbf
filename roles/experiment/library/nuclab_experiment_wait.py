#!/usr/bin/python
# Copyright: nuclab contributors
# Apache License 2.0
"""Ansible module: wait, with watches, until exactly an experiment's peers run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nuclab_experiment_wait
short_description: Wait until exactly an experiment's peers run, or report why they do not
description:
  - Watches the experiment's StatefulSet and pods (no polling) until the StatefulSet has
    rolled out and exactly I(peers) pods run at its revision, as C(nuclab create) does
    (C(nuclab.deploy.wait_for_peers)).
  - At the timeout it fails with one message - how many peers run and why the others do not
    (the scheduler's reason) - and leaves the pods as they are.
  - Talks to the API with the kubeconfig's certificates or token (C(nuclab.kube)); the
    kubernetes Python package, whose import takes seconds, is loaded only for a kubeconfig
    with an exec plugin or an auth provider.
options:
  kubeconfig:
    description: Kubeconfig of the lab's API.
    type: path
    required: true
  namespace:
    description: Namespace of the experiment.
    type: str
    required: true
  name:
    description: The experiment's name (its pods carry C(nuclab.io/experiment=<name>)).
    type: str
    required: true
  peers:
    description: How many peers must run (0 waits until none is left).
    type: int
    required: true
  timeout:
    description: Seconds to wait.
    type: int
    default: 300
  src:
    description: nuclab's source tree, used when the nuclab package is not installed in the
      Python that runs the module.
    type: path
author: nuclab contributors
"""

EXAMPLES = r"""
- name: Wait for the peers
  nuclab_experiment_wait:
    kubeconfig: "{{ lab_kubeconfig }}"
    namespace: nuclab
    name: purple
    peers: 5
"""

RETURN = r"""
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 (documentation first)
from ansible.module_utils.nuclab_api import nuclab_modules  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "kubeconfig": {"type": "path", "required": True},
            "namespace": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
            "peers": {"type": "int", "required": True},
            "timeout": {"type": "int", "default": 300},
            "src": {"type": "path"},
        },
        supports_check_mode=True,
    )
    params = module.params
    deploy, kube = nuclab_modules(module)
    try:
        client = kube.Kube(params["kubeconfig"])
        deploy.wait_for_peers(
            client,
            params["name"],
            namespace=params["namespace"],
            peers=params["peers"],
            timeout=params["timeout"],
        )
    except kube.LabError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False)


if __name__ == "__main__":
    main()
