#!/usr/bin/env bash
# The browser tier: Debian's chromium (run headless, driven over CDP), the
# example page's npm packages (nats.js and esbuild, pinned by
# examples/browser/package-lock.json) and the test driver's playwright-core
# (pinned by tests/browser/package-lock.json). Playwright's own browser
# download is never used. Idempotent; installing chromium needs root.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Debian's security archive keeps only the newest build of a package; when
# this one is gone, the newest is installed with a warning: bump the pin.
CHROMIUM_VERSION="156.0.8078.114-1~deb12u1"

have="$(dpkg-query -W -f='${Version}' chromium 2>/dev/null || true)"
if [ "$have" != "$CHROMIUM_VERSION" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: install Debian's chromium $CHROMIUM_VERSION as root (apt-get install chromium)" >&2
    exit 1
  fi
  apt-get update -qq
  if apt-cache madison chromium | grep -F "| $CHROMIUM_VERSION |" >/dev/null; then
    pkgs="chromium=$CHROMIUM_VERSION chromium-common=$CHROMIUM_VERSION"
  else
    echo "WARNING: chromium $CHROMIUM_VERSION is no longer in the archive; using the newest" >&2
    pkgs="chromium chromium-common"
  fi
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi
[ -x /usr/bin/chromium ] || { echo "setup: /usr/bin/chromium is missing" >&2; exit 1; }
echo "chromium $(dpkg-query -W -f='${Version}' chromium): /usr/bin/chromium"

command -v npm >/dev/null || { echo "setup: node and npm are required for the browser tier" >&2; exit 1; }
for dir in examples/browser tests/browser; do
  # npm ci again only when the lockfile changed since the last install.
  lock="$(sha256sum "$root/$dir/package-lock.json" | cut -d' ' -f1)"
  stamp="$root/$dir/node_modules/.installed-lock-sha256"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$lock" ]; then
    (cd "$root/$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock" > "$stamp"
  fi
  echo "npm packages of $dir: $root/$dir/node_modules"
done
