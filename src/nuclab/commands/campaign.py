"""``nuclab campaign run FILE`` and ``nuclab campaign status FILE``: a grid of runs, each
created, run for the campaign's duration, exported and deleted, then compared (``nuclab.campaign``).

Exit codes: 0 every run done; 1 a run failed (recorded; the others went on) or the lab could
not be reached; 2 bad input (nothing was started); 130 interrupted (``run`` again resumes).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nuclab import campaign, deploy, spec
from nuclab.commands import experiment
from nuclab.errors import NuclabError, ValidationError

HELP = "run a campaign file's grid of experiments, export each and compare them; resumable"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "campaign",
        help=HELP,
        description=(
            "A campaign file lists runs: a base spec, a grid of values and repeats, a duration "
            "each. 'run' creates each run's experiment (<campaign>-<n>), lets it run for the "
            "duration, exports it into <output>/<run> and deletes it, one after the other; a "
            "failed run is recorded and the campaign goes on; at the end, the datasets are "
            "compared (<output>/compare.html, compare.json). Run again, it resumes where it "
            "stopped. 'status' shows what each run came to."
        ),
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    run = verbs.add_parser("run", help="run (or resume) the campaign")
    run.add_argument("file", type=Path, help="the campaign file (YAML, key 'campaign')")
    run.add_argument(
        "--output", "-o", type=Path,
        help="the campaign's folder (default: the file's output, else datasets/<name>)",
    )  # fmt: skip
    run.add_argument(
        "--retry-failed", action="store_true", help="run the failed runs again when resuming"
    )
    experiment._common(run)
    run.set_defaults(func=_run, via_playbook=False)
    status = verbs.add_parser("status", help="what each run of the campaign came to")
    status.add_argument("file", type=Path, help="the campaign file")
    status.add_argument("--output", "-o", type=Path, help="the campaign's folder")
    status.set_defaults(func=_status)


def _say(quiet: bool) -> Callable[[str], None]:
    def say(text: str) -> None:
        if not quiet:
            print(f"[INFO] campaign: {text}", file=sys.stderr, flush=True)

    return say


def _lab(args: argparse.Namespace) -> campaign.Lab:
    """The lab's operations: create as ``nuclab create`` does (the fast path), export as
    ``nuclab export``, delete with ``experiment.yml`` without exporting (done already)."""
    from nuclab.export import run as export_run

    fast = experiment.fast_path(args)
    if fast is None:
        raise NuclabError(
            "a campaign needs the lab's kubeconfig and settings the CLI can read (as nuclab "
            "create without --via-playbook)"
        )
    settings, kubeconfig, kube = fast
    timeout = None if args.timeout is None else deploy.check_timeout("--timeout", args.timeout)
    target = deploy.lab_target(experiment.inventory_dir(args.inventory), experiment.repo_dir())
    prometheus_url = os.environ.get("NUCLAB_PROMETHEUS_URL") or target.prometheus_url
    loki_url = os.environ.get("NUCLAB_LOKI_URL") or target.loki_url
    if not prometheus_url:
        raise ValidationError(
            "lab_prometheus_url", "", "the lab's Prometheus URL (in the inventory, or env "
            "NUCLAB_PROMETHEUS_URL): each run is exported"
        )  # fmt: skip

    def exists(name: str) -> bool:
        release = deploy.read_release(kube, settings.namespace, spec.fullname(name))
        return release is not None or experiment.experiment_exists(
            kubeconfig, settings.namespace, name
        )

    def create(run: campaign.Run) -> None:
        deploy.apply(
            run.fields, settings, kubeconfig, kube, must_be_new=True, timeout=timeout,
            quiet=args.quiet,
        )  # fmt: skip

    def export(name: str, output: Path) -> None:
        opts = export_run.ExportOptions(
            experiment=name, prometheus_url=prometheus_url, loki_url=loki_url, output=output,
            kubeconfig=kubeconfig, namespace=settings.namespace,
        )  # fmt: skip
        warn = _say(args.quiet)
        result = export_run.export(opts, warn=lambda line: warn(f"{name}: export: {line}"))
        warn(f"exported {name}: {result.samples} samples, {result.files} files in {result.path}")

    def delete(name: str) -> None:
        request = experiment.delete_request(
            argparse.Namespace(
                name=name, no_export=True, timeout=args.timeout, inventory=args.inventory,
                namespace=settings.namespace, kubeconfig=kubeconfig,
            )
        )  # fmt: skip
        experiment.run_playbook(request, quiet=True)

    return campaign.Lab(exists, create, export, delete, time.sleep, _say(args.quiet))


def _load(args: argparse.Namespace) -> campaign.Campaign:
    loaded = campaign.load(args.file, args.output)
    # relative to the working folder, as nuclab export's datasets/<name>
    return dataclasses.replace(loaded, output=loaded.output.absolute())


def _compare(record: campaign.Record, say: Callable[[str], None]) -> None:
    from nuclab.report import compare

    datasets = record.datasets()
    if len(datasets) < 2:
        say(f"{len(datasets)} dataset(s): nothing to compare")
        return
    result = compare.compare(datasets, {})
    output = record.campaign.output
    (output / "compare.json").write_text(compare.render(result, "json"), encoding="utf-8")
    compare.write_html(result, output / "compare.html")
    sys.stdout.write(compare.render(result, "table"))
    say(f"compared {len(datasets)} datasets: {output / 'compare.html'}, compare.json")


def _run(args: argparse.Namespace) -> int:
    loaded = _load(args)  # bad input stops here, before the lab is read
    record = campaign.Record.open(loaded)
    todo = record.todo(args.retry_failed)
    say = _say(args.quiet)
    if todo:
        lab = _lab(args)
        campaign.check_free(record, todo, lab.exists)
        record.save()
        say(f"{len(loaded.runs)} run(s) of {loaded.duration:g} s; {len(todo)} to do")
        try:
            campaign.execute(record, todo, lab)
        except KeyboardInterrupt:
            print(
                f"nuclab: campaign interrupted: `nuclab campaign run {args.file}` resumes it",
                file=sys.stderr,
            )
            raise
    _compare(record, say)
    counts = campaign.results(record)
    print(
        f"campaign {loaded.name}: {counts[campaign.DONE]} done, {counts[campaign.FAILED]} "
        f"failed of {len(loaded.runs)} runs in {loaded.output}"
    )
    for row in campaign.summary(record):
        if row[3] == campaign.FAILED:
            print(f"nuclab: campaign: {row[0]} failed: {row[4]}", file=sys.stderr)
    return 1 if counts[campaign.FAILED] else 0


def _status(args: argparse.Namespace) -> int:
    loaded = _load(args)
    campaign.need_record(loaded.output)
    record = campaign.Record.open(loaded)
    rows = [["RUN", "VALUES", "REPEAT", "STATUS", "DATASET/ERROR"], *campaign.summary(record)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    return 0
