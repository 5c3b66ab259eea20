// The peer of agentidp's benchmarks: panva's oidc-provider (OpenID Certified), configured for the
// same job as agentidp's token endpoint: one client, client_credentials with client_secret_basic,
// RFC 9068-style JWT access tokens signed ES256 (through resource indicators: every token is for
// the default resource, whose format is `jwt`).
//
//   PEER_PORT            listen port (default 3000)
//   PEER_WORKERS         0: one process (default); N: a node cluster of N workers (one per core)
//   PEER_CLIENT_ID       default `bench`
//   PEER_CLIENT_SECRET   default `bench-secret`
//
// Endpoints: POST /token, GET /.well-known/openid-configuration, GET /jwks.

import cluster from 'node:cluster';
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.PEER_PORT || 3000);
const workers = Number(process.env.PEER_WORKERS || 0);
const clientId = process.env.PEER_CLIENT_ID || 'bench';
const clientSecret = process.env.PEER_CLIENT_SECRET || 'bench-secret';
const resource = 'https://api.bench.example';

function signingKeys() {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...ec, kid: 'bench-es256', alg: 'ES256', use: 'sig' },
      { ...rsa, kid: 'bench-rs256', alg: 'RS256', use: 'sig' },
    ],
  };
}

function serve(jwks) {
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'bench:read',
      },
    ],
    jwks,
    cookies: { keys: ['bench-cookie-key-not-a-secret'] },
    scopes: ['bench:read'],
    ttl: { ClientCredentials: 900 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'bench:read',
          audience: resource,
          accessTokenTTL: 900,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  http.createServer(provider.callback()).listen(port, '127.0.0.1', () => {
    console.error(`oidc-provider (pid ${process.pid}) listening on 127.0.0.1:${port}`);
  });
}

if (workers > 0 && cluster.isPrimary) {
  // Every worker signs with the same keys, as instances behind one issuer would.
  const jwks = JSON.stringify(signingKeys());
  for (let i = 0; i < workers; i += 1) {
    cluster.fork({ PEER_JWKS: jwks });
  }
  cluster.on('exit', (w, code, signal) => {
    console.error(`worker ${w.process.pid} exited (${signal || code})`);
  });
  const stop = () => {
    for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  serve(process.env.PEER_JWKS ? JSON.parse(process.env.PEER_JWKS) : signingKeys());
}
