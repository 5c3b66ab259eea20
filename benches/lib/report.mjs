// Renders one run of benches/run as Markdown: node report.mjs META.json RESULTS.jsonl
// (the format is described in benches/RESULTS.md).

import { readFileSync } from 'node:fs';

const [metaPath, resultsPath] = process.argv.slice(2);
const meta = JSON.parse(readFileSync(metaPath, 'utf8'));
const rows = readFileSync(resultsPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

const loads = rows.filter((r) => r.kind === 'load');
const load = (group, name, conns) => loads.find((r) => r.group === group && r.name === name && r.conns === conns);
const errors = (w) => w.errors.connect + w.errors.read + w.errors.write + w.errors.status + w.errors.timeout + w.errors.invalid;
const rps = (r) => (r ? r.wrk.rps : undefined);
const n0 = (x) => (x === undefined ? '–' : Math.round(x).toLocaleString('en-US'));
const f2 = (x) => (x === undefined ? '–' : x.toFixed(2));
const mb = (kb) => (kb === undefined ? '–' : (kb / 1024).toFixed(1));
const pct = (x) => (x === undefined || !Number.isFinite(x) ? '–' : `${(x * 100).toFixed(0)}%`);
const times = (x) => (x === undefined || !Number.isFinite(x) ? '–' : `${x.toFixed(2)}x`);
const ratio = (a, b) => (a === undefined || b === undefined || b === 0 ? undefined : a / b);

const out = [];
const p = (s = '') => out.push(s);
const table = (head, body) => {
  p(`| ${head.join(' | ')} |`);
  p(`| ${head.map((h, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`);
  for (const r of body) p(`| ${r.join(' | ')} |`);
  p();
};

const smoke = meta.quick ? ' — SMOKE RUN (--quick: short points, numbers not representative)' : '';
p(`## ${meta.date} — ${meta.backend}, ${meta.duration_s} s per point${smoke}`);
p();
p(`- commit: ${meta.commit}`);
p(`- command: \`${meta.command}\``);
p(`- machine: ${meta.machine}; ${meta.kernel}; ${meta.rustc}; node ${meta.node}; ${meta.peer}; ${meta.wrk}`);
p(`- load: wrk, ${meta.threads} threads, on the same cores as the server; connections ${meta.connections.join(', ')}; ` +
  `${meta.warmup_s} s unrecorded warm-up after each server start; latency in ms; errors = socket errors + ` +
  `status ≥ 400 + timeouts (+ 200 answers saying \`"valid": false\` for federation verify); ` +
  `RSS = peak VmRSS sampled every 200 ms during the point (all processes of the server)`);
p();

const loadRows = (group) =>
  loads
    .filter((r) => r.group === group)
    .map((r) => [
      `\`${r.name}\``,
      r.conns,
      n0(r.wrk.rps) + (r.wrk.exhausted_threads ? ' (assertions ran out: invalid)' : ''),
      f2(r.wrk.p50_ms),
      f2(r.wrk.p99_ms),
      errors(r.wrk),
      mb(r.rss_peak_kb),
    ]);
const head = ['endpoint', 'conns', 'req/s', 'p50', 'p99', 'errors', 'RSS MB'];
for (const [group, title] of [
  ['agentidp', `agentidp (${meta.backend})`],
  ['floor', 'Floor (agentidp-floor: form + Basic + HMAC compare + one signature; fixed JSON)'],
  ['peer_1proc', 'Peer: oidc-provider, one process'],
  ['peer_cluster', 'Peer: oidc-provider, node cluster of one worker per core'],
]) {
  const body = loadRows(group);
  if (!body.length) continue;
  p(`### ${title}`);
  p();
  table(head, body);
}

// Ratios: agentidp over the floor and over the peer's best configuration, point by point.
const peerBest = (name, c) => {
  const a = load('peer_1proc', name, c);
  const b = load('peer_cluster', name, c);
  if (!a && !b) return undefined;
  if (!b || (a && a.wrk.rps >= b.wrk.rps)) return { rps: a.wrk.rps, config: '1 process' };
  return { rps: b.wrk.rps, config: 'cluster' };
};
const pairs = [
  ['token_basic_es256', 'token_es256', 'token_es256'],
  ['token_basic_eddsa', 'token_eddsa', undefined],
  ['token_pkjwt_es256', 'token_es256', undefined],
  ['discovery', 'fixed_json', 'discovery'],
  ['jwks', 'fixed_json', 'jwks'],
  ['did_agent', 'fixed_json', undefined],
  ['did_resolve', 'fixed_json', undefined],
  ['agent_info', 'fixed_json', undefined],
];
const ratioRows = [];
for (const [ours, floorName, peerName] of pairs) {
  for (const c of meta.connections) {
    const a = load('agentidp', ours, c);
    if (!a) continue;
    const f = load('floor', floorName, c);
    const pb = peerName ? peerBest(peerName, c) : undefined;
    ratioRows.push([
      `\`${ours}\``,
      c,
      n0(a.wrk.rps),
      `\`${floorName}\` ${n0(rps(f))}`,
      pct(ratio(a.wrk.rps, rps(f))),
      pb ? `${n0(pb.rps)} (${pb.config})` : '–',
      times(ratio(a.wrk.rps, pb?.rps)),
    ]);
  }
}
if (ratioRows.length) {
  p('### Ratios');
  p();
  table(['agentidp endpoint', 'conns', 'agentidp req/s', 'floor req/s', 'agentidp/floor', 'peer best req/s', 'agentidp/peer'], ratioRows);
}

// Scale curves.
const seeds = rows.filter((r) => r.kind === 'seed').map((r) => r.seed);
const scaleLoads = loads.filter((r) => r.group === 'scale');
const scaleRss = rows.filter((r) => r.kind === 'rss' && r.name === 'scale');
if (scaleLoads.length) {
  const base = scaleLoads[0].wrk.rps;
  const cold = (name) => loads.find((r) => r.group === 'scale_cold' && r.name === name);
  p(`### Scale: token endpoint (client_secret_basic, ES256), credentials rotating over every seeded agent, ${meta.scale_connections} connections`);
  p();
  p('Cold: the first point after a start (keys loaded on first use). Warm: a fresh start, one request to every ' +
    'organization, then the point. p50, p99 and errors are the warm point\'s (cold errors in parentheses).');
  p();
  table(
    ['organizations', 'agents', 'seeding s', 'cold req/s', 'warm req/s', 'warm vs first', 'p50', 'p99', 'errors', 'RSS idle MB', 'RSS after MB'],
    scaleLoads.map((r) => {
      const [o, a] = r.name.match(/\d+/g).map(Number);
      const s = seeds.find((x) => x.orgs === o && x.agents === a);
      const m = scaleRss.find((x) => x.orgs === o && x.agents === a);
      const c = cold(r.name);
      return [
        n0(o), n0(a), s ? s.seconds.toFixed(1) : '–', n0(rps(c)), n0(r.wrk.rps), pct(r.wrk.rps / base),
        f2(r.wrk.p50_ms), f2(r.wrk.p99_ms), `${errors(r.wrk)}${c ? ` (${errors(c.wrk)})` : ''}`, mb(m?.idle_kb), mb(m?.rss_kb),
      ];
    }),
  );
  if (seeds.length) {
    p('Seeding (straight into the database, `agentidp-bench seed`): ' + seeds
      .map((s) => `${n0(s.orgs)} organization${s.orgs === 1 ? '' : 's'} + ${n0(s.agents)} agents ${s.seconds.toFixed(1)} s (organizations and keys ${s.insert_orgs_s.toFixed(1)} s, agents ${s.insert_agents_s.toFixed(1)} s)`)
      .join('; ') + '.');
    p();
  }
}

// Memory.
const idle = rows.find((r) => r.kind === 'rss' && r.name === 'idle');
const after = rows.find((r) => r.kind === 'rss' && r.name === 'main_after_load');
const tenK = scaleRss.find((x) => x.orgs >= 10000);
if (idle || after || tenK) {
  p('### Memory');
  p();
  if (idle) p(`- idle (started, empty database): ${mb(idle.rss_kb)} MB RSS`);
  if (after) p(`- after every endpoint's load: ${mb(after.rss_kb)} MB RSS, peak (VmHWM) ${mb(after.hwm_kb)} MB`);
  if (tenK) p(`- ${n0(tenK.orgs)} organizations in use: ${mb(tenK.idle_kb)} MB idle, ${mb(tenK.rss_kb)} MB after the load, peak ${mb(tenK.hwm_kb)} MB`);
  p();
}

// Targets (benches/README.md), at 64 connections.
const T = 64;
const checks = [];
const check = (what, measured, ok) => checks.push([what, measured, ok === undefined ? 'not measured' : ok ? 'met' : '**missed**']);
{
  const a = load('agentidp', 'token_basic_es256', T);
  const f = load('floor', 'token_es256', T);
  const pb = peerBest('token_es256', T);
  const rf = ratio(rps(a), rps(f));
  const rp = ratio(rps(a), pb?.rps);
  check('client_credentials ES256 ≥ 60% of the floor', pct(rf), rf === undefined ? undefined : rf >= 0.6);
  check("client_credentials ES256 ≥ 4x the peer's best configuration", times(rp), rp === undefined ? undefined : rp >= 4);
  check('client_credentials ES256 p99 < 10 ms', a ? `${f2(a.wrk.p99_ms)} ms` : '–', a ? a.wrk.p99_ms < 10 : undefined);
  for (const name of ['discovery', 'jwks', 'did_agent', 'did_resolve']) {
    const r = ratio(rps(load('agentidp', name, T)), rps(load('floor', 'fixed_json', T)));
    check(`\`${name}\` ≥ 80% of the fixed-JSON floor`, pct(r), r === undefined ? undefined : r >= 0.8);
  }
  if (scaleLoads.length > 1) {
    const base = scaleLoads[0].wrk.rps;
    const worst = Math.min(...scaleLoads.map((r) => r.wrk.rps / base));
    const best = Math.max(...scaleLoads.map((r) => r.wrk.rps / base));
    check(`token throughput flat within 10% over ${scaleLoads.map((r) => r.name.replace('orgs=', '').replace(',agents=', ':')).join(', ')}`,
      `${pct(worst)} to ${pct(best)} of the first point`, worst >= 0.9 && best <= 1.1);
  } else {
    check('token throughput flat within 10% from 1 to 10,000 organizations and up to 1,000,000 agents', '–', undefined);
  }
  check('idle RSS < 40 MB', idle ? `${mb(idle.rss_kb)} MB` : '–', idle ? idle.rss_kb < 40 * 1024 : undefined);
}
p(`### Targets (at ${T} connections)`);
p();
table(['target', 'measured', 'result'], checks);

process.stdout.write(out.join('\n'));
