#!/usr/bin/env bash
# Keycloak for the e2e tier (tests/peers/keycloak.rs): the server distribution
# org.keycloak:keycloak-quarkus-dist (pinned) from Maven Central, fetched by
# Maven (strict checksums) into .tools/m2, checked against Maven Central's
# .sha1 and the pinned SHA-1, unpacked into .tools/keycloak-<version>.
#
# Then it starts Keycloak once in dev mode (start-dev, embedded H2) with the
# build options the harness uses, so that the dev-mode build (the Quarkus
# augmentation: minutes on 2 cores) and a database holding the master realm
# exist before any test runs. Tests copy that database into a temp dir, so
# a test start skips the schema creation too. The bootstrap admin's password
# is made here at random and kept, mode 0600, beside the database (git-ignored).
# Idempotent: does nothing when the stamp matches.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KEYCLOAK_VERSION="26.7.3"
KEYCLOAK_SHA1="1e21a7f572581692aacb379dbba8413f99b67208"
DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
# Build options: must equal KEYCLOAK_BUILD_OPTIONS in tests/support/keycloak.rs,
# else every test start rebuilds (the harness refuses that loudly).
BUILD_OPTIONS=(--health-enabled=true)
WARMUP_LIMIT_SECONDS=900

home="$root/.tools/keycloak-$KEYCLOAK_VERSION"
template="$root/.tools/keycloak-$KEYCLOAK_VERSION-template"
stamp="$template/stamp"
want_stamp="$KEYCLOAK_VERSION $KEYCLOAK_SHA1 ${BUILD_OPTIONS[*]}"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ] && [ -x "$home/bin/kc.sh" ]; then
  echo "keycloak $KEYCLOAK_VERSION: $home"
  exit 0
fi
command -v java >/dev/null || { echo "setup: java (17 or newer) is required for Keycloak" >&2; exit 1; }
command -v mvn >/dev/null || { echo "setup: mvn is required to fetch Keycloak from Maven Central" >&2; exit 1; }

m2="$root/.tools/m2"
art="$m2/org/keycloak/keycloak-quarkus-dist/$KEYCLOAK_VERSION/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
if [ ! -f "$art" ]; then
  (cd "$root" && mvn -B -q -C -Dmaven.repo.local="$m2" "$DEPENDENCY_PLUGIN:get" \
    -Dartifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" -Dtransitive=false)
fi
central_sha1="$(cut -c1-40 "$art.sha1")"
have_sha1="$(sha1sum "$art" | cut -d' ' -f1)"
if [ "$have_sha1" != "$central_sha1" ] || [ "$have_sha1" != "$KEYCLOAK_SHA1" ]; then
  echo "setup: $art: SHA-1 $have_sha1, Maven Central says $central_sha1, pinned $KEYCLOAK_SHA1" >&2
  rm -f "$art"
  exit 1
fi

rm -rf "$home" "$template"
unpack="$(mktemp -d "$root/.tools/keycloak-unpack.XXXXXX")"
unzip -q "$art" -d "$unpack"
mv "$unpack/keycloak-$KEYCLOAK_VERSION" "$home"
rmdir "$unpack"

# Warm-up run, laid out as the harness does it: a home of its own whose
# lib/, conf/, themes/ and providers/ are the installation's.
run="$(mktemp -d)"
mkdir -p "$run/bin"
cp "$home/bin/kc.sh" "$run/bin/"
for d in lib conf themes providers; do ln -s "$home/$d" "$run/$d"; done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_port="$(free_port)"
mgmt_port="$(free_port)"
password="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD="$password" \
  "$run/bin/kc.sh" start-dev "${BUILD_OPTIONS[@]}" --http-host=127.0.0.1 \
  --http-port="$http_port" --http-management-port="$mgmt_port" >"$run/keycloak.log" 2>&1 &
pid=$!
stop() {
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  kill -KILL "$pid" 2>/dev/null || true
}
ready=no
for _ in $(seq 1 "$WARMUP_LIMIT_SECONDS"); do
  if python3 - "$mgmt_port" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health/ready", timeout=2)
except Exception:
    sys.exit(1)
PY
  then ready=yes; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 1
done
stop
wait "$pid" 2>/dev/null || true
if [ "$ready" != yes ]; then
  echo "setup: Keycloak did not become ready within ${WARMUP_LIMIT_SECONDS}s:" >&2
  tail -n 40 "$run/keycloak.log" >&2
  rm -rf "$run"
  exit 1
fi
mkdir -p "$template"
cp -a "$run/data/h2" "$template/h2"
(umask 077; printf '%s\n' "$password" > "$template/admin.password")
grep -E "started in|augmentation completed" "$run/keycloak.log" || true
rm -rf "$run"
printf '%s\n' "$want_stamp" > "$stamp"
echo "keycloak $KEYCLOAK_VERSION: $home"
