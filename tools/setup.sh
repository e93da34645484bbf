#!/usr/bin/env bash
# Prepares this machine for nuclab: Debian packages, the Python 3.12 venv, and the Go tools the
# simulated lab needs, built from their Go modules (nothing prebuilt is downloaded); with
# --tests, the tools only the tests add (tools/setup-tests.d: helm-docs, Loki).
# Every step is skipped when its result is already there, so a second run takes seconds.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${NUCLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nuclab}
tools="$cache/tools"
venv="$repo/.venv"

log() { printf '==> %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

version() {  # version KEY: a value from versions.yml (flat "key: value" lines)
  local v
  v=$(sed -nE "s/^$1:[[:space:]]*\"?([^\"#[:space:]]+)\"?.*/\1/p" "$repo/versions.yml")
  [ -n "$v" ] || die "versions.yml has no $1"
  printf '%s' "$v"
}

apt_packages() {
  local missing=()
  while read -r pkg; do
    [ -z "$pkg" ] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$repo/tools/apt-packages.txt")
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

find_python312() {
  local c
  for c in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do
    if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      command -v "$c" || printf '%s' "$c"
      return 0
    fi
  done
  return 1
}

python_venv() {
  local stamp="$venv/.nuclab-stamp" want
  want=$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  local py
  py=$(find_python312) || die "Python 3.12 not found (tried python3.12 and pyenv's versions)"
  log "creating the Python venv in .venv with $py"
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$repo[dev]"
  printf '%s' "$want" > "$stamp"
}

# build_wrapped WRAPPER MODULE VERSION DEST LDFLAGS PKG...: the packages PKG (paths inside MODULE)
# built from the wrapper module tools/WRAPPER, whose go.mod requires MODULE at VERSION (for
# modules that `go install module@version` refuses: exclude or replace directives of their own),
# into DEST, which appears only once the build has succeeded.
build_wrapped() {
  local wrapper=$1 module=$2 version=$3 dest=$4 ldflags=$5 pkg
  shift 5
  grep -q "$module $version\$" "$repo/tools/$wrapper/go.mod" \
    || die "tools/$wrapper/go.mod does not require $module $version (versions.yml says so)"
  local pkgs=()
  for pkg in "$@"; do pkgs+=("$module/$pkg"); done
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  (cd "$repo/tools/$wrapper" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $ldflags" \
    -o "$dest.tmp/" "${pkgs[@]}")
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
}

go_tools() {
  command -v go >/dev/null || die "Go is needed to build the simulated lab's tools (go not on PATH)"
  local kube etcd kwok helm
  kube=$(version lab_kubernetes_version)
  etcd=$(version lab_etcd_version)
  kwok=$(version lab_kwok_version)
  helm=$(version lab_helm_version)
  grep -q "k8s.io/kubernetes $kube\$" "$repo/tools/k8s/go.mod" \
    || die "tools/k8s/go.mod does not require k8s.io/kubernetes $kube (versions.yml says so)"
  grep -q "go.etcd.io/etcd/server/v3 $etcd\$" "$repo/tools/k8s/go.mod" \
    || die "tools/k8s/go.mod does not require go.etcd.io/etcd/server/v3 $etcd (versions.yml says so)"
  mkdir -p "$tools/bin"

  # The build revision is part of the cache key: bump it when the way the tools are built changes.
  local rev=2
  local kdir="$tools/kubernetes-$kube-r$rev" edir="$tools/etcd-$etcd"
  # The version the binaries report (helm checks charts' kubeVersion against it); a build from
  # the module cache has no git tree to take it from.
  local minor=${kube#v1.}; minor=${minor%%.*}
  local vpkg=k8s.io/component-base/version
  local ldflags="-s -w -X $vpkg.gitVersion=$kube -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
  ldflags+=" -X $vpkg.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$kube"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  if [ ! -x "$kdir/kubectl" ] || [ ! -x "$edir/etcd" ]; then
    log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $kube and etcd $etcd (10-20 min on 2 cores, once)"
    mkdir -p "$kdir.tmp" "$edir"
    (cd "$repo/tools/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$kdir.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
    (cd "$repo/tools/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$edir/etcd" ./cmd/etcd)
    rm -rf "$kdir" && mv "$kdir.tmp" "$kdir"
  fi
  # The parts a K3s agent runs, for the simulated lab's real nodes (sim_node_kind: real).
  if [ ! -x "$kdir/kubelet" ] || [ ! -x "$kdir/kube-proxy" ]; then
    log "building kubelet and kube-proxy $kube (a few minutes after the control plane, once)"
    rm -rf "$kdir.node.tmp" && mkdir -p "$kdir.node.tmp"
    (cd "$repo/tools/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$kdir.node.tmp/" \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
    mv "$kdir.node.tmp"/* "$kdir/" && rmdir "$kdir.node.tmp"
  fi
  local containerd coredns router
  containerd=$(version lab_containerd_version)
  coredns=$(version lab_coredns_version)
  router=$(version lab_kube_router_version)
  if [ ! -x "$tools/containerd-$containerd/containerd-shim-runc-v2" ]; then
    log "building containerd $containerd (containerd, its runc shim, ctr)"
    # Without cgo the btrfs snapshotter is left out (overlayfs is what the real nodes use).
    build_wrapped containerd github.com/containerd/containerd/v2 "$containerd" "$tools/containerd-$containerd" \
      "-X github.com/containerd/containerd/v2/version.Version=$containerd" \
      cmd/containerd cmd/containerd-shim-runc-v2 cmd/ctr
  fi
  if [ ! -x "$tools/coredns-$coredns/coredns" ]; then
    log "building CoreDNS $coredns"
    CGO_ENABLED=0 GOBIN="$tools/coredns-$coredns" go install -trimpath -ldflags="-s -w" \
      "github.com/coredns/coredns@$coredns"
  fi
  if [ ! -x "$tools/kube-router-$router/kube-router" ]; then
    log "building kube-router $router (the real nodes' NetworkPolicy firewall)"
    CGO_ENABLED=0 GOBIN="$tools/kube-router-$router" go install -trimpath \
      -ldflags="-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$router" \
      "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$router"
  fi
  # The Prometheus Operator: the simulated lab runs it against its API, and its Prometheus on the
  # configuration it generates (a real lab gets both from the kube-prometheus-stack chart).
  local operator
  operator=$(version lab_prometheus_operator_version)
  if [ ! -x "$tools/prometheus-operator-$operator/operator" ]; then
    log "building the Prometheus Operator $operator (cmd/operator)"
    build_wrapped prometheus-operator github.com/prometheus-operator/prometheus-operator "$operator" \
      "$tools/prometheus-operator-$operator" "-X github.com/prometheus/common/version.Version=${operator#v}" \
      cmd/operator
  fi
  # Prometheus, the simulated lab's own: built with Kubernetes service discovery only (Prometheus'
  # remove_all_sd/enable_kubernetes_sd build tags), which Debian's build leaves out; no web UI
  # assets (the builtinassets tag): the API and /metrics are what nuclab reads.
  local prom pmaj pmin ppatch
  prom=$(version lab_prometheus_version)
  IFS=. read -r pmaj pmin ppatch <<<"${prom#v}"  # Prometheus 3's module versions: v3.13.5 is v0.313.5
  if [ ! -x "$tools/prometheus-$prom/prometheus" ]; then
    log "building Prometheus $prom (cmd/prometheus, Kubernetes discovery only)"
    GOFLAGS=-tags=remove_all_sd,enable_kubernetes_sd build_wrapped prometheus github.com/prometheus/prometheus \
      "$(printf 'v0.%d%02d.%d' "$pmaj" "$pmin" "$ppatch")" "$tools/prometheus-$prom" \
      "-X github.com/prometheus/common/version.Version=${prom#v}" cmd/prometheus
  fi
  # kube-state-metrics: the pods', StatefulSets' and nodes' state that the lab's rules join on.
  local ksm
  ksm=$(version lab_kube_state_metrics_version)
  if [ ! -x "$tools/kube-state-metrics-$ksm/kube-state-metrics" ]; then
    log "building kube-state-metrics $ksm"
    CGO_ENABLED=0 GOBIN="$tools/kube-state-metrics-$ksm" go install -trimpath \
      -ldflags="-s -w -X github.com/prometheus/common/version.Version=$ksm" \
      "k8s.io/kube-state-metrics/v2@$ksm"
  fi
  if [ ! -x "$tools/kwok-$kwok/kwok" ]; then
    log "building kwok $kwok"
    CGO_ENABLED=0 GOBIN="$tools/kwok-$kwok" go install -trimpath -ldflags="-s -w" "sigs.k8s.io/kwok/cmd/kwok@$kwok"
  fi
  if [ ! -x "$tools/helm-$helm/helm" ]; then
    log "building helm $helm"
    CGO_ENABLED=0 GOBIN="$tools/helm-$helm" go install -trimpath -ldflags="-s -w" "helm.sh/helm/v3/cmd/helm@$helm"
  fi
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    ln -sfn "$kdir/$b" "$tools/bin/$b"
  done
  for b in containerd containerd-shim-runc-v2 ctr; do ln -sfn "$tools/containerd-$containerd/$b" "$tools/bin/$b"; done
  ln -sfn "$tools/coredns-$coredns/coredns" "$tools/bin/coredns"
  ln -sfn "$tools/kube-router-$router/kube-router" "$tools/bin/kube-router"
  ln -sfn "$edir/etcd" "$tools/bin/etcd"
  ln -sfn "$tools/kwok-$kwok/kwok" "$tools/bin/kwok"
  ln -sfn "$tools/helm-$helm/helm" "$tools/bin/helm"
  ln -sfn "$tools/prometheus-operator-$operator/operator" "$tools/bin/prometheus-operator"
  # not "prometheus": the tests' local servers are Debian's, found on PATH
  ln -sfn "$tools/prometheus-$prom/prometheus" "$tools/bin/prometheus-lab"
  ln -sfn "$tools/kube-state-metrics-$ksm/kube-state-metrics" "$tools/bin/kube-state-metrics"
}

extra_steps() {  # DIR/*.sh: steps of single capabilities (a Kafka broker, a base image, ...)
  local s
  for s in "$repo/$1"/*.sh; do
    [ -e "$s" ] || continue
    NUCLAB_CACHE="$cache" NUCLAB_REPO="$repo" bash "$s"
  done
}

start=$(date +%s)
case "${1:-}" in
  # What only the tests and `make generate` use (helm-docs, Loki for the export tests), once the
  # rest is there: `make test` builds them in the tier that needs no lab, beside the lab's tier.
  --tests)
    extra_steps tools/setup-tests.d
    log "the tests' tools are ready in $(( $(date +%s) - start ))s" ;;
  "")
    apt_packages
    python_venv
    # The steps of tools/setup.d (the Debian host image, the Kafka jars, a CRD, the pause image)
    # need none of the Go tools: they download and debootstrap while the compiles run.
    go_tools &
    gopid=$!
    extra_steps tools/setup.d &
    stepspid=$!
    wait "$gopid" || die "building the Go tools failed (above)"
    wait "$stepspid" || die "a step of tools/setup.d failed (above)"
    log "setup done in $(( $(date +%s) - start ))s; tools in $tools/bin" ;;
  *) die "unknown argument $1 (none: what the lab needs; --tests: what only the tests add)" ;;
esac
