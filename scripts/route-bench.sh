#!/usr/bin/env bash
# The route-bench matrix of docs/fleet.md "Figures": 10, 25 and 50
# appliances with 100,000 routes at 1,000 changes/s, at the appliance's
# defaults and with the large-fleet settings (gossip 200 ms, phi 5), each
# run bounded (--duration-s, and a timeout for a fleet that
# cannot keep up). One JSON line per run on stdout, each with the load
# average beside it (the machine may be shared: compare runs made together).
#
#   scripts/route-bench.sh [extra route-bench arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
command -v make >/dev/null 2>&1 || ensure_packages make   # jemalloc builds from source
cargo build --release -q -p test-harness --bin route-bench
bin="${CARGO_TARGET_DIR:-target}/release/route-bench"
extra=("$@")
for run in "10 150 8" "25 150 8" "50 150 8" "25 200 5" "50 200 5"; do
    set -- $run
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    json=$(timeout 170 "$bin" --appliances "$1" --routes 100000 --gossip-ms "$2" --phi "$3" --duration-s 20 \
        "${extra[@]}" 2>/dev/null | tail -1) \
        || json='{"error":"did not finish within 170 s"}'
    echo "{\"load\":\"$load\",\"run\":$json}"
done
