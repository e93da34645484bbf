#!/usr/bin/python
# Copyright: nuclab contributors
# Apache License 2.0
"""Ansible module: the experiments' namespace with nuclab's Pod Security labels."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nuclab_experiment_namespace
short_description: Ensure the experiments' namespace and its Pod Security labels
description:
  - Creates the namespace with the labels C(app.kubernetes.io/part-of=nuclab) and
    C(pod-security.kubernetes.io/enforce=restricted) (and C(audit), C(warn) at the same level),
    or sets those labels on a namespace that lacks them or has others
    (C(nuclab.deploy.ensure_namespace), as C(nuclab create) does).
  - No experiment pod needs more than C(restricted): nuclab's node agent (roles/net_agent)
    applies latency, jitter and loss from the node.
  - Talks to the API with the kubeconfig's certificates or token (C(nuclab.kube)); the
    kubernetes Python package, whose import takes seconds, is loaded only for a kubeconfig
    with an exec plugin or an auth provider.
options:
  kubeconfig:
    description: Kubeconfig of the lab's API.
    type: path
    required: true
  namespace:
    description: The namespace.
    type: str
    required: true
  src:
    description: nuclab's source tree, used when the nuclab package is not installed in the
      Python that runs the module.
    type: path
author: nuclab contributors
"""

EXAMPLES = r"""
- name: Ensure the experiments' namespace exists
  nuclab_experiment_namespace:
    kubeconfig: "{{ lab_kubeconfig }}"
    namespace: nuclab
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
            "src": {"type": "path"},
        },
        supports_check_mode=True,
    )
    params = module.params
    deploy, kube = nuclab_modules(module)
    try:
        client = kube.Kube(params["kubeconfig"])
        changed = deploy.ensure_namespace(client, params["namespace"], check=module.check_mode)
    except kube.LabError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=changed)


if __name__ == "__main__":
    main()
