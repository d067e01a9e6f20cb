#!/usr/bin/env bash
# Runs the call benchmark (docs/benchmarks.md, "Calls"): installs what it
# drives and compares against (sipp, kamailio with its rtpengine module,
# rtpengine), builds `bridgehead` and `call-bench` in release, and runs
# `call-bench` with the arguments given (e.g. --only ref, --max-rate 800,
# --step-seconds 3). Needs root (the run's network namespace).
#
# The figures are only worth reading on a quiet machine: check `uptime`
# first; the run takes both cores for a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  sip-tester                         # sipp: the caller and the callee
  kamailio                           # the reference proxy (its rtpengine module is in this package)
  rtpengine-daemon                   # the reference media anchor
  iproute2 util-linux procps         # ip netns; setpriv, nsenter; uptime
  make                               # jemalloc, the appliance's allocator, builds from source
)
source scripts/lib.sh
ensure_packages "${packages[@]}"
# The Debian packages start their services where systemd runs; the
# benchmark starts its own instances in a namespace and wants the cores.
for service in kamailio rtpengine-daemon; do
  if systemctl is-active --quiet "$service" 2>/dev/null; then
    echo "==> stopping the $service service for the run"
    systemctl stop "$service"
  fi
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
echo "==> cargo build --release"
cargo build --release -p controlplane --bin bridgehead -p test-harness --bin call-bench

echo "==> load: $(uptime)"
exec "$CARGO_TARGET_DIR/release/call-bench" --bridgehead "$CARGO_TARGET_DIR/release/bridgehead" "$@"
