#!/usr/bin/env bash
# Builds nuclab's in-pod agents (src/agents: nuclab-peer) from source, static and stripped:
#
#   tools/build-agents.sh [--arch amd64|arm64] [--out DIR]
#
# Defaults: the machine's architecture, DIR = $NUCLAB_CACHE/agents/<arch>. CGO_ENABLED=0 makes
# a static binary that cross-compiles without emulation (arm64 for Raspberry Pi labs); Go
# modules come from the Go module proxy into the usual module cache.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
arch=$(go env GOARCH 2>/dev/null || echo amd64)
out=""
die() { printf 'build-agents: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=${2:?--arch needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (allowed: --arch, --out)" ;;
  esac
done
case "$arch" in amd64|arm64) ;; *) die "--arch: '$arch' is not allowed; amd64 or arm64" ;; esac
command -v go >/dev/null || die "go is not on PATH (the agents are built from source)"
out=${out:-${NUCLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nuclab}/agents/$arch}
mkdir -p "$out"
(cd "$repo/src/agents" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOTOOLCHAIN=local \
  go build -trimpath -ldflags="-s -w" -o "$out/" ./cmd/nuclab-peer)
printf '%s\n' "$out/nuclab-peer"
