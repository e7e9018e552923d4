#!/usr/bin/env bash
# End-to-end tests with the official socket.io-client (tests/e2e). Builds the stack launcher
# (sb-tests' `stack` binary: nats-server + the four services in-process on free ports), installs
# the pinned npm packages, and runs the suite with node's test runner. The browser test
# (test/web-chat.test.js) drives Debian's Chromium through playwright-core: CHROMIUM_BIN comes
# from scripts/ensure-chromium.sh, which installs the package when it is missing and may.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v node >/dev/null || { echo "node (20+) is needed for the end-to-end tests: install Node.js 20 or newer" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "node $major found; the end-to-end tests need Node.js 20 or newer" >&2; exit 1; }
if ! ls tests/e2e/test/*.test.js >/dev/null 2>&1; then echo "no end-to-end tests yet"; exit 0; fi
cargo build -p sb-tests --bin stack
export SB_STACK_BIN="$PWD/target/debug/stack"
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$(scripts/ensure-nats.sh)}"
CHROMIUM_BIN=$(scripts/ensure-chromium.sh)  # not `export X=$(..)`: that would hide a failure
export CHROMIUM_BIN
cd tests/e2e
npm ci --no-audit --no-fund --loglevel=error
npm test
