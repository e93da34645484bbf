#!/usr/bin/env bash
# Loki for the export tests: its single binary (cmd/loki) of lab_loki_version, built from its Go
# module through the wrapper module tools/loki (Loki's go.mod has replace directives, which
# `go install pkg@version` refuses). Into $NUCLAB_CACHE/tools/loki-<version>/loki, linked as
# $NUCLAB_CACHE/tools/bin/loki; nothing prebuilt is downloaded, nothing built is committed.
# A warm cache makes this a no-op; the first build takes minutes (see docs/measurement.md).
set -euo pipefail

repo=${NUCLAB_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
cache=${NUCLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nuclab}
tools="$cache/tools"

log() { printf '==> %s\n' "$*"; }
die() { printf 'setup (loki): %s\n' "$*" >&2; exit 1; }

version=$(sed -nE 's/^lab_loki_version:[[:space:]]*"?([^"#[:space:]]+)"?.*/\1/p' "$repo/versions.yml")
[ -n "$version" ] || die "versions.yml has no lab_loki_version"
mod=github.com/grafana/loki/v3
grep -q "^require $mod $version\$" "$repo/tools/loki/go.mod" \
  || die "tools/loki/go.mod does not require $mod $version (versions.yml says so)"

dir="$tools/loki-$version"
if [ ! -x "$dir/loki" ]; then
  command -v go >/dev/null || die "Go is needed to build Loki (go not on PATH)"
  log "building Loki $version from its Go module (several minutes on 2 cores, once)"
  # `loki -version` reports what Loki's own release build stamps: the version and the tag's commit
  # (the module proxy records it in the version's .info).
  (cd "$repo/tools/loki" && go mod download "$mod")
  info="$(cd "$repo/tools/loki" && go env GOMODCACHE)/cache/download/$mod/@v/$version.info"
  revision=$(sed -nE 's/.*"Hash":"([0-9a-f]+)".*/\1/p' "$info" 2>/dev/null || true)
  bpkg=$mod/pkg/util/build
  ldflags="-s -w -X $bpkg.Version=${version#v} -X $bpkg.Revision=$revision"
  mkdir -p "$dir.tmp"
  (cd "$repo/tools/loki" && CGO_ENABLED=0 nice -n 19 go build -trimpath -tags netgo \
    -ldflags="$ldflags" -o "$dir.tmp/loki" "$mod/cmd/loki")
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
mkdir -p "$tools/bin"
ln -sfn "$dir/loki" "$tools/bin/loki"
