#!/usr/bin/env bash
# Prints the path of a `check-jsonschema` (PyPI; it ships the Compose Specification's JSON
# schema as its builtin `vendor.compose-spec`, so validation is offline), installing the pinned
# version into a venv under target/tools when it is not there yet. Exits non-zero with what to
# do. Used by `make test` (deps-test) and by tests/tests/it/deploy/observability.rs.
set -euo pipefail
exec "$(dirname "$0")/ensure-pip-tool.sh" check-jsonschema 0.39.0 check-jsonschema CHECK_JSONSCHEMA_BIN
