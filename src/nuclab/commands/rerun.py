"""``nuclab rerun DATASET [--name NEW] [--allow-drift]``: an experiment created again from the
dataset it was exported to, on this lab (``nuclab.rerun``)."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

from nuclab import deploy, experiments, rerun, spec
from nuclab.commands import experiment
from nuclab.errors import NuclabError

HELP = "create an experiment again from the dataset it was exported to"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "rerun",
        help=HELP,
        description=(
            "Create the experiment a dataset was exported from again, with its spec (peers, "
            "limits, network emulation, placement labels) on this lab. What this lab cannot "
            "make the same (the chart's version, an image's digest, fewer nodes of a role and "
            "zone than the run used) is refused, one line each, unless --allow-drift is given; "
            "then each difference is recorded, and the new run's export names its parent "
            "dataset and the differences. The spec flags of nuclab create change a field for "
            "the new run (a sweep from a baseline: --uplink-bw 8); each change is recorded too."
        ),
    )
    p.add_argument("dataset", type=Path, help="the dataset folder (nuclab export's output)")
    p.add_argument("--name", help="the new experiment's name (default: the dataset's)")
    experiment.add_spec_flags(p, tuple(row for row in spec.FIELD_TABLE if row.name != "name"))
    p.add_argument(
        "--allow-drift",
        action="store_true",
        help="run even where this lab differs from the run's; record each difference",
    )
    experiment._common(p)
    p.set_defaults(func=_run, via_playbook=False, file=None)


def _lab(kubeconfig: str) -> tuple[list[dict[str, Any]], set[str]]:
    """The lab's Ready, schedulable nodes (name, labels) and the digests of the images its
    nodes report (a pulled image's repository digest)."""
    from nuclab.export.cluster import core_api

    nodes: list[dict[str, Any]] = []
    held: set[str] = set()
    for n in core_api(kubeconfig).list_node().items:
        ready = any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
        if not ready or n.spec.unschedulable:
            continue
        nodes.append({"name": n.metadata.name, "labels": dict(n.metadata.labels or {})})
        held |= {
            name.rpartition("@")[2]
            for image in n.status.images or []
            for name in image.names or []
            if "@sha256:" in name
        }
    return nodes, held


def _built_here(manifest: dict[str, Any]) -> set[str]:
    """The IDs of the run's images as this machine's podman holds them. An image nuclab builds
    (the tools image) is imported into the nodes from here, not pulled, so the nodes report it
    by name only; its ID (the config digest: what the pods' imageID says) is read here."""
    ids: set[str] = set()
    for entry in manifest.get("images") or []:
        ref = entry.get("image")
        if not ref:
            continue
        try:
            proc = subprocess.run(
                ["podman", "image", "inspect", "--format", "{{.Id}}", ref],
                capture_output=True, text=True, check=False, timeout=60,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return ids
        if proc.returncode == 0 and proc.stdout.strip():
            ids.add(f"sha256:{proc.stdout.strip().removeprefix('sha256:')}")
    return ids


def _run(args: argparse.Namespace) -> int:
    manifest = rerun.load_manifest(args.dataset)  # a changed dataset is refused here
    fields, changed = rerun.changed_spec(
        rerun.spec_fields(manifest, args.name), experiment.spec_from_args(args)
    )  # a bad flag stops here, before the lab is read
    extravars: dict[str, Any] = {}
    experiment._timeout(args, extravars)  # bad input stops here, before the lab is read
    timeout = extravars.get("experiment_wait_timeout")
    fast = experiment.fast_path(args)
    if fast is None:
        raise NuclabError(
            "rerun needs the lab's kubeconfig and settings the CLI can read (see nuclab create "
            "--via-playbook for inventories that need a play)"
        )
    settings, kubeconfig, kube = fast
    nodes, held = _lab(kubeconfig)
    drift = rerun.differences(manifest, str(deploy.chart_meta(settings.chart).get("version")),
                              nodes, held | _built_here(manifest))  # fmt: skip
    if drift and not args.allow_drift:
        for line in drift:
            print(f"nuclab: rerun: {line}", file=sys.stderr)
        raise NuclabError(
            f"{len(drift)} difference(s) between this lab and the run of {args.dataset}; "
            "nothing was created (--allow-drift runs it anyway and records them)"
        )
    record = {**rerun.parent(args.dataset, manifest, drift), "changed": changed}
    values = experiments.deep_merge(settings.chart_values, rerun.annotation(record))
    settings = dataclasses.replace(settings, chart_values=values)
    deploy.apply(
        fields, settings, kubeconfig, kube, must_be_new=True, timeout=timeout, quiet=args.quiet
    )
    for line in drift:
        print(f"nuclab: rerun: recorded: {line}", file=sys.stderr)
    for key, change in changed.items():
        print(f"[INFO] {key}: {change['from']!r} -> {change['to']!r} (recorded)")
    print(
        f"[INFO] experiment '{fields['name']}' is running ({spec.fullname(fields['name'])}), "
        f"a rerun of {manifest.get('experiment')!r} from {args.dataset}"
    )
    return 0
