#!/usr/bin/env bash
# Profile the whole stack under one load: starts a private stack (like scripts/bench.sh), runs the
# load generator, and records the stack's processes with `perf record -p` (cpu-clock
# sampling, which works on VMs without hardware counters) for PERF_SECONDS once the load runs.
# Prints CPU seconds per process over the load, then where each process spent it.
#
#   scripts/profile.sh private --connect-rate 300 --warmup 5 --duration 20 private --pairs 500 --rate 4
#   BIN=/path/to/target/release LOADGEN=/path/to/loadgen scripts/profile.sh fanout ...
#
# Settings: BIN (target/release), LOADGEN (the load generator binary), PERF_DELAY (s after the
# loadgen starts, 8), PERF_SECONDS (12; perf records the stack's processes only), CALLGRAPH (set to record call graphs with frame pointers:
# slower, for flame graphs), OUT (profile-results/<label>-<time>).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
label=$1; shift
BIN=${BIN:-$root/target/release}
LOADGEN=${LOADGEN:-$root/target/release/sb-loadgen}
PERF_DELAY=${PERF_DELAY:-8} PERF_SECONDS=${PERF_SECONDS:-12}
OUT=${OUT:-$root/profile-results/$label-$(date +%H%M%S)}
mkdir -p "$OUT"
SECRET=dev-secret USERS=${USERS:-20000} EDGE_PORT=${EDGE_PORT:-24300}
nats_bin=$(scripts/ensure-nats.sh)
ulimit -n "$(ulimit -Hn)"

# CALLGRIND=edge|messaging|presence runs that service under valgrind's callgrind: instruction
# counts, repeatable whatever else the machine does (slow: keep the load light).
grind() { if [ "${CALLGRIND:-}" = "$1" ]; then echo valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$1"; fi; }
pids=()
stop_stack() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop_stack EXIT
work=$(mktemp -d /tmp/sb-profile.XXXXXX)
"$nats_bin" -a 127.0.0.1 -p 24222 -m 24822 -js -sd "$work/nats" >"$work/nats.log" 2>&1 & nats_pid=$!; pids+=($nats_pid)
export NATS_URL=nats://127.0.0.1:24222 AUTH_ADDR=http://127.0.0.1:24051 JWT_SECRET=$SECRET RUST_LOG=warn
for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/24222) 2>/dev/null && break; sleep 0.1; done
env GRPC_ADDR=127.0.0.1:24051 METRICS_ADDR=127.0.0.1:24101 DATABASE_URL="sqlite:$work/auth.db" \
  BOOTSTRAP_ADMIN_EMAIL=admin@example.com BOOTSTRAP_ADMIN_PASSWORD=bench-password \
  "$BIN/sb-auth" >"$work/auth.log" 2>&1 & auth_pid=$!; pids+=($auth_pid)
env GRPC_ADDR=127.0.0.1:24052 METRICS_ADDR=127.0.0.1:24102 PRESENCE_SCOPE="${SCOPE:-none}" \
  $(grind presence) "$BIN/sb-presence" >"$work/presence.log" 2>&1 & presence_pid=$!; pids+=($presence_pid)
env GRPC_ADDR=127.0.0.1:24053 METRICS_ADDR=127.0.0.1:24103 DATABASE_URL="sqlite:$work/messaging.db" \
  $(grind messaging) "$BIN/sb-messaging" >"$work/messaging.log" 2>&1 & messaging_pid=$!; pids+=($messaging_pid)
env LISTEN_ADDR=127.0.0.1:$EDGE_PORT EDGE_ID=bench-edge RATE_LIMIT_PER_SEC=0 CONNECT_RATE_PER_ADDRESS=0 \
  $(grind edge) "$BIN/sb-edge" >"$work/edge.log" 2>&1 & edge_pid=$!; pids+=($edge_pid)
for _ in $(seq 1 900); do curl -fsS "http://127.0.0.1:$EDGE_PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
ctl() { XDG_CONFIG_HOME="$work/config" "$BIN/switchboardctl" --context profile "$@"; }
XDG_CONFIG_HOME="$work/config" "$BIN/switchboardctl" context add profile --auth "$AUTH_ADDR" --presence http://127.0.0.1:24052 \
  --messaging http://127.0.0.1:24053 >/dev/null
printf 'bench-password\n' | ctl login --email admin@example.com --password-stdin >/dev/null
ctl users seed --count "$USERS" --prefix u --domain example.com --admin-every 1000 >&2

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
names=(nats edge messaging presence auth)
procs=($nats_pid $edge_pid $messaging_pid $presence_pid $auth_pid)
"$LOADGEN" --url "ws://127.0.0.1:$EDGE_PORT" --secret "$SECRET" --users "$USERS" --threads 1 --source-ips 4 \
  --connect-timeout 30 "$@" >"$OUT/loadgen.json" 2>"$OUT/loadgen.log" & loadgen_pid=$!
sleep "$PERF_DELAY"
declare -A before
for i in "${!procs[@]}"; do before[$i]=$(cpu "${procs[$i]}"); done
lg_before=$(cpu $loadgen_pid)
curl -fsS "http://127.0.0.1:24822/connz?subs=0" >"$OUT/connz-before.json" 2>/dev/null || true
if [ -n "${CALLGRAPH:-}" ]; then graph=(-g); else graph=(); fi
# Only the stack's own processes: on a shared machine -a would record other tenants too.
watched=$(IFS=,; echo "${procs[*]}")
if [ -n "${STRACE:-}" ]; then
  # STRACE=edge|messaging|nats: syscall counts of one process over the window.
  case $STRACE in edge) target=$edge_pid ;; messaging) target=$messaging_pid ;; nats) target=$nats_pid ;; *) target=$presence_pid ;; esac
  timeout -s INT "$PERF_SECONDS" strace -c -f -p "$target" -o "$OUT/strace.$STRACE" 2>/dev/null || true
elif [ -n "${CALLGRIND:-}" ]; then
  callgrind_control -z >/dev/null; sleep "$PERF_SECONDS"; callgrind_control -d >/dev/null
else
  perf record -e cpu-clock -F 997 -p "$watched" "${graph[@]}" -o "$OUT/perf.data" -- sleep "$PERF_SECONDS" 2>"$OUT/perf.log" || true
fi
curl -fsS "http://127.0.0.1:24822/connz?subs=0" >"$OUT/connz-after.json" 2>/dev/null || true
hz=$(getconf CLK_TCK)
{
  echo "CPU seconds over ${PERF_SECONDS}s ($label):"
  for i in "${!procs[@]}"; do
    echo "  ${names[$i]}: $(echo "scale=2; ($(cpu "${procs[$i]}") - ${before[$i]}) / $hz" | bc)"
  done
  echo "  loadgen: $(echo "scale=2; ($(cpu $loadgen_pid) - $lg_before) / $hz" | bc)"
} | tee "$OUT/cpu.txt"
for port in $EDGE_PORT 24103; do curl -fsS "http://127.0.0.1:$port/metrics" >"$OUT/metrics-$port.txt" 2>/dev/null || true; done
wait $loadgen_pid || true
python3 - "$OUT" <<'PY' | tee "$OUT/nats-messages.txt" || true
import json, sys
out = sys.argv[1]
load = lambda name: {c["cid"]: c for c in json.load(open(f"{out}/{name}"))["connections"]}
before, after = load("connz-before.json"), load("connz-after.json")
print("NATS messages per connection over the window (from the server's view: in = sent by the client):")
for cid, c in sorted(after.items()):
    b = before.get(cid, {"in_msgs": 0, "out_msgs": 0, "in_bytes": 0, "out_bytes": 0})
    print(f"  {c.get('name') or cid:40} in {c['in_msgs'] - b['in_msgs']:>8}  out {c['out_msgs'] - b['out_msgs']:>8}  "
          f"in_bytes {c['in_bytes'] - b['in_bytes']:>10}  out_bytes {c['out_bytes'] - b['out_bytes']:>10}")
PY
perf report -i "$OUT/perf.data" --no-children --sort comm,dso,sym --stdio 2>/dev/null | head -150 >"$OUT/report.txt" || true
perf report -i "$OUT/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -v '^#' | head -20 >"$OUT/by-process.txt" || true
tail -1 "$OUT/loadgen.log" >&2 || true
echo "profile in $OUT (report.txt, by-process.txt, cpu.txt; perf.data for perf report)" >&2
