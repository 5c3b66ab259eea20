// ajv (draft 2020-12, `ajv/dist/2020`): every *.schema.json in well-known/ compiles (validated
// against the 2020-12 meta-schema; unknown keywords and formats are errors: ajv's strictSchema),
// and every served document of its kind validates against it. A schema file with no mapping
// below fails the run: a schema no independent validator applies would be a silent gap.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import { Resolver } from 'did-resolver';
import { getResolver } from 'web-did-resolver';
import { generateKeyPair, exportJWK } from 'jose';
import { Reporter, A, B, acme, globex, beta, agents, expect, getJson } from './_common.mjs';

const r = new Reporter('node/ajv');
const dir = process.env.CONFORMANCE_SCHEMAS;
const resolver = new Resolver(getResolver());

const orgs = [
  [A, acme],
  [A, globex],
  [B, beta],
];
const origin = (u) => new URL(u).origin;
const doc = async (url, headers = {}) => {
  const { status, body } = await getJson(url, { headers });
  expect(status === 200, `${url}: ${status}`);
  return body;
};
const identifiers = (base, did, headers = {}) => getJson(`${base}/1.0/identifiers/${encodeURIComponent(did)}`, { headers });
const instanceDid = (base) => `did:web:${new URL(base).host.replace(':', '%3A')}`;
const didJwk = async () => {
  const { publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), use: 'sig' };
  return `did:jwk:${Buffer.from(JSON.stringify(jwk)).toString('base64url')}`;
};

// Schema file stem -> documents of that kind: [label, () => document].
const documents = {
  'openid-configuration': orgs.map(([, o]) => [
    `${o.slug} OIDC discovery`,
    () => doc(`${o.issuer}/.well-known/openid-configuration`),
  ]),
  'oauth-authorization-server': orgs.map(([base, o]) => [
    `${o.slug} RFC 8414 metadata`,
    () => doc(`${origin(base)}/.well-known/oauth-authorization-server${new URL(o.issuer).pathname}`),
  ]),
  jwks: orgs.map(([, o]) => [`${o.slug} JWKS`, () => doc(`${o.issuer}/jwks.json`)]),
  'did-document': [
    ['instance A did.json', () => doc(`${A}/.well-known/did.json`)],
    ['instance B did.json', () => doc(`${B}/.well-known/did.json`)],
    ...orgs.map(([, o]) => [`${o.slug} did.json`, () => doc(`${o.issuer}/did.json`)]),
    ...['basic', 'pkjwt', 'eddsa'].map((n) => [
      `agent ${n} did.json`,
      () => doc(`${acme.issuer}/agents/${agents[n].id}/did.json`),
    ]),
    ['agent basic, as did-resolver returns it', async () => (await resolver.resolve(agents.basic.did)).didDocument],
    ['acme, bare document from /1.0/identifiers (Accept: application/did+json)', async () =>
      (await identifiers(A, acme.did, { accept: 'application/did+json' })).body],
    ['a did:jwk resolved by /1.0/identifiers', async () =>
      (await identifiers(A, await didJwk(), { accept: 'application/did+json' })).body],
  ],
  'did-resolution-result': [
    ['instance', async () => (await identifiers(A, instanceDid(A))).body],
    ['organization', async () => (await identifiers(A, acme.did)).body],
    ['agent', async () => (await identifiers(A, agents.pkjwt.did)).body],
    ['revoked agent (deactivated)', async () => (await identifiers(A, agents.revoked.did)).body],
    ['unknown DID (an error result)', async () =>
      (await identifiers(A, `${acme.did}:agents:00000000-0000-7000-8000-000000000000`)).body],
    ['did:jwk', async () => (await identifiers(A, await didJwk())).body],
    ['as did-resolver (the library) returns it', () => resolver.resolve(acme.did)],
  ],
  'agent-card': ['basic', 'pkjwt', 'eddsa'].map((n) => [
    `agent ${n} card`,
    () => doc(`${acme.issuer}/agents/${agents[n].id}/card`),
  ]),
};

const files = readdirSync(dir).filter((f) => f.endsWith('.schema.json')).sort();
await r.check(`well-known/ holds schemas (${files.length})`, () => expect(files.length > 0, `none in ${dir}`));

// strictSchema: unknown keywords and formats are errors. Ajv's style lints (strictTypes,
// strictTuples, strictRequired) are off: they flag valid 2020-12 idioms such as `required`
// inside `not`/`then`, which every validator must accept.
const ajv = new Ajv2020({
  strictSchema: true,
  strictNumbers: true,
  strictTypes: false,
  strictTuples: false,
  strictRequired: false,
  allErrors: true,
});
for (const f of files) {
  const stem = f.replace(/\.schema\.json$/, '');
  const validate = await r.check(`${f} compiles (draft 2020-12 meta-schema, no unknown keywords)`, () =>
    ajv.compile(JSON.parse(readFileSync(join(dir, f), 'utf8'))),
  );
  if (!validate) continue;
  await r.check(`${f} is not vacuous: it rejects {}`, () => expect(!validate({}), 'an empty object validates'));
  const docs = documents[stem];
  if (!docs) {
    await r.check(`${f}: served documents to validate`, () => {
      throw new Error(`no documents are mapped to this schema in conformance/node/schemas.mjs`);
    });
    continue;
  }
  for (const [label, get] of docs) {
    await r.check(`${f}: ${label}`, async () => {
      const d = await get();
      if (!validate(d)) {
        throw new Error(ajv.errorsText(validate.errors, { separator: '; ' }) + ` in ${JSON.stringify(d).slice(0, 300)}`);
      }
    });
  }
}

r.done();
