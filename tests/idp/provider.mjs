// A real, OpenID-certified IdP for the e2e tests: panva/oidc-provider on
// 127.0.0.1 only, issuing JWT access tokens by the client-credentials grant.
// Configured by environment (set by tests/support/idp.rs):
//   IDP_PORT (0: a free port, which the "ready <port>" line names), IDP_KEYSTORE (private JWKS file; created with a new RSA key
//   when absent), IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_RESOURCE (audience).
// With IDP_BROWSER_CLIENT_ID and IDP_BROWSER_REDIRECT_URI it also serves a
// public client (no secret) for the authorization code flow with PKCE, and
// oidc-provider's development login and consent pages (any login name
// becomes the token's `sub`; any password is accepted).
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
const scopes = 'nats nats:admin';

if (!existsSync(keystore)) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
  writeFileSync(keystore, JSON.stringify({ keys: [jwk] }), { mode: 0o600 });
}

const clients = [{
  client_id: need('IDP_CLIENT_ID'),
  client_secret: need('IDP_CLIENT_SECRET'),
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  scope: scopes,
}];
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

// The issuer URL names the port, so the provider is made once it is bound.
const makeProvider = (bound) => new Provider(`http://127.0.0.1:${bound}`, {
  clients,
  // PKCE (S256) for every authorization code; CORS for a public client's
  // token requests only from the origin of its redirect URIs.
  pkce: { required: () => true },
  clientBasedCORS: (ctx, origin, client) => client.clientAuthMethod === 'none'
    && client.redirectUris.some((uri) => new URL(uri).origin === origin),
  jwks: JSON.parse(readFileSync(keystore, 'utf8')),
  scopes: scopes.split(' '),
  features: {
    devInteractions: { enabled: Boolean(browser) },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource) throw new Error(`unknown resource ${indicator}`);
        return {
          scope: scopes,
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const bound = server.address().port;
  server.on('request', makeProvider(bound).callback());
  console.log(`ready ${bound}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
