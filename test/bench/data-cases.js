#!/usr/bin/env node
/**
 * Issue 22's data-size acceptance cases, through the real system (gateway + services as processes,
 * startStack, ports 'free'), one request at a time over loopback, on a fresh local store per case
 * seeded with the raw MongoDB driver:
 *   list    10,000 permits all created today (UTC, spread over the hours so far; 2,500 in p1, the rest
 *           over p2…p20; mixed statuses), a manager of p1: the default page, `status=draft`,
 *           `status=completed,cancelled`, `page=50`, `q=<a word in some titles>`; each answer's
 *           `count` checked against the raw driver's countDocuments of the same selection (and its
 *           page against the raw driver's sorted page, once).
 *   health  50,000 sync events over the last 24 h in batches of 10, recorded as the current code
 *           does (the per-change `sync_events` AND one `tallies` document per batch; the code before
 *           issue 22 reads the former, the current one the latter), plus 10,000 permits over a year:
 *           `GET /permits/health/`, `GET /permits/health/history/?hours=24` and `?hours=12`.
 *   export  10,000 permits over a year with their audit trail (audit events, 2 workflow steps past
 *           draft, isolation points of isolating types, a closeout per completed permit), a manager
 *           of p1: an Excel export of 200 permits of p1, detailed (time to the last byte, XLSX
 *           checked), and an over-limit export (`{}`: all 2,500 of p1) refused with 400.
 * Every case: the first request timed on its own, then `--reps` rounds (each request of the case
 * once per round); p50 and p99 of the rounds; PASS/FAIL against the issue's target (on the p50).
 * The health service caches a history for 60 s, so the health case also times 3 history requests
 * of each `hours`, every one after that cache expired (61 s waits: about 3 minutes more).
 * A request has a 60 s timeout; a request kind that fails 3 times in a row is abandoned.
 * Prints Markdown; progress goes to stderr.
 *
 *   node test/bench/data-cases.js [--cases list,health,export] [--reps 15] [--permits 10000]
 *
 * BENCH_CODE_ROOT=<another checkout, built> runs that checkout's services, gateway, seed and models
 * (its indexes) on this checkout's store binary: a before/after pair from one machine state.
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { insertChunked, placePermits } = require('./store-backends');

const root = path.resolve(__dirname, '..', '..');
const codeRoot = process.env.BENCH_CODE_ROOT ? path.resolve(process.env.BENCH_CODE_ROOT) : root;
const HOUR = 3600_000;
const DAY = 24 * HOUR;
const HUGE_RATE = '9999999/hour';
const TIMEOUT_MS = 60_000;
const GIVE_UP_AFTER = 3;
const PROJECTS = 20;
const Q_WORD = 'scaffold';
const SYNC_EVENTS = 50_000;
const SYNC_BATCH = 10;
const EXPORT_IDS = 200;
/** History requests timed after the health service's 60 s cache expired (each costs a 61 s wait). */
const UNCACHED_REPS = 3;

// list-kpis.js's mix: a year of a large site, most permits closed, a few hundred open in each state.
const MIX = [
  ['completed', 60],
  ['cancelled', 5],
  ['expired', 5],
  ['rejected', 3],
  ['draft', 5],
  ['submitted', 5],
  ['under_review', 3],
  ['approved', 4],
  ['active', 8],
  ['suspended', 2],
];
const WHEEL = MIX.flatMap(([s, w]) => Array(w).fill(s));
const TYPES = ['hot-work', 'electrical-isolation', 'confined-space'];
const ISOLATING = new Set(['electrical-isolation', 'confined-space']);
/** The statuses a permit went through to reach its own (after `draft`). */
const PATH = {
  draft: [],
  submitted: ['submitted'],
  under_review: ['submitted', 'under_review'],
  approved: ['submitted', 'under_review', 'approved'],
  active: ['submitted', 'under_review', 'approved', 'active'],
  suspended: ['submitted', 'under_review', 'approved', 'active', 'suspended'],
  completed: ['submitted', 'under_review', 'approved', 'active', 'completed'],
  expired: ['submitted', 'under_review', 'approved', 'active', 'expired'],
  rejected: ['submitted', 'rejected'],
  cancelled: ['cancelled'],
};

const progress = (msg) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} data-cases: ${msg}\n`);
const utcDay = (t) => new Date(t).toISOString().slice(0, 10);
const minuteKey = (t) => new Date(t).toISOString().slice(0, 16);
const hourKey = (t) => new Date(t).toISOString().slice(0, 13);

function parseArgs(argv) {
  const args = { cases: ['list', 'health', 'export'], reps: 15, permits: 10_000 };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1] ?? ''];
    if (k === '--cases') args.cases = v.split(',').filter(Boolean);
    else if (k === '--reps') args.reps = Number(v);
    else if (k === '--permits') args.permits = Number(v);
    else throw new Error(`unknown argument ${k}; usage: node test/bench/data-cases.js [--cases list,health,export] [--reps 15] [--permits 10000]`);
  }
  if (args.cases.some((c) => !['list', 'health', 'export'].includes(c))) throw new Error('--cases: from list,health,export');
  if (!Number.isInteger(args.reps) || args.reps < 1) throw new Error('--reps: a whole number ≥ 1');
  // p1 must hold more than one export (200) and 50 pages of 20.
  if (!Number.isInteger(args.permits) || args.permits < 4 * (EXPORT_IDS + 1) || args.permits % 4) throw new Error(`--permits: a multiple of 4, at least ${4 * (EXPORT_IDS + 1)}`);
  return args;
}

/**
 * `n` permits as the services store them: a quarter in p1 (i % 4 = 0), the rest over p2…p20, the mix
 * above (also within p1), one title in eight with Q_WORD; created over the past year (`year`) or
 * all today since UTC midnight (`today`), every stamp after its creation and never in the future;
 * numbered PTW-<year>-NNNNNN in order of creation.
 */
function permitDocs(n, spread, now) {
  const midnight = Date.parse(`${utcDay(now)}T00:00:00.000Z`);
  const [from, span] = spread === 'today' ? [midnight, Math.max(n, now - 60_000 - midnight)] : [now - 365 * DAY, 365 * DAY - HOUR];
  const docs = Array.from({ length: n }, (_, i) => {
    const k = Math.floor(i / 4);
    const status = WHEEL[(k * 37 + (i % 4) * 11) % WHEEL.length];
    const type = TYPES[i % 3];
    // 7919 is prime: the creation times are a permutation of n evenly spaced instants.
    const created = from + Math.floor(((i * 7919) % n) * (span / n));
    const at = (f) => new Date(created + Math.floor(f * Math.min(now - created, 10 * HOUR)));
    const steps = PATH[status];
    const scaffold = k % 8 === 5;
    const doc = {
      permit_number: '',
      project_id: i % 4 === 0 ? 'p1' : `p${2 + (k % (PROJECTS - 1))}`,
      permit_type_id: type,
      title: scaffold ? `Erect ${Q_WORD} at pipe rack ${1 + (i % 60)}` : `Weld bracket on pump P-${100 + (i % 900)}`,
      description: 'Replace the cracked support bracket; grind, weld and paint.',
      location: `Unit ${1 + (i % 40)}`,
      priority: ['low', 'medium', 'high', 'critical'][i % 4],
      probability: 1 + (i % 5),
      severity: 1 + (i % 3),
      risk_score: (1 + (i % 5)) * (1 + (i % 3)),
      risk_level: ['low', 'medium', 'high'][i % 3],
      control_measures: 'Fire watch, extinguisher at hand, hot-work screen.',
      ppe_requirements: ['helmet', 'gloves', 'welding_mask'],
      safety_checklist: { gas_test: true, area_cleared: i % 2 === 0 },
      planned_start_time: new Date(created + 2 * HOUR),
      planned_end_time: new Date(created + 10 * HOUR),
      status,
      created_by: `u${i % 50}`,
      version: 1 + steps.length,
      created_at: new Date(created),
      updated_at: at(0.9),
    };
    if (steps.includes('submitted')) doc.submitted_at = at(0.2);
    if (steps.includes('under_review')) Object.assign(doc, { verified_at: at(0.4), verifier_id: 'u-supervisor' });
    if (steps.includes('approved')) Object.assign(doc, { approved_at: at(0.5), approver_id: 'u-manager' });
    if (steps.includes('active')) doc.actual_start_time = at(0.6);
    if (['completed', 'expired'].includes(status)) doc.actual_end_time = at(0.8);
    return doc;
  });
  const perYear = new Map();
  for (const d of [...docs].sort((a, b) => a.created_at - b.created_at)) {
    const year = d.created_at.getUTCFullYear();
    const seq = (perYear.get(year) ?? 0) + 1;
    perYear.set(year, seq);
    d.permit_number = `PTW-${year}-${String(seq).padStart(6, '0')}`;
  }
  return { docs, counters: [...perYear].map(([year, seq]) => ({ _id: `permit_number:${year}`, seq })) };
}

/** The audit trail of inserted permits (with their `_id`s): audit events, steps, isolation points, closeouts. */
function auditTrail(permits) {
  const audit = [];
  const steps = [];
  const points = [];
  const closeouts = [];
  for (const [n, p] of permits.entries()) {
    const id = String(p._id);
    const base = { permit_id: id, project_id: p.project_id };
    const span = Math.max(1, p.updated_at - p.created_at);
    audit.push({ ...base, action: 'create', to: 'draft', user_id: p.created_by, comments: '', at: p.created_at });
    let from = 'draft';
    for (const [k, to] of PATH[p.status].entries()) {
      audit.push({
        ...base,
        action: 'status_change',
        from,
        to,
        user_id: ['under_review', 'approved'].includes(to) ? 'u-supervisor' : p.created_by,
        comments: k % 2 ? 'ok' : '',
        at: new Date(p.created_at.getTime() + Math.floor(((k + 1) / (PATH[p.status].length + 1)) * span)),
      });
      from = to;
    }
    if (p.submitted_at) {
      const verified = p.verified_at ? 'completed' : p.status === 'rejected' ? 'rejected' : 'pending';
      const approved = p.approved_at ? 'completed' : 'pending';
      steps.push({
        ...base,
        step: 'verification',
        assignee_id: 'u-supervisor',
        status: verified,
        started_at: p.submitted_at,
        ...(p.verified_at ? { completed_at: p.verified_at } : {}),
        limit_hours: 4,
      });
      steps.push({
        ...base,
        step: 'approval',
        assignee_id: 'u-manager',
        status: approved,
        ...(p.verified_at ? { started_at: p.verified_at } : {}),
        ...(p.approved_at ? { completed_at: p.approved_at } : {}),
        limit_hours: 4,
      });
    }
    if (ISOLATING.has(p.permit_type_id) && p.submitted_at) {
      const state = { submitted: 'assigned', under_review: 'isolated', rejected: 'assigned', completed: 'deisolated' }[p.status] ?? 'verified';
      for (let k = 0; k < 1 + (n % 2); k++) {
        const point = {
          ...base,
          name: `Breaker MCC-${1 + ((n + k) % 40)}`,
          energy_type: p.permit_type_id === 'confined-space' ? 'mechanical' : 'electrical',
          required: true,
          status: state,
          lock_ids: state === 'assigned' ? [] : [`L-${n}-${k}`],
          notes: '',
          version: 1 + ['assigned', 'isolated', 'verified', 'deisolated'].indexOf(state),
        };
        if (state !== 'assigned') Object.assign(point, { isolated_by: p.created_by, isolated_at: p.submitted_at });
        if (state === 'verified' || state === 'deisolated') Object.assign(point, { verified_by: 'u-supervisor', verified_at: p.verified_at ?? p.submitted_at });
        if (state === 'deisolated') Object.assign(point, { deisolated_by: p.created_by, deisolated_at: p.actual_end_time ?? p.updated_at });
        points.push(point);
      }
    }
    if (p.status === 'completed') {
      closeouts.push({
        ...base,
        checklist: { area_clean: true, tools_removed: true, fire_watch_done: true },
        remarks: 'Area handed back.',
        completed: true,
        completed_at: p.actual_end_time,
        completed_by: p.created_by,
        version: 2,
      });
    }
  }
  return { audit, steps, points, closeouts };
}

/**
 * 50,000 sync events over the 24 h before `now` in batches of 10, as the current sync service
 * records a batch: its events (`sync_events`) and one `tallies` document with its counts. Per
 * batch 10 outcomes: every 4th batch re-sends one change (applied, already_applied), every 10th
 * has a conflict, every 25th a rejected change. Returns the docs and the batches' times and counts.
 */
function syncHistory(now) {
  const batches = SYNC_EVENTS / SYNC_BATCH;
  const step = (DAY - 2 * 60_000) / batches;
  const events = [];
  const tallies = [];
  const stamps = [];
  for (let b = 0; b < batches; b++) {
    const at = new Date(now - DAY + 60_000 + Math.floor(b * step));
    const outcomes = Array(SYNC_BATCH).fill('applied');
    if (b % 4 === 0) outcomes[1] = 'already_applied';
    if (b % 10 === 0) outcomes[2] = 'conflicts';
    if (b % 25 === 0) outcomes[3] = 'rejected';
    const counts = {};
    for (const [k, o] of outcomes.entries()) {
      counts[o] = (counts[o] ?? 0) + 1;
      events.push({
        device_id: `tablet-${b % 40}`,
        user_id: `u${b % 50}`,
        project_id: `p${1 + (b % PROJECTS)}`,
        entity: k % 3 ? 'permit' : 'isolation_point',
        outcome: o === 'conflicts' ? 'conflict' : o === 'rejected' ? 'rejected' : 'applied',
        reason: o === 'applied' ? (k % 2 ? 'created' : 'updated') : o === 'already_applied' ? 'already_applied' : o === 'conflicts' ? 'version_conflict' : 'validation_failed',
        at,
      });
    }
    tallies.push({ series: 'sync', minute: minuteKey(at.getTime()), hour: hourKey(at.getTime()), counts, at });
    stamps.push({ at: at.getTime(), counts });
  }
  return { events, tallies, stamps };
}

/** What a 24 h window ending at `t` holds of the seeded batches (from `since`, and from its minute). */
function expectedSync(stamps, t) {
  const since = t - DAY;
  const sinceMinute = Math.floor(since / 60_000) * 60_000;
  const sum = (from) =>
    stamps
      .filter((s) => s.at >= from)
      .reduce((a, s) => ({ applied: a.applied + (s.counts.applied ?? 0), conflicts: a.conflicts + (s.counts.conflicts ?? 0), rejected: a.rejected + (s.counts.rejected ?? 0) }), {
        applied: 0,
        conflicts: 0,
        rejected: 0,
      });
  return { exact: sum(since), fromMinute: sum(sinceMinute) };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** One HTTP request over loopback (no compression asked for); resolves with status, headers, body and ms. */
function request(url, { token, method = 'GET', body }) {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const done = (r) => resolve({ ...r, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
    const req = http.request(url, {
      method,
      agent,
      signal: AbortSignal.timeout(TIMEOUT_MS),
      headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
    });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => done({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', (err) => done({ error: err.name === 'AbortError' ? `no complete answer within ${TIMEOUT_MS / 1000} s` : err.message }));
    });
    req.on('error', (err) => done({ error: err.name === 'AbortError' ? `no answer within ${TIMEOUT_MS / 1000} s` : err.message }));
    req.end(payload);
  });
}

const json = (r) => {
  try {
    return JSON.parse(r.body.toString('utf8'));
  } catch {
    return undefined;
  }
};

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] : undefined;
}

/**
 * Runs the request kinds of a case: each once (the first request, timed on its own), then `reps`
 * rounds of each once. `check(r)` returns an error text for a failed request (not timed), or
 * `{soft: text}` for an answer that came but is wrong (timed, and the kind FAILs). Returns per kind: first, times, failures, the first failure, abandoned, last answer.
 */
async function runRounds(kinds, reps, { pauseMs = 0, first = true } = {}) {
  const out = kinds.map((k) => ({
    name: k.name,
    target: k.target,
    times: [],
    failures: 0,
    wrong: 0,
    wrongError: undefined,
    streak: 0,
    firstError: undefined,
    abandoned: false,
    first: undefined,
    answers: [],
  }));
  const once = async (k, o) => {
    const r = await k.send();
    const verdict = r.error ?? k.check(r);
    o.answers.push(r);
    if (o.answers.length > 2) o.answers.splice(1, 1);
    if (verdict?.soft) {
      // An answer in time but wrong in content (a figure missing, a count off): timed, and a FAIL.
      o.wrong++;
      o.wrongError ??= verdict.soft.slice(0, 240);
      o.streak = 0;
      return r.ms;
    }
    const error = verdict;
    if (error) {
      o.failures++;
      o.streak++;
      o.firstError ??= `${r.status ? `HTTP ${r.status}: ` : ''}${error}`.slice(0, 240);
      if (o.streak >= GIVE_UP_AFTER) o.abandoned = true;
      progress(`${k.name}: ${String(error).slice(0, 200)} (${r.ms.toFixed(0)} ms)`);
      return undefined;
    }
    o.streak = 0;
    return r.ms;
  };
  for (const [i, k] of kinds.entries()) {
    if (!first) {
      out[i].first = 'n/a';
      continue;
    }
    const ms = await once(k, out[i]);
    out[i].first = ms ?? { failed: out[i].answers.at(-1)?.ms };
    out[i].firstWrong = out[i].wrong > 0;
  }
  for (let round = 0; round < reps; round++) {
    if (pauseMs) {
      progress(`waiting ${pauseMs / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
    for (const [i, k] of kinds.entries()) {
      if (out[i].abandoned) continue;
      const ms = await once(k, out[i]);
      if (ms !== undefined) out[i].times.push(ms);
    }
    if ((round + 1) % 5 === 0 || round + 1 === reps) progress(`round ${round + 1}/${reps}`);
  }
  return out;
}

const f1 = (x) => (x === undefined ? '–' : x.toFixed(1));

function printRows(rows, reps, extra = () => '') {
  console.log(`| request | first (ms) | p50 (ms) | p99 (ms) | ok / sent | target (p50) | verdict |${extra(null) ? ` ${extra(null)} |` : ''}`);
  console.log(`|---|---:|---:|---:|---:|---|---|${extra(null) ? '---|' : ''}`);
  for (const r of rows) {
    const p50 = quantile(r.times, 0.5);
    const p99 = quantile(r.times, 0.99);
    const first =
      r.first === 'n/a'
        ? '–'
        : typeof r.first === 'number'
          ? `${f1(r.first)}${r.firstWrong ? ' (wrong answer)' : ''}`
          : `failed${r.first?.failed !== undefined ? ` after ${f1(r.first.failed)}` : ''}`;
    const sent = r.times.length + r.failures + (typeof r.first === 'number' ? 1 : 0);
    const ok = sent - r.failures;
    let verdict;
    if (!r.times.length) verdict = `**FAIL** (no successful request${r.abandoned ? `; abandoned after ${GIVE_UP_AFTER} failures in a row` : ''}: ${r.firstError})`;
    else if (r.failures) verdict = `**FAIL** (${r.failures} failed: ${r.firstError})`;
    else if (r.wrong) verdict = `**FAIL** (${r.wrong} wrong answer${r.wrong > 1 ? 's' : ''}${r.firstWrong ? ', the first among them' : ''}: ${r.wrongError})`;
    else verdict = p50 <= r.target ? 'PASS' : '**FAIL**';
    console.log(`| ${r.name} | ${first} | ${f1(p50)} | ${f1(p99)} | ${ok} / ${sent} | ≤ ${r.target} ms | ${verdict} |${extra(null) ? ` ${extra(r)} |` : ''}`);
  }
  console.log(`\n(first = the first request after the stack started; p50/p99 of ${reps} rounds after it.)\n`);
}

/** A fresh store (this checkout's binary) and stack (BENCH_CODE_ROOT's code), seeded by `seed(db, models)`; runs `fn(ctx)`. */
async function withStack(name, shared, seed, fn) {
  const { startStore } = require(path.join(root, 'libs/devstore/dist'));
  const { startStack } = require(path.join(codeRoot, 'libs/devstore/dist/stack.js'));
  const { registerModels, ensureIndexes } = require(path.join(codeRoot, 'libs/db/dist'));
  const mongoose = require(require.resolve('mongoose', { paths: [path.join(codeRoot, 'libs/db')] }));
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), `ptw-bench-data-${name}-`));
  let store;
  let stack;
  let conn;
  try {
    store = await startStore({ database: `ptw_data_${name}` });
    conn = await mongoose.createConnection(store.url, { retryWrites: false, autoIndex: false }).asPromise();
    const models = registerModels(conn);
    await ensureIndexes(conn);
    const t0 = Date.now();
    const seeded = await seed(conn.db, models);
    const seedS = (Date.now() - t0) / 1000;
    progress(`${name}: seeded in ${seedS.toFixed(1)} s; starting the stack`);
    stack = await startStack({
      ports: 'free',
      logDir,
      mongoUrl: store.url,
      redisUrl: shared.redisUrl,
      env: {
        PTW_JWT_SECRET: shared.secret,
        LOG_LEVEL: 'warn',
        PTW_THROTTLE_BULK_EXPORT: HUGE_RATE,
        PTW_THROTTLE_KPI: HUGE_RATE,
        PTW_THROTTLE_KEY_PREFIX: `bench-data-${process.pid}-${name}`,
        // No job runs while measuring (overdue steps would send notifications, permits would expire).
        PTW_JOBS_WORKER: 'false',
      },
    });
    // Projects, users and permit types; the permits are already there, so it adds no demo permit.
    const s = spawnSync(process.execPath, [path.join(codeRoot, 'services/workflow/dist/seed.js')], { env: stack.env, encoding: 'utf8' });
    if (s.status !== 0) throw new Error(`seed failed: ${s.stderr}`);
    return await fn({ api: `${stack.gatewayUrl}/api/v1/ptw`, db: conn.db, seeded, seedS });
  } finally {
    await stack?.stop().catch((err) => progress(`${name}: stopping the stack: ${err.message}`));
    await conn?.close();
    await store?.stop();
    fs.rmSync(logDir, { recursive: true, force: true });
  }
}

async function seedPermits(db, n, spread, now) {
  const { docs, counters } = permitDocs(n, spread, now);
  // created_day: what checkouts before the registration order (BENCH_CODE_ROOT) list by; ignored since.
  for (const d of docs) d.created_day = utcDay(d.created_at);
  await insertChunked(db.collection('permits'), await placePermits(db.collection('permits'), docs));
  for (const c of counters) await db.collection('counters').updateOne({ _id: c._id }, { $max: { seq: c.seq } }, { upsert: true });
  return docs;
}

async function listCase(args, shared) {
  const now = Date.now();
  return withStack(
    'list',
    shared,
    (db) => seedPermits(db, args.permits, 'today', now),
    async ({ api, db, seedS }) => {
      const permits = db.collection('permits');
      const rx = { $regex: Q_WORD, $options: 'i' };
      const kinds = [
        { name: 'default page (page_size=20)', qs: 'page_size=20', filter: {}, page: 1, target: 50 },
        { name: 'status=draft', qs: 'status=draft&page_size=20', filter: { status: 'draft' }, page: 1, target: 100 },
        { name: 'status=completed,cancelled', qs: 'status=completed,cancelled&page_size=20', filter: { status: { $in: ['completed', 'cancelled'] } }, page: 1, target: 100 },
        { name: 'page=50&page_size=20', qs: 'page=50&page_size=20', filter: {}, page: 50, target: 100 },
        { name: `q=${Q_WORD}`, qs: `q=${Q_WORD}&page_size=20`, filter: { $or: [{ title: rx }, { permit_number: rx }, { location: rx }, { description: rx }] }, page: 1, target: 300 },
      ];
      const checks = [];
      for (const k of kinds) {
        const sel = { project_id: 'p1', ...k.filter };
        k.expected = await permits.countDocuments(sel);
        k.rawPage = (
          await permits
            .find(sel, { projection: { _id: 1 } })
            .sort({ created_at: -1, _id: -1 })
            .skip((k.page - 1) * 20)
            .limit(20)
            .toArray()
        ).map((d) => String(d._id));
        k.seen = new Set();
        k.pageSeen = new Set();
        k.send = () => request(`${api}/permits/?${k.qs}`, { token: shared.tokens.manager });
        k.check = (r) => {
          if (r.status !== 200) return r.body.toString('utf8').slice(0, 200);
          const b = json(r);
          if (!b || typeof b.count !== 'number' || !Array.isArray(b.results)) return 'not a {count, results} answer';
          k.seen.add(b.count);
          const ids = b.results.map((p) => p.id);
          k.pageSeen.add(ids.join(',') === k.rawPage.join(',') ? 'same' : ids.length === k.rawPage.length ? 'other order/ids' : `${ids.length} results, raw ${k.rawPage.length}`);
          return b.count === k.expected ? undefined : { soft: `count ${b.count}, raw countDocuments ${k.expected}` };
        };
      }
      progress('list: measuring');
      const rows = await runRounds(kinds, args.reps);
      for (const [i, k] of kinds.entries()) {
        const seen = [...k.seen];
        const countOk = seen.length === 1 && seen[0] === k.expected;
        const pageOk = [...k.pageSeen].every((s) => s === 'same');
        checks.push({ name: k.name, expected: k.expected, seen, countOk, page: [...k.pageSeen].join('; ') || '–', pageOk });
        rows[i].extra = `${seen.length ? seen.join(', ') : '–'} vs ${k.expected}: ${countOk ? 'OK' : '**MISMATCH**'}; page ${pageOk ? 'same as raw' : `**${[...k.pageSeen].join('; ')}**`}`;
      }
      const p1 = await permits.countDocuments({ project_id: 'p1' });
      const total = await permits.countDocuments({});
      console.log(
        `### 1. One-day list — ${total.toLocaleString('en')} permits all created today (UTC), ${p1.toLocaleString('en')} in p1; a manager of p1 (seeded in ${seedS.toFixed(0)} s)\n`,
      );
      printRows(rows, args.reps, (r) => (r ? r.extra : 'count vs raw countDocuments; page vs raw sorted page'));
      return rows.map((r, i) => ({ ...r, countOk: checks[i].countOk }));
    },
  );
}

async function healthCase(args, shared) {
  const now = Date.now();
  let stamps;
  const seed = async (db) => {
    const h = syncHistory(now);
    stamps = h.stamps;
    await insertChunked(db.collection('sync_events'), h.events, 2000);
    await insertChunked(db.collection('tallies'), h.tallies, 2000);
    await seedPermits(db, args.permits, 'year', now);
  };
  return withStack('health', shared, seed, async ({ api, seedS }) => {
    const token = shared.tokens.manager;
    const nulls = (b) => {
      const out = [];
      for (const sec of ['sync', 'exports', 'workflow']) {
        for (const [k, v] of Object.entries(b?.[sec] ?? {})) if (v === null) out.push(`${sec}.${k}`);
        if (b?.[sec]?.unavailable_reason) out.push(`${sec}: ${b[sec].unavailable_reason}`);
      }
      for (const [s, state] of Object.entries(b?.services ?? {})) if (state !== 'SERVING') out.push(`services.${s} ${state}`);
      return out;
    };
    /** The sync figures against the seeded batches: from the window's exact start (answer's end) to its minute (request's start). */
    const figureErrors = (b, r) => {
      const lo = expectedSync(stamps, Date.now()).exact;
      const hi = expectedSync(stamps, Date.now() - r.ms - 1000).fromMinute;
      const out = [];
      for (const [field, key] of [
        ['applied_last_24h', 'applied'],
        ['conflicts_last_24h', 'conflicts'],
        ['rejected_last_24h', 'rejected'],
      ]) {
        const v = b?.sync?.[field];
        if (v !== null && v !== undefined && !(v >= lo[key] && v <= hi[key])) out.push(`sync.${field} ${v}, seeded ${lo[key] === hi[key] ? lo[key] : `${lo[key]}–${hi[key]}`}`);
      }
      return out;
    };
    const healthCheck = (r) => {
      if (r.status !== 200) return r.body.toString('utf8').slice(0, 200);
      const b = json(r);
      if (!b?.sync) return 'no sync section';
      // Judged when the answer came: the window moves on.
      r.wrongFigures = figureErrors(b, r);
      const bad = [...nulls(b), ...r.wrongFigures];
      return bad.length ? { soft: `degraded or wrong: ${bad.join('; ')}` } : undefined;
    };
    const historyCheck = (hours) => (r) => {
      if (r.status !== 200) return r.body.toString('utf8').slice(0, 200);
      const b = json(r);
      if (!Array.isArray(b?.hours) || b.hours.length !== hours) return `expected ${hours} hours, got ${JSON.stringify(b).slice(0, 160)}`;
      return b.degraded ? { soft: 'degraded: true' } : undefined;
    };
    const kinds = [
      { name: 'GET /permits/health/', send: () => request(`${api}/permits/health/`, { token }), check: healthCheck, target: 200 },
      { name: 'GET /permits/health/history/?hours=24', send: () => request(`${api}/permits/health/history/?hours=24`, { token }), check: historyCheck(24), target: 300 },
      { name: 'GET /permits/health/history/?hours=12', send: () => request(`${api}/permits/health/history/?hours=12`, { token }), check: historyCheck(12), target: 300 },
    ];
    progress('health: measuring');
    const t = Date.now();
    const rows = await runRounds(kinds, args.reps);
    // The rounds above mostly hit the health service's 60 s history cache: a few more requests of
    // each history, every one after that cache expired (the rollups are built by then).
    const uncachedReps = Math.min(UNCACHED_REPS, args.reps);
    let uncachedNote = `Not measured after the cache expired: the history requests above failed.`;
    if (rows.slice(1).every((r) => r.times.length && !r.abandoned)) {
      progress(`health: ${uncachedReps} more history requests, each after the 60 s cache expired`);
      const uncached = await runRounds(
        kinds.slice(1).map((k) => ({ ...k, name: `${k.name}, cache expired` })),
        uncachedReps,
        { pauseMs: 61_000, first: false },
      );
      rows.push(...uncached);
      uncachedNote = `The rows "cache expired": ${uncachedReps} requests of each, every one more than 60 s after the previous one of its \`hours\` (rollups already built).`;
    }
    const exp = expectedSync(stamps, t);
    console.log(
      `### 2. Health — ${SYNC_EVENTS.toLocaleString('en')} sync events in the last 24 h (${SYNC_EVENTS / SYNC_BATCH} batches of ${SYNC_BATCH}: sync_events + one tallies document each), ${args.permits.toLocaleString('en')} permits; a manager of p1 (seeded in ${seedS.toFixed(0)} s)\n`,
    );
    printRows(rows, args.reps);
    console.log(
      `The health service caches a history answer for 60 s per \`hours\` (when not degraded): the rounds after the first of each \`hours\` are mostly cache hits. ${uncachedNote}\n`,
    );
    const show = (r) => {
      if (!r || r.status !== 200) return r ? `HTTP ${r.status ?? '–'} ${(r.error ?? r.body?.toString('utf8') ?? '').slice(0, 160)}` : '–';
      const b = json(r);
      const bad = nulls(b);
      const wrong = r.wrongFigures ?? [];
      return (
        `sync ${JSON.stringify(b.sync)}, exports ${JSON.stringify(b.exports)}, workflow ${JSON.stringify(b.workflow)}, services ${JSON.stringify(b.services)}, degraded ${b.degraded ?? false} — ` +
        `${bad.length ? `**null/UNAVAILABLE: ${bad.join('; ')}**` : 'no figure null, no service UNAVAILABLE'}; ${wrong.length ? `**wrong: ${wrong.join('; ')}**` : 'sync figures match the seeded events'}`
      );
    };
    console.log(
      `Expected in the window when measuring started: applied ${exp.exact.applied} (from the window's minute: ${exp.fromMinute.applied}), conflicts ${exp.exact.conflicts}, rejected ${exp.exact.rejected} (already_applied re-sends are not counted as applied).\n`,
    );
    console.log(`- first health answer: ${show(rows[0].answers[0])}`);
    console.log(`- last health answer: ${show(rows[0].answers.at(-1))}`);
    for (const i of [1, 2]) {
      const r = rows[i].answers[0];
      const b = r?.status === 200 ? json(r) : undefined;
      const sum = b?.hours?.reduce((a, h) => ({ applied: a.applied + (h.applied ?? 0), conflicts: a.conflicts + (h.conflicts ?? 0), rejected: a.rejected + (h.rejected ?? 0) }), {
        applied: 0,
        conflicts: 0,
        rejected: 0,
      });
      console.log(
        `- first ${rows[i].name.replace('GET /permits/health/history/', 'history ')}: ${b ? `degraded ${b.degraded}, ${b.hours.length} hours summing to ${JSON.stringify(sum)}` : `HTTP ${r?.status ?? '–'} ${(r?.error ?? r?.body?.toString('utf8') ?? '').slice(0, 160)}`}`,
      );
    }
    console.log('');
    const applied = rows[0].answers.at(-1)?.status === 200 ? json(rows[0].answers.at(-1))?.sync?.applied_last_24h : undefined;
    return rows.map((r, i) => ({ ...r, figure: i === 0 ? applied : undefined }));
  });
}

async function exportCase(args, shared) {
  const now = Date.now();
  const seed = async (db) => {
    const docs = await seedPermits(db, args.permits, 'year', now);
    const trail = auditTrail(docs);
    await insertChunked(db.collection('audit_events'), trail.audit, 2000);
    await insertChunked(db.collection('workflow_steps'), trail.steps, 2000);
    await insertChunked(db.collection('isolation_points'), trail.points, 2000);
    await insertChunked(db.collection('closeouts'), trail.closeouts, 2000);
    const p1 = docs.filter((d) => d.project_id === 'p1').map((d) => String(d._id));
    return { p1, counts: { audit: trail.audit.length, steps: trail.steps.length, points: trail.points.length, closeouts: trail.closeouts.length } };
  };
  return withStack('export', shared, seed, async ({ api, seeded, seedS }) => {
    const token = shared.tokens.manager;
    let n = 0;
    const sizes = [];
    const kinds = [
      {
        name: `Excel export of ${EXPORT_IDS} permits of p1, detailed (to the last byte)`,
        target: 2000,
        send: () => {
          // A different 200 each time (wrapping after p1 runs out).
          const from = (n++ * EXPORT_IDS) % (seeded.p1.length - EXPORT_IDS + 1);
          return request(`${api}/permits/bulk_export_excel/`, { token, method: 'POST', body: { permit_ids: seeded.p1.slice(from, from + EXPORT_IDS), detailed: true } });
        },
        check: (r) => {
          if (r.status !== 200) return r.body.toString('utf8').slice(0, 200);
          if (r.body.subarray(0, 2).toString('latin1') !== 'PK') return `not an XLSX (starts with ${JSON.stringify(r.body.subarray(0, 8).toString('latin1'))})`;
          if (r.headers['x-permit-count'] !== String(EXPORT_IDS)) return `X-Permit-Count ${r.headers['x-permit-count']}`;
          sizes.push(r.body.length);
          return undefined;
        },
      },
      {
        name: `over-limit export refused (\`{}\`: all ${seeded.p1.length} of p1)`,
        target: 100,
        send: () => request(`${api}/permits/bulk_export_excel/`, { token, method: 'POST', body: {} }),
        check: (r) => {
          const b = r.status === 400 ? json(r) : undefined;
          if (!b?.error || !/too many permits/i.test(b.error.message ?? '')) return `expected 400 "Too many permits…", got ${r.body.toString('utf8').slice(0, 200)}`;
          return undefined;
        },
      },
    ];
    progress('export: measuring');
    const rows = await runRounds(kinds, args.reps);
    const c = seeded.counts;
    console.log(
      `### 3. Export — ${args.permits.toLocaleString('en')} permits over a year with their audit trail (${c.audit.toLocaleString('en')} audit events, ${c.steps.toLocaleString('en')} workflow steps, ${c.points.toLocaleString('en')} isolation points, ${c.closeouts.toLocaleString('en')} closeouts); a manager of p1 (seeded in ${seedS.toFixed(0)} s)\n`,
    );
    printRows(rows, args.reps);
    if (sizes.length)
      console.log(`XLSX size: ${Math.min(...sizes).toLocaleString('en')}–${Math.max(...sizes).toLocaleString('en')} bytes, every one starting with PK and X-Permit-Count ${EXPORT_IDS}.\n`);
    return rows;
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  for (const dist of ['libs/devstore/dist/stack.js', 'libs/db/dist/index.js', 'services/workflow/dist/seed.js', 'gateway/dist/main.js']) {
    if (!fs.existsSync(path.join(codeRoot, dist))) throw new Error(`${path.join(codeRoot, dist)} is missing: run \`npx tsc -b\` there first`);
  }
  const { DEV_JWT_SECRET, mintToken } = require(path.join(root, 'libs/common/dist'));
  const { ensureRedis } = require(path.join(root, 'libs/devstore/dist'));
  const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
  const shared = {
    secret: DEV_JWT_SECRET,
    redisUrl: process.env.REDIS_URL || (await ensureRedis()),
    tokens: { manager: await mintToken(auth, { user: 'u-manager', role: 'manager', projects: ['p1'], ttlSeconds: 24 * 3600 }) },
  };
  const cpus = os.cpus();
  const load = () =>
    os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ');
  const gitHead = (dir) => spawnSync('git', ['-C', dir, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' }).stdout.trim().slice(0, 100);
  const started = new Date();
  const loadStart = load();
  console.log(`## Issue 22 data cases (\`node test/bench/data-cases.js --cases ${args.cases.join(',')} --reps ${args.reps} --permits ${args.permits}\`)\n`);
  console.log(
    `Code: ${codeRoot === root ? 'this checkout' : codeRoot} (${gitHead(codeRoot)}); store binary: this checkout's (FerretDB on ${process.env.PTW_STORE_BACKEND || 'its default backend'}). ` +
      `Machine: ${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), node ${process.version}. Started ${started.toISOString()}, load average ${loadStart} (1/5/15 min). ` +
      `One request at a time over loopback through the gateway (keep-alive, no compression asked for), ${TIMEOUT_MS / 1000} s timeout each; PASS/FAIL on the p50.\n`,
  );
  const results = {};
  const cases = { list: listCase, health: healthCase, export: exportCase };
  for (const name of args.cases) {
    progress(`case ${name}`);
    try {
      results[name] = await cases[name](args, shared);
    } catch (err) {
      progress(`${name}: ${err.stack ?? err}`);
      console.log(
        `### ${name}: could not run — ${String(err.message ?? err)
          .split('\n')[0]
          .slice(0, 300)}\n`,
      );
      results[name] = { error: true };
    }
  }
  console.log('### Summary\n');
  console.log('| case | request | p50 (ms) | target | verdict |');
  console.log('|---|---|---:|---|---|');
  let failed = 0;
  for (const [name, rows] of Object.entries(results)) {
    if (rows.error) {
      console.log(`| ${name} | – | – | – | **FAIL** (could not run) |`);
      failed++;
      continue;
    }
    for (const r of rows) {
      const p50 = quantile(r.times, 0.5);
      const ok = r.times.length && !r.failures && !r.wrong && p50 <= r.target && r.countOk !== false;
      if (!ok) failed++;
      console.log(
        `| ${name} | ${r.name} | ${f1(p50)} | ≤ ${r.target} ms | ${ok ? 'PASS' : `**FAIL**${r.countOk === false ? ' (count mismatch)' : !r.times.length ? ' (no successful request)' : r.failures ? ` (${r.failures} failed)` : r.wrong ? ` (${r.wrong} wrong answers)` : ''}`} |`,
      );
    }
  }
  console.log(
    `\nEnded ${new Date().toISOString()} (${((Date.now() - started) / 1000).toFixed(0)} s); load average at start ${loadStart}, at end ${load()}. ${failed ? `${failed} FAIL` : 'all PASS'}.`,
  );
  agent.destroy();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
