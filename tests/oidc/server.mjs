// A certified OAuth 2.0 / OpenID Connect authorization server (panva's oidc-provider)
// and a small protected API on the same loopback server, for headwater's OAuth2 tests.
//
// Usage: node server.mjs CONFIG.json — CONFIG holds {clients: [...], ttl: seconds,
// resource: "https://api.test/"}. Listens on 127.0.0.1 on an ephemeral port and prints
// {"port": N, "issuer": "..."} as one line on stdout once it accepts connections.
//
// Routes besides the provider's own (/token, /.well-known/openid-configuration, ...):
//   GET  /api/items?page=N[&delay_ms=M]  records 10(N-1)+1 .. 10N of TOTAL_ITEMS; a valid
//                                        bearer token is required (401 otherwise)
//   GET  /api/resource-items?page=N      the same, for tokens issued for `resource` only
//   POST /test/refresh-token?client_id=  a new refresh token for that client (no browser login)
//   GET  /test/stats                     tokens issued per client, API answers by status,
//                                        requests per path
// The script is copied next to the installed node_modules (ESM resolution needs it there).
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const TOTAL_ITEMS = 50;
const PAGE_SIZE = 10;
const stats = { grants: {}, api: {}, paths: {} };

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: config.clients,
  scopes: ['openid', 'offline_access', 'api:read', 'api:admin'],
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => false,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== config.resource) {
          throw new Error(`unknown resource ${resource}`);
        }
        return { scope: 'api:read', audience: config.resource, accessTokenFormat: 'opaque' };
      },
    },
  },
  ttl: {
    ClientCredentials: config.ttl,
    AccessToken: config.ttl,
    RefreshToken: 3600,
    Grant: 3600,
  },
  rotateRefreshToken: true,
});
provider.on('grant.success', (ctx) => {
  const id = ctx.oidc.client?.clientId ?? '?';
  stats.grants[id] = (stats.grants[id] ?? 0) + 1;
});
const providerCallback = provider.callback();

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

async function validToken(req) {
  const match = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
  if (!match) return null;
  const token = (await provider.ClientCredentials.find(match[1]))
    ?? (await provider.AccessToken.find(match[1]));
  if (!token || token.isExpired) return null;
  return token;
}

async function api(req, res, url) {
  const token = await validToken(req);
  const resourceOnly = url.pathname === '/api/resource-items';
  const key = token ? (resourceOnly && token.aud !== config.resource ? 403 : 200) : 401;
  stats.api[key] = (stats.api[key] ?? 0) + 1;
  if (key === 401) {
    send(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
    return;
  }
  if (key === 403) {
    send(res, 403, { error: 'insufficient_scope', error_description: 'token is not for this resource' });
    return;
  }
  const page = Number(url.searchParams.get('page') ?? '1');
  const delay = Number(url.searchParams.get('delay_ms') ?? '0');
  if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
  const first = (page - 1) * PAGE_SIZE + 1;
  const items = [];
  for (let id = first; id < first + PAGE_SIZE && id <= TOTAL_ITEMS; id += 1) items.push({ id });
  send(res, 200, { items, total_pages: Math.ceil(TOTAL_ITEMS / PAGE_SIZE) });
}

async function refreshToken(res, url) {
  const client = await provider.Client.find(url.searchParams.get('client_id'));
  if (!client) {
    send(res, 404, { error: 'no such client' });
    return;
  }
  const accountId = 'user-1';
  const grant = new provider.Grant({ clientId: client.clientId, accountId });
  grant.addOIDCScope('openid offline_access');
  const grantId = await grant.save();
  const token = new provider.RefreshToken({
    client, accountId, grantId, gty: 'authorization_code', scope: 'openid offline_access',
  });
  send(res, 200, { refresh_token: await token.save() });
}

server.on('request', (req, res) => {
  const url = new URL(req.url, issuer);
  stats.paths[url.pathname] = (stats.paths[url.pathname] ?? 0) + 1;
  const fail = (err) => send(res, 500, { error: 'server_error', error_description: String(err) });
  if (url.pathname.startsWith('/api/')) {
    api(req, res, url).catch(fail);
  } else if (url.pathname === '/test/refresh-token' && req.method === 'POST') {
    refreshToken(res, url).catch(fail);
  } else if (url.pathname === '/test/stats') {
    send(res, 200, stats);
  } else {
    providerCallback(req, res);
  }
});

process.stdout.write(`${JSON.stringify({ port, issuer })}\n`);
