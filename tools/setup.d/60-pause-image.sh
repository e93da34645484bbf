#!/usr/bin/env bash
# The pause image of the simulated lab's real nodes (every pod's sandbox container):
# localhost/nuclab/pause:<lab_pause_version>, nuclab's own tools/pause/pause.c compiled
# statically, in an image with nothing else (podman build FROM scratch, no registry), saved
# as a tarball that the sim_cluster role imports into each real node's containerd.
# Cached: skipped when the tarball of this source and version exists.
set -euo pipefail
repo=${NUCLAB_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
cache=${NUCLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nuclab}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/tools/containers.conf}

version=$(sed -nE 's/^lab_pause_version:[[:space:]]*"?([^"#[:space:]]+)"?.*/\1/p' "$repo/versions.yml")
[ -n "$version" ] || { echo "60-pause-image: versions.yml has no lab_pause_version" >&2; exit 1; }
name="localhost/nuclab/pause:$version"
key=$(cat "$repo/tools/pause/pause.c" "$0" | sha256sum | cut -c1-16)
tarball="$cache/images/pause-$version.tar"
[ -s "$tarball" ] && [ "$(cat "$tarball.key" 2>/dev/null)" = "$key" ] && exit 0

echo "==> building $name (static, from tools/pause/pause.c)"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cc -static -Os -s -Wall -Werror -DNUCLAB_PAUSE_VERSION="\"$version\"" -o "$ctx/pause" "$repo/tools/pause/pause.c"
printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$ctx/Containerfile"
podman build --network=none --pull=never -q --label "io.nuclab.image-key=$key" -t "$name" "$ctx" >/dev/null
mkdir -p "$cache/images"
podman save -q -o "$tarball.tmp" "$name" && mv "$tarball.tmp" "$tarball"
printf '%s\n' "$key" > "$tarball.key"
echo "==> saved $name to $tarball"
