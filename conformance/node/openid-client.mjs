// openid-client v6 (panva): discovery of an organization's issuer (OIDC and RFC 8414), the
// client credentials grant with client_secret_basic, client_secret_post and private_key_jwt,
// its ID-token claim checks, userinfo (/agent-info), introspection and revocation.
import { readFileSync } from 'node:fs';
import * as client from 'openid-client';
import { importPKCS8 } from 'jose';
import { Reporter, fixtures, acme, agents, expect } from './_common.mjs';

const r = new Reporter('node/openid-client');
const issuer = new URL(acme.issuer);
const basicAgent = agents.basic;

const basicCfg = await r.check('discovery of the issuer (OIDC Discovery) is accepted', async () => {
  const cfg = await client.discovery(issuer, basicAgent.client_id, basicAgent.client_secret);
  const m = cfg.serverMetadata();
  expect(m.issuer === acme.issuer, `issuer ${m.issuer}`);
  expect(m.token_endpoint === `${acme.issuer}/oauth2/token`, `token_endpoint ${m.token_endpoint}`);
  expect(m.userinfo_endpoint === `${acme.issuer}/agent-info`, `userinfo_endpoint ${m.userinfo_endpoint}`);
  expect(m.authorization_endpoint === `${acme.issuer}/oauth2/authorize`, `authorization_endpoint ${m.authorization_endpoint}`);
  expect((m.code_challenge_methods_supported || []).includes('S256'), 'PKCE S256 is offered');
  expect(m.authorization_response_iss_parameter_supported === true, 'RFC 9207 iss is announced');
  return cfg;
});

await r.check('discovery through RFC 8414 (/.well-known/oauth-authorization-server{path}) is accepted', async () => {
  const cfg = await client.discovery(issuer, basicAgent.client_id, basicAgent.client_secret, undefined, {
    algorithm: 'oauth2',
  });
  expect(cfg.serverMetadata().issuer === acme.issuer);
  expect(cfg.serverMetadata().introspection_endpoint === `${acme.issuer}/oauth2/introspect`);
});

if (basicCfg) {
  const t = await r.check('client_credentials with client_secret_basic', async () => {
    const t = await client.clientCredentialsGrant(basicCfg);
    expect(typeof t.access_token === 'string' && t.token_type.toLowerCase() === 'bearer', JSON.stringify(t));
    expect(t.id_token === undefined, 'no ID token without the openid scope');
    expect(t.expires_in > 0 && t.expires_in <= 900, `expires_in ${t.expires_in}`);
    expect(t.scope === 'invoices:read', `scope ${t.scope}`);
    return t;
  });

  await r.check('client_credentials with scope "openid invoices:read": the ID token passes its claim checks', async () => {
    const t = await client.clientCredentialsGrant(basicCfg, { scope: 'openid invoices:read' });
    expect(t.id_token, 'an ID token is returned');
    const c = t.claims();
    expect(c.iss === acme.issuer && c.sub === basicAgent.client_id, JSON.stringify(c));
    expect(c.aud === basicAgent.client_id || c.aud?.includes?.(basicAgent.client_id), `aud ${c.aud}`);
    expect(c.azp === undefined || c.azp === basicAgent.client_id, `azp ${c.azp}`);
  });

  await r.check('an agent with EdDSA ID tokens: its ID token passes the claim checks (id_token_signed_response_alg EdDSA)', async () => {
    const cfg = await client.discovery(issuer, agents.eddsa.client_id, {
      client_secret: agents.eddsa.client_secret,
      id_token_signed_response_alg: 'EdDSA',
    });
    const t = await client.clientCredentialsGrant(cfg, { scope: 'openid' });
    expect(t.claims().sub === agents.eddsa.client_id);
  });

  if (t) {
    await r.check('userinfo (/agent-info) with the access token; sub matches', async () => {
      const ui = await client.fetchUserInfo(basicCfg, t.access_token, basicAgent.client_id);
      expect(ui.sub === basicAgent.client_id && ui.did === basicAgent.did, JSON.stringify(ui));
    });

    await r.check('introspection (RFC 7662) of the access token: active', async () => {
      const i = await client.tokenIntrospection(basicCfg, t.access_token);
      expect(i.active === true && i.client_id === basicAgent.client_id && i.iss === acme.issuer, JSON.stringify(i));
    });

    await r.check('revocation (RFC 7009), then introspection answers active: false', async () => {
      await client.tokenRevocation(basicCfg, t.access_token);
      const i = await client.tokenIntrospection(basicCfg, t.access_token);
      expect(i.active === false, JSON.stringify(i));
    });

    await r.rejects(
      'userinfo with the revoked token',
      () => client.fetchUserInfo(basicCfg, t.access_token, client.skipSubjectCheck),
      (e) => e instanceof client.WWWAuthenticateChallengeError && e.cause?.[0]?.parameters?.error === 'invalid_token',
    );
  }

  await r.rejects(
    'a scope the agent does not have',
    () => client.clientCredentialsGrant(basicCfg, { scope: 'payroll:write' }),
    (e) => e.error === 'invalid_scope',
  );
}

let wrongSecretBody;
await r.rejects(
  'a wrong client secret: 401 with a Basic challenge (RFC 6749 §5.2)',
  async () => {
    const cfg = await client.discovery(issuer, basicAgent.client_id, 'not-the-secret');
    return client.clientCredentialsGrant(cfg);
  },
  (e) => {
    if (!(e instanceof client.WWWAuthenticateChallengeError) || e.status !== 401) return false;
    wrongSecretBody = e.response;
    return e.cause?.[0]?.scheme === 'basic';
  },
);
await r.check('... and its body is {"error": "invalid_client"}', async () => {
  const j = await wrongSecretBody.json();
  expect(j.error === 'invalid_client', JSON.stringify(j));
});

const postCfg = await r.check('client_credentials with client_secret_post', async () => {
  const cfg = await client.discovery(
    issuer,
    agents.post.client_id,
    agents.post.client_secret,
    client.ClientSecretPost(agents.post.client_secret),
  );
  const t = await client.clientCredentialsGrant(cfg, { scope: 'openid invoices:read' });
  expect(t.access_token && t.claims().sub === agents.post.client_id);
  return cfg;
});

// An agent registered without a description, and a token granted no scope at all.
const nulls = (o) => Object.entries(o).filter(([, v]) => v === null).map(([k]) => k);
if (postCfg) {
  await r.check('userinfo omits claims without a value, never null (OIDC Core §5.3.2)', async () => {
    const t = await client.clientCredentialsGrant(postCfg, { scope: '' });
    const ui = await client.fetchUserInfo(postCfg, t.access_token, agents.post.client_id);
    expect(nulls(ui).length === 0, `null claims: ${nulls(ui).join(', ')}`);
  });
  await r.check('introspection omits members without a value, never null (RFC 7662 §2.2 types)', async () => {
    const t = await client.clientCredentialsGrant(postCfg, { scope: '' });
    const i = await client.tokenIntrospection(postCfg, t.access_token);
    expect(i.active === true && nulls(i).length === 0, `null members: ${nulls(i).join(', ')}`);
  });
}

// private_key_jwt with the RSA key registered for this client (kid node-rs256).
const pem = readFileSync(fixtures.keys.pkjwt_rs256_pem, 'utf8');
const key = await importPKCS8(pem, 'RS256');
let captured;
const pkCfg = await r.check('discovery for a private_key_jwt client', () =>
  client.discovery(issuer, agents.pkjwt.client_id, {}, client.PrivateKeyJwt({ key, kid: fixtures.keys.pkjwt_rs256_kid })),
);
if (pkCfg) {
  pkCfg[client.customFetch] = (url, options) => {
    if (String(url).endsWith('/oauth2/token')) captured = { url: String(url), options: { ...options } };
    return fetch(url, options);
  };
  await r.check('client_credentials with private_key_jwt (RS256 client assertion)', async () => {
    const t = await client.clientCredentialsGrant(pkCfg, { scope: 'openid invoices:read' });
    expect(t.access_token && t.claims().sub === agents.pkjwt.client_id);
  });
  await r.check('introspection authenticated with private_key_jwt', async () => {
    const t = await client.clientCredentialsGrant(pkCfg);
    const i = await client.tokenIntrospection(pkCfg, t.access_token);
    expect(i.active === true && i.client_id === agents.pkjwt.client_id, JSON.stringify(i));
  });
  await r.check('a replayed private_key_jwt assertion is refused with 401 invalid_client (RFC 7523 §3 jti)', async () => {
    expect(captured, 'the token request was captured');
    const { url, options } = captured;
    const body = options.body instanceof URLSearchParams ? options.body.toString() : String(options.body);
    expect(body.includes('client_assertion='), 'a client assertion was sent');
    const res = await fetch(url, { method: 'POST', headers: options.headers, body });
    const j = await res.json();
    expect(res.status === 401 && j.error === 'invalid_client', `${res.status} ${JSON.stringify(j)}`);
  });
}

r.done();
