// A real, OpenID-certified IdP for the e2e tests: panva/oidc-provider on
// 127.0.0.1 only. Configured by environment (set by tests/common/mod.rs):
//   IDP_PORT, IDP_KEYSTORE (private JWKS file; created with a new RSA key
//   when absent), IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_RESOURCE (audience
//   of the JWT access tokens that client gets by the client-credentials grant);
//   optionally IDP_OPAQUE_RESOURCE (a second audience whose access tokens
//   are opaque, for introspection), IDP_EXTRA_CLIENTS (a JSON array of more
//   client registrations: introspecting clients, a CIBA client for user tokens).
// Introspection (/token/introspection), revocation (/token/revocation),
// userinfo (/me) and CIBA (poll mode, approved at once) are enabled;
// GET /test/stats counts the calls to the first three.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
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

if (!existsSync(keystore)) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
  writeFileSync(keystore, JSON.stringify({ keys: [jwk] }), { mode: 0o600 });
}

const resourceServers = {
  [resource]: {
    scope: scopes,
    audience: resource,
    accessTokenTTL: 300,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  },
};
if (opaqueResource) {
  resourceServers[opaqueResource] = {
    scope: scopes,
    audience: opaqueResource,
    accessTokenTTL: 300,
    accessTokenFormat: 'opaque',
  };
}
// Clients that get user tokens (CIBA) get them for the userinfo endpoint,
// which takes only tokens without an audience.
const userClients = new Set(extraClients
  .filter((c) => c.grant_types?.includes('urn:openid:params:grant-type:ciba'))
  .map((c) => c.client_id));

let provider;
provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: need('IDP_CLIENT_ID'),
    client_secret: need('IDP_CLIENT_SECRET'),
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: scopes,
  }, ...extraClients],
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
    devInteractions: { enabled: false },
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
      getResourceServerInfo: (ctx, indicator) => {
        const info = resourceServers[indicator];
        if (!info) throw new Error(`unknown resource ${indicator}`);
        return info;
      },
    },
  },
});

const stats = { introspection: 0, revocation: 0, userinfo: 0 };
const counted = { '/token/introspection': 'introspection', '/token/revocation': 'revocation', '/me': 'userinfo' };
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/test/stats') {
    ctx.body = stats;
    return;
  }
  if (counted[ctx.path]) stats[counted[ctx.path]] += 1;
  await next();
});

const server = provider.listen(port, '127.0.0.1', () => console.log(`ready ${port}`));
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
