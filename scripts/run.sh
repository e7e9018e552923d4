#!/usr/bin/env bash
# make run: the whole Switchboard stack on this machine.
#   - a nats-server with JetStream (the one at NATS_URL if it answers, else a local one in data/nats)
#   - auth, presence, messaging and one edge, on SQLite files in data/
#   - demo users admin@example.com, alice@example.com, bob@example.com (password DEMO_PASSWORD,
#     default "switchboard"), created idempotently, and a token for each; switchboardctl logged
#     in as the admin for its context `local`
#   - the browser example examples/web-chat on its own port (WEB_CHAT_PORT, 8090; `off`: not
#     served), with python3's http.server; the edge allows it as an origin (CORS_ORIGINS)
# Ctrl-C stops everything. Settings: NATS_URL, EDGE_PORT (3000), WEB_CHAT_PORT (8090),
# CORS_ORIGINS (*), DEMO_PASSWORD, JWT_SECRET (generated once into data/jwt-secret when unset),
# PROFILE (release | dev), RUST_LOG, OTEL_EXPORTER_OTLP_ENDPOINT (unset: traces not exported).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
data=$root/data
mkdir -p "$data/logs"

PROFILE=${PROFILE:-release}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
EDGE_PORT=${EDGE_PORT:-3000}
WEB_CHAT_PORT=${WEB_CHAT_PORT:-8090}
# The web chat is another origin (its own port), so the edge must allow it: `*` allows every
# origin (the page sends no cookies, so it needs no credentials); a list such as
# http://localhost:8090,http://127.0.0.1:8090 allows exactly those (docs/edge.md).
CORS_ORIGINS=${CORS_ORIGINS:-*}
DEMO_PASSWORD=${DEMO_PASSWORD:-switchboard}
export RUST_LOG=${RUST_LOG:-info}
export SUBJECT_PREFIX=${SUBJECT_PREFIX:-sb}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'make run: %s\n' "$*" >&2; exit 1; }
answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

pids=()
cleanup() {
  trap - INT TERM EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    say "stopping"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do
      alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ $alive = 0 ] && break; sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM

# --- ports we need must be free ---
answers 127.0.0.1 "$EDGE_PORT" && die "port $EDGE_PORT is taken; run with EDGE_PORT=<free port> make run"
if [ "$WEB_CHAT_PORT" != off ]; then
  answers 127.0.0.1 "$WEB_CHAT_PORT" \
    && die "port $WEB_CHAT_PORT (the web chat example) is taken; run with WEB_CHAT_PORT=<free port> (or off) make run"
fi
for p in 50051 50052 50053 9101 9102 9103; do
  answers 127.0.0.1 $p && die "port $p is taken (Switchboard's default gRPC/metrics ports); stop what uses it, or is a previous 'make run' still running?"
done

# --- build ---
say "building the services ($PROFILE profile; the first build takes a few minutes)"
cargo build --profile "$PROFILE" -p sb-auth -p sb-presence -p sb-messaging -p sb-edge -p switchboardctl
bin=$root/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

# --- NATS ---
hostport=${NATS_URL#*://}; hostport=${hostport%%,*}; hostport=${hostport%%/*}
nats_host=${hostport%%:*}; nats_port=${hostport##*:}; [ "$nats_port" = "$nats_host" ] && nats_port=4222
if answers "$nats_host" "$nats_port"; then
  say "using the NATS server at $NATS_URL (it must have JetStream enabled)"
else
  nats_bin=$(scripts/ensure-nats.sh) || exit 1
  say "starting $nats_bin with JetStream on $nats_host:$nats_port (data in data/nats)"
  "$nats_bin" -a "$nats_host" -p "$nats_port" -js -sd "$data/nats" >"$data/logs/nats.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do answers "$nats_host" "$nats_port" && break; sleep 0.1; done
  answers "$nats_host" "$nats_port" || die "nats-server did not start; see data/logs/nats.log"
fi
export NATS_URL

# --- secrets ---
if [ -z "${JWT_SECRET:-}" ]; then
  if [ ! -s "$data/jwt-secret" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$data/jwt-secret")
  fi
  JWT_SECRET=$(cat "$data/jwt-secret")
fi
export JWT_SECRET

# --- services ---
start() { # name binary env...
  local name=$1 exe=$2; shift 2
  env "$@" "$exe" >"$data/logs/$name.log" 2>&1 &
  pids+=($!)
}
export AUTH_ADDR=http://127.0.0.1:50051
say "starting auth, presence, messaging and edge (logs in data/logs/)"
start auth "$bin/sb-auth" GRPC_ADDR=127.0.0.1:50051 METRICS_ADDR=127.0.0.1:9101 \
  DATABASE_URL="sqlite:$data/auth.db" \
  BOOTSTRAP_ADMIN_EMAIL=admin@example.com BOOTSTRAP_ADMIN_PASSWORD="$DEMO_PASSWORD"
start presence "$bin/sb-presence" GRPC_ADDR=127.0.0.1:50052 METRICS_ADDR=127.0.0.1:9102
start messaging "$bin/sb-messaging" GRPC_ADDR=127.0.0.1:50053 METRICS_ADDR=127.0.0.1:9103 \
  DATABASE_URL="sqlite:$data/messaging.db"
start edge "$bin/sb-edge" LISTEN_ADDR="0.0.0.0:$EDGE_PORT" EDGE_ID=edge-local CORS_ORIGINS="$CORS_ORIGINS"

edge_url=http://127.0.0.1:$EDGE_PORT
for _ in $(seq 1 300); do
  curl -fsS "$edge_url/readyz" >/dev/null 2>&1 && break
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || die "a service exited at start-up; see data/logs/*.log"; done
  sleep 0.1
done
curl -fsS "$edge_url/readyz" >/dev/null 2>&1 || die "the edge is not ready after 30 s; see data/logs/*.log"

# --- the browser example, served from its own origin ---
web_chat_line="  Web chat    not served (WEB_CHAT_PORT=off)"
if [ "$WEB_CHAT_PORT" != off ]; then
  if command -v python3 >/dev/null 2>&1; then
    python3 -m http.server --bind 127.0.0.1 --directory "$root/examples/web-chat" "$WEB_CHAT_PORT" \
      >"$data/logs/web-chat.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 50); do answers 127.0.0.1 "$WEB_CHAT_PORT" && break; sleep 0.1; done
    answers 127.0.0.1 "$WEB_CHAT_PORT" || die "the web chat's server did not start; see data/logs/web-chat.log"
    web_chat_line="  Web chat    http://localhost:$WEB_CHAT_PORT/?edge=http://localhost:$EDGE_PORT&auth=http://localhost:$EDGE_PORT&email=alice@example.com  (open it twice: alice and bob)"
  else
    web_chat_line="  Web chat    not served: python3 not found (serve examples/web-chat with any static server; see its README.md)"
  fi
fi
traces_line=""
if [ -n "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]; then
  traces_line="  Traces      OTLP/gRPC to $OTEL_EXPORTER_OTLP_ENDPOINT from all four services (with Jaeger, its UI is on port 16686)"
  [ "${OTEL_SDK_DISABLED:-false}" = true ] && traces_line="  Traces      not exported: OTEL_SDK_DISABLED=true (OTEL_EXPORTER_OTLP_ENDPOINT=$OTEL_EXPORTER_OTLP_ENDPOINT)"
fi

# --- demo users (idempotent) and their tokens ---
# The CLI's built-in context `local` is this stack's addresses; logging the admin in stores its
# token there, so `switchboardctl online` works as is afterwards.
ctl() { "$bin/switchboardctl" --context local "$@"; }
printf '%s\n' "$DEMO_PASSWORD" | ctl login --email admin@example.com --password-stdin >/dev/null \
  || die "cannot log in as admin@example.com: was it created with another DEMO_PASSWORD? (rm data/auth.db to start over)"
for who in alice bob; do
  if ! out=$(printf '%s\n' "$DEMO_PASSWORD" | ctl users create --email "$who@example.com" --password-stdin 2>&1); then
    grep -qi "already" <<<"$out" || die "create $who@example.com: $out"
  fi
done
declare -A tokens
for who in admin alice bob; do
  tokens[$who]=$(printf '%s\n' "$DEMO_PASSWORD" | ctl login --email "$who@example.com" --password-stdin --print-token) \
    || die "log in as $who@example.com failed"
done

cat <<MSG

Switchboard is running.
  Socket.IO   ws://localhost:$EDGE_PORT   (also POST $edge_url/auth/login {"email","password"})
  gRPC        auth 127.0.0.1:50051, presence 127.0.0.1:50052, messaging 127.0.0.1:50053
  metrics     $edge_url/metrics, http://127.0.0.1:9101/metrics (9102, 9103)
  logs        data/logs/
$web_chat_line
${traces_line:+$traces_line
}
Demo users (password: $DEMO_PASSWORD), tokens valid for an hour:
  admin@example.com  ${tokens[admin]}
  alice@example.com  ${tokens[alice]}
  bob@example.com    ${tokens[bob]}

Connect from Node (npm i socket.io-client):
  const { io } = require('socket.io-client');
  const socket = io('ws://localhost:$EDGE_PORT', { auth: { token: '${tokens[alice]}' } });
  socket.on('connect', () => socket.emit('join_room', { room: 'developers' }));
  socket.on('new_message', (m) => console.log(\`\${m.from.email}: \${m.message}\`));

Admin CLI (logged in as admin@example.com, context local):
  $bin/switchboardctl online
  $bin/switchboardctl users list
  $bin/switchboardctl --help
Ctrl-C stops everything.
MSG

wait -n "${pids[@]}" || true
say "a process exited; stopping the rest (see data/logs/)"
