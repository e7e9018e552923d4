#!/usr/bin/env bash
# make soak: the whole stack for SOAK_DURATION under churn, room and private traffic (issue 14,
# "Soak"; not part of make test). Reading the result: docs/soak.md.
#
# Starts a fresh private stack (nats-server with a fresh JetStream dir; auth on SQLite with the
# loadgen's users seeded; presence with PRESENCE_SCOPE=all, so every connect and disconnect is a
# user_online / user_offline to every socket; messaging on SQLite; EDGES edges), then runs three
# sb-loadgen processes at once:
#   - fanout (rooms: joins, then room messages) against the last edge,
#   - private (pairs sending each other {to, message}) against the first edge,
#   - churn (connect -> hold -> disconnect cycles, never reusing a user, while observers count
#     user_online / user_offline exactly) against the first edge, started once fanout and private
#     are sending and ended before they stop, so the observers count only the churn's cycles.
# Every SOAK_SAMPLE it records VmRSS and open file descriptors (and how many are sockets) of every
# server process. At the end it checks, PASS or FAIL each:
#   - presence counts exact (churn), nothing lost (fanout, private),
#   - no fd growth: median of the last K steady samples <= median of the first K after SOAK_WARMUP
#     plus max(FD_ALLOWANCE, FD_ALLOWANCE_PCT %),
#   - RSS of each service within RSS_TOLERANCE_PCT % of its level after warm-up (same medians;
#     nats-server's is reported, not judged: its file store caches the JetStream block being
#     written, so it follows the streams' sizes, reported beside it, see docs/soak.md),
#   - no ERROR line (or panic) in any service log; WARN lines are counted and fail only when their
#     message does not match SOAK_EXPECTED_WARN,
#   - every server process still running.
# Writes soak-results/<UTC time>/soak.json (machine, command, settings, every sample, each check)
# and soak.md (the same as tables), with the loadgens' JSON lines and the logs beside them.
# Exit status 1 when a check failed, 2 when the soak could not run.
#
# Settings (environment): SOAK_DURATION (30m), SOAK_WARMUP (5m), SOAK_SAMPLE (30s); durations as
# 90, 90s, 5m or 1h. CHURN_RATE (10 cycles/s), CHURN_HOLD_MS (1000), CHURN_OBSERVERS (20);
# FANOUT_ROOMS (4), FANOUT_MEMBERS (10), FANOUT_RATE (2 messages/s per room, one sender each);
# PRIVATE_PAIRS (50), PRIVATE_RATE (1 message/s per side: 100 msg/s); EDGES (2); FD_ALLOWANCE (5),
# FD_ALLOWANCE_PCT (2), RSS_TOLERANCE_PCT (10); SOAK_EXPECTED_WARN (an extended regex, see
# below); BIN_DIR (the sb-* binaries, switchboardctl and sb-loadgen, already built; unset: cargo
# build --release here); SOAK_RESULTS (soak-results); KEEP_WORK=1 keeps the stack's work dir.
# Ports 25222 (NATS), 2505x (gRPC), 2510x (metrics), 25300.. (edges): clear of make bench (24xxx),
# make run and the ephemeral range.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

die() { echo "soak: $*" >&2; exit 2; }
say() { echo "==> $*" >&2; }
# seconds DURATION: 90 / 90s / 5m / 1h -> whole seconds.
seconds() {
  local text=$1 scale=1
  case $text in
    *h) scale=3600; text=${text%h} ;;
    *m) scale=60; text=${text%m} ;;
    *s) text=${text%s} ;;
  esac
  [[ $text =~ ^[0-9]+$ ]] || die "$1 is not a duration like 90s, 5m or 1h"
  echo $((text * scale))
}

duration_s=$(seconds "${SOAK_DURATION:-30m}")
warmup_s=$(seconds "${SOAK_WARMUP:-5m}")
sample_s=$(seconds "${SOAK_SAMPLE:-30s}")
CHURN_RATE=${CHURN_RATE:-10} CHURN_HOLD_MS=${CHURN_HOLD_MS:-1000} CHURN_OBSERVERS=${CHURN_OBSERVERS:-20}
FANOUT_ROOMS=${FANOUT_ROOMS:-4} FANOUT_MEMBERS=${FANOUT_MEMBERS:-10} FANOUT_RATE=${FANOUT_RATE:-2}
PRIVATE_PAIRS=${PRIVATE_PAIRS:-50} PRIVATE_RATE=${PRIVATE_RATE:-1} EDGES=${EDGES:-2}
FD_ALLOWANCE=${FD_ALLOWANCE:-5} FD_ALLOWANCE_PCT=${FD_ALLOWANCE_PCT:-2} RSS_TOLERANCE_PCT=${RSS_TOLERANCE_PCT:-10}
# WARN messages the scenario itself causes. Empty by default: none were seen in the runs
# recorded in docs/soak.md; add a pattern only with the reason it is expected.
SOAK_EXPECTED_WARN=${SOAK_EXPECTED_WARN:-}
(( sample_s > 0 && warmup_s < duration_s )) || die "need SOAK_SAMPLE > 0 and SOAK_WARMUP < SOAK_DURATION"
(( EDGES >= 1 )) || die "EDGES must be at least 1"
# 32 bytes or more, so auth does not warn about a short key; the loadgens read it from JWT_SECRET.
SECRET=soak-secret-not-for-production-0123456789
# The churn never reuses a user (each cycle must be a first socket and a last one), so its pool
# covers every cycle, plus ten seconds' worth in case the run overshoots.
pool=$(awk -v r="$CHURN_RATE" -v d="$duration_s" 'BEGIN { p = r * (d + 10); printf "%d", (p == int(p)) ? p : int(p) + 1 }')
churn_users=$((CHURN_OBSERVERS + pool))
fanout_conns=$((FANOUT_ROOMS * FANOUT_MEMBERS)) private_conns=$((PRIVATE_PAIRS * 2))
users=$((churn_users + fanout_conns + private_conns))

started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
out=$root/${SOAK_RESULTS:-soak-results}/$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$out/logs"

if [ -n "${BIN_DIR:-}" ]; then
  bin=$(cd "$BIN_DIR" && pwd)
else
  say "building release binaries and the loadgen"
  cargo build --release -p sb-auth -p sb-presence -p sb-messaging -p sb-edge -p switchboardctl -p sb-loadgen 2>&1 | tail -1 >&2
  bin=$root/target/release
fi
for b in sb-auth sb-presence sb-messaging sb-edge switchboardctl sb-loadgen; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing"
done
nats_bin=$(scripts/ensure-nats.sh)
ulimit -n "$(ulimit -Hn)"
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
edge_ports=()
for ((e = 0; e < EDGES; e++)); do edge_ports+=($((25300 + e))); done
for port in 25222 25822 25051 25052 25053 25101 25102 25103 "${edge_ports[@]}"; do
  answers "$port" && die "port $port is taken (a soak still running?)"
done

# Every process we start, server or loadgen, is stopped by pid at exit, the last started first:
# the loadgens, then the edges (which drain their sockets while NATS still answers), nats-server last.
started=()
stop_all() {
  local i
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do
    kill -TERM "${started[i]}" 2>/dev/null && { wait "${started[i]}" 2>/dev/null || true; }
  done
  started=()
}
work=$(mktemp -d /tmp/sb-soak.XXXXXX)
cleanup() { stop_all; [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

# The server processes, in sampling order: names[i] runs as pids[i] and logs to logs[i].
names=() pids=() logs=()
# serve NAME COMMAND...: starts a server process in the background, logging to work/NAME.log.
serve() {
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  started+=("$!") names+=("$name") pids+=("$!") logs+=("$work/$name.log")
}

say "starting the stack in $work (logs copied to $out/logs)"
serve nats "$nats_bin" -a 127.0.0.1 -p 25222 -m 25822 -js -sd "$work/nats"
for _ in $(seq 1 50); do answers 25222 && break; sleep 0.1; done
export NATS_URL=nats://127.0.0.1:25222 AUTH_ADDR=http://127.0.0.1:25051 JWT_SECRET=$SECRET RUST_LOG=warn LOG_FORMAT=json
serve auth env GRPC_ADDR=127.0.0.1:25051 METRICS_ADDR=127.0.0.1:25101 DATABASE_URL="sqlite:$work/auth.db" \
  BOOTSTRAP_ADMIN_EMAIL=admin@example.com BOOTSTRAP_ADMIN_PASSWORD=soak-password "$bin/sb-auth"
serve presence env GRPC_ADDR=127.0.0.1:25052 METRICS_ADDR=127.0.0.1:25102 PRESENCE_SCOPE=all "$bin/sb-presence"
serve messaging env GRPC_ADDR=127.0.0.1:25053 METRICS_ADDR=127.0.0.1:25103 DATABASE_URL="sqlite:$work/messaging.db" "$bin/sb-messaging"
for ((e = 0; e < EDGES; e++)); do
  serve "edge-$((e + 1))" env LISTEN_ADDR="127.0.0.1:${edge_ports[e]}" EDGE_ID="soak-edge-$((e + 1))" \
    RATE_LIMIT_PER_SEC=0 CONNECT_RATE_PER_ADDRESS=0 "$bin/sb-edge"
done
for port in "${edge_ports[@]}"; do
  for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || die "the edge on $port did not get ready; logs in $work (KEEP_WORK=1 keeps them)"
done
ctl() { XDG_CONFIG_HOME="$work/config" "$bin/switchboardctl" --context soak "$@"; }
XDG_CONFIG_HOME="$work/config" "$bin/switchboardctl" context add soak --auth "$AUTH_ADDR" \
  --presence http://127.0.0.1:25052 --messaging http://127.0.0.1:25053 >/dev/null
for i in "${!names[@]}"; do
  kill -0 "${pids[i]}" 2>/dev/null || { tail -5 "${logs[i]}" >&2; die "${names[i]} exited at start-up"; }
done
printf 'soak-password\n' | ctl login --email admin@example.com --password-stdin >/dev/null
say "seeding $users users"
ctl users seed --count "$users" --prefix u --domain example.com >"$work/seed.json"

# fd_counts PID: "open-fds sockets" of a running process, "null null" when it is gone.
fd_counts() {
  [ -d "/proc/$1/fd" ] || { echo "null null"; return; }
  find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null | awk '{ n++ } /^socket:/ { s++ } END { print n + 0, s + 0 }'
}
rss_kb() { awk '/^VmRSS:/ { print $2; found = 1 } END { if (!found) print "null" }' "/proc/$1/status" 2>/dev/null || echo null; }
# sample PHASE T: one line of samples.jsonl (every server process) and one progress line.
sample() {
  local phase=$1 t=$2 i rss fds sockets entries=() shown=()
  for i in "${!names[@]}"; do
    rss=$(rss_kb "${pids[i]}")
    read -r fds sockets < <(fd_counts "${pids[i]}")
    entries+=("{\"name\":\"${names[i]}\",\"pid\":${pids[i]},\"rss_kb\":$rss,\"fds\":$fds,\"sockets\":$sockets}")
    shown+=("${names[i]} ${rss}k/${fds}fd")
  done
  # What JetStream holds, per stream: nats-server's memory follows its streams.
  local streams
  streams=$(curl -fsS "http://127.0.0.1:25822/jsz?accounts=true&streams=true" 2>/dev/null \
    | jq -c '[.account_details[]?.stream_detail[]? | {key: .name, value: {messages: .state.messages, bytes: .state.bytes}}] | from_entries' \
    || echo null)
  local IFS=,
  echo "{\"t_s\":$t,\"phase\":\"$phase\",\"utc\":\"$(date -u +%H:%M:%S)\",\"processes\":[${entries[*]}],\"streams\":$streams}" >>"$out/samples.jsonl"
  IFS=' '
  echo "  t=${t}s $phase: ${shown[*]} | streams ${streams}" >&2
}

edge_url() { echo "ws://127.0.0.1:${edge_ports[$1]}"; }
watched=()
for i in "${!names[@]}"; do watched+=(--pid "${names[i]}=${pids[i]}"); done
common=(--threads 1 --source-ips 4 --connect-rate 200 --connect-timeout 30 "${watched[@]}")
# fanout and private send for the churn's whole run and a minute more, so that none of their
# sockets comes or goes while the churn's observers count.
messaging_s=$((duration_s + 60 + CHURN_OBSERVERS / 200))
fanout_cmd=("$bin/sb-loadgen" --url "$(edge_url $((EDGES - 1)))" --users "$users" --user-offset "$churn_users"
  "${common[@]}" --label "soak fanout" --json-out "$out/fanout.jsonl" --warmup 5s --duration "${messaging_s}s"
  fanout --rooms "$FANOUT_ROOMS" --members "$FANOUT_MEMBERS" --senders 1 --rate "$FANOUT_RATE")
private_cmd=("$bin/sb-loadgen" --url "$(edge_url 0)" --users "$users" --user-offset $((churn_users + fanout_conns))
  "${common[@]}" --label "soak private" --json-out "$out/private.jsonl" --warmup 5s --duration "${messaging_s}s"
  private --pairs "$PRIVATE_PAIRS" --rate "$PRIVATE_RATE")
churn_cmd=("$bin/sb-loadgen" --url "$(edge_url 0)" --users "$churn_users" "${common[@]}" --label "soak churn"
  --json-out "$out/churn.jsonl" --duration "${duration_s}s"
  churn --observers "$CHURN_OBSERVERS" --rate "$CHURN_RATE" --hold-ms "$CHURN_HOLD_MS" --pool "$pool" --rss-interval "${sample_s}s")

sample idle-before 0
say "fanout and private: setting up"
"${fanout_cmd[@]}" >/dev/null 2>"$work/fanout.err" & fanout_pid=$!; started+=("$fanout_pid")
"${private_cmd[@]}" >/dev/null 2>"$work/private.err" & private_pid=$!; started+=("$private_pid")
sending() { grep -q "sending at" "$work/fanout.err" && grep -q "sending at" "$work/private.err"; }
for _ in $(seq 1 1200); do
  if sending || ! kill -0 "$fanout_pid" 2>/dev/null || ! kill -0 "$private_pid" 2>/dev/null; then break; fi
  sleep 0.1
done
sending || { cat "$work/fanout.err" "$work/private.err" >&2; die "fanout or private did not start sending"; }

say "churn for ${duration_s}s (warm-up ${warmup_s}s, a sample every ${sample_s}s)"
t0=$(date +%s)
"${churn_cmd[@]}" >/dev/null 2>"$work/churn.err" & churn_pid=$!; started+=("$churn_pid")
for ((next = 0; next <= duration_s; next += sample_s)); do
  while (($(date +%s) < t0 + next)); do sleep 0.2; done
  kill -0 "$churn_pid" 2>/dev/null || { say "the churn ended early (t=$(($(date +%s) - t0))s)"; break; }
  phase=warmup; ((next >= warmup_s)) && phase=steady
  sample "$phase" "$next"
done
say "waiting for the loadgens to finish"
churn_exit=0 fanout_exit=0 private_exit=0
wait "$churn_pid" || churn_exit=$?
wait "$fanout_pid" || fanout_exit=$?
wait "$private_pid" || private_exit=$?
sleep 5
sample idle-after $(($(date +%s) - t0))
finished_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)

gone=()
for i in "${!names[@]}"; do kill -0 "${pids[i]}" 2>/dev/null || gone+=("${names[i]}"); done
# The logs are read before the stack stops: its shutdown is not part of the soak.
logs_json=$out/logs.json
for i in "${!names[@]}"; do
  cp "${logs[i]}" "$out/logs/"
  if [ "${names[i]}" = nats ]; then
    # nats-server's own format: "[pid] date time [ERR] message".
    jq -R '(capture("\\[(?<level>ERR|WRN|FTL)\\] (?<message>.*)") // null) | select(.)
           | {level: ({ERR: "ERROR", FTL: "ERROR", WRN: "WARN"}[.level]), message}' "${logs[i]}"
  else
    # JSON lines; anything else (a panic's text) counts as an error when it says it panicked.
    jq -R '(fromjson? // {level: (if test("panicked") then "ERROR" else "OTHER" end), message: .})
           | select(.level == "ERROR" or .level == "WARN") | {level, message: (.message // .fields.message // "")}' "${logs[i]}"
  fi | jq -s --arg name "${names[i]}" '{($name): .}'
done | jq -s 'add' >"$logs_json"
stop_all
cp "$work"/*.err "$work/seed.json" "$out/logs/"

# The checks, from the samples, the loadgens' results and the logs.
jq -n --slurpfile samples "$out/samples.jsonl" --slurpfile logs "$logs_json" \
  --slurpfile churn <(cat "$out/churn.jsonl" 2>/dev/null) --slurpfile fanout <(cat "$out/fanout.jsonl" 2>/dev/null) \
  --slurpfile private <(cat "$out/private.jsonl" 2>/dev/null) \
  --argjson exits "{\"churn\":$churn_exit,\"fanout\":$fanout_exit,\"private\":$private_exit}" \
  --argjson fd_allowance "$FD_ALLOWANCE" --argjson fd_pct "$FD_ALLOWANCE_PCT" --argjson rss_pct "$RSS_TOLERANCE_PCT" \
  --arg expected_warn "$SOAK_EXPECTED_WARN" --arg dead "${gone[*]}" '
  def median: sort | if length == 0 then null elif length % 2 == 1 then .[(length - 1) / 2]
                     else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def check(name; ok; detail): {check: name, verdict: (if ok then "PASS" else "FAIL" end), detail: detail};
  def r1: . * 10 | round / 10;
  [$samples[] | select(.phase == "steady")] as $steady
  | ([5, ($steady | length / 2 | floor)] | min) as $k
  | [$samples[0].processes[].name] as $names
  | [$names[] as $n | {name: $n} + (
      [$steady[:$k][] | .processes[] | select(.name == $n)] as $first
      | [if $k > 0 then $steady[-$k:][] else empty end | .processes[] | select(.name == $n)] as $last
      | {rss_base_kb: ($first | map(.rss_kb) | median), rss_end_kb: ($last | map(.rss_kb) | median),
         fds_base: ($first | map(.fds) | median), fds_end: ($last | map(.fds) | median),
         sockets_base: ($first | map(.sockets) | median), sockets_end: ($last | map(.sockets) | median),
         fds_idle_before: ($samples[0].processes[] | select(.name == $n) | .fds),
         fds_idle_after: ($samples[-1].processes[] | select(.name == $n) | .fds)})
      | . + {rss_change_pct: (if .rss_base_kb and .rss_end_kb then ((.rss_end_kb - .rss_base_kb) * 100 / .rss_base_kb | r1) else null end),
             fd_limit: (if .fds_base then .fds_base + ([$fd_allowance, (.fds_base * $fd_pct / 100 | floor)] | max) else null end)}] as $stats
  | ($churn[0].results // {}) as $c
  | def delivered($name; $run): ($run[0].results // {}) as $m
      | check("\($name) messages delivered"; $exits[$name] == 0 and ($m.lost // 1) == 0 and ($m.expected // 0) > 0;
          "exit \($exits[$name]); \($m.sent_measured // "?") sent, \($m.expected // "?") expected, \($m.received // "?") received, \($m.lost // "?") lost, \($m.dropped_connections // "?") connections dropped, p50 \($m.latency_ms.p50 // "?") ms, p99 \($m.latency_ms.p99 // "?") ms");
    ([$logs[0] | to_entries[] | .key as $svc | .value[] | . + {service: $svc}]) as $lines
  | [$lines[] | select(.level == "WARN") | select($expected_warn == "" or (.message | test($expected_warn) | not))] as $unexpected_warn
  | {k: $k, steady_samples: ($steady | length), stats: $stats, checks: (
      [check("presence counts exact"; $exits.churn == 0 and ($c.observers_mismatched // 1) == 0 and ($c.expected_per_observer // 0) > 0;
         "exit \($exits.churn); \($c.churn_connected // "?") cycles (\($c.churn_failed // "?") failed), \($c.observers_ready // "?")/\($c.observers // "?") observers, each should see \($c.expected_per_observer // "?"): user_online \($c.observer_online_min // "?")..\($c.observer_online_max // "?"), user_offline \($c.observer_offline_min // "?")..\($c.observer_offline_max // "?"), \($c.observers_mismatched // "?") mismatched, \($c.observers_dropped // "?") dropped"),
       delivered("fanout"; $fanout), delivered("private"; $private)]
      + [$stats[] | check("no fd growth: \(.name)"; .fds_end != null and .fd_limit != null and .fds_end <= .fd_limit;
           "\(.fds_base) -> \(.fds_end) fds (limit \(.fd_limit)), sockets \(.sockets_base) -> \(.sockets_end); idle before \(.fds_idle_before), after \(.fds_idle_after)")]
      + [$stats[] | select(.name != "nats") | check("RSS within \($rss_pct) %: \(.name)"; .rss_change_pct != null and (.rss_change_pct | fabs) <= $rss_pct;
           "\(.rss_base_kb) -> \(.rss_end_kb) KiB (\(.rss_change_pct) %)")]
      + [check("no ERROR lines"; ([$lines[] | select(.level == "ERROR")] | length) == 0;
           ([$names[] as $n | "\($n) \([$lines[] | select(.service == $n and .level == "ERROR")] | length)"] | join(", "))),
         check("no unexpected WARN lines"; ($unexpected_warn | length) == 0;
           ([$names[] as $n | "\($n) \([$lines[] | select(.service == $n and .level == "WARN")] | length)"] | join(", "))
           + "; \($unexpected_warn | length) unexpected"),
         check("every server process ran to the end"; $dead == ""; if $dead == "" then "all \($names | length)" else "gone: \($dead)" end)]
      + (if ($steady | length) < 2 then [check("enough steady samples"; false; "\($steady | length) after warm-up")] else [] end))}
  ' >"$work/verdict.json"

# soak.json: machine, command, settings, every sample, the loadgens' results, the logs' ERROR/WARN lines, each check.
machine=$(jq -n --arg hostname "$(cat /proc/sys/kernel/hostname)" --argjson nproc "$(nproc)" \
  --arg cpu_model "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" --arg kernel "$(uname -r)" \
  --argjson mem_total_kb "$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)" --argjson nofile_limit "$(ulimit -n)" \
  '$ARGS.named')
settings=$(jq -n --argjson duration_s "$duration_s" --argjson warmup_s "$warmup_s" --argjson sample_s "$sample_s" \
  --argjson churn_rate "$CHURN_RATE" --argjson churn_hold_ms "$CHURN_HOLD_MS" --argjson churn_observers "$CHURN_OBSERVERS" \
  --argjson churn_pool "$pool" --argjson fanout_rooms "$FANOUT_ROOMS" --argjson fanout_members "$FANOUT_MEMBERS" \
  --argjson fanout_rate "$FANOUT_RATE" --argjson private_pairs "$PRIVATE_PAIRS" --argjson private_rate "$PRIVATE_RATE" \
  --argjson edges "$EDGES" --argjson users "$users" --argjson fd_allowance "$FD_ALLOWANCE" \
  --argjson fd_allowance_pct "$FD_ALLOWANCE_PCT" --argjson rss_tolerance_pct "$RSS_TOLERANCE_PCT" \
  --arg expected_warn "$SOAK_EXPECTED_WARN" --arg bin_dir "$bin" --arg presence_scope all '$ARGS.named')
# as_json_array WORD...: the words as a JSON array (jq's --args would read the loadgen's flags as its own).
as_json_array() { printf '%s\0' "$@" | jq -Rs 'split("\u0000")[:-1]'; }
commands=$(jq -n --argjson churn "$(as_json_array "${churn_cmd[@]}")" --argjson fanout "$(as_json_array "${fanout_cmd[@]}")" \
  --argjson private "$(as_json_array "${private_cmd[@]}")" '$ARGS.named')
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -c . || true)
jq -n --arg started_at "$started_at" --arg finished_at "$finished_at" --argjson machine "$machine" \
  --arg command "scripts/soak.sh" --arg commit "$commit" --argjson dirty_files "$dirty" --argjson settings "$settings" \
  --argjson loadgen_commands "$commands" --slurpfile samples "$out/samples.jsonl" --slurpfile verdict "$work/verdict.json" \
  --slurpfile churn <(cat "$out/churn.jsonl" 2>/dev/null) --slurpfile fanout <(cat "$out/fanout.jsonl" 2>/dev/null) \
  --slurpfile private <(cat "$out/private.jsonl" 2>/dev/null) --slurpfile logs "$logs_json" \
  '{tool: "scripts/soak.sh", started_at: $started_at, finished_at: $finished_at, machine: $machine, command: $command,
    git: {commit: $commit, dirty_files: $dirty_files}, settings: $settings, loadgen_commands: $loadgen_commands,
    samples: $samples, k: $verdict[0].k, steady_samples: $verdict[0].steady_samples, stats: $verdict[0].stats,
    loadgen: {churn: $churn[0], fanout: $fanout[0], private: $private[0]}, log_lines: $logs[0],
    checks: $verdict[0].checks, passed: ($verdict[0].checks | all(.verdict == "PASS"))}' >"$out/soak.json"

# soak.md: the same, as tables.
jq -r '
  def cell: tostring | gsub("\\|"; "\\|");
  "# Soak \(.started_at) – \(.finished_at): \(if .passed then "PASS" else "FAIL" end)", "",
  "Machine: \(.machine.hostname), \(.machine.nproc) CPUs (\(.machine.cpu_model)), kernel \(.machine.kernel), \(.machine.mem_total_kb / 1048576 * 10 | round / 10) GiB, \(.machine.nofile_limit) open files. Commit \(.git.commit[:12])\(if .git.dirty_files > 0 then " + \(.git.dirty_files) changed files" else "" end); binaries from `\(.settings.bin_dir)`.", "",
  "Command: `\(.command)` with " + (.settings | "SOAK_DURATION=\(.duration_s)s SOAK_WARMUP=\(.warmup_s)s SOAK_SAMPLE=\(.sample_s)s CHURN_RATE=\(.churn_rate) CHURN_HOLD_MS=\(.churn_hold_ms) CHURN_OBSERVERS=\(.churn_observers) FANOUT_ROOMS=\(.fanout_rooms) FANOUT_MEMBERS=\(.fanout_members) FANOUT_RATE=\(.fanout_rate) PRIVATE_PAIRS=\(.private_pairs) PRIVATE_RATE=\(.private_rate) EDGES=\(.edges)") + "; \(.settings.users) users seeded, churn pool \(.settings.churn_pool), PRESENCE_SCOPE=\(.settings.presence_scope).", "",
  "Loadgens:", "",
  (.loadgen_commands | to_entries[] | "- \(.key): `sb-loadgen \(.value[1:] | map(if test("[ \u0027]") then @sh else . end) | join(" "))`"), "",
  "## Checks", "", "| check | verdict | detail |", "|---|---|---|",
  (.checks[] | "| \(.check) | **\(.verdict)** | \(.detail | cell) |"), "",
  "Medians of the first and last \(.k) of \(.steady_samples) samples after warm-up.", "",
  "## Per process", "", "| process | RSS after warm-up, KiB | RSS at the end | change | fds after warm-up | fds at the end | fd limit | sockets | fds idle before / after |", "|---|---|---|---|---|---|---|---|---|",
  (.stats[] | "| \(.name) | \(.rss_base_kb) | \(.rss_end_kb) | \(.rss_change_pct) % | \(.fds_base) | \(.fds_end) | \(.fd_limit) | \(.sockets_base) -> \(.sockets_end) | \(.fds_idle_before) / \(.fds_idle_after) |"), "",
  "## Log lines at ERROR and WARN", "",
  (if ([.log_lines[] | length] | add // 0) == 0 then "None." else
    (.log_lines | to_entries[] | select(.value | length > 0) | .key as $svc
     | .value | group_by([.level, .message])[] | "- \($svc) \(.[0].level) ×\(length): \(.[0].message | cell)") end), "",
  "## Samples (RSS KiB / open fds; JetStream messages / KiB per stream)", "",
  "| t (s) | phase | " + ([.samples[0].processes[].name] | join(" | ")) + " | streams |",
  "|---|---|" + ([.samples[0].processes[] | "---|"] | join("")) + "---|",
  (.samples[] | "| \(.t_s) | \(.phase) | " + ([.processes[] | "\(.rss_kb) / \(.fds)"] | join(" | "))
    + " | " + ([(.streams // {}) | to_entries | sort_by(.key)[] | select(.value.messages > 0) | "\(.key) \(.value.messages) / \(.value.bytes / 1024 | round)"] | join(", ")) + " |")
' "$out/soak.json" >"$out/soak.md"

echo >&2
jq -r '.checks[] | "\(.verdict)  \(.check): \(.detail)"' "$out/soak.json"
echo >&2
say "results in ${out#"$root"/}/soak.md and soak.json"
jq -e .passed "$out/soak.json" >/dev/null || exit 1
