#!/usr/bin/env bash
# Tools that check deploy/kubernetes (scripts/check-kubernetes.sh): kustomize
# (pinned; built by `go install` from the Go module proxy, its dependencies
# pinned by its own go.sum) into .tools/go/bin, and kubernetes-validate
# (pinned with its dependencies in kubernetes-validate.txt) into
# .tools/k8s-venv. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KUSTOMIZE_VERSION="v5.8.1"   # v5.8.3 needs a newer Go than 1.26
KUBERNETES_VALIDATE_VERSION="1.37.0"

gobin="$root/.tools/go/bin"
kustomize="$gobin/kustomize"
command -v go >/dev/null || { echo "setup: go is required to build kustomize" >&2; exit 1; }
if ! { [ -x "$kustomize" ] && go version -m "$kustomize" | grep -q "kustomize/v5[[:space:]]*$KUSTOMIZE_VERSION"; }; then
  GOBIN="$gobin" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
fi
echo "kustomize $KUSTOMIZE_VERSION: $kustomize"

venv="$root/.tools/k8s-venv"
if ! { [ -x "$venv/bin/kubernetes-validate" ] && "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION"; }; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/setup/kubernetes-validate.txt"
fi
echo "kubernetes-validate $KUBERNETES_VALIDATE_VERSION: $venv/bin/kubernetes-validate"
