#!/usr/bin/env bash
# Fuzzing (docs/fuzzing.md): builds the cargo-fuzz targets in fuzz/ once (release, with debug
# assertions, in fuzz/target) and runs each for FUZZ_SECONDS, one after another. Exits non-zero
# if any target finds a crash, a timeout or an out-of-memory input; the input is left in
# fuzz/artifacts/<target>/ and the command that reproduces it is printed.
#
#   scripts/fuzz.sh smoke [target...]   FUZZ_SECONDS default 30 each (make fuzz-smoke, in make test)
#   scripts/fuzz.sh long  [target...]   FUZZ_SECONDS default 600 each (make fuzz)
#   scripts/fuzz.sh repro <target> <input>   runs one input (a crash from fuzz/artifacts/) once
#
# Inputs that find new coverage go to fuzz/work/<target>/ (git-ignored, kept between runs); the
# committed seeds in fuzz/corpus/<target>/ are only read. Settings: FUZZ_SECONDS, FUZZ_TOOLCHAIN
# (default nightly: cargo-fuzz needs it), FUZZ_SANITIZER (default none, see docs/fuzzing.md;
# `address` for ASan), FUZZ_CODEGEN_UNITS (default 16), FUZZ_TIMEOUT (seconds one input may
# take, default 10), FUZZ_ARGS (extra libFuzzer flags, e.g. `-max_len=65536`).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-smoke}
if [ $# -gt 0 ]; then shift; fi
case $mode in
  smoke) default_seconds=30 ;;
  long) default_seconds=600 ;;
  repro) default_seconds=0
    [ $# -eq 2 ] || { echo "usage: scripts/fuzz.sh repro <target> <input>" >&2; exit 2; } ;;
  *) echo "usage: scripts/fuzz.sh smoke|long [target...] | repro <target> <input>" >&2; exit 2 ;;
esac
seconds=${FUZZ_SECONDS:-$default_seconds}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
sanitizer=${FUZZ_SANITIZER:-none}
read -r -a extra_args <<< "${FUZZ_ARGS:-}"

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
  echo "cargo-fuzz needs a nightly toolchain and cargo +$toolchain does not run: rustup toolchain install $toolchain" >&2
  exit 1
fi
cargo_fuzz=$(scripts/ensure-cargo-fuzz.sh)
export PATH="$(dirname "$cargo_fuzz"):$PATH"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for source in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$source" .rs)"); done
fi

# The same flags for build and run, so `run` finds the build done. Its own target dir, whatever
# CARGO_TARGET_DIR says: the instrumented build shares nothing with the workspace's.
# 16 codegen units instead of cargo-fuzz's 1: both cores work on the large crates, for somewhat
# slower runs.
flags=(--fuzz-dir fuzz --target-dir fuzz/target --sanitizer "$sanitizer" --debug-assertions
  --codegen-units "${FUZZ_CODEGEN_UNITS:-16}")

if [ "$mode" = repro ]; then
  exec cargo "+$toolchain" fuzz run "${flags[@]}" "$1" "$2"
fi

start=$(date +%s)
cargo "+$toolchain" fuzz build "${flags[@]}"
echo "fuzz: built ${#targets[@]} targets in $(( $(date +%s) - start )) s"

mkdir -p fuzz/work/logs
failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/work/$target" "fuzz/corpus/$target"
  log="fuzz/work/logs/$target.log"
  echo "fuzz: $target for $seconds s (log: $log)"
  started=$(date +%s)
  status=0
  cargo "+$toolchain" fuzz run "${flags[@]}" "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-10}" -print_final_stats=1 "${extra_args[@]}" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "fuzz: $target ran $(( $(date +%s) - started )) s, ${runs:-?} executions, exit $status"
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    # libFuzzer's report: the panic, the backtrace and the artifact it wrote.
    grep -E -A 40 "panicked|ERROR: libFuzzer|deadly signal|SUMMARY" "$log" | head -n 80 >&2 || tail -n 40 "$log" >&2
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    if [ -n "$artifact" ]; then
      echo "reproduce: scripts/fuzz.sh repro $target $artifact" >&2
    fi
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (docs/fuzzing.md: reproducing a crash)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, $seconds s each, no crash"
