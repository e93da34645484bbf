"""What an image archive holds (``podman save`` / ``docker save``, docker-archive or oci-archive).

The lab copies archives of images no registry serves (the nuclab tools image) onto its nodes;
each node takes the archives of its own architecture. Only the archive's index is read, never
its layers.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nuclab.errors import ValidationError

ALLOWED = "an image archive written by podman save or docker save (docker-archive or oci-archive)"


@dataclass(frozen=True)
class ImageArchive:
    path: str
    architecture: str
    tags: tuple[str, ...]
    labels: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "architecture": self.architecture,
            "tags": list(self.tags),
            "labels": dict(self.labels),
        }


def _json_member(tar: tarfile.TarFile, name: str) -> Any:
    try:
        member = tar.extractfile(name.removeprefix("./"))
    except KeyError:
        member = None
    if member is None:
        raise KeyError(name)
    return json.loads(member.read())


def _blob(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    return f"blobs/{algorithm}/{value}"


def _docker_archive(tar: tarfile.TarFile) -> tuple[dict[str, Any], list[str]]:
    manifest = _json_member(tar, "manifest.json")
    if not isinstance(manifest, list) or len(manifest) != 1:
        raise ValueError("manifest.json must name exactly one image")
    config = _json_member(tar, manifest[0]["Config"])
    return config, list(manifest[0].get("RepoTags") or [])


def _oci_archive(tar: tarfile.TarFile) -> tuple[dict[str, Any], list[str]]:
    index = _json_member(tar, "index.json")
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise ValueError("index.json must name exactly one image")
    entry = manifests[0]
    manifest = _json_member(tar, _blob(entry["digest"]))
    config = _json_member(tar, _blob(manifest["config"]["digest"]))
    name = (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name")
    return config, [name] if name else []


def read_archive(path: str | Path, field: str = "image archive") -> ImageArchive:
    """The architecture, tags and labels of the one image in ``path``.

    Raises ValidationError (naming ``field``) when the file is missing or not an image archive.
    """
    file = Path(path)
    if not file.is_file():
        raise ValidationError(field, str(path), f"allowed: an existing file, {ALLOWED}")
    try:
        with tarfile.open(file) as tar:
            names = set(tar.getnames())
            if "manifest.json" in names:
                config, tags = _docker_archive(tar)
            elif "index.json" in names:
                config, tags = _oci_archive(tar)
            else:
                raise ValueError("no manifest.json or index.json")
    except (tarfile.TarError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValidationError(field, str(path), f"allowed: {ALLOWED} ({err})") from None
    architecture = config.get("architecture") if isinstance(config, dict) else None
    if not isinstance(architecture, str) or not architecture:
        raise ValidationError(
            field, str(path), f"allowed: {ALLOWED} whose image names its architecture"
        )
    labels = (config.get("config") or {}).get("Labels") or {}
    return ImageArchive(
        str(path), architecture, tuple(tags), {str(k): str(v) for k, v in labels.items()}
    )
