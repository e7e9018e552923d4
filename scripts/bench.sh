#!/usr/bin/env bash
# make bench: Switchboard under the project's load generator (tools/loadgen, sb-loadgen).
#
# Builds release binaries and the loadgen, then for every scenario starts a fresh private stack
# (nats-server with a fresh JetStream dir, auth on SQLite with the loadgen's users u1..uN seeded,
# presence, messaging on SQLite, one edge; JWT_SECRET dev-secret like the NestJS baseline), runs
# the loadgen with every server process watched (--pid NAME=PID: nats, edge, messaging, presence,
# auth), appends one JSON line per run to bench-results/results.jsonl, stops the stack, and at the
# end writes bench-results/report/ (report.md and SVG plots) with `sb-loadgen report`.
#
#   make bench                                      # the default suite (below)
#   scripts/bench.sh "private 500x4" --connect-rate 300 --warmup 5 --duration 20 private --pairs 500 --rate 4
#   SCOPE=all scripts/bench.sh "connect all" connect ...   # presence broadcast on (the NestJS default)
# (the first argument is a label; the rest go to the loadgen)
#
# Settings: USERS (20000), SCOPE (none: compare with the baseline's PRESENCE_BROADCAST=false runs),
# EDGE_PORT (13000), THREADS (loadgen threads, 1), LABEL, EDGE_ENV (extra env for the edge, e.g.
# "INGEST_LINGER=1ms"), MESSAGING_ENV, RESULTS (bench-results/results.jsonl), NO_REPORT.
# Ports 24222 (NATS), 2405x (gRPC), 2410x (metrics) and 24300 (edge): outside the ephemeral
# range and clear of `make run`.
# The NestJS gateway is measured with the same loadgen and flags by scripts/bench-baseline.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
USERS=${USERS:-20000} SCOPE=${SCOPE:-none} EDGE_PORT=${EDGE_PORT:-24300} THREADS=${THREADS:-1}
SECRET=dev-secret
results_dir=$root/bench-results
RESULTS=${RESULTS:-$results_dir/results.jsonl}
mkdir -p "$results_dir"

echo "==> building release binaries and the loadgen" >&2
cargo build --release -p sb-auth -p sb-presence -p sb-messaging -p sb-edge -p switchboardctl -p sb-loadgen 2>&1 | tail -1 >&2
loadgen=$root/target/release/sb-loadgen
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
  "$nats_bin" -a 127.0.0.1 -p 24222 -js -sd "$work/nats" >"$work/nats.log" 2>&1 & nats_pid=$!; pids+=($nats_pid)
  export NATS_URL=nats://127.0.0.1:24222 AUTH_ADDR=http://127.0.0.1:24051 JWT_SECRET=$SECRET RUST_LOG=warn
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/24222) 2>/dev/null && break; sleep 0.1; done
  env GRPC_ADDR=127.0.0.1:24051 METRICS_ADDR=127.0.0.1:24101 DATABASE_URL="sqlite:$work/auth.db" \
    BOOTSTRAP_ADMIN_EMAIL=admin@example.com BOOTSTRAP_ADMIN_PASSWORD=bench-password \
    "$bin/sb-auth" >"$work/auth.log" 2>&1 & auth_pid=$!; pids+=($auth_pid)
  env GRPC_ADDR=127.0.0.1:24052 METRICS_ADDR=127.0.0.1:24102 PRESENCE_SCOPE="$SCOPE" \
    "$bin/sb-presence" >"$work/presence.log" 2>&1 & presence_pid=$!; pids+=($presence_pid)
  env GRPC_ADDR=127.0.0.1:24053 METRICS_ADDR=127.0.0.1:24103 DATABASE_URL="sqlite:$work/messaging.db" \
    ${MESSAGING_ENV:-} "$bin/sb-messaging" >"$work/messaging.log" 2>&1 & messaging_pid=$!; pids+=($messaging_pid)
  env LISTEN_ADDR=127.0.0.1:$EDGE_PORT EDGE_ID=bench-edge RATE_LIMIT_PER_SEC=0 CONNECT_RATE_PER_ADDRESS=0 ${EDGE_ENV:-} \
    "$bin/sb-edge" >"$work/edge.log" 2>&1 & edge_pid=$!; pids+=($edge_pid)
  for _ in $(seq 1 300); do curl -fsS "http://127.0.0.1:$EDGE_PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$EDGE_PORT/readyz" >/dev/null || { echo "stack did not start; logs in $work" >&2; exit 1; }
  # The CLI's settings and token stay in the run's dir, away from the operator's own contexts.
  ctl() { XDG_CONFIG_HOME="$work/config" "$bin/switchboardctl" --context bench "$@"; }
  XDG_CONFIG_HOME="$work/config" "$bin/switchboardctl" context add bench --auth "$AUTH_ADDR" --presence http://127.0.0.1:24052 \
    --messaging http://127.0.0.1:24053 >/dev/null
  printf 'bench-password\n' | ctl login --email admin@example.com --password-stdin >/dev/null
  ctl users seed --count "$USERS" --prefix u --domain example.com --admin-every 1000 >&2
}

# run LABEL loadgen-args...: one scenario against a fresh stack, every server process watched.
run() {
  local label=$1; shift
  start_stack
  echo "==> $label" >&2
  "$loadgen" --url "ws://127.0.0.1:$EDGE_PORT" --secret "$SECRET" --users "$USERS" --threads "$THREADS" \
    --pid "edge=$edge_pid" --pid "nats=$nats_pid" --pid "messaging=$messaging_pid" --pid "presence=$presence_pid" \
    --pid "auth=$auth_pid" --source-ips 4 --connect-timeout 30 --json-out "$RESULTS" \
    --label "switchboard ${LABEL:+$LABEL }$label scope=$SCOPE" "$@" >/dev/null || true
  echo "stack RSS (kB): edge $(rss $edge_pid) nats $(rss $nats_pid) auth $(rss $auth_pid) presence $(rss $presence_pid) messaging $(rss $messaging_pid)" >&2
  stop_stack
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }

report() {
  [ -n "${NO_REPORT:-}" ] && return 0
  "$loadgen" report "$RESULTS" --out-dir "$results_dir/report" >&2 && echo "==> report in bench-results/report/report.md" >&2
}

if [ $# -gt 0 ]; then
  label=$1; shift
  run "$label" "$@"
  report
  exit 0
fi

# The default suite: the issue's scenarios with the baseline's flags (shared BASELINE.md).
common=(--connect-rate 300 --warmup 5 --duration 20)
SCOPE=all run smoke smoke
run "idle 10k" idle --conns 10000 --rate 2000 --hold 30s
run "connect 10k at 5000/s" connect --conns 10000 --rate 5000 --idle 5 --max-connect-time 120
for rate in 40 80; do
  run "fanout 10x100 $rate/s" "${common[@]}" fanout --rooms 10 --members 100 --senders 1 --rate "$rate"
done
for rate in 1 2 4 8 10; do
  run "private 500 pairs $rate/s" "${common[@]}" private --pairs 500 --rate "$rate"
done
run "broadcast 1000 x 1/s" "${common[@]}" broadcast --conns 1000 --senders 1 --rate 10
SCOPE=all run "churn 100 obs 50/s" --duration 60 churn --observers 100 --rate 50 --hold-ms 1000
SCOPE=all run "presence storm 2000" presence-storm --observers 100 --storm 2000 --offline
echo "==> messaging's ingest alone" >&2
cargo build --release -p sb-tests --bin ingest_throughput 2>&1 | tail -1 >&2
for db in sqlite postgres; do
  for batch in 1 16; do
    "$root/target/release/ingest_throughput" --db "$db" --messages 20000 --batch "$batch" | tee -a "$results_dir/ingest.jsonl" >&2 || true
  done
done
report
echo "==> results appended to $RESULTS" >&2
