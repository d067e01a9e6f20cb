#!/usr/bin/env bash
# Runs the dataplane benchmark (docs/benchmarks.md): installs what it
# compares against (rtpengine, dpdk-testpmd) and what the DPDK build needs,
# builds in release, runs `dataplane-bench` with the arguments given
# (e.g. --quick, --only sockets). Needs root (packages, DPDK, TAP).
#
# The figures are only worth reading on a quiet machine: check `uptime`
# first; the benchmark takes both cores.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  rtpengine-daemon                   # the userspace relay we compare CPU per packet with
  dpdk dpdk-dev libdpdk-dev          # dpdk-testpmd, and the DPDK backend's library
  pkg-config clang libclang-dev      # bindgen for dpdk-sys
  iproute2 util-linux procps         # ip (the TAP of the DPDK part), taskset/setpriv, kill
)
source scripts/lib.sh
ensure_packages "${packages[@]}"
# The Debian package starts rtpengine as a service; the benchmark runs its
# own instance and wants the cores to itself.
if systemctl is-active --quiet rtpengine-daemon 2>/dev/null; then
  echo "==> stopping the rtpengine-daemon service for the run"
  systemctl stop rtpengine-daemon
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
features=()
if [ -e dataplane/src/io/dpdk.rs ] || [ -e dataplane/src/io/dpdk/mod.rs ]; then
  features=(--features dataplane/dpdk)
else
  echo "==> no DPDK backend in this tree: building without it (the DPDK part reports null)"
fi
echo "==> cargo build --release"
cargo build --release "${features[@]}" -p dataplane --bin dataplane-bench -p test-harness --bin kernel_relay

echo "==> load: $(uptime)"
exec "$CARGO_TARGET_DIR/release/dataplane-bench" --kernel-relay "$CARGO_TARGET_DIR/release/kernel_relay" "$@"
