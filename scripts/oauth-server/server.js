// A real OpenID provider (oidc-provider) for tokenwatch's response tests.
//
// - client `app` (client_secret_basic) gets opaque access tokens by the
//   client_credentials grant: the tokens the test gateway logs carry;
// - client `tokenwatch` (client_secret_basic) and `tokenwatch-post`
//   (client_secret_post) may revoke (RFC 7009) and introspect (RFC 7662)
//   any token, like a security client configured at a real IdP;
// - fault injection on the revocation endpoint for the failure tests:
//   POST /__faults {"mode": "500" | "503" | "hang" | "delay", "count": N, "ms": M}
//   (count -1 = until changed); GET /__log lists the revocation calls seen
//   (idempotency key, status), never the tokens.
//
// - with DASHBOARD_REDIRECT set (a callback URL), client `dashboard`
//   (secret `dash-secret`) signs people in to the tokenwatch dashboard by
//   the authorization code flow with PKCE; oidc-provider's development
//   login and consent pages accept any user name (the test drives them).
//
// Usage: PORT=4011 node server.js  → prints {"issuer": ...} when listening.
import http from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 4011);
const issuer = `http://127.0.0.1:${port}`;
const trusted = new Set(['tokenwatch', 'tokenwatch-post']);

const provider = new Provider(issuer, {
  clients: [
    { client_id: 'app', client_secret: 'app-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
    { client_id: 'tokenwatch', client_secret: 'tw-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
    { client_id: 'tokenwatch-post', client_secret: 'tw-post-secret', token_endpoint_auth_method: 'client_secret_post', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
    ...(process.env.DASHBOARD_REDIRECT ? [{
      client_id: 'dashboard', client_secret: 'dash-secret', grant_types: ['authorization_code'],
      response_types: ['code'], redirect_uris: process.env.DASHBOARD_REDIRECT.split(','),
    }] : []),
  ],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: Boolean(process.env.DASHBOARD_REDIRECT) },
    clientCredentials: { enabled: true },
    revocation: { enabled: true, allowedPolicy: async (ctx, client, token) => trusted.has(client.clientId) || client.clientId === token.clientId },
    introspection: { enabled: true, allowedPolicy: async (ctx, client, token) => trusted.has(client.clientId) || client.clientId === token.clientId },
  },
  ttl: { ClientCredentials: 3600 },
});

let fault = { mode: 'none', count: 0, ms: 0 };
const log = [];
const callback = provider.callback();

function body(req) {
  return new Promise((resolve) => {
    let b = '';
    req.on('data', (c) => { b += c; });
    req.on('end', () => resolve(b));
  });
}

const server = http.createServer(async (req, res) => {
  if (req.url === '/__faults' && req.method === 'POST') {
    fault = { mode: 'none', count: 0, ms: 0, ...JSON.parse(await body(req) || '{}') };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(fault));
    return;
  }
  if (req.url === '/__log') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(log));
    return;
  }
  if (req.url.startsWith('/token/revocation')) {
    const entry = { at: Date.now(), key: req.headers['idempotency-key'] || null, status: 0, fault: 'none' };
    log.push(entry);
    if (fault.count !== 0 && fault.mode !== 'none') {
      if (fault.count > 0) fault.count -= 1;
      entry.fault = fault.mode;
      if (fault.mode === '500') { entry.status = 500; res.writeHead(500); res.end('injected failure'); return; }
      if (fault.mode === '503') { entry.status = 503; res.writeHead(503, { 'retry-after': '1' }); res.end('injected overload'); return; }
      if (fault.mode === 'hang') { return; } // never answers: the client times out
      if (fault.mode === 'delay') { await new Promise((r) => setTimeout(r, fault.ms || 2000)); }
    }
    res.on('finish', () => { entry.status = res.statusCode; });
  }
  callback(req, res);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ issuer }) + '\n');
});
