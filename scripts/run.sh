#!/usr/bin/env bash
# Builds and runs the appliance on embedded defaults (socket dataplane on
# loopback, admin API on 127.0.0.1:9090). Needs Rust, a C compiler and make
# (installed here when missing: jemalloc, the appliance's allocator, is
# built from source). Extra arguments go to bridgehead, e.g.
#   scripts/run.sh --config my.toml
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
command -v make >/dev/null 2>&1 || ensure_packages make
cargo build --release -p controlplane --bin bridgehead
if [ $# -eq 0 ]; then
  set -- --config controlplane/config/bridgehead.example.toml
fi
exec ./target/release/bridgehead "$@"
