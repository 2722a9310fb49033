// Signs in with the OAuth 2.0 authorization code flow + PKCE (a public
// client: no secret in the page), then connects to NATS over WebSocket with
// the access token. nats-oidc-callout validates the token and answers with
// the permissions its policy grants; nats-server enforces them.
//
// Settings come from config.json next to this page:
//   issuer, client_id, scope, resource (optional, RFC 8707 audience),
//   nats_url (ws:// or wss://), subject and forbidden_subject ("{sub}" is
//   replaced by the token's subject), token_cookie (optional: the name set
//   in nats-server's `websocket { token_cookie }`; the page then also
//   connects with the token in that cookie instead of in CONNECT).
import { wsconnect } from '@nats-io/nats-core';

const WAIT_MS = 5000;
const logEl = document.getElementById('log');
const log = (line, cls) => {
  const span = document.createElement('span');
  span.textContent = `${line}\n`;
  if (cls) span.className = cls;
  logEl.append(span);
};

const b64url = (bytes) =>
  btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const randomString = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
const s256 = async (text) =>
  b64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))));

const getJson = async (url, init) => {
  const resp = await fetch(url, init);
  const body = await resp.json();
  if (!resp.ok) throw new Error(`${url}: ${resp.status} ${body.error ?? ''} ${body.error_description ?? ''}`);
  return body;
};

/** Resolves to `promise`'s value, or rejects after WAIT_MS. */
const within = (promise, what) =>
  Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${WAIT_MS} ms`)), WAIT_MS)),
  ]);

const redirectUri = () => `${location.origin}${location.pathname}`;

async function signIn(config, endpoints) {
  const state = randomString(16);
  const verifier = randomString(32);
  sessionStorage.setItem('pkce', JSON.stringify({ state, verifier }));
  const url = new URL(endpoints.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: config.client_id,
    redirect_uri: redirectUri(),
    scope: config.scope,
    state,
    code_challenge: await s256(verifier),
    code_challenge_method: 'S256',
    ...(config.resource ? { resource: config.resource } : {}),
  });
  location.assign(url);
}

/** Trades the code in the redirect for an access token. */
async function redeem(config, endpoints, params) {
  const saved = JSON.parse(sessionStorage.getItem('pkce') ?? 'null');
  sessionStorage.removeItem('pkce');
  history.replaceState(null, '', redirectUri());
  if (params.has('error')) throw new Error(`sign-in failed: ${params.get('error')} ${params.get('error_description') ?? ''}`);
  if (!saved || params.get('state') !== saved.state) throw new Error('sign-in failed: state mismatch');
  const body = await getJson(endpoints.token_endpoint, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code'),
      redirect_uri: redirectUri(),
      client_id: config.client_id,
      code_verifier: saved.verifier,
      ...(config.resource ? { resource: config.resource } : {}),
    }),
  });
  return body.access_token;
}

/** The token's `sub`, only to name this user's subjects; the service is what checks the token. */
const subjectOf = (token) => JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).sub;

/** Subscribes, publishes once and returns what came back. */
async function roundTrip(nc, subject, payload) {
  const sub = nc.subscribe(subject, { max: 1 });
  nc.publish(subject, payload);
  const next = (async () => {
    for await (const m of sub) return m.string();
    return null;
  })();
  const received = await within(next, `message on ${subject}`);
  if (received === null) throw new Error(`subscription to ${subject} closed without a message`);
  return received;
}

/** The server's answer to a publish outside the grant (a permission violation). */
async function refusedPublish(nc, subject) {
  const refused = (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'error' && s.error?.operation === 'publish' && s.error.subject === subject) return s.error.message;
    }
    return null;
  })();
  nc.publish(subject, 'should not arrive');
  await nc.flush();
  const message = await within(refused, `refusal of the publish to ${subject}`);
  if (message === null) throw new Error(`connection closed before the publish to ${subject} was refused`);
  return message;
}

/** The server's answer to a subscription outside the grant: it closes it with the error. */
async function refusedSubscribe(nc, subject) {
  const sub = nc.subscribe(subject);
  await nc.flush();
  const closed = await within(sub.closed, `refusal of the subscription to ${subject}`);
  if (!(closed instanceof Error)) throw new Error(`subscription to ${subject} closed without an error`);
  return closed.message;
}

async function useNats(config, token) {
  const sub = subjectOf(token);
  const subject = config.subject.replaceAll('{sub}', sub);
  const forbidden = config.forbidden_subject.replaceAll('{sub}', sub);
  const result = { sub };

  // Replies come to this user's own inbox prefix, the only one its grant allows.
  const nc = await wsconnect({ servers: config.nats_url, token, name: 'browser-example', inboxPrefix: `_INBOX.${sub}` });
  log(`connected to ${nc.getServer()} as ${sub}`);
  result.received = await roundTrip(nc, subject, `hello from ${sub}`);
  log(`${subject}: published and received "${result.received}"`);
  result.publish_refused = await refusedPublish(nc, forbidden);
  log(`publish to ${forbidden}: ${result.publish_refused}`, 'denied');
  result.subscribe_refused = await refusedSubscribe(nc, forbidden);
  log(`subscribe to ${forbidden}: ${result.subscribe_refused}`, 'denied');
  await nc.close();

  if (config.token_cookie) result.cookie = await useCookie(config, token, subject);
  return result;
}

/**
 * nats-server's `token_cookie`: the server reads the token from this cookie
 * on the WebSocket upgrade when CONNECT carries none. Cookies ignore ports,
 * so one set by this page goes to a NATS WebSocket on the same host. A
 * backend would normally set it HttpOnly; the page sets it here only to
 * show the path.
 */
async function useCookie(config, token, subject) {
  const name = config.token_cookie;
  const out = {};
  try {
    await (await wsconnect({ servers: config.nats_url, name: 'browser-example-no-token' })).close();
    out.without_cookie = 'connected';
  } catch (e) {
    out.without_cookie = e.message;
  }
  log(`connect with neither token nor cookie: ${out.without_cookie}`, 'denied');
  document.cookie = `${name}=${token}; Path=/; SameSite=Strict`;
  let nc;
  try {
    nc = await wsconnect({ servers: config.nats_url, name: 'browser-example-cookie', inboxPrefix: `_INBOX.${subjectOf(token)}` });
  } finally {
    // Read once, at the WebSocket upgrade.
    document.cookie = `${name}=; Path=/; Max-Age=0; SameSite=Strict`;
  }
  out.received = await roundTrip(nc, subject, 'hello via the cookie');
  log(`with the token in cookie ${name}: published and received "${out.received}"`);
  await nc.close();
  return out;
}

function finish(result) {
  const el = document.getElementById('result');
  el.value = JSON.stringify(result);
  el.dataset.state = result.error ? 'error' : 'done';
}

async function main() {
  const config = await getJson('config.json');
  const endpoints = await getJson(`${config.issuer}/.well-known/openid-configuration`);
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) {
    const button = document.getElementById('sign-in');
    button.hidden = false;
    button.addEventListener('click', () => signIn(config, endpoints).catch(fail));
    return;
  }
  const token = await redeem(config, endpoints, params);
  log('signed in');
  finish(await useNats(config, token));
}

function fail(e) {
  log(`error: ${e.message}`, 'denied');
  finish({ error: e.message });
}

main().catch(fail);
