#!/usr/bin/env bash
# Prometheus and promtool (Debian bookworm's package, pinned) for the alert
# rule tests (promtool test rules) and tests/prometheus.rs (a real
# Prometheus scraping the service). Installs as root, non-interactively,
# only when the pinned version is missing; idempotent.
set -euo pipefail
PROMETHEUS_DEB_VERSION="2.42.0+ds-5+deb12u1"

installed() {
  [ "$(dpkg-query -W -f='${Version}' prometheus 2>/dev/null || true)" = "$PROMETHEUS_DEB_VERSION" ] &&
    command -v prometheus >/dev/null && command -v promtool >/dev/null
}

if ! installed; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: install Debian's prometheus $PROMETHEUS_DEB_VERSION as root (apt-get install prometheus=$PROMETHEUS_DEB_VERSION)" >&2
    exit 1
  fi
  apt-get update -qq
  # Only the binaries are wanted: no node exporter (a Recommends). The
  # tests start their own Prometheus on loopback; on a host running
  # systemd the package also starts its own service on :9090, which the
  # tests never use (`systemctl disable --now prometheus` stops it).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades \
    "prometheus=$PROMETHEUS_DEB_VERSION" >/dev/null
  installed || { echo "setup: prometheus $PROMETHEUS_DEB_VERSION did not install" >&2; exit 1; }
fi
echo "prometheus $PROMETHEUS_DEB_VERSION: $(command -v prometheus), $(command -v promtool)"
