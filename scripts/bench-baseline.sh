#!/usr/bin/env bash
# The NestJS gateway Switchboard replaces, under the same load generator and flags as
# scripts/bench.sh, so both sides are measured in one sitting (docs/performance.md).
#
#   make bench-baseline                            # the default suite, gateway side
#   scripts/bench-baseline.sh "private 500 pairs 4/s" --connect-rate 300 --warmup 5 --duration 20 private --pairs 500 --rate 4
#
# It needs the gateway's sources: BASELINE_DIR (default ../shared/bench/baseline/nest-gateway), built
# here with npm on first use. Settings: PRESENCE_BROADCAST (false for scenarios that compare with
# SCOPE=none, as the shared BASELINE.md did), PORT (13210), THREADS (1), RESULTS
# (bench-results/results.jsonl, the same file as Switchboard's runs, so `sb-loadgen report` shows both).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
BASELINE_DIR=${BASELINE_DIR:-$root/../shared/bench/baseline/nest-gateway}
PORT=${PORT:-13210} THREADS=${THREADS:-1}
RESULTS=${RESULTS:-$root/bench-results/results.jsonl}
mkdir -p "$(dirname "$RESULTS")"
[ -f "$BASELINE_DIR/package.json" ] || { echo "no NestJS gateway at $BASELINE_DIR; set BASELINE_DIR" >&2; exit 2; }
cargo build --release -p sb-loadgen 2>&1 | tail -1 >&2
loadgen=$root/target/release/sb-loadgen
if [ ! -f "$BASELINE_DIR/dist/main.js" ]; then
  echo "==> building the NestJS gateway (npm ci && npm run build)" >&2
  (cd "$BASELINE_DIR" && npm ci --no-audit --no-fund --loglevel=error && npm run build) >&2
fi
ulimit -n "$(ulimit -Hn)"

run() {
  local label=$1 broadcast=$2; shift 2
  (cd "$BASELINE_DIR" && PORT=$PORT HOST=127.0.0.1 JWT_SECRET=dev-secret SEED_USERS=100000 PRESENCE_BROADCAST=$broadcast \
    exec node dist/main.js >/tmp/sb-baseline-$PORT.log 2>&1) &
  local pid=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.2; done
  sleep 1
  # node runs as the child of the subshell; watch the node process itself.
  local node_pid
  node_pid=$(pgrep -P "$pid" node || echo "$pid")
  echo "==> nestjs $label" >&2
  "$loadgen" --url "ws://127.0.0.1:$PORT" --secret dev-secret --users 100000 --threads "$THREADS" \
    --pid "gateway=$node_pid" --source-ips 4 --connect-timeout 30 --json-out "$RESULTS" \
    --label "nestjs $label presence_broadcast=$broadcast" "$@" >/dev/null || true
  kill "$node_pid" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

if [ $# -gt 0 ]; then
  label=$1; shift
  run "$label" "${PRESENCE_BROADCAST:-false}" "$@"
  exit 0
fi

common=(--connect-rate 300 --warmup 5 --duration 20)
run smoke true smoke
run "idle 10k" false idle --conns 10000 --rate 2000 --hold 30s
run "connect 10k at 5000/s" false connect --conns 10000 --rate 5000 --idle 5 --max-connect-time 120
for rate in 40 80; do
  run "fanout 10x100 $rate/s" false "${common[@]}" fanout --rooms 10 --members 100 --senders 1 --rate "$rate"
done
for rate in 1 2 4 8 10; do
  run "private 500 pairs $rate/s" false "${common[@]}" private --pairs 500 --rate "$rate"
done
run "broadcast 1000 x 1/s" false "${common[@]}" broadcast --conns 1000 --senders 1 --rate 10
run "churn 100 obs 50/s" true --duration 60 churn --observers 100 --rate 50 --hold-ms 1000
run "presence storm 2000" true presence-storm --observers 100 --storm 2000 --offline
echo "==> results appended to $RESULTS" >&2
