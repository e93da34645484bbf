#!/usr/bin/python
# Copyright: nuclab contributors
# Apache License 2.0
"""Ansible module: load images into the containerd of each real node of the simulated lab."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nuclab_sim_images
short_description: Load images into the real nodes' containerd
description:
  - Imports each image into the C(k8s.io) namespace of every real node's containerd (what
    C(k3s ctr images import) does for an airgapped K3s node), from a podman image of this
    machine or from an image tarball.
  - Idempotent. A node remembers in C(images.json) which version of each image it got (the
    podman image ID, or the tarball's checksum); an image is imported again only when it changed.
options:
  ctr:
    description: Path of containerd's C(ctr).
    type: path
    required: true
  images:
    description:
      - The images, each C(name) (the reference pods use) and either C(tarball) (a
        docker-archive file) or C(podman=true) (saved from podman's store when needed).
    type: list
    elements: dict
    required: true
  nodes_dir:
    description:
      - Where the nodes live; node C(N) has containerd's socket in C(N/containerd.sock) and
        remembers its images in C(N/images.json).
    type: path
    required: true
  nodes:
    description: The nodes' names.
    type: list
    elements: str
    required: true
author: nuclab contributors
"""

EXAMPLES = r"""
- name: Load the pause image into the real nodes
  nuclab_sim_images:
    ctr: /opt/tools/bin/ctr
    images: [{name: localhost/nuclab/pause:3.10, tarball: /cache/pause-3.10.tar}]
    nodes_dir: /lab/.state/nodes
    nodes: [nuc-2, nuc-4]
"""

RETURN = r"""
imported:
  description: Per node, the images it was given.
  returned: always
  type: dict
"""

import hashlib
import json
import os
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _read(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "ctr": {"type": "path", "required": True},
            "images": {"type": "list", "elements": "dict", "required": True},
            "nodes_dir": {"type": "path", "required": True},
            "nodes": {"type": "list", "elements": "str", "required": True},
        },
        supports_check_mode=True,
    )
    p = module.params

    def run(*argv: str) -> str:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            module.fail_json(msg=f"{' '.join(argv)} failed: {proc.stderr.strip()[-2000:]}")
        return proc.stdout.strip()

    versions: dict[str, str] = {}
    for image in p["images"]:
        name = image["name"]
        if image.get("podman"):
            versions[name] = run("podman", "image", "inspect", "--format", "{{.Id}}", name)
        elif image.get("tarball") and os.path.isfile(image["tarball"]):
            versions[name] = _sha256(image["tarball"])
        else:
            module.fail_json(msg=f"{name}: no tarball {image.get('tarball')} (run make setup)")

    imported: dict[str, list[str]] = {}
    saved: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="nuclab-images-") as tmp:
        for name in p["nodes"]:
            node = {
                "name": name,
                "socket": os.path.join(p["nodes_dir"], name, "containerd.sock"),
                "stamp": os.path.join(p["nodes_dir"], name, "images.json"),
            }
            have = _read(node["stamp"])
            todo = [i for i in p["images"] if have.get(i["name"]) != versions[i["name"]]]
            if not todo:
                continue
            imported[node["name"]] = [i["name"] for i in todo]
            if module.check_mode:
                continue
            for image in todo:
                ref = image["name"]
                tarball = image.get("tarball")
                if image.get("podman"):
                    if ref not in saved:  # saved once for all the nodes
                        saved[ref] = os.path.join(tmp, f"{len(saved)}.tar")
                        run("podman", "save", "-q", "-o", saved[ref], ref)
                    tarball = saved[ref]
                run(
                    p["ctr"],
                    "--address",
                    node["socket"],
                    "--namespace",
                    "k8s.io",
                    "images",
                    "import",
                    tarball,
                )
                have[ref] = versions[ref]
                with open(node["stamp"] + ".tmp", "w", encoding="utf-8") as handle:
                    json.dump(have, handle, indent=1, sort_keys=True)
                os.replace(node["stamp"] + ".tmp", node["stamp"])
    module.exit_json(changed=bool(imported), imported=imported)


if __name__ == "__main__":
    main()
