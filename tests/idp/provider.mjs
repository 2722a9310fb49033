// A real, OpenID-certified IdP for the e2e tests: panva/oidc-provider on
// 127.0.0.1 only, issuing JWT access tokens by the client-credentials grant.
// Configured by environment (set by tests/common/mod.rs):
//   IDP_PORT, IDP_KEYSTORE (private JWKS file; created with a new RSA key
//   when absent), IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_RESOURCE (audience);
//   optionally IDP_SHORT_CLIENT_ID, IDP_SHORT_CLIENT_SECRET and
//   IDP_SHORT_TTL (seconds): a second client whose access tokens live only
//   that long, for clients that must outlive their tokens.
// Every access token issued is logged as `issued <client_id> <exp>`.
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

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients,
  jwks: JSON.parse(readFileSync(keystore, 'utf8')),
  scopes: scopes.split(' '),
  features: {
    devInteractions: { enabled: false },
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
