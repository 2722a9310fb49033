#!/usr/bin/env bash
# Installs what the client recipes in examples/clients/ need, pinned, into
# git-ignored folders: the Go recipe's modules (go.sum) and natscli, the
# nats CLI (`go install …@v0.5.0` into .tools/bin); the JavaScript recipe's
# packages (package-lock.json); a Python venv with requirements.txt
# (.tools/clients-venv); the Java recipe's Maven artifacts (.tools/m2).
# Idempotent: each part is skipped when what it installed matches its pins.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ex="$root/examples/clients"
tools="$root/.tools"
stamps="$tools/clients-stamps"
mkdir -p "$stamps"

need() { command -v "$1" >/dev/null || { echo "setup/clients: $1 is required ($2)" >&2; exit 1; }; }
# Runs "$@" unless PATH exists and the stamp NAME records the hash of FILES.
once() {
  local name="$1" files="$2" path="$3"; shift 3
  local want; want="$(cd "$ex" && cat $files | sha256sum | cut -d' ' -f1)"
  if [ ! -e "$path" ] || [ "$(cat "$stamps/$name" 2>/dev/null)" != "$want" ]; then
    "$@"
    echo "$want" > "$stamps/$name"
  fi
}

NATSCLI_VERSION="v0.5.0"
need go "the Go recipe and natscli"
export GOFLAGS="-modcacherw"
once go "go/go.mod go/go.sum" "$(go env GOMODCACHE)/github.com/nats-io/nats.go@v1.55.0" bash -c "cd '$ex/go' && go mod download && go mod verify >/dev/null"
if ! "$tools/bin/nats" --version 2>/dev/null | grep -qx "$NATSCLI_VERSION"; then
  GOBIN="$tools/bin" go install "github.com/nats-io/natscli/nats@$NATSCLI_VERSION"
fi
echo "natscli $NATSCLI_VERSION: $tools/bin/nats"

need npm "the JavaScript recipe"
once js "js/package.json js/package-lock.json" "$ex/js/node_modules/@nats-io/transport-node" \
  bash -c "cd '$ex/js' && npm ci --no-audit --no-fund --loglevel=error"
echo "nats.js: $ex/js/node_modules"

need python3 "the Python recipe"
venv="$tools/clients-venv"
once python "python/requirements.txt" "$venv/bin/python" bash -c \
  "python3 -m venv '$venv' && '$venv/bin/pip' install --quiet --disable-pip-version-check -r '$ex/python/requirements.txt'"
echo "nats-py: $venv"

need mvn "the Java recipe"
once java "java/pom.xml" "$tools/m2/io/nats/jnats" \
  mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$tools/m2" -f "$ex/java/pom.xml" dependency:go-offline
echo "jnats: $tools/m2"
