// Renders one run of benches/run as Markdown: node report.mjs META.json RESULTS.jsonl [--targets]
// (the format is described in benches/RESULTS.md). --targets prints only the targets table.
// Profiles (benches/run --profile) are read from profile-<point>.txt next to RESULTS.jsonl.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const [metaPath, resultsPath, ...flags] = process.argv.slice(2);
const targetsOnly = flags.includes('--targets');
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
      `\`${r.name}\`${r.profiled ? ' (profiled)' : ''}`,
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
  ['floor', 'Floor (agentidp-floor: form + Basic + HMAC compare + one signature; fixed JSON; one ES256 verify; ES256 verify + sign)'],
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
// Each agentidp point, its floor (the least any implementation does for the same request) and the
// peer's matching point.
const pairs = [
  ['token_basic_es256', 'token_es256', 'token_es256'],
  ['token_basic_eddsa', 'token_eddsa', undefined],
  ['token_pkjwt_es256', 'assert_es256', undefined],
  ['token_jwt_bearer', 'assert_es256', undefined],
  ['federation_verify', 'assert_es256', undefined],
  ['agent_info', 'verify_es256', undefined],
  ['introspect', 'verify_es256', undefined],
  ['discovery', 'fixed_json', 'discovery'],
  ['jwks', 'fixed_json', 'jwks'],
  ['did_instance', 'fixed_json', undefined],
  ['did_org', 'fixed_json', undefined],
  ['did_agent', 'fixed_json', undefined],
  ['did_resolve', 'fixed_json', undefined],
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

// Profiles (benches/run --profile): the top entries of each `perf report`.
const profiled = loads.filter((r) => r.profiled);
if (profiled.length) {
  p('### Profiles');
  p();
  p('`perf record -F 999 -g -p <server>` during the point (its figures above are marked "profiled": perf costs it a few ' +
    'percent), then `perf report --stdio --no-children --percent-limit 1.5`: the top entries (self time), full reports ' +
    'in the results directory.');
  p();
  for (const r of profiled) {
    const file = join(dirname(resultsPath), `profile-${r.name}.txt`);
    const lines = existsSync(file)
      ? readFileSync(file, 'utf8').split('\n').filter((l) => /^\s+\d+\.\d+%\s/.test(l)).slice(0, 15)
      : [];
    p(`#### \`${r.name}\` (${r.conns} connections)`);
    p();
    p('```');
    for (const l of lines.length ? lines : ['(no profile: see the perf log in the results directory)']) p(l.replace(/\s+$/, ''));
    p('```');
    p();
  }
}

// Targets (issue 10, benches/README.md), at 64 connections.
const T = 64;
const checks = [];
const check = (what, measured, ok) => checks.push([what, measured, ok === undefined ? 'not measured' : ok ? 'met' : '**missed**']);
const share = (name, floorName, min, label) => {
  const r = ratio(rps(load('agentidp', name, T)), rps(load('floor', floorName, T)));
  check(`\`${name}\` ≥ ${min * 100}% of \`${floorName}\`${label ? ` (${label})` : ''}`, pct(r), r === undefined ? undefined : r >= min);
};
{
  const ours = loads.filter((r) => r.group === 'agentidp' && r.conns === T);
  if (ours.length) {
    const over = ours.filter((r) => !(r.wrk.p99_ms < 10));
    const worst = ours.reduce((a, b) => (b.wrk.p99_ms > a.wrk.p99_ms ? b : a));
    check(`every agentidp point p99 < 10 ms (${ours.length} points)`,
      `worst \`${worst.name}\` ${f2(worst.wrk.p99_ms)} ms` + (over.length ? `; over: ${over.map((r) => `\`${r.name}\``).join(', ')}` : ''),
      over.length === 0);
  } else {
    check('every agentidp point p99 < 10 ms', '–', undefined);
  }
  for (const name of ['discovery', 'jwks', 'did_instance', 'did_org', 'did_agent', 'did_resolve']) share(name, 'fixed_json', 0.85);
  share('agent_info', 'verify_es256', 0.8);
  share('introspect', 'verify_es256', 0.8);
  share('token_pkjwt_es256', 'assert_es256', 0.7, 'private_key_jwt');
  share('token_jwt_bearer', 'assert_es256', 0.7, 'jwt-bearer');
  share('federation_verify', 'assert_es256', 0.7);
  share('token_basic_es256', 'token_es256', 0.85);
  {
    // Issue 11: the per-client token rate limit (on for `bench`, off for `free`, one server).
    const r = ratio(rps(load('agentidp', 'token_basic_es256', T)), rps(load('agentidp', 'token_limits_off', T)));
    check('`token_basic_es256` (per-client rate limit on) ≥ 90% of `token_limits_off` (off)', pct(r), r === undefined ? undefined : r >= 0.9);
  }
  const pb = peerBest('token_es256', T);
  const rp = ratio(rps(load('agentidp', 'token_basic_es256', T)), pb?.rps);
  check("`token_basic_es256` ≥ 4x the peer's best configuration", times(rp), rp === undefined ? undefined : rp >= 4);

  // Scale (warm points): 10,000 organizations against 1; 1,000,000 agents against 1,000.
  const warm = (o, a) => scaleLoads.find((r) => r.name === `orgs=${o},agents=${a}`);
  const first = warm(1, 1000);
  const manyOrgs = scaleLoads.find((r) => Number(r.name.match(/\d+/)[0]) === 10000);
  const r1 = ratio(rps(manyOrgs), rps(first));
  check('token throughput (warm) at 10,000 organizations ≥ 90% of 1 organization (1:1,000)',
    r1 === undefined ? '–' : `${pct(r1)} (${manyOrgs.name})`, r1 === undefined ? undefined : r1 >= 0.9);
  const million = warm(1, 1000000);
  const r2 = ratio(rps(million), rps(first));
  const largest = scaleLoads.filter((r) => r.name.startsWith('orgs=1,') && r !== first)
    .sort((a, b) => Number(b.name.split('=')[2]) - Number(a.name.split('=')[2]))[0];
  const r2b = ratio(rps(largest), rps(first));
  check('token throughput (warm) at 1,000,000 agents ≥ 70% of 1,000 agents (1 organization)',
    r2 !== undefined ? pct(r2) : r2b !== undefined ? `${pct(r2b)} at ${largest.name} only` : '–',
    r2 === undefined ? undefined : r2 >= 0.7);
  const rssTenK = scaleRss.find((x) => x.orgs >= 10000);
  check('RSS after 10,000 organizations in use < 100 MB',
    rssTenK ? `${mb(rssTenK.rss_kb)} MB (${n0(rssTenK.orgs)} organizations)` : '–',
    rssTenK ? rssTenK.rss_kb < 100 * 1024 : undefined);
}
const targetsAt = out.length;
p(`### Targets (issue 10, at ${T} connections)`);
p();
table(['target', 'measured', 'result'], checks);

process.stdout.write((targetsOnly ? out.slice(targetsAt) : out).join('\n'));
