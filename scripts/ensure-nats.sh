#!/usr/bin/env bash
# Prints the path of a nats-server binary, installing Debian's package when
# none is found and we may (root + apt-get). Exits non-zero with what to do.
set -euo pipefail
if [ -n "${NATS_SERVER_BIN:-}" ] && [ -x "$NATS_SERVER_BIN" ]; then echo "$NATS_SERVER_BIN"; exit 0; fi
for candidate in "$(command -v nats-server 2>/dev/null || true)" /usr/sbin/nats-server /usr/local/bin/nats-server; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "nats-server not found; installing Debian's nats-server package" >&2
  (apt-get install -y nats-server >&2 || { apt-get update >&2 && apt-get install -y nats-server >&2; })
  for candidate in /usr/sbin/nats-server /usr/bin/nats-server; do
    if [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
  done
fi
cat >&2 <<'MSG'
nats-server is needed and was not found.
Install it, then run the command again:
  Debian/Ubuntu:  sudo apt-get install nats-server
  macOS:          brew install nats-server
  any system:     go install github.com/nats-io/nats-server/v2@latest
or point NATS_SERVER_BIN at the binary.
MSG
exit 1
