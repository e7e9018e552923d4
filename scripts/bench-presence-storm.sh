#!/usr/bin/env bash
# Connect storm through the whole stack: a private nats-server, auth (SQLite), presence,
# messaging and one edge (release builds), N seeded users u1..uN, then bench/loadgen's
# `connect` scenario against the edge. Compare with bench/BASELINE.md (a1: presence off,
# a3b/a4: presence broadcast on).
#
#   LOADGEN=/path/to/loadgen USERS=10000 RATE=2000 SCOPE=all scripts/bench-presence-storm.sh
#
# Ports: EDGE_PORT (13000) and 5105x/1910x so it does not collide with `make run`.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LOADGEN:?set LOADGEN to a built bench/loadgen binary (cargo build --release in bench/loadgen)}"
USERS=${USERS:-10000} RATE=${RATE:-2000} SCOPE=${SCOPE:-all} EDGE_PORT=${EDGE_PORT:-13000} IDLE=${IDLE:-10}
SECRET=dev-secret
work=$(mktemp -d /tmp/sb-storm.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
cargo build --release -p sb-auth -p sb-presence -p sb-messaging -p sb-edge -p sbctl
bin=$PWD/target/release
nats_bin=$(scripts/ensure-nats.sh)
"$nats_bin" -a 127.0.0.1 -p 14222 -js -sd "$work/nats" >"$work/nats.log" 2>&1 & pids+=($!)
export NATS_URL=nats://127.0.0.1:14222 AUTH_ADDR=http://127.0.0.1:51051 JWT_SECRET=$SECRET RUST_LOG=warn
sleep 0.5
env GRPC_ADDR=127.0.0.1:51051 METRICS_ADDR=127.0.0.1:19101 DATABASE_URL="sqlite:$work/auth.db" \
  BOOTSTRAP_ADMIN_EMAIL=admin@example.com BOOTSTRAP_ADMIN_PASSWORD=storm-password \
  "$bin/sb-auth" >"$work/auth.log" 2>&1 & pids+=($!)
env GRPC_ADDR=127.0.0.1:51052 METRICS_ADDR=127.0.0.1:19102 PRESENCE_SCOPE="$SCOPE" \
  "$bin/sb-presence" >"$work/presence.log" 2>&1 & pids+=($!)
env GRPC_ADDR=127.0.0.1:51053 METRICS_ADDR=127.0.0.1:19103 DATABASE_URL="sqlite:$work/messaging.db" \
  "$bin/sb-messaging" >"$work/messaging.log" 2>&1 & pids+=($!)
env LISTEN_ADDR=127.0.0.1:$EDGE_PORT EDGE_ID=storm-edge \
  "$bin/sb-edge" >"$work/edge.log" 2>&1 & edge_pid=$!; pids+=($edge_pid)
for _ in $(seq 1 300); do curl -fsS "http://127.0.0.1:$EDGE_PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
token=$(SB_PASSWORD=storm-password "$bin/sbctl" --auth-addr "$AUTH_ADDR" login --email admin@example.com)
"$bin/sbctl" --auth-addr "$AUTH_ADDR" --token "$token" users seed --count "$USERS" --prefix u --domain example.com >&2
ulimit -n "$(ulimit -Hn)"
"$LOADGEN" --url "ws://127.0.0.1:$EDGE_PORT" --secret "$SECRET" --users "$USERS" --pid "$edge_pid" \
  --source-ips 4 --connect-timeout 30 --label "switchboard connect $USERS presence=$SCOPE" \
  connect --conns "$USERS" --rate "$RATE" --idle "$IDLE" --max-connect-time 120
echo "presence metrics:" >&2
curl -fsS http://127.0.0.1:19102/metrics | grep -E '^presence_(users|sockets|transitions_emitted|transitions_coalesced|delivery_messages|events_applied)' >&2
curl -fsS "http://127.0.0.1:$EDGE_PORT/metrics" | grep -E 'dropped|deliver' | head -20 >&2 || true
