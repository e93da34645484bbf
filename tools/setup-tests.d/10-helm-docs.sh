#!/usr/bin/env bash
# helm-docs (lab_helm_docs_version), which writes the chart's README (`make generate`; a unit test
# checks that it is current), built from its Go module into $NUCLAB_CACHE/tools/helm-docs-<version>
# and linked as $NUCLAB_CACHE/tools/bin/helm-docs. A warm cache makes this a no-op.
set -euo pipefail

repo=${NUCLAB_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
cache=${NUCLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nuclab}
tools="$cache/tools"

log() { printf '==> %s\n' "$*"; }
die() { printf 'setup (helm-docs): %s\n' "$*" >&2; exit 1; }

version=$(sed -nE 's/^lab_helm_docs_version:[[:space:]]*"?([^"#[:space:]]+)"?.*/\1/p' "$repo/versions.yml")
[ -n "$version" ] || die "versions.yml has no lab_helm_docs_version"
dir="$tools/helm-docs-$version"
if [ ! -x "$dir/helm-docs" ]; then
  command -v go >/dev/null || die "Go is needed to build helm-docs (go not on PATH)"
  log "building helm-docs $version"
  # nice: `make test` builds it beside the lab's tier, which must not wait for it
  CGO_ENABLED=0 GOBIN="$dir" nice -n 19 go install -trimpath -ldflags="-s -w" \
    "github.com/norwoodj/helm-docs/cmd/helm-docs@$version"
fi
mkdir -p "$tools/bin"
ln -sfn "$dir/helm-docs" "$tools/bin/helm-docs"
