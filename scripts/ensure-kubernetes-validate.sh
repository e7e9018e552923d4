#!/usr/bin/env bash
# Prints the path of a `kubernetes-validate` (PyPI; it ships the Kubernetes JSON schemas, so
# validation is offline), installing the pinned version into a venv under target/tools when
# it is not there yet. Exits non-zero with what to do. Used by `make test` (deps-test) and by
# tests/tests/it/deploy/kubernetes.rs.
set -euo pipefail
VERSION=1.37.0
if [ -n "${KUBERNETES_VALIDATE_BIN:-}" ] && [ -x "$KUBERNETES_VALIDATE_BIN" ]; then echo "$KUBERNETES_VALIDATE_BIN"; exit 0; fi
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${CARGO_TARGET_DIR:-$root/target}/tools/kubernetes-validate-$VERSION"
bin="$venv/bin/kubernetes-validate"
# `.installed` is written last, so an interrupted install is started again.
if [ -x "$bin" ] && [ -f "$venv/.installed" ]; then echo "$bin"; exit 0; fi
python=$(command -v python3 || true)
if [ -z "$python" ]; then
  echo "kubernetes-validate needs python3 (3.9+) with venv and pip; install it, or point KUBERNETES_VALIDATE_BIN at a kubernetes-validate $VERSION" >&2
  exit 1
fi
echo "installing kubernetes-validate $VERSION into $venv" >&2
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$VERSION" >&2
touch "$venv/.installed"
echo "$bin"
