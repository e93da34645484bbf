#!/usr/bin/env bash
# Builds a Debian container image from Debian's own packages (debootstrap) and imports it into
# podman (`podman import`): no image registry is needed, only a Debian mirror that apt reaches.
#
#   tools/images/build-debian-image.sh [--name IMAGE] [--suite SUITE] [--mirror URL]
#                                      [--packages "pkg ..."] [--force]
#
# Defaults build the systemd test host for nuclab's Molecule scenarios:
#   localhost/nuclab/debian-systemd:bookworm  (systemd as PID 1, python3 for Ansible, the tools
#   the common role checks for). Other images reuse the script with --name and --packages, e.g.
#   tools/images/build-debian-image.sh --name localhost/nuclab/tools:bookworm --packages "iperf3"
#   (--packages adds to the base set below).
#
# Cached twice, keyed by suite, mirror, package set and this script: an image whose label
# io.nuclab.image-key matches is left alone (a run takes a second), and the root file system is
# kept as a tarball under $NUCLAB_CACHE/images/, so a podman store that lost the image re-imports
# it in seconds. debootstrap (2-4 minutes) runs only when the key changes, or with --force.
set -euo pipefail

name="localhost/nuclab/debian-systemd:bookworm"
suite="bookworm"
mirror="${NUCLAB_DEBIAN_MIRROR:-}"
extra=""
force=0

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
die() { printf 'build-debian-image: %s\n' "$*" >&2; exit 1; }
log() { printf '==> %s\n' "$*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --suite) suite=${2:?--suite needs a value}; shift 2 ;;
    --mirror) mirror=${2:?--mirror needs a value}; shift 2 ;;
    --packages) extra=${2?--packages needs a value}; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (allowed: --name, --suite, --mirror, --packages, --force)" ;;
  esac
done

# The mirror apt already uses on this machine, unless one is given.
if [ -z "$mirror" ]; then
  mirror=$(sed -nE 's/^URIs:[[:space:]]*(\S+\/debian)\/?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  [ -n "$mirror" ] || mirror=$(sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?(\S+\/debian)\/?[[:space:]].*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n1)
  [ -n "$mirror" ] || mirror="http://deb.debian.org/debian"
fi

# What every nuclab test host has: systemd as init, python3 for Ansible (python3-apt for its apt
# module), what the common role installs for K3s (so converging needs no mirror), and ufw (off
# until a test turns it on) to test the firewall step.
base="systemd systemd-sysv dbus python3 python3-apt ca-certificates curl iproute2 iptables kmod procps ufw util-linux"
packages=$(printf '%s\n' $base $extra | sort -u | tr '\n' ' ' | sed 's/ $//')

command -v podman >/dev/null || die "podman is not installed (tools/apt-packages.txt lists it; run make setup)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (tools/apt-packages.txt lists it; run make setup)"
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"

cache="${NUCLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nuclab}/images"
key=$(printf '%s|%s|%s|%s' "$suite" "$mirror" "$packages" "$(sha256sum "$0" | cut -d' ' -f1)" | sha256sum | cut -c1-16)
slug=$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_')
tarball="$cache/$slug-$key.tar"
mkdir -p "$cache"

have=$(podman image inspect --format '{{ index .Labels "io.nuclab.image-key" }}' "$name" 2>/dev/null || true)
if [ "$force" -eq 0 ] && [ "$have" = "$key" ]; then
  log "$name is up to date (key $key)"
  exit 0
fi

if [ "$force" -eq 1 ] || [ ! -s "$tarball" ]; then
  root=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  log "debootstrap $suite from $mirror with: $packages"
  debootstrap --variant=minbase --include="${packages// /,}" "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -n 30 "$root.log" >&2; die "debootstrap failed (full log: $root.log)"; }
  rm -f "$root.log"

  # A container's systemd has no consoles, hardware or clock to manage: mask what only fails there.
  for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
      systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
      sys-kernel-tracing.mount systemd-remount-fs.service systemd-firstboot.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  # Each container gets its own machine id at first boot; an empty file keeps the image neutral.
  : > "$root/etc/machine-id"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  printf '%s\n' "$name" > "$root/etc/nuclab-image"

  tar --numeric-owner --xattrs -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  # Older tarballs of the same image are other keys' leftovers.
  find "$cache" -maxdepth 1 -name "$slug-*.tar" ! -name "$(basename "$tarball")" -delete
  rm -rf "$root"
  trap - EXIT
fi

log "importing $tarball as $name"
podman import \
  --change 'CMD ["/sbin/init"]' \
  --change 'ENV container=podman' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  --change "LABEL io.nuclab.image-key=$key" \
  --message "nuclab: debootstrap $suite ($key)" \
  "$tarball" "$name" >/dev/null
log "built $name (key $key)"
