"""``nuclab create | list | scale | delete``: experiments from the command line.

``create`` and ``scale`` do what the experiment role does, directly (``nuclab.deploy``: the
same spec checks, the same chart values, helm, and a watch for the peers), when the lab's
settings need nothing but the inventory (read and templated through Ansible's inventory API);
otherwise, and with ``--via-playbook``, they run
``experiment.yml`` through ansible-runner. ``delete`` always runs the playbook (the role does
more than uninstall); ``list`` reads the cluster directly.

Exit codes: 0 done; 1 the lab could not do it (peers pending at the timeout, API unreachable,
a failed task); 2 bad input (nothing was changed); 3 the experiment does not exist.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nuclab import deploy, experiments, spec
from nuclab.errors import NotFoundError, NuclabError, ValidationError
from nuclab.kube import ApiError, Kube, LabError


@dataclass
class RunnerRequest:
    """What ansible-runner is asked to run."""

    project_dir: str
    playbook: str
    inventory: str
    extravars: dict[str, Any]
    envvars: dict[str, str] = field(default_factory=dict)


# --- where things are ---------------------------------------------------------------------


def repo_dir() -> Path:
    """The nuclab checkout holding ``experiment.yml`` (``$NUCLAB_REPO`` wins)."""
    candidates = []
    if os.environ.get("NUCLAB_REPO"):
        candidates.append(Path(os.environ["NUCLAB_REPO"]))
    candidates += [Path(__file__).resolve().parents[3], Path.cwd()]
    for candidate in candidates:
        if (candidate / "experiment.yml").is_file() and (candidate / "ansible.cfg").is_file():
            return candidate
    raise NuclabError(
        "cannot find nuclab's playbooks (experiment.yml): run from the repository "
        "or set NUCLAB_REPO"
    )


def inventory_dir(given: str | None) -> Path:
    """``--inventory``, else ``$NUCLAB_INVENTORY``, else the repository's ``inventory/sim``."""
    raw = given or os.environ.get("NUCLAB_INVENTORY")
    path = Path(raw).expanduser() if raw else repo_dir() / "inventory" / "sim"
    if not path.exists():
        raise ValidationError("inventory", str(path), "an existing inventory file or directory")
    return path.resolve()


def lab_target(args: argparse.Namespace) -> tuple[str | None, str]:
    """The lab's kubeconfig and the experiments' namespace, as experiment.yml finds them:
    ``--kubeconfig`` and ``--namespace``, else the inventory's ``experiment_kubeconfig`` (by
    default ``lab_kubeconfig``) and ``experiment_namespace``, else the role's defaults. The
    kubeconfig is None while its file does not exist (no lab yet, or a client's own default)."""
    if args.kubeconfig and not Path(args.kubeconfig).expanduser().is_file():
        raise ValidationError("kubeconfig", args.kubeconfig, "an existing kubeconfig file")
    if args.kubeconfig and args.namespace:  # nothing to read from the inventory
        return str(Path(args.kubeconfig).expanduser()), args.namespace
    given = Path(args.kubeconfig) if args.kubeconfig else None
    found = deploy.lab_target(inventory_dir(args.inventory), repo_dir(), kubeconfig=given)
    kubeconfig = found.kubeconfig
    return (str(kubeconfig) if kubeconfig.is_file() else None), args.namespace or found.namespace


# --- requests -------------------------------------------------------------------------------


def _key_values(field_name: str, pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationError(field_name, pair, "KEY=VALUE")
        result[key] = value
    return result


def spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The fields a user gave: a spec file's ``experiment:`` mapping, then the flags."""
    raw: dict[str, Any] = {}
    if args.file:
        raw.update(load_spec_file(args.file))
    for row in spec.FIELD_TABLE:
        if not row.flag:
            continue
        value = getattr(args, row.name)
        if row.kind == "mapping":
            value = _key_values(row.name, value)
        elif row.kind == "matrix" and value is not None:
            value = load_matrix_file(row.flag, value)
        if value is not None:
            raw[row.name] = value
    return raw


def load_spec_file(path: str) -> dict[str, Any]:
    """A spec file (``experiments/purple.yml``): a mapping with one key, ``experiment``."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationError("file", path, f"a readable spec file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ValidationError("file", path, f"valid YAML ({exc})") from exc
    if not isinstance(data, dict) or set(data) != {"experiment"}:
        raise ValidationError("file", path, "a mapping with one key, 'experiment'")
    if not isinstance(data["experiment"], dict):
        raise ValidationError("experiment", data["experiment"], "a mapping of spec fields")
    return data["experiment"]


def load_matrix_file(flag: str, path: str) -> Any:
    """A network matrix file (``--matrix FILE``): YAML, a list of entries or a mapping with one
    key, ``matrix``. The entries are checked with the rest of the spec (``spec.parse``)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationError(flag, path, f"a readable matrix file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ValidationError(flag, path, f"valid YAML ({exc})") from exc
    if isinstance(data, dict) and set(data) == {"matrix"}:
        return data["matrix"]
    if isinstance(data, list):
        return data
    raise ValidationError(
        flag, path, "a YAML list of matrix entries, or a mapping with one key, 'matrix'"
    )


def _runner_request(
    args: argparse.Namespace, extravars: dict[str, Any], repo: Path | None = None
) -> RunnerRequest:
    repo = repo or repo_dir()
    if getattr(args, "namespace", None):
        extravars["experiment_namespace"] = args.namespace
    if getattr(args, "kubeconfig", None):
        extravars["experiment_kubeconfig"] = str(Path(args.kubeconfig).expanduser().resolve())
    bindir = str(Path(sys.executable).parent)
    return RunnerRequest(
        project_dir=str(repo),
        playbook="experiment.yml",
        inventory=str(inventory_dir(args.inventory)),
        extravars=extravars,
        envvars={
            "ANSIBLE_CONFIG": str(repo / "ansible.cfg"),
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        },
    )


def create_request(args: argparse.Namespace, repo: Path | None = None) -> RunnerRequest:
    raw = spec_from_args(args)
    checked = spec.parse(raw, create=True).as_dict()  # bad input stops here, before any play
    # Only the fields given: the inventory's experiment_defaults fill the others.
    raw = {key: checked[key] for key in raw}
    extravars: dict[str, Any] = {"experiment_state": "present", "experiment_spec": raw}
    _timeout(args, extravars)
    return _runner_request(args, extravars, repo)


def _timeout(args: argparse.Namespace, extravars: dict[str, Any]) -> None:
    """``--timeout``, checked before anything is applied, as the role's wait timeout."""
    if args.timeout is not None:
        extravars["experiment_wait_timeout"] = deploy.check_timeout("--timeout", args.timeout)


def scale_request(args: argparse.Namespace, repo: Path | None = None) -> RunnerRequest:
    checked = spec.parse({"name": args.name, "peers": args.peers}, create=False)
    raw = {"name": checked.name, "peers": checked.peers}
    extravars: dict[str, Any] = {
        "experiment_state": "present",
        "experiment_spec": raw,
        "experiment_must_exist": True,
    }
    _timeout(args, extravars)
    return _runner_request(args, extravars, repo)


def delete_request(args: argparse.Namespace, repo: Path | None = None) -> RunnerRequest:
    spec.check_name(args.name)
    extravars: dict[str, Any] = {
        "experiment_state": "absent",
        "experiment_spec": {"name": args.name},
        "experiment_must_exist": True,
    }
    if getattr(args, "no_export", False):
        extravars["experiment_export"] = False
    _timeout(args, extravars)
    return _runner_request(args, extravars, repo)


# --- running --------------------------------------------------------------------------------

_FILTER_MESSAGE = re.compile(r"(nuclab_experiment_\w+: .*)$", re.DOTALL)


def failure_message(event_data: Mapping[str, Any]) -> str:
    """The one line worth showing from a failed task's result."""
    res = event_data.get("res") or {}
    message = str(res.get("msg") or res.get("stderr") or res.get("module_stderr") or "")
    match = _FILTER_MESSAGE.search(message)
    if match:
        message = match.group(1)
    if not message and res.get("results"):
        message = "; ".join(str(r.get("msg", "")) for r in res["results"] if r.get("failed"))
    message = " ".join(message.split())
    task = event_data.get("task", "")
    return message or f"task '{task}' failed"


class Progress:
    """An ansible-runner event handler: prints each task, keeps the failure message."""

    def __init__(self, quiet: bool = False, stream: Any = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.failure: str | None = None

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind == "playbook_on_task_start" and not self.quiet:
            task = str(data.get("task", ""))
            if task and not task.startswith("Validating arguments"):
                print(f"[INFO] {task}", file=self.stream, flush=True)
        elif kind == "runner_on_unreachable" or (
            kind == "runner_on_failed" and not data.get("ignore_errors")
        ):
            self.failure = failure_message(data)
        return True


def run_playbook(request: RunnerRequest, quiet: bool = False) -> None:
    """Run the playbook; raise ``LabError`` with the failed task's message if it fails."""
    # Imported here: every nuclab command loads this module, only these need the runner.
    import ansible_runner

    progress = Progress(quiet=quiet)
    with tempfile.TemporaryDirectory(prefix="nuclab-runner-") as private:
        result = ansible_runner.run(
            private_data_dir=private,
            project_dir=request.project_dir,
            playbook=request.playbook,
            inventory=request.inventory,
            extravars=request.extravars,
            envvars=request.envvars,
            event_handler=progress,
            quiet=True,
        )
        if result.rc != 0 or result.status != "successful":
            raise LabError(progress.failure or f"experiment.yml ended with {result.status}")


# --- the cluster, read directly -------------------------------------------------------------


def _api_client(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    try:
        if kubeconfig:
            return config.new_client_from_config(config_file=kubeconfig)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            return client.ApiClient()
        return config.new_client_from_config()
    except (config.ConfigException, OSError) as exc:
        raise LabError(f"no usable kubeconfig ({exc}); pass --kubeconfig") from exc


def read_statefulsets(kubeconfig: str | None, namespace: str) -> list[dict[str, Any]]:
    """The experiments' StatefulSets as plain dicts (raw JSON: no slow model objects)."""
    if kubeconfig:
        selector = urllib.parse.quote(experiments.EXPERIMENT_LABEL)
        path = f"/apis/apps/v1/namespaces/{namespace}/statefulsets?labelSelector={selector}"
        try:
            return Kube(kubeconfig).get(path).get("items") or []
        except ApiError as exc:
            if exc.status == 404:
                return []
            raise
    # No kubeconfig file: in a pod, or the user's default (~/.kube/config) as the package finds it.
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    api = client.AppsV1Api(_api_client(kubeconfig))
    try:
        response = api.list_namespaced_stateful_set(
            namespace, label_selector=experiments.EXPERIMENT_LABEL, _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise LabError(f"the lab's API refused the list: {exc.status} {exc.reason}") from exc
    except HTTPError as exc:
        raise LabError(f"cannot reach the lab's API: {exc}") from exc
    return json.loads(response.data)["items"]


def check_namespace(kube: Kube, namespace: str) -> None:
    """An empty list from a namespace that does not exist is a typo, not "no experiments".
    (A tenant allowed to list only its own namespace cannot read namespaces: then no check.)"""
    try:
        kube.get(f"/api/v1/namespaces/{urllib.parse.quote(namespace)}")
    except ApiError as exc:
        if exc.status != 404:
            return
        allowed = "an existing namespace"
        try:
            names = [
                (item.get("metadata") or {}).get("name", "")
                for item in kube.get("/api/v1/namespaces").get("items") or []
            ]
            allowed += f" ({', '.join(sorted(names))})"
        except ApiError:
            pass
        raise ValidationError("namespace", namespace, allowed) from None


def experiment_exists(kubeconfig: str | None, namespace: str, name: str) -> bool:
    return any(
        (item.get("metadata", {}).get("labels") or {}).get(experiments.EXPERIMENT_LABEL) == name
        for item in read_statefulsets(kubeconfig, namespace)
    )


def _require(args: argparse.Namespace) -> None:
    spec.check_name(args.name)
    kubeconfig, namespace = lab_target(args)
    if not experiment_exists(kubeconfig, namespace, args.name):
        raise NotFoundError(f"experiment '{args.name}' does not exist in namespace {namespace}")


# --- commands -------------------------------------------------------------------------------


def fast_path(args: argparse.Namespace) -> tuple[deploy.Settings, str, Kube] | None:
    """What ``nuclab create``/``scale`` need to do the role's work themselves, or None when
    only a play can (``--via-playbook``, a vault or a template beyond the inventory, a remote
    chart, no kubeconfig file)."""
    # Read (and so checked: a wrong setting is refused here) even for --via-playbook.
    settings = deploy.lab_settings(inventory_dir(args.inventory), repo_dir())
    kubeconfig, namespace = lab_target(args)
    if args.via_playbook or settings is None or kubeconfig is None:
        return None
    return dataclasses.replace(settings, namespace=namespace), kubeconfig, Kube(kubeconfig)


def cmd_create(args: argparse.Namespace) -> int:
    request = create_request(args)  # bad input stops here, before anything
    name = request.extravars["experiment_spec"]["name"]
    fast = fast_path(args)
    if fast:
        settings, kubeconfig, kube = fast
        deploy.apply(
            request.extravars["experiment_spec"], settings, kubeconfig, kube,
            must_be_new=not args.update, timeout=request.extravars.get("experiment_wait_timeout"),
            quiet=args.quiet,
        )  # fmt: skip
    else:
        kubeconfig, namespace = lab_target(args)
        if kubeconfig:  # the role checks netem too; here both are refused with exit 2
            kube = Kube(kubeconfig)
            if not args.update:
                found = deploy.read_release(kube, namespace, spec.fullname(name))
                deploy.refuse_existing(name, namespace, found)
            parsed = spec.parse(request.extravars["experiment_spec"], create=False)
            deploy.check_netem(kube, parsed)
        run_playbook(request, quiet=args.quiet)
    print(f"[INFO] experiment '{name}' is running ({spec.fullname(name)})")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    request = scale_request(args)
    fast = fast_path(args)
    if fast:
        settings, kubeconfig, kube = fast
        deploy.apply(
            request.extravars["experiment_spec"], settings, kubeconfig, kube,
            must_exist=True, timeout=request.extravars.get("experiment_wait_timeout"),
            quiet=args.quiet,
        )  # fmt: skip
    else:
        _require(args)
        run_playbook(request, quiet=args.quiet)
    print(f"[INFO] experiment '{args.name}' scaled to {args.peers} peer(s)")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    request = delete_request(args)
    _require(args)
    run_playbook(request, quiet=args.quiet)
    print(f"[INFO] experiment '{args.name}' deleted")
    return 0


def read_peers(kubeconfig: str | None, namespace: str) -> tuple[list[Any], list[Any]]:
    """The experiments' peer pods and the nodes (to tell simulated peers from real ones); none
    without a kubeconfig file, and no nodes where the user may not list them."""
    if not kubeconfig:
        return [], []
    kube = Kube(kubeconfig)
    selector = urllib.parse.quote(
        f"{experiments.EXPERIMENT_LABEL},app.kubernetes.io/component=peer"
    )
    pods = kube.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")
    try:
        nodes = kube.get("/api/v1/nodes").get("items") or []
    except ApiError as exc:
        if exc.status not in (401, 403):
            raise
        nodes = []
    return pods.get("items") or [], nodes


def cmd_list(args: argparse.Namespace) -> int:
    kubeconfig, namespace = lab_target(args)
    items = read_statefulsets(kubeconfig, namespace)
    if not items and kubeconfig and args.namespace:
        # a namespace the user named must exist; the default one appears with the first experiment
        check_namespace(Kube(kubeconfig), namespace)
    pods, nodes = read_peers(kubeconfig, namespace) if items else ([], [])
    rows = experiments.experiment_rows(items, pods=pods, nodes=nodes)
    sys.stdout.write(experiments.format_rows(rows, args.output))
    return 0


# --- argument parsing -----------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, mutating: bool = True) -> None:
    parser.add_argument(
        "-i",
        "--inventory",
        help="the lab's inventory (default: $NUCLAB_INVENTORY or the repository's inventory/sim)",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        help="namespace of the experiments (default: the inventory's experiment_namespace, else "
        "the kubeconfig's, as a research group's names it, else nuclab)",
    )
    parser.add_argument(
        "--kubeconfig",
        help="kubeconfig (default: the inventory's lab_kubeconfig, "
        "<inventory>/artifacts/kubeconfig)",
    )
    if mutating:
        parser.add_argument(
            "--timeout",
            help=f"seconds to wait for the peers, 1 to {deploy.WAIT_TIMEOUT.maximum:.0f} "
            "(default: the inventory's)",
        )
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def _via_playbook(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--via-playbook",
        action="store_true",
        help="run experiment.yml through ansible-runner (the default when the inventory's "
        "settings need a play: a vault, a template on a role's defaults or facts)",
    )


def add_spec_flags(
    parser: argparse.ArgumentParser, fields: tuple[spec.Field, ...] = spec.FIELD_TABLE
) -> None:
    """A flag for each field of the table that has one, with the table's help (and range)."""
    for row in fields:
        if not row.flag:
            continue
        text = row.help.replace("%", "%%")  # argparse formats help with %
        if row.number is not None:
            # Numbers stay strings here: nuclab.spec checks them and names field, value, range.
            text += f": {row.number.span()}"
            parser.add_argument(row.flag, dest=row.name, metavar=row.name.upper(), help=text)
        elif row.kind == "choice":
            parser.add_argument(row.flag, dest=row.name, choices=row.choices, help=text)
        elif row.kind == "bool":
            parser.add_argument(
                row.flag, dest=row.name, action=argparse.BooleanOptionalAction, help=text
            )
        elif row.kind == "matrix":
            text += ": a YAML file, a list of entries or {matrix: [...]} ([] = none)"
            parser.add_argument(row.flag, dest=row.name, metavar="FILE", help=text)
        elif row.kind in ("strings", "mapping"):
            metavar = "KEY=VALUE" if row.kind == "mapping" else row.flag[2:].upper()
            parser.add_argument(
                row.flag, dest=row.name, action="append", metavar=metavar, help=text
            )
        else:
            parser.add_argument(row.flag, dest=row.name, help=text)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    create = subparsers.add_parser(
        "create",
        help="create an experiment and wait for its peers",
        description=(
            "Create an experiment and wait for its peers. A name an experiment has is refused "
            "(nuclab scale changes its peers), unless --update is given."
        ),
    )
    create.add_argument("-f", "--file", help="a spec file (experiments/<name>.yml); flags win")
    create.add_argument(
        "--update",
        action="store_true",
        help="update the experiment if one of that name exists (its spec: fields not given "
        "keep their values)",
    )
    add_spec_flags(create)
    _common(create)
    _via_playbook(create)
    create.set_defaults(func=cmd_create)

    listing = subparsers.add_parser("list", help="list the experiments")
    listing.add_argument("-o", "--output", choices=experiments.OUTPUTS, default="table")
    _common(listing, mutating=False)
    listing.set_defaults(func=cmd_list)

    scale = subparsers.add_parser("scale", help="scale an experiment (0 pauses it)")
    scale.add_argument("name", help=spec.NAME_HELP)
    scale.add_argument("peers", help="number of peers (0 pauses the experiment)")
    _common(scale)
    _via_playbook(scale)
    scale.set_defaults(func=cmd_scale)

    delete = subparsers.add_parser(
        "delete",
        help="export an experiment, then delete it and wait until it is gone",
        description=(
            "Export the experiment into a dataset (role export; the inventory's "
            "lab_prometheus_url), then delete it. A failed export keeps the experiment."
        ),
    )
    delete.add_argument("name", help=spec.NAME_HELP)
    delete.add_argument(
        "--no-export", action="store_true", help="delete without exporting first (data is lost)"
    )
    _common(delete)
    delete.set_defaults(func=cmd_delete)
