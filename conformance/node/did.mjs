// did-resolver + web-did-resolver (DIF / Veramo): resolving the instance, organization and agent
// did:web identifiers (host with a percent-encoded port) over HTTPS with the run's private CA,
// and verifying a proof-of-control JWT from POST {iss}/agent-proof with the DID documents alone.
import { Resolver } from 'did-resolver';
import { getResolver } from 'web-did-resolver';
import { jwtVerify, importJWK, decodeProtectedHeader, decodeJwt, calculateJwkThumbprint } from 'jose';
import { randomBytes } from 'node:crypto';
import { Reporter, A, acme, beta, agents, expect, basic, getJson } from './_common.mjs';

const r = new Reporter('node/did-resolver');
const resolver = new Resolver(getResolver());

async function resolveOk(did) {
  const res = await resolver.resolve(did);
  expect(!res.didResolutionMetadata.error, `${did}: ${JSON.stringify(res.didResolutionMetadata)}`);
  expect(res.didDocument?.id === did, `document id ${res.didDocument?.id} for ${did}`);
  return res.didDocument;
}
const asList = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const absolute = (doc, id) => (id.startsWith('#') ? doc.id + id : id);
const refIds = (doc, rel) => asList(doc[rel]).map((x) => absolute(doc, typeof x === 'string' ? x : x.id));
const methods = (doc) => asList(doc.verificationMethod);
const PUBLIC = { EC: ['kty', 'crv', 'x', 'y'], RSA: ['kty', 'n', 'e'], OKP: ['kty', 'crv', 'x'] };
const samePublicKey = (a, b) => PUBLIC[a.kty]?.every((m) => a[m] === b[m]);

const instanceDid = acme.did.split(':orgs:')[0];
const port = new URL(A).port;

await r.check(`the DIDs encode the port: did:web:localhost%3A${port}`, () => {
  expect(instanceDid === `did:web:localhost%3A${port}`, instanceDid);
});
await r.check('instance DID resolves over HTTPS (/.well-known/did.json)', () => resolveOk(instanceDid));

const jwks = (await getJson(`${acme.issuer}/jwks.json`)).body.keys;
await r.check("organization DID resolves; its keys are the issuer's JWKS keys", async () => {
  const doc = await resolveOk(acme.did);
  expect(asList(doc.controller).includes(instanceDid), `controller ${doc.controller}`);
  for (const k of jwks) {
    const vm = methods(doc).find((m) => absolute(doc, m.id) === `${acme.did}#${k.kid}`);
    expect(vm, `no verification method for kid ${k.kid}`);
    if (vm.publicKeyJwk) expect(samePublicKey(vm.publicKeyJwk, k), `key ${k.kid} differs from the JWKS`);
    else expect(vm.publicKeyMultibase?.startsWith('z') && k.kty === 'OKP', `key ${k.kid} has no usable material`);
  }
  const svc = asList(doc.service).find((s) => s.type === 'OpenIdConnectIssuer');
  expect(svc?.serviceEndpoint === acme.issuer, 'an OpenIdConnectIssuer service names the issuer');
});
await r.check('agent DID resolves; controller is the organization; services name /agent-info and the card', async () => {
  const doc = await resolveOk(agents.basic.did);
  expect(asList(doc.controller).includes(acme.did), `controller ${doc.controller}`);
  const endpoints = asList(doc.service).map((s) => s.serviceEndpoint);
  expect(endpoints.includes(`${acme.issuer}/agent-info`), 'agent-info service');
  expect(endpoints.some((e) => String(e).endsWith(`/agents/${agents.basic.id}/card`)), 'card service');
});
await r.check("private_key_jwt agent DID lists its registered keys, each id's fragment the RFC 7638 thumbprint", async () => {
  const doc = await resolveOk(agents.pkjwt.did);
  const own = methods(doc).filter((m) => absolute(doc, m.id).startsWith(`${agents.pkjwt.did}#`));
  expect(own.length === 2, `${own.length} own verification methods`);
  for (const m of own) {
    const tp = await calculateJwkThumbprint(m.publicKeyJwk, 'sha256');
    expect(absolute(doc, m.id) === `${agents.pkjwt.did}#${tp}`, `${m.id} is not #${tp}`);
  }
  expect(refIds(doc, 'authentication').some((id) => id.startsWith(`${agents.pkjwt.did}#`)), 'authentication');
});
await r.check('the second instance: organization DID on another port resolves', () => resolveOk(beta.did));
await r.check('a revoked agent: did:web resolution fails (410 Gone) and the resolver binding says deactivated', async () => {
  const res = await resolver.resolve(agents.revoked.did);
  expect(res.didResolutionMetadata.error && !res.didDocument, JSON.stringify(res));
  const u = await getJson(`${A}/1.0/identifiers/${encodeURIComponent(agents.revoked.did)}`);
  expect(u.body.didDocumentMetadata?.deactivated === true, JSON.stringify(u.body));
});
await r.check('an unknown agent DID does not resolve (notFound)', async () => {
  const res = await resolver.resolve(`${acme.did}:agents:00000000-0000-7000-8000-000000000000`);
  expect(res.didResolutionMetadata.error === 'notFound', JSON.stringify(res.didResolutionMetadata));
});

// --- proof of control, verified with DID documents only (README "Proof of control") ---
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
function base58btc(s) {
  let n = 0n;
  for (const c of s) {
    const i = B58.indexOf(c);
    if (i < 0) throw new Error('not base58btc');
    n = n * 58n + BigInt(i);
  }
  const bytes = [];
  while (n > 0n) {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  for (const c of s) {
    if (c !== '1') break;
    bytes.unshift(0);
  }
  return Buffer.from(bytes);
}
function keyOf(vm, alg) {
  if (vm.publicKeyJwk) return importJWK(vm.publicKeyJwk, alg);
  const raw = base58btc(vm.publicKeyMultibase.slice(1)); // 'z' = base58btc
  expect(raw[0] === 0xed && raw[1] === 0x01 && raw.length === 34, 'an Ed25519 multikey (0xed01)');
  return importJWK({ kty: 'OKP', crv: 'Ed25519', x: raw.subarray(2).toString('base64url') }, alg);
}

async function proofFor(agent, params) {
  const res = await fetch(`${acme.issuer}/agent-proof`, {
    method: 'POST',
    headers: { authorization: basic(agent), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params),
  });
  const j = await res.json();
  expect(res.status === 200 && j.proof, `agent-proof: ${res.status} ${JSON.stringify(j)}`);
  return j.proof;
}

/** The three steps: resolve sub, check kid and controller; resolve iss, take the key; verify. */
async function verifyProof(proof, { audience, nonce }) {
  const header = decodeProtectedHeader(proof);
  const unverified = decodeJwt(proof);
  const agentDoc = await resolveOk(unverified.sub);
  expect(refIds(agentDoc, 'assertionMethod').includes(header.kid), `kid ${header.kid} not in assertionMethod`);
  expect(asList(agentDoc.controller).includes(unverified.iss), `iss ${unverified.iss} is not the controller`);
  const issuerDoc = await resolveOk(unverified.iss);
  const vm = methods(issuerDoc).find((m) => absolute(issuerDoc, m.id) === header.kid);
  expect(vm, `no verification method ${header.kid} in ${unverified.iss}`);
  const key = await keyOf(vm, header.alg);
  const { payload } = await jwtVerify(proof, key, {
    typ: 'agent-proof+jwt',
    algorithms: [header.alg],
    issuer: unverified.iss,
    subject: agentDoc.id,
    audience,
    requiredClaims: ['exp', 'iat', 'jti'],
  });
  expect(payload.nonce === nonce, `nonce ${payload.nonce}`);
  return { header, payload };
}

const audience = 'https://verifier.example/';
for (const [name, alg] of [['basic', 'ES256'], ['eddsa', 'EdDSA'], ['rs256', 'RS256']]) {
  await r.check(`proof of control (${alg}) verified from the DID documents alone`, async () => {
    const nonce = randomBytes(12).toString('base64url');
    const proof = await proofFor(agents[name], { aud: audience, nonce });
    const { header, payload } = await verifyProof(proof, { audience, nonce });
    expect(header.alg === alg, `alg ${header.alg}`);
    expect(payload.sub === agents[name].did && payload.iss === acme.did, JSON.stringify(payload));
  });
}
await r.rejects('a proof bound to another audience', async () => {
  const proof = await proofFor(agents.basic, { aud: 'https://someone-else.example/', nonce: 'n' });
  return verifyProof(proof, { audience, nonce: 'n' });
}, (e) => e.code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && e.claim === 'aud');
await r.rejects('a proof with its payload altered (sub swapped for another agent)', async () => {
  const proof = await proofFor(agents.basic, { aud: audience, nonce: 'n' });
  const [h, p, s] = proof.split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  claims.sub = agents.rs256.did;
  return verifyProof(`${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`, { audience, nonce: 'n' });
}, (e) => e.code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
await r.check('agent-proof refuses a wrong secret (401 invalid_client)', async () => {
  const res = await fetch(`${acme.issuer}/agent-proof`, {
    method: 'POST',
    headers: { authorization: basic({ ...agents.basic, client_secret: 'wrong' }), 'content-type': 'application/x-www-form-urlencoded' },
    body: 'aud=x',
  });
  const j = await res.json();
  expect(res.status === 401 && j.error === 'invalid_client', `${res.status} ${JSON.stringify(j)}`);
});
r.done();
