#!/usr/bin/env bash
# Prints the path of a kubectl whose built-in kustomize renders deploy/k8s (kustomize v5:
# components, `labels`). Debian's kubernetes-client (1.20, kustomize v2) is too old and no
# package registry we use carries kustomize, so this only finds one and says what to install.
# Used by `make test` (deps-test) and by tests/tests/it/deploy/kubernetes.rs.
set -euo pipefail
candidates=("${KUBECTL_BIN:-}" "$(command -v kubectl 2>/dev/null || true)" /usr/bin/kubectl /usr/local/bin/kubectl)
for candidate in "${candidates[@]}"; do
  [ -n "$candidate" ] && [ -x "$candidate" ] || continue
  kustomize=$("$candidate" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')
  if [ -n "$kustomize" ] && [ "$kustomize" -ge 5 ]; then echo "$candidate"; exit 0; fi
  echo "$candidate has kustomize v${kustomize:-unknown}; deploy/k8s needs v5 (kubectl 1.27 or newer)" >&2
done
cat >&2 <<'MSG'
kubectl 1.27 or newer (with kustomize v5) is needed to render deploy/k8s and was not found.
Install the Kubernetes project's kubectl package (its "Install kubectl on Linux" guide),
then run the command again, or point KUBECTL_BIN at it.
MSG
exit 1
