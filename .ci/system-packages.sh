#!/usr/bin/env bash
# Installs every Debian package the test suite needs. Idempotent: a machine that
# already has them spends a few seconds in dpkg-query and nothing else.
set -euo pipefail

packages=(
  # DHCP / TFTP servers the integrations drive for real
  dnsmasq-base kea-dhcp4-server kea-ctrl-agent
  # iPXE binaries (TFTP root) and NIC option ROMs for QEMU guests
  ipxe ipxe-qemu
  # the lab: guests, firmware, initrd contents
  qemu-system-x86 ovmf busybox-static cpio
  # databases, reverse proxy and load generator
  postgresql nginx-light wrk
  # network namespaces, bridges, tap devices
  iproute2 procps
  # the Ansible role's target tree
  debootstrap
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
