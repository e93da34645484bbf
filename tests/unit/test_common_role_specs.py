"""The bare-metal roles' defaults and argument specs agree, and the sysctl defaults stay safe
to apply inside the test containers (per network namespace only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
BARE_METAL_ROLES = ["common", "k3s_server", "k3s_agent", "kubeconfig", "k3s_airgap"]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("role", BARE_METAL_ROLES)
def test_argument_specs_mirror_the_defaults(role: str) -> None:
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    specs = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    assert set(specs["main"]["options"]) == set(defaults)
    for entry, spec in specs.items():
        assert set(defaults) <= set(spec["options"]), entry
        for name, option in spec["options"].items():
            assert option["description"], f"{role}/{entry}: {name} has no description"


@pytest.mark.parametrize("role", BARE_METAL_ROLES)
def test_public_variables_are_prefixed_with_the_role_name(role: str) -> None:
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    assert [name for name in defaults if not name.startswith(f"{role}_")] == []


def test_shared_k3s_role_has_a_spec_for_each_entry_point_and_no_settings() -> None:
    # k3s_common is only ever included (tasks_from): by k3s_server and k3s_agent, which pass
    # what differs between them, and for drain and uncordon by upgrade.yml and reboot.yml. It
    # has no defaults a user could set, and each entry point that runs on a node checks that it
    # was told which kind of node it runs on; drain and uncordon run on the controller.
    role = ROLES / "k3s_common"
    assert not (role / "defaults").exists()
    specs = _load(role / "meta" / "argument_specs.yml")["argument_specs"]
    assert "main" not in specs
    for entry, spec in specs.items():
        assert (role / "tasks" / f"{entry}.yml").is_file(), entry
        assert [name for name in spec["options"] if not name.startswith("k3s_common_")] == []
        if entry in ("drain", "uncordon"):
            assert "k3s_common_kind" not in spec["options"], entry
            continue
        kind = spec["options"]["k3s_common_kind"]
        assert kind["required"] is True and kind["choices"] == ["server", "agent"], entry
        assert [name for name in spec["options"] if not name.startswith("k3s_common_")] == []
    assert specs["configure"]["options"]["k3s_common_config"]["no_log"] is True  # the token


def test_shared_k3s_role_variables_are_prefixed_with_its_name() -> None:
    names = _load(ROLES / "k3s_common" / "vars" / "main.yml")
    assert [name for name in names if not name.lstrip("_").startswith("k3s_common_")] == []


def test_default_sysctls_are_all_per_network_namespace() -> None:
    # The Molecule hosts apply these for real in their own network namespace; a non-net sysctl
    # would change the test machine's kernel instead.
    sysctls = _load(ROLES / "common" / "defaults" / "main.yml")["common_sysctls"]
    assert sysctls
    assert [key for key in sysctls if not key.startswith("net.")] == []


def test_supported_systems_are_the_issue_list() -> None:
    defaults = _load(ROLES / "common" / "defaults" / "main.yml")
    assert defaults["common_supported_distributions"] == {
        "Debian": ["12", "13"],
        "Raspbian": ["12", "13"],
        "Ubuntu": ["22.04", "24.04"],
    }
    assert defaults["common_supported_architectures"] == ["x86_64", "aarch64"]
