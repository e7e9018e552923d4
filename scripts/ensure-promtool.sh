#!/usr/bin/env bash
# Prints the path of a `promtool` (Prometheus's rule and config checker), unpacking Debian's
# prometheus package (2.42, bookworm's) into target/tools when there is none; no root needed:
# `apt-get download` + `dpkg-deb -x`, nothing is installed system-wide. Exits non-zero with
# what to do. Used by `make test` (deps-test) and by tests/tests/it/deploy/observability.rs.
set -euo pipefail
SERIES=2.42
if [ -n "${PROMTOOL_BIN:-}" ]; then
  if [ -x "$PROMTOOL_BIN" ]; then echo "$PROMTOOL_BIN"; exit 0; fi
  echo "PROMTOOL_BIN=$PROMTOOL_BIN is not an executable file; unset it or point it at a promtool" >&2
  exit 1
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${CARGO_TARGET_DIR:-$root/target}/tools/prometheus-$SERIES"
bin="$dir/usr/bin/promtool"
# `.installed` is written last, so an interrupted unpack is started again.
if [ -x "$bin" ] && [ -f "$dir/.installed" ]; then echo "$bin"; exit 0; fi
found="$(command -v promtool 2>/dev/null || true)"
if [ -n "$found" ]; then echo "$found"; exit 0; fi
what_to_do="install Debian's prometheus package (apt-get install prometheus), or point PROMTOOL_BIN at a promtool 2.x"
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "promtool not found and this is no Debian system (no apt-get/dpkg-deb) to unpack it from: $what_to_do" >&2
  exit 1
fi
candidate() { apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: *//p'; }
version="$(candidate)"
if { [ -z "$version" ] || [ "$version" = "(none)" ]; } && [ "$(id -u)" = 0 ]; then
  echo "apt knows no prometheus package; running apt-get update" >&2
  apt-get update >&2 || true
  version="$(candidate)"
fi
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  echo "promtool not found and apt knows no prometheus package (run 'sudo apt-get update' first?): $what_to_do" >&2
  exit 1
fi
case "$version" in
  "$SERIES".*) ;;
  *) echo "apt's prometheus candidate is $version, not $SERIES.x; using it anyway" >&2 ;;
esac
echo "unpacking promtool from Debian's prometheus $version into $dir" >&2
rm -rf "$dir"
mkdir -p "$dir/deb"
(cd "$dir/deb" && apt-get download "prometheus=$version" >&2) || {
  echo "apt-get download prometheus=$version failed: $what_to_do" >&2
  exit 1
}
dpkg-deb -x "$dir"/deb/prometheus_*.deb "$dir"
rm -rf "$dir/deb"
if ! "$bin" --version >/dev/null 2>&1; then
  echo "$bin from prometheus $version does not run: $what_to_do" >&2
  exit 1
fi
echo "$version" >"$dir/.installed"
echo "$bin"
