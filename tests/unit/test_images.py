"""nuclab.images: what an image archive holds, read from archives written here as podman and
docker write them (the real podman save is tests/integration/test_image.py's)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import tarfile
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from nuclab.errors import ValidationError
from nuclab.images import read_archive

REPO = Path(__file__).resolve().parents[2]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _config(architecture: str | None = "arm64", labels: dict | None = None) -> bytes:
    config: dict = {"os": "linux", "config": {"Labels": labels or {"io.nuclab.image-key": "k1"}}}
    if architecture is not None:
        config["architecture"] = architecture
    return json.dumps(config).encode()


def docker_archive(path: Path, config: bytes, images: int = 1) -> Path:
    with tarfile.open(path, "w") as tar:
        _add(tar, "layer/layer.tar", b"\0" * 1024)
        _add(tar, "c.json", config)
        manifest = [
            {"Config": "c.json", "RepoTags": ["localhost/nuclab/tools:0.1.0"], "Layers": []}
        ]
        _add(tar, "manifest.json", json.dumps(manifest * images).encode())
    return path


def oci_archive(path: Path, config: bytes) -> Path:
    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    manifest = json.dumps({"config": {"digest": digest(config)}, "layers": []}).encode()
    index = {
        "manifests": [
            {
                "digest": digest(manifest),
                "annotations": {
                    "org.opencontainers.image.ref.name": "localhost/nuclab/tools:0.1.0"
                },
            }
        ]
    }
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        for data in (config, manifest):
            _add(tar, "blobs/sha256/" + digest(data).split(":")[1], data)
        _add(tar, "index.json", json.dumps(index).encode())
    return path


@pytest.mark.parametrize("write", [docker_archive, oci_archive])
def test_reads_architecture_tags_and_labels(tmp_path: Path, write) -> None:
    archive = read_archive(write(tmp_path / "a.tar", _config()))
    assert archive.architecture == "arm64"
    assert archive.tags == ("localhost/nuclab/tools:0.1.0",)
    assert archive.labels == {"io.nuclab.image-key": "k1"}


def test_a_missing_file_names_the_field_and_the_path(tmp_path: Path) -> None:
    with pytest.raises(
        ValidationError,
        match=r"^lab_node_images: '.*/none.tar' is not allowed; allowed: an existing file",
    ):
        read_archive(tmp_path / "none.tar", "lab_node_images")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a tar at all", "image archive written by podman save"),
        (None, r"no manifest.json or index.json"),
    ],
)
def test_a_file_that_is_no_image_archive_is_refused(tmp_path: Path, content, reason: str) -> None:
    path = tmp_path / "x.tar"
    if content is None:
        with tarfile.open(path, "w") as tar:
            _add(tar, "README.txt", b"hello")
    else:
        path.write_bytes(content)
    with pytest.raises(ValidationError, match=reason):
        read_archive(path)


def test_an_archive_of_two_images_or_without_an_architecture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one image"):
        read_archive(docker_archive(tmp_path / "two.tar", _config(), images=2))
    with pytest.raises(ValidationError, match="names its architecture"):
        read_archive(docker_archive(tmp_path / "noarch.tar", _config(architecture=None)))


def test_the_ansible_filter_gives_the_same_and_one_line_errors(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "nuclab_filter_lab", REPO / "plugins/filter/lab.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    image_archive = module.FilterModule().filters()["nuclab_image_archive"]
    path = docker_archive(tmp_path / "a.tar", _config("amd64"))
    assert image_archive(str(path))["architecture"] == "amd64"
    with pytest.raises(
        AnsibleFilterError, match=r"^lab_nuclab_image_archive: '.*gone.tar' is not allowed"
    ):
        image_archive(str(tmp_path / "gone.tar"), "lab_nuclab_image_archive")
