#!/usr/bin/env bash
# The systemd test host image for the k3s-* Molecule scenarios and tests/unit/test_k3s_preflight.py:
# localhost/nuclab/debian-systemd:bookworm, built from Debian's packages with debootstrap and
# `podman import` (tools/images/build-debian-image.sh). Cached: a current image is left alone in
# about a second, and the root file system tarball under $NUCLAB_CACHE/images/ is re-imported
# without debootstrap when only the podman store lost the image.
set -euo pipefail
repo=${NUCLAB_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/tools/containers.conf}
exec bash "$repo/tools/images/build-debian-image.sh"
