#!/usr/bin/env bash
# Runs the client benchmark (docs/benchmarks.md, "client-bench"): builds
# `bridgehead` and `client-bench` in release and runs `client-bench` with
# the arguments given (e.g. --clients 2000 --idle-seconds 5, --over-limit
# 100). Needs root (the run's network namespace) and util-linux (setpriv).
#
# The full run (15,000 clients) takes both cores for about two minutes:
# it refuses to start while a call-bench, sipp or kamailio runs, since
# either benchmark would spoil the other's figures.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
command -v make >/dev/null 2>&1 || ensure_packages make   # jemalloc builds from source

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
echo "==> cargo build --release"
cargo build --release -p controlplane --bin bridgehead -p test-harness --bin client-bench

busy=$(pgrep -a -f 'call-bench|sipp|kamailio' | grep -v -e pgrep -e "$$" || true)
if [[ -n "$busy" ]]; then
  echo "==> another benchmark is running; wait for it to end:" >&2
  echo "$busy" >&2
  exit 1
fi
echo "==> load: $(uptime)"
exec "$CARGO_TARGET_DIR/release/client-bench" --bridgehead "$CARGO_TARGET_DIR/release/bridgehead" "$@"
