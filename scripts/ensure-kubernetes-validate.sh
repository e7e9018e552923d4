#!/usr/bin/env bash
# Prints the path of a `kubernetes-validate` (PyPI; it ships the Kubernetes JSON schemas, so
# validation is offline), installing the pinned version into a venv under target/tools when
# it is not there yet. Exits non-zero with what to do. Used by `make test` (deps-test) and by
# tests/tests/it/deploy/kubernetes.rs.
set -euo pipefail
exec "$(dirname "$0")/ensure-pip-tool.sh" kubernetes-validate 1.37.0 kubernetes-validate KUBERNETES_VALIDATE_BIN
