#!/usr/bin/env bash
# The certificate tests compare fingerprints, subjects and chain checks with
# the openssl command line (Debian's package; bookworm ships 3.0.x).
# Idempotent.
set -euo pipefail
if ! command -v openssl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
  else
    echo "setup: install openssl (Debian package openssl) for the certificate tests" >&2
    exit 1
  fi
fi
echo "openssl: $(openssl version)"
