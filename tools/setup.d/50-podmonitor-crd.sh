#!/usr/bin/env bash
# The Prometheus Operator's PodMonitor CRD, for the experiment chart's tests (they validate the
# rendered PodMonitor against its schema), and the CRDs the operator's Prometheus controller
# watches (Prometheus, ServiceMonitor, Probe, PrometheusRule), for the monitoring test that runs
# the operator on the simulated lab: taken from the operator's Go module (the Go module
# proxy), cached under $NUCLAB_CACHE/crds/. A warm cache makes this a no-op.
set -euo pipefail

repo=${NUCLAB_REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
cache=${NUCLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nuclab}

die() { printf 'setup (podmonitor crd): %s\n' "$*" >&2; exit 1; }

version=$(sed -nE 's/^lab_prometheus_operator_version:[[:space:]]*"?([^"#[:space:]]+)"?.*/\1/p' "$repo/versions.yml")
[ -n "$version" ] || die "versions.yml has no lab_prometheus_operator_version"
dest="$cache/crds/prometheus-operator-$version"
crds=""
for kind in podmonitors prometheuses servicemonitors probes prometheusrules; do
  crds+=" monitoring.coreos.com_$kind.yaml"
done
missing=0
for crd in $crds; do [ -s "$dest/$crd" ] || missing=1; done
[ "$missing" -eq 0 ] && exit 0

command -v go >/dev/null || die "Go is needed to fetch the Prometheus Operator's module"
printf '==> fetching the PodMonitor, Prometheus, ServiceMonitor, Probe and PrometheusRule CRDs of prometheus-operator %s (Go module)\n' "$version"
dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@$version" \
  | sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')
[ -n "$dir" ] || die "no module directory for prometheus-operator $version"
mkdir -p "$dest"
for crd in $crds; do
  [ -s "$dir/example/prometheus-operator-crd/$crd" ] || die "no $crd in prometheus-operator $version"
  cp "$dir/example/prometheus-operator-crd/$crd" "$dest/$crd.tmp"
  mv "$dest/$crd.tmp" "$dest/$crd"
done
