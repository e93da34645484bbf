"""``nuclab rerun``: an experiment created again from the dataset it was exported to.

A dataset's manifest holds what is needed to run it again: the release's values (the spec), the
chart's version, each container's image and the image's digest, and the nodes the pods ran on
with their roles and zones. What this lab cannot make the same is a *difference*: ``rerun``
refuses with one line per difference, or with ``--allow-drift`` goes on and records each in the
new release, where the next export puts it in the new manifest beside the parent dataset.

Everything here is pure: the command (``nuclab.commands.rerun``) reads the lab and applies.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nuclab import lab, spec
from nuclab.errors import NotFoundError, NuclabError, ValidationError
from nuclab.report.data import verify_files

# The pod annotation (chart value podAnnotations) that names the dataset a run was made from.
PARENT_ANNOTATION = "nuclab.io/rerun-of"


def load_manifest(dataset: Path) -> dict[str, Any]:
    """The dataset's manifest, its files' checksums checked (a changed dataset is refused)."""
    path = dataset / "manifest.json"
    if not path.is_file():
        raise NotFoundError(f"dataset {str(dataset)!r}: no manifest.json (not an export)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"dataset {str(dataset)!r}: manifest.json", str(exc), "JSON") from exc
    if not isinstance(manifest, dict):
        raise ValidationError(f"dataset {str(dataset)!r}: manifest.json", manifest, "a mapping")
    verify_files(dataset, manifest, [])
    return manifest


def spec_fields(manifest: Mapping[str, Any], name: str | None) -> dict[str, Any]:
    """The spec the run was created with (from its release's values), under ``name``."""
    values = manifest.get("spec")
    if not isinstance(values, dict) or not values:
        raise NuclabError(
            f"dataset of {manifest.get('experiment')!r} holds no spec: it was exported from a "
            "window without its release, so it cannot be run again"
        )
    fields = spec.from_values(values)
    fields["name"] = spec.check_name(name or manifest.get("experiment"))
    return fields


def changed_spec(
    fields: Mapping[str, Any], overrides: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The run's spec with the fields a user changed for the new run (checked as create checks
    them), and each change: ``{field: {"from": run's, "to": new}}`` (the name is not a change)."""
    merged = spec.parse({**fields, **overrides}, create=True).as_dict()
    changed = {
        key: {"from": fields.get(key), "to": merged[key]}
        for key in overrides
        if key != "name" and merged[key] != fields.get(key)
    }
    return {**fields, **{key: merged[key] for key in overrides}}, changed


def parent(dataset: Path, manifest: Mapping[str, Any], drift: list[str]) -> dict[str, Any]:
    """What the new run records of the dataset it came from (and what differed)."""
    digest = hashlib.sha256((dataset / "manifest.json").read_bytes()).hexdigest()
    return {
        "dataset": str(dataset.resolve()),
        "manifest_sha256": digest,
        "experiment": manifest.get("experiment"),
        "created": manifest.get("created"),
        "drift": drift,
    }


def annotation(record: Mapping[str, Any]) -> dict[str, Any]:
    """The chart values that carry the record to the new release (and so to its export)."""
    return {"podAnnotations": {PARENT_ANNOTATION: json.dumps(record, sort_keys=True)}}


def recorded_parent(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The parent record a release's values carry, if it was made by ``rerun``."""
    text = ((values or {}).get("podAnnotations") or {}).get(PARENT_ANNOTATION)
    if not isinstance(text, str):
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def differences(
    manifest: Mapping[str, Any],
    chart_version: str,
    nodes: Iterable[Mapping[str, Any]],
    held: set[str],
) -> list[str]:
    """What this lab cannot make as the run had it, one line each.

    ``nodes``: the lab's Ready nodes (name, labels); ``held``: the image digests and IDs
    (``sha256:...``) its pods can run."""
    out = []
    chart = (manifest.get("chart") or {}).get("version")
    if chart != chart_version:
        out.append(f"chart: the run used experiment chart {chart}; this lab has {chart_version}")
    ready = list(nodes)
    for entry in manifest.get("images") or []:
        digest = entry.get("digest")
        if digest and digest not in held:
            out.append(
                f"image {entry.get('image')}: the run used {digest}; this lab does not have it"
            )
    ran = {n["name"]: n for n in manifest.get("nodes") or []}
    used = Counter(
        lab.place(ran.get(node, {}).get("labels") or {})
        for node in {p.get("node") for p in manifest.get("pods") or [] if p.get("node")}
    )
    have = Counter(lab.place(n.get("labels") or {}) for n in ready)
    for where, count in sorted(used.items()):
        if have[where] < count:
            out.append(
                f"placement: the run used {count} node(s) of role/zone {where}; "
                f"this lab has {have[where]}"
            )
    return out
