"""An MQTT device on NATS: connects to nats-server's MQTT listener with an
OAuth access token as the MQTT password (nats-oidc-callout validates it and
grants the policy's permissions), subscribes, publishes once every
subscription is answered, and waits for messages.

Each event is printed as one JSON line, for people and scripts alike:
  {"event": "connack", "code": 0, "reason": "Success"}
  {"event": "suback", "topic": "devices/d1/commands/#", "code": 1, "granted": true}
  {"event": "published", "topic": "devices/d1/telemetry/temp", "done": true}
  {"event": "message", "topic": "devices/d1/commands/reboot", "payload": "now", "qos": 1}
A refused subscription is code 128 (SUBACK 0x80); a refused token is a
CONNACK failure (code 135, "Not authorized"). Exit status 0 when connected and
all --expect messages arrived, else 1.

  device.py --port 1883 --client-id d1 --token-file token.txt \\
      --sub 'devices/d1/commands/#' --pub 'devices/d1/telemetry/temp=21.5' --qos 1 --expect 1
"""

import argparse
import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


_out = threading.Lock()


def emit(**event):
    # Callbacks run on paho's thread and on the publisher's: one line each.
    with _out:
        print(json.dumps(event), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--client-id", required=True)
    p.add_argument("--token-file", required=True, help="file with the access token ('-': stdin)")
    p.add_argument("--username", default="token", help="any value: the token is what counts")
    p.add_argument("--sub", action="append", default=[], metavar="TOPIC")
    p.add_argument("--pub", action="append", default=[], metavar="TOPIC=PAYLOAD")
    p.add_argument("--qos", type=int, choices=[0, 1, 2], default=1)
    p.add_argument("--expect", type=int, default=0, help="messages to wait for")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait in all")
    args = p.parse_args()

    src = sys.stdin if args.token_file == "-" else open(args.token_file, encoding="utf-8")
    with src:
        token = src.read().strip()

    done = threading.Event()
    state = {"connected": False, "pending": {}, "published": False, "received": 0}
    lock = threading.Lock()

    def check_done():
        with lock:
            if state["published"] and state["received"] >= args.expect:
                done.set()

    def publish_all(client):
        for item in args.pub:
            topic, _, payload = item.partition("=")
            info = client.publish(topic, payload, qos=args.qos)
            info.wait_for_publish(args.timeout)
            # QoS 0: sent; QoS 1/2: acknowledged by the server.
            emit(event="published", topic=topic, done=info.is_published())
        with lock:
            state["published"] = True
        check_done()

    def on_connect(client, _userdata, _flags, reason, _props):
        emit(event="connack", code=reason.value, reason=str(reason))
        if reason.is_failure:
            done.set()
            return
        state["connected"] = True
        if not args.sub:
            threading.Thread(target=publish_all, args=(client,), daemon=True).start()
        for topic in args.sub:
            _, mid = client.subscribe(topic, qos=args.qos)
            with lock:
                state["pending"][mid] = topic

    def on_subscribe(client, _userdata, mid, reasons, _props):
        with lock:
            topic = state["pending"].pop(mid, None)
            last = not state["pending"]
        for r in reasons:
            emit(event="suback", topic=topic, code=r.value, granted=not r.is_failure)
        if last:
            # Publishing from the network thread would block it: hand over.
            threading.Thread(target=publish_all, args=(client,), daemon=True).start()

    def on_message(_client, _userdata, msg):
        emit(event="message", topic=msg.topic, payload=msg.payload.decode(errors="replace"), qos=msg.qos)
        with lock:
            state["received"] += 1
        check_done()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id)
    client.username_pw_set(args.username, token)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    finished = done.wait(args.timeout)
    client.disconnect()
    client.loop_stop()
    ok = finished and state["connected"] and state["received"] >= args.expect
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
