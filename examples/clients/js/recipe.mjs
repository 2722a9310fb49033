// A nats.js (Node) client that outlives its tokens. It gets access tokens by
// the OAuth client-credentials grant itself and renews them in the background
// ahead of their expiry; the authenticator hands the current one to every
// connect and reconnect.
//
// The demo publishes MESSAGES numbered messages into the ORDERS stream, one
// every INTERVAL_MS, while a durable pull consumer acks them; it stops once it
// has them all and has reconnected MIN_RECONNECTS times, and prints a JSON
// summary.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, tokenAuthenticator } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

// Client credentials: discovery finds the token endpoint; each token is
// renewed at 70-80% of its lifetime, retried with backoff when the IdP fails.
async function clientCredentials({ issuer, clientId, clientSecret, scope, audience }) {
  const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  if (discovery.issuer !== issuer) throw new Error(`discovery names issuer ${discovery.issuer}`);
  const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`);
  let current;
  let failures = 0;
  const renew = async () => {
    try {
      const res = await fetch(discovery.token_endpoint, {
        method: 'POST',
        headers: { authorization: `Basic ${basic.toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource: audience }),
      });
      if (!res.ok) throw new Error(`token endpoint answered HTTP ${res.status}`);
      const { access_token: token, expires_in: lifetime } = await res.json();
      current = token;
      failures = 0;
      setTimeout(renew, lifetime * (700 + 100 * Math.random())).unref();
    } catch (e) {
      failures += 1;
      console.error(`token renewal failed (${e.message}); retrying`);
      setTimeout(renew, Math.min(2 ** (failures - 1), 60) * 1000).unref();
    }
  };
  await renew();
  if (!current) throw new Error('no token from the IdP');
  return () => current;
}

let reconnects = 0;
// snippet:start
const token = await clientCredentials({
  issuer: env('OIDC_ISSUER'),
  clientId: env('OIDC_CLIENT_ID'),
  clientSecret: readFileSync(env('OIDC_CLIENT_SECRET_FILE'), 'utf8').trim(),
  scope: env('OIDC_SCOPE'),
  audience: env('OIDC_AUDIENCE'),
});
const nc = await connect({
  servers: env('NATS_URL'),
  name: env('NATS_NAME'),
  // Called at every connect and reconnect: always the current token.
  authenticator: tokenAuthenticator(token),
  // The policy grants `sub _INBOX.{claim.sub}.>`: replies come to this identity only.
  inboxPrefix: env('NATS_INBOX_PREFIX'),
  maxReconnectAttempts: -1,
});
(async () => {
  for await (const s of nc.status()) if (s.type === 'reconnect') reconnects += 1;
})();
// snippet:end

const js = jetstream(nc);
const total = Number(env('MESSAGES'));
const subject = env('SUBJECT');
const deliveries = new Map();
const acked = new Set();
const consumer = await js.consumers.get('ORDERS', env('CONSUMER'));
const messages = await consumer.consume();
const consuming = (async () => {
  for await (const m of messages) {
    const n = Number(m.string());
    deliveries.set(n, (deliveries.get(n) ?? 0) + 1);
    // A confirmed ack: an unconfirmed one may be lost in a reconnect.
    if (await m.ackAck().catch(() => false)) acked.add(n);
    else console.error(`ack ${n} unconfirmed (it will be redelivered)`);
  }
})();

for (let i = 1; i <= total; i++) {
  // The message id makes a retried publish land once.
  for (;;) {
    try {
      await js.publish(subject, String(i), { msgID: `${subject}-${i}` });
      break;
    } catch (e) {
      console.error(`publish ${i}: ${e.message} (retrying)`);
      await sleep(200);
    }
  }
  await sleep(Number(env('INTERVAL_MS')));
}

const deadline = Date.now() + 120_000;
while (Date.now() < deadline && (acked.size < total || reconnects < Number(env('MIN_RECONNECTS')))) {
  await sleep(100);
}
messages.stop();
await consuming;

const missing = [];
let duplicates = 0;
for (let i = 1; i <= total; i++) {
  if (!acked.has(i)) missing.push(i);
  duplicates += Math.max((deliveries.get(i) ?? 0) - 1, 0);
}
console.log(JSON.stringify({ published: total, received: acked.size, duplicates, missing, reconnects }));
await nc.flush();
await nc.close();
process.exit(missing.length ? 1 : 0);
