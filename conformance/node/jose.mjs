// jose (panva) as a relying party: RFC 9068 access tokens and OIDC ID tokens verified against the
// jwks_uri of discovery (createRemoteJWKSet + jwtVerify), the RFC 8725 rejections a careful
// client makes, and the agent card's JWS over its RFC 8785 (canonicalize) form.
import { createHmac, createPublicKey } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify, flattenedVerify, decodeProtectedHeader } from 'jose';
import canonicalize from 'canonicalize';
import { Reporter, A, acme, globex, agents, expect, forge, decodePart, tokenFor, getJson, b64url } from './_common.mjs';

const r = new Reporter('node/jose');

const disco = (await getJson(`${acme.issuer}/.well-known/openid-configuration`)).body;
const JWKS = createRemoteJWKSet(new URL(disco.jwks_uri));
const globexJwks = createRemoteJWKSet(
  new URL((await getJson(`${globex.issuer}/.well-known/openid-configuration`)).body.jwks_uri),
);
const published = (await getJson(disco.jwks_uri)).body.keys;

const RFC9068_CLAIMS = ['iss', 'exp', 'aud', 'sub', 'client_id', 'iat', 'jti'];
const atOptions = { issuer: acme.issuer, audience: acme.issuer, typ: 'at+jwt' };

for (const [name, alg] of [['basic', 'ES256'], ['rs256', 'RS256'], ['eddsa', 'EdDSA']]) {
  const agent = agents[name];
  await r.check(`${alg} access token: jwtVerify with the remote JWKS, typ at+jwt, issuer, audience`, async () => {
    const t = await tokenFor(A, 'acme', agent);
    const { payload, protectedHeader } = await jwtVerify(t.access_token, JWKS, { ...atOptions, algorithms: [alg] });
    expect(protectedHeader.alg === alg, `alg ${protectedHeader.alg}`);
    expect(published.some((k) => k.kid === protectedHeader.kid), 'kid is published');
    for (const c of RFC9068_CLAIMS) expect(payload[c] !== undefined, `RFC 9068 §2.2 claim ${c} missing`);
    expect(payload.sub === agent.client_id && payload.client_id === agent.client_id, 'sub = client_id');
    expect(payload.did === agent.did, 'did claim');
    expect(payload.exp - payload.iat === t.expires_in, 'exp - iat = expires_in');
  });
}

const withId = await tokenFor(A, 'acme', agents.basic, { scope: 'openid invoices:read' });
await r.check('RS256 ID token: jwtVerify with the remote JWKS, issuer, audience = client_id', async () => {
  const { payload, protectedHeader } = await jwtVerify(withId.id_token, JWKS, {
    issuer: acme.issuer,
    audience: agents.basic.client_id,
    algorithms: ['RS256'],
    requiredClaims: ['iat', 'exp', 'sub', 'auth_time'],
  });
  expect(protectedHeader.alg === 'RS256', `alg ${protectedHeader.alg}`);
  expect(payload.sub === agents.basic.client_id, 'sub');
  expect(payload.azp === undefined || payload.azp === agents.basic.client_id, 'azp');
});
await r.check('EdDSA ID token of an agent registered for EdDSA', async () => {
  const t = await tokenFor(A, 'acme', agents.eddsa, { scope: 'openid' });
  const { protectedHeader } = await jwtVerify(t.id_token, JWKS, {
    issuer: acme.issuer,
    audience: agents.eddsa.client_id,
    algorithms: ['EdDSA'],
  });
  expect(protectedHeader.alg === 'EdDSA');
});
await r.check('resource=https://api.example/orders (RFC 8707): aud is the resource', async () => {
  const t = await tokenFor(A, 'acme', agents.basic, { resource: 'https://api.example/orders' });
  await jwtVerify(t.access_token, JWKS, { ...atOptions, audience: 'https://api.example/orders' });
});

// --- rejections (RFC 8725 §2, §3) ---
const at = withId.access_token;
const isCode = (...codes) => (e) => codes.includes(e.code);

await r.rejects(
  'an ID token verified as an access token (typ JWT, not at+jwt: RFC 8725 §3.11, RFC 9068 §4)',
  () => jwtVerify(withId.id_token, JWKS, { ...atOptions, audience: agents.basic.client_id }),
  (e) => e.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && e.claim === 'typ',
);
await r.rejects(
  'an access token verified as an ID token (typ at+jwt, expected JWT)',
  () => jwtVerify(at, JWKS, { issuer: acme.issuer, audience: acme.issuer, typ: 'JWT' }),
  (e) => e.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && e.claim === 'typ',
);
await r.rejects(
  'a wrong audience',
  () => jwtVerify(at, JWKS, { ...atOptions, audience: 'https://api.example/other' }),
  (e) => e.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && e.claim === 'aud',
);
await r.rejects(
  'a wrong issuer (another organization of the same instance)',
  () => jwtVerify(at, JWKS, { ...atOptions, issuer: globex.issuer }),
  (e) => e.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && e.claim === 'iss',
);
await r.rejects(
  "an organization's token against another organization's JWKS (keys are per organization)",
  () => jwtVerify(at, globexJwks, { ...atOptions, issuer: acme.issuer }),
  isCode('ERR_JWKS_NO_MATCHING_KEY'),
);
await r.rejects(
  'a tampered payload (scope widened, signature kept)',
  () => {
    const [h, , s] = at.split('.');
    const p = { ...decodePart(at, 1), scope: 'invoices:read payroll:write' };
    return jwtVerify(`${h}.${b64url(JSON.stringify(p))}.${s}`, JWKS, atOptions);
  },
  isCode('ERR_JWS_SIGNATURE_VERIFICATION_FAILED'),
);
await r.rejects(
  'alg "none" (RFC 8725 §3.1)',
  () => jwtVerify(forge({ ...decodeProtectedHeader(at), alg: 'none' }, decodePart(at, 1)), JWKS, atOptions),
  isCode('ERR_JOSE_NOT_SUPPORTED', 'ERR_JOSE_ALG_NOT_ALLOWED', 'ERR_JWS_INVALID'),
);
await r.rejects(
  "HS256 keyed with the organization's RSA public key (RFC 8725 §2.1 algorithm substitution)",
  () => {
    const rsa = published.find((k) => k.kty === 'RSA');
    const pem = createPublicKey({ key: rsa, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    const header = { alg: 'HS256', typ: 'at+jwt', kid: rsa.kid };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(decodePart(at, 1)))}`;
    const sig = createHmac('sha256', pem).update(input).digest('base64url');
    return jwtVerify(`${input}.${sig}`, JWKS, atOptions);
  },
  isCode('ERR_JOSE_NOT_SUPPORTED', 'ERR_JOSE_ALG_NOT_ALLOWED', 'ERR_JWKS_NO_MATCHING_KEY'),
);
await r.rejects(
  'an expired access token (agent with access_token_ttl_secs 1, no clock tolerance)',
  async () => {
    const t = await tokenFor(A, 'acme', agents.short);
    const exp = decodePart(t.access_token, 1).exp;
    await new Promise((res) => setTimeout(res, Math.max(0, exp * 1000 - Date.now() + 1100)));
    return jwtVerify(t.access_token, JWKS, atOptions);
  },
  isCode('ERR_JWT_EXPIRED'),
);

// --- the agent card: a detached JWS (RFC 7515 App. F) over the RFC 8785 form without `signatures`
const cardUrl = `${acme.issuer}/agents/${agents.basic.id}/card`;
const card = (await getJson(cardUrl)).body;
async function verifyCard(c) {
  expect(Array.isArray(c.signatures) && c.signatures.length > 0, 'signatures present');
  const { signatures, ...unsigned } = c;
  const payload = b64url(Buffer.from(canonicalize(unsigned), 'utf8'));
  const results = [];
  for (const s of signatures) {
    const header = JSON.parse(Buffer.from(s.protected, 'base64url').toString('utf8'));
    // The key comes from the organization's jwks_uri found by discovery, never from a URL the card names.
    expect(header.jku === undefined || header.jku === disco.jwks_uri, `jku ${header.jku} is not the issuer's jwks_uri`);
    results.push(await flattenedVerify({ protected: s.protected, payload, signature: s.signature }, JWKS));
  }
  return results;
}
await r.check("agent card: the JWS verifies over canonicalize(card) with the organization's key", async () => {
  const [res] = await verifyCard(card);
  expect(published.some((k) => k.kid === res.protectedHeader.kid), 'kid published in the JWKS');
  expect(card.did === agents.basic.did && card.skills?.[0]?.id === 'invoices', 'card content');
});
await r.check('agent card of a private_key_jwt agent with default metadata verifies too', async () => {
  await verifyCard((await getJson(`${acme.issuer}/agents/${agents.pkjwt.id}/card`)).body);
});
await r.rejects(
  'a card whose content was changed after signing',
  () => verifyCard({ ...card, skills: [...card.skills, { id: 'x', name: 'x', description: '', tags: [] }] }),
  isCode('ERR_JWS_SIGNATURE_VERIFICATION_FAILED'),
);

r.done();
