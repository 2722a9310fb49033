#!/usr/bin/env bash
# Creates the keys docker-compose.yml needs, in the git-ignored deploy/keys/,
# and deploy/.env with their public halves for nats-server. Never overwrites.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --quiet --bin nats-oidc-callout
bin="$root/target/debug/nats-oidc-callout"
mkdir -p deploy/keys
[ -f deploy/keys/issuer.nk ] || "$bin" keygen account --out deploy/keys/issuer.nk >/dev/null
[ -f deploy/keys/xkey.nk ] || "$bin" keygen xkey --out deploy/keys/xkey.nk >/dev/null
[ -f deploy/keys/auth.password ] || (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > deploy/keys/auth.password)
issuer="$("$bin" server-config --config deploy/callout.toml | awk '/issuer:/ {print $2}')"
xkey="$("$bin" server-config --config deploy/callout.toml | awk '/xkey:/ {print $2}')"
(umask 077; printf 'CALLOUT_ISSUER=%s\nCALLOUT_XKEY=%s\nAUTH_PASSWORD=%s\nNATS_LISTEN=0.0.0.0:4222\n' \
  "$issuer" "$xkey" "$(cat deploy/keys/auth.password)" > deploy/.env)
echo "keys in deploy/keys, environment in deploy/.env; now: docker-compose --env-file deploy/.env up"
