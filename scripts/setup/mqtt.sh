#!/usr/bin/env bash
# The MQTT recipe's client: PyPI paho-mqtt (pinned) in its own venv,
# .tools/mqtt-venv, used by examples/mqtt/ and tests/mqtt.rs. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PAHO_MQTT_VERSION="2.2.0"
venv="$root/.tools/mqtt-venv"

have="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("paho-mqtt"))' 2>/dev/null || true)"
if [ "$have" != "$PAHO_MQTT_VERSION" ]; then
  command -v python3 >/dev/null || { echo "setup: python3 is required" >&2; exit 1; }
  mkdir -p "$root/.tools"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "paho-mqtt==$PAHO_MQTT_VERSION"
fi
echo "paho-mqtt $PAHO_MQTT_VERSION: $venv/bin/python"
