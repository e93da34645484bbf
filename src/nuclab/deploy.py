"""``nuclab create`` and ``nuclab scale`` without Ansible: what the experiment role does, directly.

The role (``roles/experiment``, run by ``experiment.yml``) stays the one documented way for
experiments as code; this is the CLI's short path to the identical release. It reads the role's
settings as a play would get them, through Ansible's own inventory and variable managers, and
takes the short path when they need nothing but the inventory (no vault, no template on a
role's defaults or facts), the chart is local and the kubeconfig has certificates or a token.
Step by step, as ``roles/experiment/tasks/present.yml``:

1. read the release (helm's own record of it, a Secret) -> exists, values, chart;
2. check the spec and compute the chart values with ``nuclab.spec`` and
   ``nuclab.experiments.deep_merge``, the same calls the role's filters make, in the same order;
3. create the namespace with the role's labels if the release is new;
4. ``helm upgrade --install --reset-values -f values.yml`` (the command ``kubernetes.core.helm``
   runs), skipped when values and chart are those of the release (the module's own check);
5. watch the StatefulSet and the pods until exactly ``peers`` run (the role's two waits), or
   report at the timeout what is pending and why.

Tests render both paths' releases and compare them (tests/integration/test_experiment.py).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gzip
import io
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nuclab import experiments, groups, paths, spec
from nuclab.errors import NotFoundError, NuclabError, ValidationError
from nuclab.kube import ApiError, Kube, LabError, selector

# The labels of every experiment namespace (the role's module nuclab_experiment_namespace and
# the groups' namespaces use these too): Pod Security "restricted", enforced, audited and warned.
# No pod of the chart needs more: the node agent (roles/net_agent) applies the network emulation.
NAMESPACE_LABELS = {
    "app.kubernetes.io/part-of": "nuclab",
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}
# The role's variables this path reads (templated by Ansible, from the inventory alone).
SETTINGS = (
    "experiment_namespace",
    "experiment_defaults",
    "experiment_chart_values",
    "experiment_pod_monitor",
    "experiment_chart_ref",
    "experiment_helm_binary",
    "experiment_wait_timeout",
)
VAR_SUFFIXES = (".yml", ".yaml", ".json")


@dataclass(frozen=True)
class Settings:
    """The role's variables as the inventory sets them (role defaults for the others)."""

    namespace: str
    defaults: dict[str, Any]
    chart_values: dict[str, Any]
    pod_monitor: str
    chart: Path
    helm: str
    wait_timeout: int


@dataclass(frozen=True)
class Release:
    """What helm recorded of a release's last revision."""

    values: dict[str, Any]
    chart: str  # name-version, as `helm list` prints it
    app_version: str
    status: str


# Seconds to wait for peers: the inventory's experiment_wait_timeout or the CLI's --timeout.
WAIT_TIMEOUT = spec.Number("timeout", "seconds", 1, 86_400)


def check_timeout(field: str, value: object) -> int:
    """A wait of 1 s to a day, in whole seconds; errors name ``field``."""
    try:
        return int(WAIT_TIMEOUT.check(value) or 0)
    except ValidationError as exc:
        raise ValidationError(field, value, exc.allowed) from None


def _yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BadFileError(path, "YAML", yaml_problem(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadFileError(path, "readable UTF-8", str(exc)) from None
    return data if isinstance(data, dict) else {}


def _json_mapping(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadFileError(path, "JSON", str(exc)) from None
    return data if isinstance(data, dict) else {}


class BadFileError(NuclabError):
    """A variables file of the inventory that cannot be read (exit 2: nothing was done)."""

    def __init__(self, path: Path, kind: str, problem: str) -> None:
        super().__init__(f"{path}: not valid {kind}: {problem}; fix the file (nothing was done)")


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What a YAML parser says is wrong, and where (one line)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return " ".join(f"{problem}{where}".split())


# Ansible's settings for reading an inventory outside a play: a source no plugin can parse is
# an error (not an empty lab), and no warnings on stderr (our own message says what is wrong).
ANSIBLE_ENV = {
    "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
    "ANSIBLE_LOCALHOST_WARNING": "False",
}


@functools.cache
def _ansible_plugins() -> None:
    """ansible-core's plugin loader, set up once per process (a second time only warns)."""
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader()


def plain(value: Any) -> Any:
    """Ansible's tagged values as plain Python data (what a YAML file would have given)."""
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def inventory_vars(
    inventory: Path, keys: tuple[str, ...] = SETTINGS, repo: Path | None = None
) -> dict[str, Any] | None:
    """The variables ``keys`` as the lab's controller (host ``localhost``) gets them in a play
    of this inventory, read and templated by Ansible itself: every source it reads (YAML, INI,
    scripts, inventory plugins), every group localhost is in, group_vars, host_vars and vars
    plugins. None when only a playbook can work them out: a vault, or a template that needs
    more than the inventory (a role's defaults, facts). The inventory is read once per process."""
    wanted = dict(ANSIBLE_ENV)
    if repo is not None and (repo / "ansible.cfg").is_file():
        # the playbooks' own settings (which plugins read inventories, what beside an
        # inventory is not one: artifacts/, .state/), wherever the CLI runs from
        wanted["ANSIBLE_CONFIG"] = str(repo / "ansible.cfg")
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update({key: value for key, value in wanted.items() if saved[key] is None})
    try:
        loaded = _ansible_vars(inventory)
        if loaded is None:
            return None
        given = {}
        for key in keys:
            value = loaded(key)
            if value is _UNRESOLVED:
                return None
            if value is not _UNSET:
                given[key] = value
        return given
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


_UNSET = object()  # the inventory does not set it
_UNRESOLVED = object()  # it does, but only a play can template it


@functools.cache
def _ansible_vars(inventory: Path) -> Callable[[str], Any] | None:
    """The inventory read by Ansible: a function from a variable's name to its templated value
    (or _UNSET, _UNRESOLVED), or None when it is vaulted."""
    from ansible.errors import AnsibleError, AnsibleTemplateError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import AnsibleVaultError
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    _ansible_plugins()
    loader = DataLoader()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            hosts = InventoryManager(loader=loader, sources=[str(inventory)])
            found = VariableManager(loader=loader, inventory=hosts).get_vars(
                host=hosts.get_host("localhost"), include_hostvars=False
            )
    except AnsibleVaultError:
        return None
    except AnsibleError as exc:
        _name_the_broken_file(inventory)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NuclabError(
            f"inventory {inventory}: Ansible cannot read it: {first}; fix it (nothing was done)"
        ) from None
    templar = Templar(loader=loader, variables=found)

    def value(key: str) -> Any:
        if key not in found:
            return _UNSET
        try:
            return plain(templar.template(found[key]))
        except (AnsibleTemplateError, AnsibleVaultError):  # undefined, vaulted: a play's work
            return _UNRESOLVED

    return value


def _name_the_broken_file(inventory: Path) -> None:
    """When Ansible cannot read an inventory, the YAML or JSON file at fault, by name, line and
    column (Ansible's exception does not carry them): raises BadFileError if one is found."""
    root = inventory if inventory.is_dir() else inventory.parent
    sources = sorted(inventory.iterdir()) if inventory.is_dir() else [inventory]
    candidates = [p for p in sources if p.is_file() and p.suffix in (".yml", ".yaml")]
    for folder in ("group_vars", "host_vars"):
        if (root / folder).is_dir():
            candidates += sorted(
                p for p in (root / folder).rglob("*") if p.is_file() and p.suffix in VAR_SUFFIXES
            )
    for path in candidates:
        if path.suffix == ".json":
            _json_mapping(path)
        else:
            _yaml_mapping(path)


def role_defaults(repo: Path) -> dict[str, Any]:
    return _yaml_mapping(repo / "roles" / "experiment" / "defaults" / "main.yml")


def tools_helm() -> Path:
    """The helm that ``make setup`` built (the role's ``_experiment_tools_helm``)."""
    return paths.tools_bin() / "helm"


@dataclass(frozen=True)
class Target:
    """Where a play of this inventory finds the experiments: the lab's kubeconfig (the file
    may not exist yet) and the experiments' namespace; and where the export role finds the
    lab's Prometheus and Loki ("" when the inventory names none)."""

    kubeconfig: Path
    namespace: str
    prometheus_url: str = ""
    loki_url: str = ""


def lab_target(inventory: Path, repo: Path, kubeconfig: Path | None = None) -> Target:
    """The role's ``experiment_kubeconfig`` (by default the inventory's ``lab_kubeconfig``),
    ``experiment_namespace``, ``lab_prometheus_url`` and ``lab_loki_url``, as the inventory sets
    them, else the role's defaults; the kubeconfig falls back to ``<inventory>/artifacts/
    kubeconfig`` when the inventory names none that Ansible can work out without a play.
    ``kubeconfig`` (the CLI's ``--kubeconfig``) wins over the inventory's. The namespace, where
    the inventory sets none, is the kubeconfig's context's (a research group's), else nuclab."""
    kube_keys = ("experiment_kubeconfig", "lab_kubeconfig")
    urls = ("lab_prometheus_url", "lab_loki_url")
    found = {}
    for key in ("experiment_namespace", *kube_keys, *urls):  # one at a time: each may need a play
        found.update(inventory_vars(inventory, (key,), repo=repo) or {})
    check_settings(found)
    for key in kube_keys:
        if key in found and not isinstance(found[key], str | None):
            raise ValidationError(key, found[key], "a path (in the inventory)")
    for key in urls:
        if key in found and not isinstance(found[key], str | None):
            raise ValidationError(key, found[key], "an http:// or https:// URL (in the inventory)")
    named = found.get("experiment_kubeconfig") or found.get("lab_kubeconfig")
    if kubeconfig is not None:
        kubeconfig = kubeconfig.expanduser()
    elif named:
        kubeconfig = Path(named).expanduser()
    else:
        root = inventory if inventory.is_dir() else inventory.parent
        kubeconfig = root / "artifacts" / "kubeconfig"
    return Target(
        kubeconfig=kubeconfig,
        namespace=str(found.get("experiment_namespace") or groups.kubeconfig_namespace(kubeconfig)),
        prometheus_url=found.get("lab_prometheus_url") or "",
        loki_url=found.get("lab_loki_url") or "",
    )


def lab_settings(inventory: Path, repo: Path) -> Settings | None:
    """The role's settings for this inventory, or None when only Ansible can work them out."""
    given = inventory_vars(inventory, repo=repo)
    if given is None:
        return None
    check_settings(given)
    merged = {**role_defaults(repo), **given}
    chart_ref = given.get("experiment_chart_ref")
    chart = Path(chart_ref) if chart_ref else repo / "charts" / "experiment"
    if not (chart / "Chart.yaml").is_file():  # a repository or OCI chart: the module's job
        return None
    helm = str(merged.get("experiment_helm_binary") or "")
    if not helm:
        helm = str(tools_helm()) if tools_helm().is_file() else "helm"
    pod_monitor = merged["experiment_pod_monitor"]
    return Settings(
        # the role's default is the kubeconfig's namespace: the CLI sets it from lab_target
        namespace=str(given.get("experiment_namespace") or groups.DEFAULT_NAMESPACE),
        defaults=dict(merged.get("experiment_defaults") or {}),
        chart_values=dict(merged.get("experiment_chart_values") or {}),
        pod_monitor=str(pod_monitor).lower() if isinstance(pod_monitor, bool) else pod_monitor,
        chart=chart,
        helm=helm,
        wait_timeout=check_timeout("experiment_wait_timeout", merged["experiment_wait_timeout"]),
    )


def check_settings(given: Mapping[str, Any]) -> None:
    """The inventory's settings of the role, as its argument spec types them (checked before
    anything is applied: a wrong one is one line naming it, not a traceback)."""
    for key in ("experiment_defaults", "experiment_chart_values"):
        if key in given and given[key] is not None and not isinstance(given[key], Mapping):
            raise ValidationError(key, given[key], "a mapping (in the inventory)")
    if isinstance(given.get("experiment_defaults"), Mapping):
        try:
            spec.parse({"name": "x"}, defaults=given["experiment_defaults"])
        except ValidationError as exc:
            raise ValidationError(
                f"experiment_defaults.{exc.field}", exc.value, exc.allowed
            ) from None
    if "experiment_wait_timeout" in given:
        check_timeout("experiment_wait_timeout", given["experiment_wait_timeout"])
    for key in ("experiment_namespace", "experiment_helm_binary", "experiment_chart_ref"):
        if key in given and not isinstance(given[key], str | None):
            raise ValidationError(key, given[key], "a string (in the inventory)")


# --- the release ------------------------------------------------------------------------------


def release_record(secret: Mapping[str, Any]) -> dict[str, Any]:
    """The release record a helm Secret holds (``data.release``: base64 of base64 of gzipped
    JSON)."""
    raw = base64.b64decode(base64.b64decode(secret["data"]["release"]))
    return json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)


def read_release(kube: Kube, namespace: str, fullname: str) -> Release | None:
    """The release's last revision from helm's storage (Secrets ``sh.helm.release.v1.*``:
    base64 of gzipped JSON), as ``helm_info`` with ``release_state: [all]`` sees it."""
    labels = selector({"owner": "helm", "name": fullname})
    try:
        found = kube.get(f"/api/v1/namespaces/{namespace}/secrets?labelSelector={labels}")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    items = [i for i in found.get("items") or [] if (i.get("data") or {}).get("release")]
    if not items:
        return None
    last = max(items, key=lambda i: int((i["metadata"].get("labels") or {}).get("version", 0)))
    record = release_record(last)
    meta = (record.get("chart") or {}).get("metadata") or {}
    return Release(
        values=record.get("config") or {},
        chart=f"{meta.get('name')}-{meta.get('version')}",
        app_version=str(meta.get("appVersion") or ""),
        status=str((record.get("info") or {}).get("status", "")),
    )


def refuse_existing(name: str, namespace: str, release: Release | None) -> None:
    """``nuclab create`` without ``--update``: a name an experiment has is refused, so that a
    create never changes (or rescales) an experiment that runs. ``experiment.yml`` stays
    declarative."""
    if release is not None:
        raise ValidationError(
            "name", name,
            f"a name no experiment has in namespace {namespace}: '{name}' runs there "
            f"(nuclab scale {name} <peers> changes its peers, "
            f"nuclab create --update its spec)",
        )  # fmt: skip


def release_values(
    raw: Mapping[str, Any], settings: Settings, current: Mapping[str, Any], *, exists: bool
) -> tuple[spec.ExperimentSpec, dict[str, Any]]:
    """The checked spec and the chart values: the role's ``nuclab_experiment_spec`` then
    ``nuclab_experiment_values`` (plugins/filter/experiment.py), call for call."""
    checked = spec.parse(
        raw, defaults=settings.defaults, base=spec.from_values(current), create=not exists
    ).as_dict()
    parsed = spec.parse(checked, create=checked.get("peers") != 0)
    overrides = experiments.deep_merge(
        {"metrics": {"podMonitor": settings.pod_monitor}}, settings.chart_values
    )
    values = experiments.deep_merge(current, overrides, spec.to_values(parsed))
    return parsed, values


def chart_meta(chart: Path) -> dict[str, Any]:
    """The chart's Chart.yaml: its name, version and appVersion."""
    return _yaml_mapping(chart / "Chart.yaml")


def chart_changes(release: Release | None, chart: Path, values: Mapping[str, Any]) -> bool:
    """Whether ``helm upgrade`` would change the release (``kubernetes.core.helm``'s check:
    values, chart name-version and appVersion), or must run again: a last revision that is not
    ``deployed`` (failed, pending) is applied again, as the playbook path does."""
    if release is None or release.status != "deployed":
        return True
    meta = chart_meta(chart)
    return (
        release.values != values
        or release.chart != f"{meta.get('name')}-{meta.get('version')}"
        or release.app_version != str(meta.get("appVersion") or "")
    )


def ensure_namespace(kube: Kube, namespace: str, *, check: bool = False) -> bool:
    """The namespace with the role's labels (created, or its labels added); True when that
    changed something (with ``check``: would change, and nothing is changed)."""
    try:
        current = kube.get(f"/api/v1/namespaces/{namespace}")
    except ApiError as exc:
        if exc.status != 404:
            raise
        if check:
            return True
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": NAMESPACE_LABELS},
        }
        try:
            kube.request("POST", "/api/v1/namespaces", body)
        except ApiError as again:
            if again.status != 409:  # created meanwhile by someone else: fine
                raise
            return False
        return True
    labels = (current.get("metadata") or {}).get("labels") or {}
    if all(labels.get(k) == v for k, v in NAMESPACE_LABELS.items()):
        return False
    if not check:
        kube.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}",
            {"metadata": {"labels": NAMESPACE_LABELS}},
            content_type="application/merge-patch+json",
        )
    return True


def helm_upgrade(
    settings: Settings, kubeconfig: str, fullname: str, values: Mapping[str, Any]
) -> None:
    """``helm upgrade -i --reset-values -f <values>``: kubernetes.core.helm's command."""
    with tempfile.TemporaryDirectory(prefix="nuclab-values-") as private:
        path = Path(private) / "values.yml"
        path.write_text(yaml.safe_dump(dict(values), default_flow_style=False), encoding="utf-8")
        cmd = [
            settings.helm, "upgrade", "-i", "--reset-values", f"-f={path}",
            fullname, str(settings.chart),
            f"--namespace={settings.namespace}", f"--kubeconfig={kubeconfig}",
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise LabError(f"cannot run helm ({settings.helm}): {exc.strerror}") from exc
    if proc.returncode != 0:
        detail = " ".join((proc.stderr or proc.stdout).split())
        raise LabError(f"helm upgrade of {fullname} failed: {detail}")


# --- waiting ----------------------------------------------------------------------------------

Event = tuple[str, str, Any]  # (kind, LIST | ADDED | MODIFIED | DELETED | FAILED, object(s))


def _follow(kube: Kube, kind: str, path: str, events: queue.Queue[Event]) -> None:
    """List, then watch from the list's version; list again when a watch ends (expiry, 410)."""
    while True:
        try:
            listing = kube.get(path)
            events.put((kind, "LIST", listing.get("items") or []))
            version = (listing.get("metadata") or {}).get("resourceVersion", "")
            for event in kube.watch(path, version):
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    events.put((kind, event["type"], event.get("object") or {}))
        except LabError as exc:
            events.put((kind, "FAILED", str(exc)))
            time.sleep(0.5)


class Rollout:
    """The experiment's StatefulSet and pods as the watches report them."""

    def __init__(self) -> None:
        self.statefulset: dict[str, Any] | None = None
        self.pods: dict[str, dict[str, Any]] = {}
        self.listed: set[str] = set()

    def update(self, kind: str, what: str, obj: Any) -> None:
        if what == "FAILED":
            return  # the follower lists again; the deadline bounds the wait
        self.listed.add(kind)
        if kind == "sts":
            if what == "LIST":
                self.statefulset = next(iter(obj), None)
            else:
                self.statefulset = None if what == "DELETED" else obj
        elif what == "LIST":
            self.pods = {p["metadata"]["name"]: p for p in obj}
        elif what == "DELETED":
            self.pods.pop(obj["metadata"]["name"], None)
        else:
            self.pods[obj["metadata"]["name"]] = obj

    def ready(self) -> int:
        """Ready peers as the StatefulSet's controller counts them (cheap: for progress)."""
        return int(((self.statefulset or {}).get("status") or {}).get("readyReplicas") or 0)

    def done(self, peers: int) -> bool:
        """The StatefulSet has rolled out and exactly ``peers`` pods run at its revision. The
        pods (O(peers)) are judged only once the StatefulSet says so: with 500 peers a watch
        brings thousands of events."""
        return (
            self.listed == {"sts", "pod"}
            and experiments.statefulset_rolled_out(self.statefulset, peers)
            and experiments.rollout_state(self.statefulset, list(self.pods.values()), peers)["done"]
        )


def wait_for_peers(
    kube: Kube,
    name: str,
    *,
    namespace: str,
    peers: int,
    timeout: float,
    progress: Callable[[str], None] = lambda _: None,
) -> None:
    """Until the StatefulSet has rolled out and exactly ``peers`` pods run at its revision
    (the role's tasks/wait.yml); at the timeout, ``LabError`` with the pending report."""
    label = selector(_peer_labels(name))
    sts_field = selector(f"metadata.name={spec.fullname(name)}")
    events: queue.Queue[Event] = queue.Queue()
    watched = {
        "sts": f"/apis/apps/v1/namespaces/{namespace}/statefulsets?fieldSelector={sts_field}",
        "pod": f"/api/v1/namespaces/{namespace}/pods?labelSelector={label}",
    }
    for kind, path in watched.items():  # daemons: they end with the command
        threading.Thread(target=_follow, args=(kube, kind, path, events), daemon=True).start()
    rollout = Rollout()
    deadline = time.monotonic() + timeout
    shown = -1
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            rollout.update(*events.get(timeout=remaining))
        except queue.Empty:
            break
        if not events.empty():
            continue  # judge the newest state only
        if rollout.ready() != shown:
            shown = rollout.ready()
            progress(f"{shown} of {peers} peers ready")
        if rollout.done(peers):
            return
    raise LabError(pending(kube, namespace, name, peers, timeout))


def _peer_labels(name: str) -> dict[str, str]:
    """The experiment's peer pods: not its loadgen Job's pod (the role selects the same)."""
    return {experiments.EXPERIMENT_LABEL: name, "app.kubernetes.io/component": "peer"}


def pending(kube: Kube, namespace: str, name: str, peers: int, waited: float) -> str:
    """The role's rescue: the pods and the pods' Warning events, as one report."""
    label = selector(_peer_labels(name))
    pods = kube.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector={label}")
    warnings = selector("involvedObject.kind=Pod,type=Warning")
    events = kube.get(f"/api/v1/namespaces/{namespace}/events?fieldSelector={warnings}")
    return experiments.pending_report(
        name, peers, pods.get("items") or [], events.get("items") or [], waited=waited
    )


# --- the whole step ---------------------------------------------------------------------------


def check_netem(kube: Kube, parsed: spec.ExperimentSpec) -> None:
    """Refuse (exit 2, before anything changes) network emulation this lab cannot give: a
    matrix naming a zone no node carries, or netem on the nodes the peers may land on when
    their kernel has none; the role's present.yml checks the same."""
    if not parsed.netem and not parsed.matrix:
        return
    refusal = experiments.network_refusal(
        parsed.as_dict(), kube.get("/api/v1/nodes").get("items") or []
    )
    if refusal:
        raise ValidationError(*refusal)


def apply(
    raw: Mapping[str, Any],
    settings: Settings,
    kubeconfig: str,
    kube: Kube,
    *,
    must_exist: bool = False,
    must_be_new: bool = False,
    timeout: int | None = None,
    quiet: bool = False,
) -> bool:
    """Create, update or scale; wait for the peers. True when the release changed.
    ``must_exist`` (scale) refuses a name no experiment has, ``must_be_new`` (create without
    ``--update``) one an experiment has."""

    def say(text: str) -> None:
        if not quiet:
            print(f"[INFO] {text}", file=sys.stderr, flush=True)

    name = spec.check_name(raw.get("name"))
    full = spec.fullname(name)
    release = read_release(kube, settings.namespace, full)
    if release is None and must_exist:
        raise NotFoundError(f"experiment '{name}' does not exist in namespace {settings.namespace}")
    if must_be_new:
        refuse_existing(name, settings.namespace, release)
    current = release.values if release else {}
    parsed, values = release_values(raw, settings, current, exists=release is not None)
    check_netem(kube, parsed)
    changed = chart_changes(release, settings.chart, values)
    # Progress lines are the role's task names: the same steps, whichever path runs them.
    if release is None:
        say("Ensure the experiments' namespace exists")
        ensure_namespace(kube, settings.namespace)
    if changed:
        say(f"Install or upgrade the experiment's release ({full})")
        helm_upgrade(settings, kubeconfig, full, values)
    say(f"Wait until exactly the peers run ({parsed.peers})")
    waited = settings.wait_timeout if timeout is None else timeout
    wait_for_peers(
        kube, name, namespace=settings.namespace, peers=parsed.peers, timeout=waited, progress=say
    )
    return changed
