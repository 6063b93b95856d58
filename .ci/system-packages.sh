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
  # the lease hook's wrapper runs /usr/bin/python3 (stdlib only; the e2e tests use it)
  python3
  # databases, reverse proxy and load generator
  postgresql nginx-light wrk
  # network namespaces, bridges, tap devices
  iproute2 procps
  # the Ansible role's target tree
  debootstrap
  # cloud-init's own validators for the booted OS's documents (`cloud-init schema`,
  # `cloud-init devel net-convert`); nothing is configured on this machine, see below
  cloud-init
  # emulated BMCs for the power drivers' tests: OpenIPMI's simulator and ipmitool to
  # cross-check what it records
  openipmi ipmitool
  # the dashboard's browser tests (Debian's build; browsers cannot be downloaded here)
  chromium chromium-driver
  # Ignition's own validator for the booted OS's Ignition configs
  ignition
  # Kea's PostgreSQL host-backend schema (kea-admin db-init pgsql)
  kea-admin
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Only cloud-init's command-line tools are used. Installing it starts nothing (its
  # postinst only try-restarts units that already run, and policy-rc.d/no systemd
  # here stop even that), but it enables its units for the next boot: when this
  # script is what installed it, switch it off for good with cloud-init's own marker
  # file, which its systemd generator honours. A machine that already had cloud-init
  # is left as it was.
  if [[ " ${missing[*]} " == *" cloud-init "* ]]; then
    mkdir -p /etc/cloud
    touch /etc/cloud/cloud-init.disabled
  fi
fi
