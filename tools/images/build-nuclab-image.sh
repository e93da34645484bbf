#!/usr/bin/env bash
# Builds the nuclab tools image with podman from a local base image, without any registry:
#
#   tools/images/build-nuclab-image.sh [--base IMAGE] [--name IMAGE] [--save FILE.tar] [--force]
#
# Defaults: --base localhost/nuclab/debian-systemd:bookworm (tools/images/build-debian-image.sh
# builds it), --name localhost/nuclab/tools:<nuclab version>. Every wheel the image needs (nuclab
# itself and the pinned runtime dependencies from pyproject.toml, for the base's python3) is
# downloaded on this machine into $NUCLAB_CACHE/images/wheels-<key>/ first; the build then runs
# with --network=none. The in-pod agents (src/agents: nuclab-peer, the experiments' default
# workload) are built from source for the base's architecture (tools/build-agents.sh) into the
# same context. --save writes the image as an archive (site.yml copies it into every bare-metal
# node's K3s: lab_nuclab_image_archive). An image whose io.nuclab.image-key label matches the
# sources is left alone (a second run takes seconds), and so is an archive that holds it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -nE 's/^version = "([^"]+)"/\1/p' "$repo/pyproject.toml" | head -n1)
base="localhost/nuclab/debian-systemd:bookworm"
name="localhost/nuclab/tools:$version"
save=""
force=0

die() { printf 'build-nuclab-image: %s\n' "$*" >&2; exit 1; }
log() { printf '==> %s\n' "$*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --base) base=${2:?--base needs a value}; shift 2 ;;
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --save) save=${2:?--save needs a value}; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (allowed: --base, --name, --save, --force)" ;;
  esac
done

export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/tools/containers.conf}
command -v podman >/dev/null || die "podman is not installed (tools/apt-packages.txt lists it; run make setup)"
podman image exists "$base" \
  || die "base image $base is not in podman's store (build it: tools/images/build-debian-image.sh)"
py=${NUCLAB_PYTHON:-$repo/.venv/bin/python}
[ -x "$py" ] || die "no $py (run make setup)"

# The runtime dependencies the tools need, pinned exactly as pyproject.toml pins them.
# confluent-kafka and aiohttp: `nuclab loadgen` (Kafka and HTTP modes).
wanted="prometheus-client pyarrow matplotlib kubernetes PyYAML jsonschema confluent-kafka aiohttp"
pins=""
for pkg in $wanted; do
  pin=$(grep -ioE "\"$pkg==[^\"]+\"" "$repo/pyproject.toml" | tr -d '"' | head -n1)
  [ -n "$pin" ] || die "pyproject.toml pins no $pkg"
  pins="$pins $pin"
done

base_id=$(podman image inspect --format '{{.Id}}' "$base")
arch=$(podman image inspect --format '{{.Architecture}}' "$base")
command -v go >/dev/null || die "go is not on PATH (nuclab-peer is built from src/agents)"
pyver=$(podman run --rm --network=none --entrypoint python3 "$base" \
  -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
sources=$(cd "$repo" && { git ls-files -co --exclude-standard src pyproject.toml 2>/dev/null \
  || find src pyproject.toml -type f; } | sort | xargs sha256sum | sha256sum | cut -c1-16)
# src/ holds the Go agents too (src/agents), so a change there rebuilds; so does another Go.
key=$(printf '%s|%s|%s|%s|%s|%s|%s|%s' "$base_id" "$arch" "$pyver" "$pins" "$sources" "$commit" \
  "$(go env GOVERSION)" \
  "$(cat "$repo/Containerfile" "$0" "$repo/tools/build-agents.sh" | sha256sum)" \
  | sha256sum | cut -c1-16)

have=$(podman image inspect --format '{{ index .Labels "io.nuclab.image-key" }}' "$name" 2>/dev/null || true)
if [ "$force" -eq 0 ] && [ "$have" = "$key" ]; then
  log "$name is up to date (key $key)"
else
  cache="${NUCLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nuclab}/images"
  ctx="$cache/nuclab-context-$key"
  rm -rf "$ctx.tmp" && mkdir -p "$ctx.tmp/wheels"
  log "staging wheels for python $pyver:$pins"
  abi="cp${pyver/./}"
  "$py" -m pip download -q --only-binary=:all: --python-version "$pyver" --implementation cp \
    --abi "$abi" --abi abi3 --abi none --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d "$ctx.tmp/wheels" pip $pins
  "$py" -m pip wheel -q --no-deps -w "$ctx.tmp/wheels" "$repo"
  printf '%s\n' $pins > "$ctx.tmp/wheels/requirements.txt"
  log "building nuclab-peer for linux/$arch"
  bash "$repo/tools/build-agents.sh" --arch "$arch" --out "$ctx.tmp/bin" >/dev/null
  rm -rf "$ctx" && mv "$ctx.tmp" "$ctx"
  find "$cache" -maxdepth 1 -name 'nuclab-context-*' ! -name "$(basename "$ctx")" -exec rm -rf {} +

  log "building $name from $base (no network)"
  previous=$(podman image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)
  podman build --network=none --pull=never -q \
    --build-arg "BASE=$base" --build-arg "NUCLAB_VERSION=$version" \
    --build-arg "NUCLAB_COMMIT=$commit" --build-arg "NUCLAB_IMAGE_KEY=$key" \
    --label "io.nuclab.image-key=$key" \
    -t "$name" -f "$repo/Containerfile" "$ctx" >/dev/null
  log "built $name (key $key)"
  # The image it replaces is left without a name: remove it unless something still uses it.
  if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$name")" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
  fi
fi

if [ -n "$save" ]; then
  # An archive that holds this very image (its key label) is left alone: nodes that import it
  # see an unchanged file and import nothing.
  saved=$(PYTHONPATH="$repo/src" "$py" -c 'import sys
from nuclab.images import read_archive
print(read_archive(sys.argv[1]).labels.get("io.nuclab.image-key", ""))' "$save" 2>/dev/null || true)
  if [ "$saved" = "$key" ]; then
    log "$save is up to date (key $key)"
  else
    mkdir -p "$(dirname "$save")"
    podman save -q -o "$save.tmp" "$name" && mv "$save.tmp" "$save"
    log "saved $name to $save"
  fi
fi
