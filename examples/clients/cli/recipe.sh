#!/usr/bin/env bash
# The nats CLI (natscli) with a token that the sidecar keeps fresh in a file:
#   nats-oidc-callout token … --out "$NATS_TOKEN_FILE" --refresh &
# Every `nats` invocation is one connection made with the token the file holds
# at that moment, so a script of short invocations keeps working for as long
# as the sidecar runs. A long-running command (`nats sub`, `nats consumer sub`)
# keeps the token it started with: its reconnects work only until that token
# expires (see README, "Clients").
#
# The demo publishes MESSAGES numbered messages into the ORDERS stream, one
# every INTERVAL_MS, pulling from the durable consumer after each, then pulls
# until it has them all, and prints a JSON summary.
set -euo pipefail

declare -A seen=()
pull() {
  local n
  n="$(nats consumer next ORDERS "$CONSUMER" --raw 2>/dev/null)" || return 0
  [[ $n =~ ^[0-9]+$ ]] || return 0
  seen[$n]=$((${seen[$n]:-0} + 1))
}

# snippet:start
nats() {
  # The token goes in the environment, not the arguments (which `ps` shows).
  NATS_TOKEN="$(cat "$NATS_TOKEN_FILE")" command nats --server "$NATS_URL" \
    --connection-name "$NATS_NAME" --inbox-prefix "$NATS_INBOX_PREFIX" "$@"
}
for i in $(seq 1 "$MESSAGES"); do
  # A retried publish lands once: the stream drops a repeated message id.
  until nats pub --jetstream -H "Nats-Msg-Id:$SUBJECT-$i" "$SUBJECT" "$i" >/dev/null; do
    sleep 0.2
  done
  pull
  sleep "$(printf '%d.%03d' $((INTERVAL_MS / 1000)) $((INTERVAL_MS % 1000)))"
done
# snippet:end

for _ in $(seq 1 "$((MESSAGES * 3))"); do
  [ "${#seen[@]}" -ge "$MESSAGES" ] && break
  pull
done

missing=() duplicates=0
for i in $(seq 1 "$MESSAGES"); do
  if [ -z "${seen[$i]:-}" ]; then missing+=("$i"); else duplicates=$((duplicates + seen[$i] - 1)); fi
done
printf '{"published":%d,"received":%d,"duplicates":%d,"missing":[%s]}\n' \
  "$MESSAGES" "${#seen[@]}" "$duplicates" "$(IFS=,; echo "${missing[*]}")"
[ "${#missing[@]}" -eq 0 ]
