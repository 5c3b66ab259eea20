// Shared helpers of the Node conformance checks (files starting with `_` are not run by
// conformance/run). Output protocol, one line per check:
//   PASS <client> | <what>
//   FAIL <client> | <what> | <why>
import { readFileSync } from 'node:fs';

export const fixtures = JSON.parse(readFileSync(process.env.CONFORMANCE_FIXTURES, 'utf8'));
export const A = fixtures.a.base;
export const B = fixtures.b.base;
export const acme = fixtures.orgs.acme;
export const globex = fixtures.orgs.globex;
export const beta = fixtures.orgs.beta;
export const agents = fixtures.agents;

const verbose = !!process.env.CONFORMANCE_VERBOSE;

export class Reporter {
  constructor(client) {
    this.client = client;
    this.failed = 0;
    this.passed = 0;
  }

  #line(ok, what, why = '') {
    if (ok) {
      this.passed++;
      console.log(`PASS ${this.client} | ${what}`);
    } else {
      this.failed++;
      console.log(`FAIL ${this.client} | ${what} | ${String(why).replace(/\s+/g, ' ').slice(0, 600)}`);
    }
  }

  /** Runs fn; a thrown error is a failure. Returns fn's value (undefined on failure). */
  async check(what, fn) {
    try {
      const v = await fn();
      this.#line(true, what);
      return v;
    } catch (e) {
      if (verbose) console.error(e);
      this.#line(false, what, describe(e));
      return undefined;
    }
  }

  /** fn must throw; `test(err)` (optional) must return true for the error it throws. */
  async rejects(what, fn, test) {
    let value;
    try {
      value = await fn();
    } catch (e) {
      if (test && !test(e)) {
        this.#line(false, what, `rejected, but not as expected: ${describe(e)}`);
        return e;
      }
      this.#line(true, `${what} (rejected: ${e.code ?? e.name})`);
      return e;
    }
    this.#line(false, what, `was accepted: ${JSON.stringify(value)?.slice(0, 200)}`);
    return undefined;
  }

  done() {
    process.exitCode = this.failed ? 1 : 0;
  }
}

export function describe(e) {
  if (!e) return String(e);
  const parts = [`${e.name ?? 'Error'}${e.code ? ` [${e.code}]` : ''}: ${e.message}`];
  if (e.error) parts.push(`error=${e.error}`);
  if (e.error_description) parts.push(`error_description=${e.error_description}`);
  if (e.cause && e.cause !== e) parts.push(`cause: ${e.cause?.message ?? JSON.stringify(e.cause)}`);
  return parts.join(' ');
}

export function expect(cond, msg = 'expectation failed') {
  if (!cond) throw new Error(msg);
}

export function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

export function decodePart(token, i) {
  return JSON.parse(Buffer.from(token.split('.')[i], 'base64url').toString('utf8'));
}

/** A compact JWS from header, payload and a (possibly empty or bogus) signature. */
export function forge(header, payload, sig = '') {
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}.${sig}`;
}

export function basic(agent) {
  // RFC 6749 §2.3.1: both parts form-urlencoded before joining.
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  return 'Basic ' + Buffer.from(`${enc(agent.client_id)}:${enc(agent.client_secret)}`).toString('base64');
}

/** A plain token request with client_secret_basic (used to make fixtures, never as a check). */
export async function tokenFor(base, slug, agent, params = {}) {
  const r = await fetch(`${base}/orgs/${slug}/oauth2/token`, {
    method: 'POST',
    headers: { authorization: basic(agent), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', ...params }),
  });
  const body = await r.json();
  if (r.status !== 200) throw new Error(`token request: ${r.status} ${JSON.stringify(body)}`);
  return body;
}

export async function getJson(url, init) {
  const r = await fetch(url, init);
  const text = await r.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`${url}: ${r.status} not JSON: ${text.slice(0, 200)}`);
  }
  return { status: r.status, headers: r.headers, body };
}
