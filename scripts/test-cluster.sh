#!/usr/bin/env bash
# make test-cluster: Switchboard as real processes on a 3-node NATS JetStream cluster with a few
# hundred official socket.io-client clients, then faults during traffic (tests/e2e/cluster/run.js).
# Builds the service binaries and sb-tests' `cluster` launcher, installs the pinned npm packages,
# and needs nats-server (installed by scripts/ensure-nats.sh) and the PostgreSQL server binaries
# (initdb/pg_ctl, Debian's postgresql package; installed here when missing and we may).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v node >/dev/null || { echo "node (20+) is needed for make test-cluster" >&2; exit 1; }
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$(scripts/ensure-nats.sh)}"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null && [ -z "${PG_BIN_DIR:-}" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "PostgreSQL server binaries not found; installing Debian's postgresql package" >&2
    apt-get install -y postgresql >&2 || { apt-get update >&2 && apt-get install -y postgresql >&2; }
  else
    echo "make test-cluster needs the PostgreSQL server binaries (initdb, pg_ctl): install postgresql or set PG_BIN_DIR" >&2
    exit 1
  fi
fi
cargo build -p sb-edge -p sb-auth -p sb-presence -p sb-messaging
cargo build -p sb-tests --bin cluster
export SB_CLUSTER_BIN="$PWD/target/debug/cluster" SB_BIN_DIR="$PWD/target/debug"
export CLUSTER_REPORT="${CLUSTER_REPORT:-$PWD/target/cluster-report.md}"
cd tests/e2e
npm ci --no-audit --no-fund --loglevel=error
start=$(date +%s)
timeout "${CLUSTER_TIMEOUT:-540}" node cluster/run.js
echo "make test-cluster took $(( $(date +%s) - start )) s (after the build)"
