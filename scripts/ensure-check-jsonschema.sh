#!/usr/bin/env bash
# Prints the path of a `check-jsonschema` (PyPI; it ships the Compose Specification's JSON
# schema as its builtin `vendor.compose-spec`, so validation is offline), installing the pinned
# version into a venv under target/tools when it is not there yet. Exits non-zero with what to
# do. Used by `make test` (deps-test) and by tests/tests/it/deploy/observability.rs.
set -euo pipefail
VERSION=0.39.0
if [ -n "${CHECK_JSONSCHEMA_BIN:-}" ] && [ -x "$CHECK_JSONSCHEMA_BIN" ]; then echo "$CHECK_JSONSCHEMA_BIN"; exit 0; fi
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${CARGO_TARGET_DIR:-$root/target}/tools/check-jsonschema-$VERSION"
bin="$venv/bin/check-jsonschema"
# `.installed` is written last, so an interrupted install is started again.
if [ -x "$bin" ] && [ -f "$venv/.installed" ]; then echo "$bin"; exit 0; fi
python=$(command -v python3 || true)
if [ -z "$python" ]; then
  echo "check-jsonschema needs python3 (3.9+) with venv and pip; install it, or point CHECK_JSONSCHEMA_BIN at a check-jsonschema $VERSION" >&2
  exit 1
fi
echo "installing check-jsonschema $VERSION into $venv" >&2
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "check-jsonschema==$VERSION" >&2
touch "$venv/.installed"
echo "$bin"
