"""Filters for the lab's research groups (roles/tenancy): thin wrappers over ``nuclab.groups``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleFilterError

try:
    from nuclab import deploy, groups
    from nuclab.errors import NuclabError
except ImportError:  # an Ansible outside the project's venv: use the repo's source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from nuclab import deploy, groups
    from nuclab.errors import NuclabError


def nuclab_groups_problems(
    lab_groups: Any, experiment_namespace: Any = groups.DEFAULT_NAMESPACE
) -> list[str]:
    """What is wrong with the inventory's lab_groups: no message, or one naming the entry."""
    try:
        groups.check(deploy.plain(lab_groups), str(experiment_namespace))
    except NuclabError as exc:
        return [str(exc)]
    return []


def nuclab_groups(
    lab_groups: Any, experiment_namespace: Any = groups.DEFAULT_NAMESPACE
) -> list[dict[str, str]]:
    """The groups with their namespace, ServiceAccount and token Secret."""
    return [g.as_dict() for g in _checked(lab_groups, experiment_namespace)]


def nuclab_groups_objects(
    lab_groups: Any, experiment_namespace: Any = groups.DEFAULT_NAMESPACE
) -> list[dict[str, Any]]:
    """The namespaces, ServiceAccounts, token Secrets, roles and bindings of the groups."""
    return groups.objects(_checked(lab_groups, experiment_namespace), deploy.NAMESPACE_LABELS)


def nuclab_group_kubeconfig(admin: Any, group: Any, token: Any) -> str:
    """A group's kubeconfig (YAML) from the admin kubeconfig's text, the group and its token."""
    if not isinstance(group, dict) or not isinstance(token, str) or not token:
        raise AnsibleFilterError(
            "nuclab_group_kubeconfig: expected a group of nuclab_groups and its token"
        )
    try:
        config = yaml.safe_load(str(admin)) or {}
        return groups.kubeconfig(config, groups.Group(group["name"], group["namespace"]), token)
    except (NuclabError, yaml.YAMLError, OSError, KeyError) as exc:
        raise AnsibleFilterError(f"nuclab_group_kubeconfig: {exc}") from exc


def nuclab_kubeconfig_namespace(path: Any) -> str:
    """The namespace of the kubeconfig's current context (a group's), else the default one."""
    return groups.kubeconfig_namespace(str(path) if path else None)


def _checked(lab_groups: Any, experiment_namespace: Any) -> list[groups.Group]:
    try:
        return groups.check(deploy.plain(lab_groups), str(experiment_namespace))
    except NuclabError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """Research group filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "nuclab_groups_problems": nuclab_groups_problems,
            "nuclab_groups": nuclab_groups,
            "nuclab_groups_objects": nuclab_groups_objects,
            "nuclab_group_kubeconfig": nuclab_group_kubeconfig,
            "nuclab_kubeconfig_namespace": nuclab_kubeconfig_namespace,
        }
