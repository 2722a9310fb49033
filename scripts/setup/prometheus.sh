#!/usr/bin/env bash
# Prometheus and promtool (Debian bookworm's package, pinned) for the alert
# rule tests (promtool test rules) and tests/peers/prometheus.rs (a real
# Prometheus scraping the service). Installs as root, non-interactively,
# only when the pinned version is missing; idempotent.
set -euo pipefail
# Debian's archive keeps only the newest build of a package; when this one
# is gone, the newest is installed with a warning: bump the pin.
PROMETHEUS_DEB_VERSION="2.42.0+ds-5+deb12u1"

have="$(dpkg-query -W -f='${Version}' prometheus 2>/dev/null || true)"
if [ "$have" != "$PROMETHEUS_DEB_VERSION" ] || ! command -v promtool >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "setup: install Debian's prometheus $PROMETHEUS_DEB_VERSION as root (apt-get install prometheus=$PROMETHEUS_DEB_VERSION)" >&2
    exit 1
  fi
  apt-get update -qq
  if apt-cache madison prometheus | grep -F "| $PROMETHEUS_DEB_VERSION |" >/dev/null; then
    pkg="prometheus=$PROMETHEUS_DEB_VERSION"
  else
    echo "WARNING: prometheus $PROMETHEUS_DEB_VERSION is no longer in the archive; using the newest" >&2
    pkg="prometheus"
  fi
  # Only the binaries are wanted: no node exporter (a Recommends). The
  # tests start their own Prometheus on loopback; on a host running
  # systemd the package also starts its own service on :9090, which the
  # tests never use (`systemctl disable --now prometheus` stops it).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades "$pkg" >/dev/null
fi
command -v prometheus >/dev/null && command -v promtool >/dev/null ||
  { echo "setup: prometheus/promtool did not install" >&2; exit 1; }
echo "prometheus $(dpkg-query -W -f='${Version}' prometheus): $(command -v prometheus), $(command -v promtool)"
