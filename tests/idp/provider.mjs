// A real, OpenID-certified IdP for the e2e tests: panva/oidc-provider on
// 127.0.0.1 only. Configured by environment (set by tests/support/idp.rs):
//   IDP_PORT (0: a free port, which the "ready <port>" line names),
//   IDP_KEYSTORE (private JWKS file; created with a new RSA key
//   when absent), IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_RESOURCE (audience
//   of the JWT access tokens that client gets by the client-credentials grant);
//   optionally IDP_SHORT_CLIENT_ID, IDP_SHORT_CLIENT_SECRET and
//   IDP_SHORT_TTL (seconds): a second client whose access tokens live only
//   that long, for clients that must outlive their tokens;
//   IDP_OPAQUE_RESOURCE (a second audience whose access tokens are opaque,
//   for introspection), IDP_EXTRA_CLIENTS (a JSON array of more client
//   registrations: introspecting clients, a CIBA client for user tokens).
// Every access token issued is logged as `issued <client_id> <exp>`.
// With IDP_BROWSER_CLIENT_ID and IDP_BROWSER_REDIRECT_URI it also serves a
// public client (no secret) for the authorization code flow with PKCE, and
// oidc-provider's development login and consent pages (any login name
// becomes the token's `sub`; any password is accepted).
// Introspection (/token/introspection), revocation (/token/revocation),
// userinfo (/me) and CIBA (poll mode, approved at once) are enabled;
// GET /test/stats counts the calls to the first three.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const need = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`missing ${name}`);
    process.exit(2);
  }
  return v;
};
const port = Number(need('IDP_PORT'));
const keystore = need('IDP_KEYSTORE');
const resource = need('IDP_RESOURCE');
const opaqueResource = process.env.IDP_OPAQUE_RESOURCE;
const extraClients = JSON.parse(process.env.IDP_EXTRA_CLIENTS ?? '[]');
const scopes = 'nats nats:admin';
const shortClient = process.env.IDP_SHORT_CLIENT_ID;
const shortTtl = Number(process.env.IDP_SHORT_TTL || 0);

if (!existsSync(keystore)) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
  writeFileSync(keystore, JSON.stringify({ keys: [jwk] }), { mode: 0o600 });
}

const client = (id, secret, scope) => ({
  client_id: id,
  client_secret: secret,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  scope,
});
const clients = [client(need('IDP_CLIENT_ID'), need('IDP_CLIENT_SECRET'), scopes)];
if (shortClient) {
  if (!(shortTtl > 0)) {
    console.error('IDP_SHORT_TTL must be a positive number of seconds');
    process.exit(2);
  }
  clients.push(client(shortClient, need('IDP_SHORT_CLIENT_SECRET'), 'nats'));
}
const browser = process.env.IDP_BROWSER_CLIENT_ID;
if (browser) {
  clients.push({
    client_id: browser,
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [need('IDP_BROWSER_REDIRECT_URI')],
    scope: scopes,
  });
}
clients.push(...extraClients);

const jwtResource = {
  scope: scopes,
  audience: resource,
  accessTokenTTL: 300,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg: 'RS256' } },
};
const opaque = opaqueResource && {
  scope: scopes,
  audience: opaqueResource,
  accessTokenTTL: 300,
  accessTokenFormat: 'opaque',
};
// Clients that get user tokens (CIBA) get them for the userinfo endpoint,
// which takes only tokens without an audience.
const userClients = new Set(extraClients
  .filter((c) => c.grant_types?.includes('urn:openid:params:grant-type:ciba'))
  .map((c) => c.client_id));

// The issuer URL names the port, so the provider is made once it is bound.
// CIBA's approval needs the provider itself, hence `let`.
let provider;
const makeProvider = (bound) => new Provider(`http://127.0.0.1:${bound}`, {
  clients,
  // PKCE (S256) for every authorization code; CORS for a public client's
  // token requests only from the origin of its redirect URIs.
  pkce: { required: () => true },
  clientBasedCORS: (ctx, origin, c) => c.clientAuthMethod === 'none'
    && c.redirectUris.some((uri) => new URL(uri).origin === origin),
  jwks: JSON.parse(readFileSync(keystore, 'utf8')),
  scopes: scopes.split(' '),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({
      sub: id, email: `${id}@example.test`, email_verified: true, groups: ['users', `team-${id}`],
    }),
  }),
  // Opaque client-credentials tokens introspect with the client as `sub`
  // (as their JWT twins carry it, and as Okta answers) and a group claim.
  extraTokenClaims: (ctx, token) => (token.resourceServer?.accessTokenFormat === 'opaque'
    && token.kind === 'ClientCredentials'
    ? { sub: token.clientId, groups: ['ci', 'deploy'] }
    : undefined),
  features: {
    devInteractions: { enabled: Boolean(browser) },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    ciba: {
      enabled: true,
      deliveryModes: ['poll'],
      processLoginHint: (ctx, loginHint) => loginHint,
      validateRequestContext: () => {},
      verifyUserCode: () => {},
      // The user approves at once: a grant for exactly the requested scope.
      triggerAuthenticationDevice: async (ctx, request, account, client) => {
        const grant = new provider.Grant({ accountId: account.accountId, clientId: client.clientId });
        grant.addOIDCScope(request.scope);
        await grant.save();
        await provider.backchannelResult(request, grant);
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client) => (userClients.has(client.clientId) ? undefined : resource),
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator, c) => {
        if (indicator === resource) {
          const short = shortClient && c?.clientId === shortClient;
          return short ? { ...jwtResource, accessTokenTTL: shortTtl } : jwtResource;
        }
        if (opaque && indicator === opaqueResource) return opaque;
        throw new Error(`unknown resource ${indicator}`);
      },
    },
  },
});

const stats = { introspection: 0, revocation: 0, userinfo: 0 };
const counted = { '/token/introspection': 'introspection', '/token/revocation': 'revocation', '/me': 'userinfo' };

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const bound = server.address().port;
  provider = makeProvider(bound);
  provider.on('grant.success', (ctx) => {
    const token = ctx.body?.access_token;
    if (typeof token !== 'string') return;
    const parts = token.split('.');
    const exp = parts.length === 3
      ? JSON.parse(Buffer.from(parts[1], 'base64url').toString()).exp
      : Math.floor(Date.now() / 1000) + Number(ctx.body.expires_in);
    console.log(`issued ${ctx.oidc.client.clientId} ${exp}`);
  });
  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/test/stats') {
      ctx.body = stats;
      return;
    }
    if (counted[ctx.path]) stats[counted[ctx.path]] += 1;
    await next();
  });
  server.on('request', provider.callback());
  console.log(`ready ${bound}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
