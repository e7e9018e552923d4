#!/usr/bin/env bash
# Prints the path of cargo-fuzz (the `cargo fuzz` subcommand), installing it from crates.io
# (`cargo install --locked cargo-fuzz`) when none is found. CARGO_FUZZ_VERSION is the version
# installed (default 0.13.2, the one scripts/fuzz.sh's flags were written for). Used by
# scripts/fuzz.sh (make fuzz-smoke, make fuzz; docs/fuzzing.md).
set -euo pipefail
if [ -n "${CARGO_FUZZ_BIN:-}" ] && [ -x "$CARGO_FUZZ_BIN" ]; then echo "$CARGO_FUZZ_BIN"; exit 0; fi
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
for candidate in "$(command -v cargo-fuzz 2>/dev/null || true)" "$cargo_bin/cargo-fuzz"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo-fuzz is needed and cargo, which installs it, was not found: install Rust (rustup) first" >&2
  exit 1
fi
version=${CARGO_FUZZ_VERSION:-0.13.2}
echo "cargo-fuzz not found; installing it: cargo install --locked cargo-fuzz --version $version" >&2
cargo install --locked cargo-fuzz --version "$version" >&2
if [ -x "$cargo_bin/cargo-fuzz" ]; then echo "$cargo_bin/cargo-fuzz"; exit 0; fi
echo "cargo install finished but $cargo_bin/cargo-fuzz is missing; point CARGO_FUZZ_BIN at cargo-fuzz" >&2
exit 1
