"""A nats-py client that outlives its tokens.

The token comes from a file that something else keeps fresh (the
`nats-oidc-callout token --out FILE --refresh` sidecar, a Kubernetes projected
token, a Vault agent sink); nats-py calls the `token` callable at every
connect and reconnect, so each one reads the file again.

The demo publishes MESSAGES numbered messages into the ORDERS stream, one
every INTERVAL_MS, while a durable pull consumer acks them; it stops once it
has them all and has reconnected MIN_RECONNECTS times, and prints a JSON
summary.
"""

import asyncio
import collections
import json
import os
import sys
from pathlib import Path

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout


# snippet:start
class ExpiryTolerantClient(Client):
    """nats-py 2.16.0 closes the connection for good when the server says
    'User Authentication Expired' (nats.py#1019, open); the other clients
    reconnect. Until that is fixed, treat it as a lost connection."""

    async def _process_err(self, err_msg):
        if "authentication expired" in err_msg.lower():
            await self._process_op_err(NatsError(f"nats: {err_msg}"))
        else:
            await super()._process_err(err_msg)
# snippet:end


async def main():
    token_file = Path(os.environ["NATS_TOKEN_FILE"])
    reconnects = 0

    async def on_reconnect():
        nonlocal reconnects
        reconnects += 1

    # snippet:start
    nc = ExpiryTolerantClient()
    await nc.connect(
        os.environ["NATS_URL"],
        name=os.environ["NATS_NAME"],
        # Called at every connect and reconnect: the file always holds a valid token.
        token=lambda: token_file.read_text().strip(),
        # The policy grants `sub _INBOX.{claim.sub}.>`: replies come to this identity only.
        inbox_prefix=os.environ["NATS_INBOX_PREFIX"],
        max_reconnect_attempts=-1,
        reconnected_cb=on_reconnect,
    )
    # snippet:end

    js = nc.jetstream()
    total = int(os.environ["MESSAGES"])
    subject = os.environ["SUBJECT"]
    deliveries = collections.Counter()
    acked = set()
    pull = await js.pull_subscribe_bind(os.environ["CONSUMER"], stream="ORDERS")

    async def consume():
        while len(acked) < total:
            try:
                msgs = await pull.fetch(10, timeout=1)
            except NatsTimeout:
                continue
            except Exception as e:  # disconnected mid-fetch: pull again
                print(f"fetch: {e!r}", file=sys.stderr)
                await asyncio.sleep(0.2)
                continue
            for m in msgs:
                n = int(m.data)
                deliveries[n] += 1
                try:
                    # A confirmed ack: an unconfirmed one may be lost in a reconnect.
                    await m.ack_sync()
                    acked.add(n)
                except Exception as e:
                    print(f"ack {n}: {e!r} (it will be redelivered)", file=sys.stderr)

    async def publish():
        for i in range(1, total + 1):
            # The message id makes a retried publish land once.
            headers = {"Nats-Msg-Id": f"{subject}-{i}"}
            while True:
                try:
                    await js.publish(subject, str(i).encode(), headers=headers)
                    break
                except Exception as e:
                    print(f"publish {i}: {e!r} (retrying)", file=sys.stderr)
                    await asyncio.sleep(0.2)
            await asyncio.sleep(int(os.environ["INTERVAL_MS"]) / 1000)

    async def run():
        await asyncio.gather(publish(), consume())
        while reconnects < int(os.environ["MIN_RECONNECTS"]):
            await asyncio.sleep(0.1)

    try:
        await asyncio.wait_for(run(), timeout=120)
    except asyncio.TimeoutError:
        pass
    missing = [i for i in range(1, total + 1) if i not in acked]
    print(json.dumps({
        "published": total,
        "received": len(acked),
        "duplicates": sum(n - 1 for n in deliveries.values()),
        "missing": missing,
        "reconnects": reconnects,
    }))
    await nc.flush()
    await nc.close()
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    asyncio.run(main())
