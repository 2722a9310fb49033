// A real, OpenID-certified IdP for the e2e tests: panva/oidc-provider on
// 127.0.0.1 only, issuing JWT access tokens by the client-credentials grant.
// Configured by environment (set by tests/common/mod.rs):
//   IDP_PORT, IDP_KEYSTORE (private JWKS file; created with a new RSA key
//   when absent), IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_RESOURCE (audience);
//   optionally IDP_SHORT_CLIENT_ID, IDP_SHORT_CLIENT_SECRET and
//   IDP_SHORT_TTL (seconds): a second client whose access tokens live only
//   that long, for clients that must outlive their tokens.
// Every access token issued is logged as `issued <client_id> <exp>`.
// With IDP_BROWSER_CLIENT_ID and IDP_BROWSER_REDIRECT_URI it also serves a
// public client (no secret) for the authorization code flow with PKCE, and
// oidc-provider's development login and consent pages (any login name
// becomes the token's `sub`; any password is accepted).
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

const provider = new Provider(`http://127.0.0.1:${port}`, {
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
      getResourceServerInfo: (ctx, indicator, client) => {
        if (indicator !== resource) throw new Error(`unknown resource ${indicator}`);
        return {
          scope: scopes,
          audience: resource,
          accessTokenTTL: shortClient && client?.clientId === shortClient ? shortTtl : 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});

provider.on('grant.success', (ctx) => {
  const token = ctx.body?.access_token;
  if (typeof token !== 'string') return;
  const { exp } = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
  console.log(`issued ${ctx.oidc.client.clientId} ${exp}`);
});

const server = provider.listen(port, '127.0.0.1', () => console.log(`ready ${port}`));
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
