#!/usr/bin/env bash
# Prints the path of a Chromium the end-to-end tests can drive headless (playwright-core with
# `executablePath`; tests/e2e/test/web-chat.test.js), installing Debian's `chromium` package
# when none is found and we may (root + apt-get). Exits non-zero with what to do.
# playwright-core downloads no browser here: it is pinned in tests/e2e/package.json to the
# release built for the Chromium major Debian ships (see docs/operations.md).
set -euo pipefail
candidates=("${CHROMIUM_BIN:-}" "$(command -v chromium 2>/dev/null || true)" /usr/bin/chromium
  "$(command -v chromium-browser 2>/dev/null || true)" "$(command -v google-chrome 2>/dev/null || true)")
for candidate in "${candidates[@]}"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "chromium not found; installing Debian's chromium package (a few hundred MB with its libraries)" >&2
  export DEBIAN_FRONTEND=noninteractive
  (apt-get install -y chromium >&2 \
    || { apt-get update >&2 && apt-get install -y chromium >&2; })
  if [ -x /usr/bin/chromium ]; then echo /usr/bin/chromium; exit 0; fi
fi
cat >&2 <<'MSG'
Chromium is needed for the browser end-to-end test (examples/web-chat) and was not found.
Install it, then run the command again:
  Debian:         sudo apt-get install chromium
  Ubuntu:         a Chromium or Chrome that is not a snap (e.g. Google Chrome's .deb)
  macOS:          brew install --cask chromium
or point CHROMIUM_BIN at a Chromium/Chrome binary.
MSG
exit 1
