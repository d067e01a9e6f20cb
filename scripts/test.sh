#!/usr/bin/env bash
# Sets up a Debian 12 machine (with Rust) for the tests and runs them all:
# formatting, clippy with warnings denied, unit tests, end-to-end tests
# (network namespaces, the appliance process, DPDK on virtual devices).
# Needs root: the end-to-end tests create namespaces and veth pairs.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  pkg-config clang libclang-dev      # bindgen for dpdk-sys
  make                               # jemalloc (the appliance's allocator) builds from source
  dpdk dpdk-dev libdpdk-dev          # the DPDK backend and dpdk-testpmd
  iproute2 nftables ethtool          # test networks: namespaces, veth, NAT
  sip-tester                         # sipp, the SIP peer of the end-to-end tests
  procps iputils-ping                # sysctl; ping for the DPDK exception path
  python3 python3-venv               # Twilio's helper library checks our webhook signatures
  openssl                            # throwaway certificates for the SIP-over-TLS tests
  postgresql util-linux              # the fleet store's tests start throwaway servers (initdb,
                                     # postgres as the postgres user via setpriv); no system
                                     # cluster needs to run
)
# JsSIP, a browser SIP library, registers over WebSocket: it needs Node.js and
# npm. Machines that already have them (often from NodeSource, whose nodejs
# package bundles npm and conflicts with Debian's npm) keep theirs.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
source scripts/lib.sh
ensure_packages "${packages[@]}"
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

# Twilio's own helper library (PyPI `twilio`), in a virtualenv under target/.
venv="$PWD/target/venv"
if ! "$venv/bin/python3" -c "import twilio" 2>/dev/null; then
  echo "==> installing the twilio helper library into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check twilio
fi
export PATH="$venv/bin:$PATH"

# JsSIP (npm `jssip` + `jssip-node-websocket`), under target/node.
node_dir="$PWD/target/node"
if [ ! -d "$node_dir/node_modules/jssip-node-websocket" ]; then
  echo "==> installing JsSIP into $node_dir"
  mkdir -p "$node_dir"
  npm install --silent --no-audit --no-fund --prefix "$node_dir" jssip@3.13.8 jssip-node-websocket@3.0.0
fi
export NODE_PATH="$node_dir/node_modules"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --features test-harness/dpdk -- -D warnings

echo "==> build"
cargo build --workspace --all-targets --features test-harness/dpdk

echo "==> tests"
# One test binary at a time keeps the end-to-end suites from fighting over the
# two cores; inside a binary the tests run in parallel where they are independent.
# --no-fail-fast: one failing suite must not hide how the others fare.
cargo test --workspace --no-fail-fast --features test-harness/dpdk -- --test-threads=2
