#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (docs/testing.md, "Fuzzing"), one at
# a time, each for SECONDS (default 60), single job.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     all targets when none is named
#
# Installs cargo-fuzz if missing. libFuzzer needs nightly-only rustc flags:
# the stable toolchain accepts them with RUSTC_BOOTSTRAP=1 (no nightly is
# needed). The sanitizer is off by default (FUZZ_SANITIZER=address turns
# ASan on): the project has no unsafe code, so what the fuzzers hunt is
# panics, overflows (checked: debug assertions are on) and broken
# invariants, and without ASan a run executes about twice as many inputs.
#
# Seeds: scripts/fuzz-seeds.py writes fuzz/corpus/<target>/ from the
# project's fixtures. Each run's output is in fuzz/logs/<target>.log; crashes
# land in fuzz/artifacts/<target>/; minimize one
# with `RUSTC_BOOTSTRAP=1 cargo fuzz tmin -s none TARGET FILE` (in fuzz/).
# None of these is committed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --help >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

python3 scripts/fuzz-seeds.py fuzz/corpus

cd fuzz
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s "$sanitizer"
mkdir -p logs

failed=()
for t in "${targets[@]}"; do
  echo "==> $t: ${seconds}s"
  # One fuzzing process, one thread: libFuzzer's default (the machine is
  # shared; -jobs=1 would be the same job with its output moved to
  # fuzz-0.log). The corpus directory keeps what each run learned.
  cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 -max_len=65536 >"logs/$t.log" 2>&1 || true
  grep -E "^#[0-9]+ +DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|panicked at|SUMMARY" "logs/$t.log" || true
  if grep -qE "^==[0-9]+== ERROR|panicked at|SUMMARY: libFuzzer" "logs/$t.log"; then
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "==> crashes in: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
echo "==> ${#targets[@]} targets, no crash"
