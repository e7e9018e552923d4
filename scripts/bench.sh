#!/usr/bin/env bash
# make bench: Switchboard under the shared load generator (../shared/bench/loadgen), the same
# tool and flags that measured the NestJS baseline (../shared/bench/BASELINE.md).
#
# It builds release binaries and the loadgen, starts a private stack (nats-server, auth on
# SQLite with the loadgen's users u1..uN seeded, presence, messaging, one edge; JWT_SECRET
# dev-secret like the baseline), runs each scenario against a fresh stack, and appends one JSON
# line per run to bench-results/results.jsonl.
#
#   make bench                                  # the default suite (below)
#   scripts/bench.sh "connect 10k" connect --conns 10000 --rate 2000 --idle 30 --max-connect-time 120
#   SCOPE=all scripts/bench.sh "connect all" connect ...   # presence broadcast on (the NestJS default)
# (the first argument is a label; the rest go to the loadgen)
#
# Settings: BENCH_DIR (../shared/bench), USERS (20000), SCOPE (none: compare with the baseline's
# PRESENCE_BROADCAST=false runs), EDGE_PORT (13000), THREADS (loadgen threads, 1), LABEL.
# Ports 14222, 5105x and 1910x are used so a running `make run` is not disturbed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
BENCH_DIR=${BENCH_DIR:-$root/../shared/bench}
USERS=${USERS:-20000} SCOPE=${SCOPE:-none} EDGE_PORT=${EDGE_PORT:-13000} THREADS=${THREADS:-1}
SECRET=dev-secret
results=$root/bench-results
mkdir -p "$results"

[ -f "$BENCH_DIR/loadgen/Cargo.toml" ] || { echo "no load generator at $BENCH_DIR/loadgen; set BENCH_DIR" >&2; exit 1; }
echo "==> building release binaries and the loadgen" >&2
cargo build --release -p sb-auth -p sb-presence -p sb-messaging -p sb-edge -p sbctl
CARGO_TARGET_DIR=$root/target/loadgen cargo build --release --manifest-path "$BENCH_DIR/loadgen/Cargo.toml"
loadgen=$root/target/loadgen/release/loadgen
bin=$root/target/release
nats_bin=$(scripts/ensure-nats.sh)
ulimit -n "$(ulimit -Hn)"

pids=()
stop_stack() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
trap stop_stack EXIT

start_stack() {
  work=$(mktemp -d /tmp/sb-bench.XXXXXX)
  "$nats_bin" -a 127.0.0.1 -p 14222 -js -sd "$work/nats" >"$work/nats.log" 2>&1 & pids+=($!)
  export NATS_URL=nats://127.0.0.1:14222 AUTH_ADDR=http://127.0.0.1:51051 JWT_SECRET=$SECRET RUST_LOG=warn
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/14222) 2>/dev/null && break; sleep 0.1; done
  env GRPC_ADDR=127.0.0.1:51051 METRICS_ADDR=127.0.0.1:19101 DATABASE_URL="sqlite:$work/auth.db" \
    BOOTSTRAP_ADMIN_EMAIL=admin@example.com BOOTSTRAP_ADMIN_PASSWORD=bench-password \
    "$bin/sb-auth" >"$work/auth.log" 2>&1 & auth_pid=$!; pids+=($auth_pid)
  env GRPC_ADDR=127.0.0.1:51052 METRICS_ADDR=127.0.0.1:19102 PRESENCE_SCOPE="$SCOPE" \
    "$bin/sb-presence" >"$work/presence.log" 2>&1 & presence_pid=$!; pids+=($presence_pid)
  env GRPC_ADDR=127.0.0.1:51053 METRICS_ADDR=127.0.0.1:19103 DATABASE_URL="sqlite:$work/messaging.db" \
    "$bin/sb-messaging" >"$work/messaging.log" 2>&1 & messaging_pid=$!; pids+=($messaging_pid)
  env LISTEN_ADDR=127.0.0.1:$EDGE_PORT EDGE_ID=bench-edge RATE_LIMIT_PER_SEC=0 \
    "$bin/sb-edge" >"$work/edge.log" 2>&1 & edge_pid=$!; pids+=($edge_pid)
  for _ in $(seq 1 300); do curl -fsS "http://127.0.0.1:$EDGE_PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$EDGE_PORT/readyz" >/dev/null || { echo "stack did not start; logs in $work" >&2; exit 1; }
  token=$(SB_PASSWORD=bench-password "$bin/sbctl" --auth-addr "$AUTH_ADDR" login --email admin@example.com 2>/dev/null)
  "$bin/sbctl" --auth-addr "$AUTH_ADDR" --token "$token" users seed --count "$USERS" --prefix u \
    --domain example.com --admin-every 1000 >&2
}

# run LABEL loadgen-args...: one scenario against a fresh stack; the edge's pid is measured
# (--pid), and the whole stack's processes are listed in the label for reference.
run() {
  local label=$1; shift
  start_stack
  echo "==> $label" >&2
  "$loadgen" --url "ws://127.0.0.1:$EDGE_PORT" --secret "$SECRET" --users "$USERS" --threads "$THREADS" \
    --pid "$edge_pid" --source-ips 4 --connect-timeout 30 --json-out "$results/results.jsonl" \
    --label "switchboard ${LABEL:+$LABEL }$label scope=$SCOPE" "$@" || true
  echo "stack RSS (kB): edge $(rss $edge_pid) auth $(rss $auth_pid) presence $(rss $presence_pid) messaging $(rss $messaging_pid)" >&2
  stop_stack
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }

if [ $# -gt 0 ]; then
  label=$1; shift
  run "$label" "$@"
  exit 0
fi

# The default suite: the baseline's scenarios with its flags (BASELINE.md).
SCOPE=all run smoke smoke
run "connect 10k" connect --conns 10000 --rate 2000 --idle 30 --max-connect-time 120
run "fanout 10x100 40/s" --connect-rate 300 --warmup 5 --duration 20 fanout --rooms 10 --members 100 --senders 1 --rate 40
run "private 500 pairs 4/s" --connect-rate 300 --warmup 5 --duration 20 private --pairs 500 --rate 4
SCOPE=all run "churn 100 obs 50/s" --duration 60 churn --observers 100 --rate 50 --hold-ms 1000
SCOPE=all run "connect 10k presence all" connect --conns 10000 --rate 2000 --idle 5 --max-connect-time 120
echo "==> results appended to bench-results/results.jsonl" >&2
