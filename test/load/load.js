#!/usr/bin/env node
/**
 * `make load`: the shift-start scenario against the real system (store, four services, gateway as
 * processes), a program that prints figures — not a test.
 *
 * N tablets (users tab-1…tab-N, role worker on p1, a device id each) each send one sync batch a
 * second: 8 permit creates and 2 edits of their own permits created earlier (server_id and
 * client_version from the answers); one batch in 8 is the tablet's last answered batch sent again
 * byte for byte, as after a lost answer, and every change applied before must come back
 * `already_applied`. M managers (mgr-1…mgr-M, manager on p1 and p2, or --manager-projects) each read, every second, the
 * permit list, the KPIs and one permit they know. The store is pre-filled with P permits over 20
 * projects (a quarter in p1), created over the past year or all today. The schedule is open loop:
 * every request is sent at its time unless its client already has --max-in-flight of that route
 * out (offered, not sent); latency runs from the scheduled time.
 *
 * Prints per route count, p50/p99/max, statuses, offered vs served (2xx answered by the end of the
 * run + a 5-s grace), the CPU of every process (store = FerretDB + its PostgreSQL cluster, and this
 * generator) and PASS/FAIL per target; then verifies the store (store.js) and exits 1 when that
 * verification fails (targets alone do not fail a run). --sweep runs one fresh system per tablet
 * count and prints the largest count that holds the targets.
 *
 *   node test/load/load.js [--tablets 20] [--managers 4] [--seconds 60] [--permits 10000]
 *        [--spread year|today] [--sweep 10,20,40,80] [--manager-projects p1,p2] [--max-in-flight 4] [--timeout-ms 30000]
 *        [--gateway http://127.0.0.1:8080 --mongo mongodb://127.0.0.1:PORT/ptw [--redis URL] [--throttle-prefix ptw:throttle]]
 *        [--cold] [--keep-logs]
 * A fresh system is warmed up first by default (see warmUp: a shift starts on a running system); --cold
 * (LOAD_COLD=1) starts the load as soon as the stack answers.
 * (or LOAD_TABLETS, LOAD_MANAGERS, LOAD_SECONDS, LOAD_PERMITS, LOAD_SPREAD, LOAD_SWEEP, LOAD_GATEWAY,
 * LOAD_MONGO, LOAD_REDIS, LOAD_MANAGER_PROJECTS). Run after `make build store` (`make load ARGS="…"` does both).
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Run, Tablet, Manager, Pool, Ledger, httpClient, percentile, WARM_MS } = require('./traffic');
const { seedSite, verifyStore, userDoc, PROJECTS } = require('./store');
const { readCpu, discover, postmasterOf } = require('./procs');

const root = path.resolve(__dirname, '..', '..');
/**
 * The code under load: this checkout, or LOAD_CODE_ROOT's (another checkout, built: e.g. `git worktree
 * add /tmp/before <commit>`, its node_modules, `npx tsc -b`), for a before/after pair on one machine
 * state. The store, the seeding and this generator always come from this checkout.
 */
const codeRoot = process.env.LOAD_CODE_ROOT ? path.resolve(process.env.LOAD_CODE_ROOT) : root;
const GRACE_MS = 5000;
/**
 * The stack's own sync rate: SPEC's 60/min is exactly one batch a second, and a sliding 60-s window
 * admits no timing jitter at that rate (a tablet's 61st batch can land 59.99 s after its 1st).
 */
const STACK_THROTTLE = { PTW_THROTTLE_SYNC: '120/min' };
/**
 * A shift starts on a running system, one that has answered lists and KPIs before: its status
 * readings (@ptw/domain status-blocks.ts: one per 25 places of a project, read when a list or the
 * KPIs first need them) and its KPI snapshots exist. Seeded straight into the store, the permits have
 * none, and reading them would fall in the run's first seconds. This asks, through the gateway and one
 * at a time, what users would have asked before: each seeded project's drafts (a status-filtered
 * list reads the project's blocks) and the managers' KPIs. --cold skips it (a restart at shift start).
 */
async function warmUp(client, { listToken, kpiToken }, projects) {
  const t0 = Date.now();
  const statuses = [];
  for (const p of projects) statuses.push((await client.request('GET', `/api/v1/ptw/permits/?project=${p}&status=draft&page_size=1`, listToken)).status);
  statuses.push((await client.request('GET', '/api/v1/ptw/permits/kpis/', kpiToken)).status);
  const failed = statuses.filter((x) => x !== 200).length;
  return { seconds: (Date.now() - t0) / 1000, requests: statuses.length, failed };
}
const THROTTLE_SCOPES = ['ptw_sync', 'ptw_bulk_export', 'ptw_kpi', 'ptw_notifications'];
const PROCESS_ORDER = ['gateway', 'sync', 'workflow', 'export', 'health', 'ferretdb', 'postgres', 'generator'];
const TARGETS = [
  { name: 'sync p99 ≤ 1 s', route: 'sync', limitMs: 1000 },
  { name: 'list p99 ≤ 300 ms', route: 'list', limitMs: 300 },
  { name: 'KPIs p99 ≤ 300 ms', route: 'kpis', limitMs: 300 },
  { name: 'permit read p99 ≤ 100 ms', route: 'read', limitMs: 100 },
];

const USAGE =
  'usage: node test/load/load.js [--tablets 20] [--managers 4] [--seconds 60] [--permits 10000] [--spread year|today] ' +
  '[--sweep 10,20,40,80] [--manager-projects p1,p2] [--max-in-flight 4] [--timeout-ms 30000] [--gateway URL --mongo URL [--redis URL] [--throttle-prefix P]] [--cold] [--keep-logs]';

/** A bad command line: its message alone is printed. */
class UsageError extends Error {}

const progress = (msg) => process.stderr.write(`load: ${msg}\n`);

/** Only loopback: the load never leaves the machine. */
function loopback(text, what) {
  const u = new URL(text);
  if (!['127.0.0.1', 'localhost'].includes(u.hostname)) throw new UsageError(`${what}: only 127.0.0.1 is allowed, not ${u.hostname}`);
  u.hostname = '127.0.0.1';
  return u.toString().replace(/\/$/, '');
}

function parseArgs(argv) {
  const env = process.env;
  const a = {
    tablets: env.LOAD_TABLETS ?? '20',
    managers: env.LOAD_MANAGERS ?? '4',
    seconds: env.LOAD_SECONDS ?? '60',
    permits: env.LOAD_PERMITS,
    spread: env.LOAD_SPREAD ?? 'year',
    sweep: env.LOAD_SWEEP,
    maxInFlight: env.LOAD_MAX_IN_FLIGHT ?? '4',
    timeoutMs: env.LOAD_TIMEOUT_MS ?? '30000',
    gateway: env.LOAD_GATEWAY,
    mongo: env.LOAD_MONGO,
    redis: env.LOAD_REDIS,
    throttlePrefix: env.LOAD_THROTTLE_PREFIX ?? 'ptw:throttle',
    managerProjects: env.LOAD_MANAGER_PROJECTS ?? 'p1,p2',
    keepLogs: false,
    cold: env.LOAD_COLD === '1',
  };
  const flags = {
    '--tablets': 'tablets',
    '--managers': 'managers',
    '--seconds': 'seconds',
    '--permits': 'permits',
    '--spread': 'spread',
    '--sweep': 'sweep',
    '--max-in-flight': 'maxInFlight',
    '--timeout-ms': 'timeoutMs',
    '--gateway': 'gateway',
    '--mongo': 'mongo',
    '--redis': 'redis',
    '--throttle-prefix': 'throttlePrefix',
    '--manager-projects': 'managerProjects',
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--keep-logs') a.keepLogs = true;
    else if (k === '--cold') a.cold = true;
    else if (k === '--help' || k === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else if (flags[k] && argv[i + 1] !== undefined) a[flags[k]] = argv[++i];
    else throw new UsageError(`unknown or incomplete argument ${k}\n${USAGE}`);
  }
  const int = (name, v, min, max) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name}: a whole number from ${min} to ${max}, not "${v}"`);
    return n;
  };
  const external = Boolean(a.gateway || a.mongo);
  if (external && !(a.gateway && a.mongo)) throw new UsageError('--gateway and --mongo go together (the store is read to verify the run)');
  const opts = {
    tablets: int('tablets', a.tablets, 0, 2000),
    managers: int('managers', a.managers, 0, 500),
    seconds: int('seconds', a.seconds, 1, 3600),
    // Against a running system nothing is seeded unless asked.
    permits: int('permits', a.permits ?? (external ? '0' : '10000'), 0, 1_000_000),
    spread: a.spread,
    sweep: a.sweep ? a.sweep.split(',').map((v) => int('sweep', v, 1, 2000)) : undefined,
    maxInFlight: int('max-in-flight', a.maxInFlight, 1, 100),
    timeoutMs: int('timeout-ms', a.timeoutMs, 100, 120_000),
    gateway: a.gateway && loopback(a.gateway, '--gateway'),
    mongo: a.mongo && loopback(a.mongo, '--mongo'),
    redis: a.redis && loopback(a.redis, '--redis'),
    throttlePrefix: a.throttlePrefix,
    managerProjects: a.managerProjects.split(','),
    keepLogs: a.keepLogs,
    cold: a.cold,
    external,
  };
  if (!['year', 'today'].includes(opts.spread)) throw new UsageError(`--spread: year or today, not "${opts.spread}"`);
  if (!opts.managerProjects.includes('p1') || opts.managerProjects.some((p) => !/^p([1-9]|1\d|20)$/.test(p))) {
    throw new UsageError(`--manager-projects: p1 and any of p2…p20, comma-separated, not "${a.managerProjects}"`);
  }
  if (opts.tablets + opts.managers === 0 && !opts.sweep) throw new UsageError('nothing to run: --tablets and --managers are both 0');
  return opts;
}

/** Interrupts (Ctrl-C, SIGTERM, the watchdog) stop the current run; the steps' finally blocks clean up. */
const state = { interrupted: false, run: undefined };
class Interrupted extends Error {}
const checkpoint = () => {
  if (state.interrupted) throw new Interrupted('interrupted');
};
function interrupt(why) {
  if (state.interrupted) {
    progress(`${why} again: exiting now (processes may be left running)`);
    process.exit(130);
  }
  state.interrupted = true;
  progress(`${why}: stopping the run and the stack…`);
  state.run?.abort();
}

async function deleteThrottleKeys(redisUrl, { prefix, users }) {
  const Redis = require(require.resolve('ioredis', { paths: [path.join(root, 'gateway')] }));
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    if (users) {
      const keys = users.flatMap((u) => THROTTLE_SCOPES.map((s) => `${prefix}:${s}:user:${u}`));
      for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
      return;
    }
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** One run on a fresh system (or the given one): seed, load, measure, verify. Returns its figures. */
async function runStep(opts, step) {
  const { startStore, ensureRedis } = require(path.join(root, 'libs/devstore/dist'));
  const { startStack } = require(path.join(codeRoot, 'libs/devstore/dist/stack.js'));
  const { registerModels, ensureIndexes } = require(path.join(codeRoot, 'libs/db/dist'));
  const { DEV_JWT_SECRET, mintToken } = require(path.join(root, 'libs/common/dist'));
  const mongoose = require(require.resolve('mongoose', { paths: [path.join(codeRoot, 'libs/db')] }));

  const out = {
    tablets: opts.tablets,
    managers: opts.managers,
    seconds: opts.seconds,
    permits: opts.permits,
    spread: opts.spread,
    maxInFlight: opts.maxInFlight,
    managerProjects: opts.managerProjects.join('+'),
  };
  const cleanups = [];
  const tag = `${process.pid}-${step}-${Date.now().toString(36)}`;
  const devicePrefix = `load-${tag}-`;
  const throttlePrefix = `ptw-load:${process.pid}:${step}`;
  const tabletUsers = Array.from({ length: opts.tablets }, (_, k) => `tab-${k + 1}`);
  const managerUsers = Array.from({ length: opts.managers }, (_, k) => `mgr-${k + 1}`);
  const verifier = `mgr-verify-${process.pid}`;
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-load-'));
  let keepLogs = opts.keepLogs;
  let failed = true;
  try {
    let gatewayUrl;
    let conn;
    let pids;
    let redisUrl;
    const secret = process.env.PTW_JWT_SECRET ?? DEV_JWT_SECRET;
    const auth = { PTW_JWT_SECRET: secret, PTW_JWT_ISSUER: process.env.PTW_JWT_ISSUER ?? 'ptw-dev', PTW_JWT_AUDIENCE: process.env.PTW_JWT_AUDIENCE ?? 'ptw-api' };
    const users = [...tabletUsers.map((u) => userDoc(u, 'worker', ['p1'])), ...managerUsers.map((u) => userDoc(u, 'manager', opts.managerProjects))];
    let seeded = { seconds: 0, isolationPoints: 0, sampleIds: [] };
    const connect = async (url) => {
      conn = await mongoose.createConnection(url, { retryWrites: false, autoIndex: false, serverSelectionTimeoutMS: 10_000 }).asPromise();
      cleanups.push(() => conn.close());
      registerModels(conn);
    };
    if (opts.external) {
      gatewayUrl = opts.gateway;
      redisUrl = opts.redis ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
      await connect(opts.mongo);
      if (opts.permits) {
        progress(`seeding ${opts.permits} permits (${opts.spread}) into ${opts.mongo}`);
        seeded = await seedSite(conn.db, { permits: opts.permits, spread: opts.spread, users, readableBy: opts.managerProjects });
      }
      pids = discover(Number(new URL(gatewayUrl).port), Number(new URL(opts.mongo).port));
      out.system = `running system: gateway ${gatewayUrl}, store ${opts.mongo} (processes found by port: ${Object.keys(pids).join(', ') || 'none'})`;
      out.throttle = `the system's own (tablets at 1 batch/s sit at SPEC's 60/min sync limit); their windows under ${opts.throttlePrefix} are deleted after the run`;
      cleanups.push(() => deleteThrottleKeys(redisUrl, { prefix: opts.throttlePrefix, users: [...tabletUsers, ...managerUsers, verifier] }));
    } else {
      redisUrl = process.env.REDIS_URL || (await ensureRedis());
      progress(`step ${step + 1}: starting a fresh store`);
      const store = await startStore({ database: 'ptw_load' });
      cleanups.push(() => store.stop());
      checkpoint();
      await connect(store.url);
      await ensureIndexes(conn);
      progress(`seeding ${opts.permits} permits (${opts.spread})`);
      seeded = await seedSite(conn.db, { permits: opts.permits, spread: opts.spread, users, readableBy: opts.managerProjects });
      checkpoint();
      progress('starting the services and the gateway');
      const env = { PTW_JWT_SECRET: secret, PTW_JWT_ISSUER: auth.PTW_JWT_ISSUER, PTW_JWT_AUDIENCE: auth.PTW_JWT_AUDIENCE, PTW_THROTTLE_KEY_PREFIX: throttlePrefix, ...STACK_THROTTLE };
      cleanups.push(() => deleteThrottleKeys(redisUrl, { prefix: throttlePrefix }));
      const stack = await startStack({ ports: 'free', logDir, mongoUrl: store.url, redisUrl, env });
      cleanups.push(() => stack.stop());
      checkpoint();
      // Projects, users and permit types as `make up` seeds them (the permits are there: no demo permit).
      const seedRun = spawnSync(process.execPath, [path.join(codeRoot, 'services/workflow/dist/seed.js')], { env: stack.env, encoding: 'utf8', timeout: 120_000 });
      if (seedRun.status !== 0) throw new Error(`services/workflow/dist/seed.js failed: ${seedRun.stderr || seedRun.error}`);
      gatewayUrl = stack.gatewayUrl;
      pids = { ...Object.fromEntries(Object.entries(stack.procs).map(([n, p]) => [n, p.pid])), ferretdb: store.process.pid };
      const pm = postmasterOf(store.dataDir);
      if (pm) pids.postgres = pm;
      out.system = `${codeRoot === root ? '' : `code of ${codeRoot}: `}fresh stack: FerretDB on ${store.backend}, four services and the gateway as processes (LOG_LEVEL ${process.env.LOG_LEVEL || 'info'}), logs in ${logDir} (kept when the verification fails, on a 5xx or with --keep-logs)`;
      out.throttle = `PTW_THROTTLE_SYNC=${STACK_THROTTLE.PTW_THROTTLE_SYNC} (SPEC default 60/min: exactly 1 batch/s, which a sliding window refuses on jitter), others at their defaults; key prefix ${throttlePrefix}, deleted after the run`;
    }
    out.seedSeconds = seeded.seconds;
    out.isolationPoints = seeded.isolationPoints;
    const permitsCol = conn.db.collection('permits');
    const baseP1 = await permitsCol.countDocuments({ project_id: 'p1' });
    out.baseP1 = baseP1;
    checkpoint();

    const mint = (user, role, projects) => mintToken(auth, { user, role, projects, ttlSeconds: 6 * 3600 });
    const client = httpClient(gatewayUrl, { timeoutMs: opts.timeoutMs });
    if (!opts.cold && !opts.external) {
      progress('warming up: the lists and KPIs a running system would have answered (--cold skips this)');
      const tokens = { listToken: await mint(verifier, 'manager', PROJECTS), kpiToken: await mint(verifier, 'manager', opts.managerProjects) };
      out.warmUp = await warmUp(client, tokens, PROJECTS);
      checkpoint();
    }
    const ledger = new Ledger();
    const pool = new Pool();
    for (const id of seeded.sampleIds) pool.add(id);
    const run = new Run({ client, seconds: opts.seconds, maxInFlight: opts.maxInFlight, graceMs: GRACE_MS, ledger, pool });
    const tablets = await Promise.all(
      tabletUsers.map(async (user, k) => new Tablet(run, { k, user, device: `${devicePrefix}${user}`, token: await mint(user, 'worker', ['p1']), project: 'p1' })),
    );
    const managers = await Promise.all(managerUsers.map(async (user) => new Manager(run, { token: await mint(user, 'manager', opts.managerProjects) })));
    // Managers and tablets interleaved, so the phases spread both kinds over the second.
    const clients = [];
    for (let i = 0; i < Math.max(tablets.length, managers.length); i++) {
      if (tablets[i]) clients.push(tablets[i]);
      if (managers[i]) clients.push(managers[i]);
    }

    progress(`running ${opts.tablets} tablets and ${opts.managers} managers for ${opts.seconds} s`);
    out.loadStart = os.loadavg()[0];
    const cpu0 = readCpu(pids);
    const t0 = performance.now();
    state.run = run;
    try {
      await run.go(clients);
    } finally {
      state.run = undefined;
    }
    const cpu1 = readCpu(pids);
    out.wallSeconds = (performance.now() - t0) / 1000;
    out.loadEnd = os.loadavg()[0];
    client.close();
    checkpoint();
    out.cpu = Object.fromEntries(PROCESS_ORDER.filter((n) => n in cpu1.cpu).map((n) => [n, cpu1.cpu[n] - cpu0.cpu[n]]));
    out.wait = Object.fromEntries(PROCESS_ORDER.filter((n) => n in cpu1.wait).map((n) => [n, cpu1.wait[n] - cpu0.wait[n]]));
    out.maxLagMs = run.maxLagMs;
    out.routes = {};
    for (const [name, r] of Object.entries(run.routes)) {
      out.routes[name] = {
        offered: r.offered,
        sent: r.sent,
        notSent: r.notSent,
        served: r.served,
        answered: r.latencies.length,
        p50: percentile(r.latencies, 50),
        p99: percentile(r.latencies, 99),
        p99Warm: percentile(r.warm, 99),
        max: r.latencies.length ? Math.max(...r.latencies) : NaN,
        statuses: [...r.statuses].sort(),
        status5xx: r.status5xx,
        retried: r.retried,
      };
    }
    out.outcomes = [...ledger.outcomes].sort();
    out.replays = ledger.replays;

    // The figures first: a system still working off its backlog can make the verification slow.
    for (const [name, r] of Object.entries(out.routes))
      progress(`measured ${name}: offered ${r.offered}, served ${r.served}, p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, statuses ${r.statuses.join(' ')}`);
    progress('verifying the store');
    const verifyClient = httpClient(gatewayUrl, { timeoutMs: Math.max(30_000, opts.timeoutMs) });
    const v = await verifyStore(conn.db, ledger, devicePrefix);
    const failures = [...ledger.problems, ...v.failures];
    const uncertainP1 = v.figures.uncertainCreates;
    const lo = baseP1 + v.figures.ackedCreates;
    const listed = await verifyClient.request('GET', '/api/v1/ptw/permits/?project=p1&page=1&page_size=1', await mint(verifier, 'manager', ['p1', 'p2']));
    verifyClient.close();
    let listCount;
    if (listed.status === 200) listCount = JSON.parse(listed.body).count;
    else failures.push(`GET /permits/?project=p1 as a fresh manager answered ${listed.status}`);
    if (listCount !== undefined && !(listCount >= lo && listCount <= lo + uncertainP1)) {
      failures.push(
        `the list of p1 counts ${listCount} permits; seeded ${baseP1} + acknowledged ${v.figures.ackedCreates} = ${lo}${uncertainP1 ? ` (+ up to ${uncertainP1} uncertain)` : ''}`,
      );
    }
    out.verify = { ...v.figures, listCount, storeP1: await permitsCol.countDocuments({ project_id: 'p1' }), expectedLo: lo, expectedHi: lo + uncertainP1, failures };
    out.ok = failures.length === 0;
    out.status5xx = Object.values(out.routes).reduce((s, r) => s + r.status5xx, 0);
    out.targets = evaluate(out);
    if (!out.ok || out.status5xx) keepLogs = true;
    failed = false;
    return out;
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (err) {
        progress(`clean-up: ${err.message}`);
      }
    }
    if (!opts.external && !state.interrupted && (keepLogs || failed)) progress(`the services' logs are kept in ${logDir}`);
    else fs.rmSync(logDir, { recursive: true, force: true });
  }
}

/** PASS/FAIL of every target (a route without requests fails its target). */
function evaluate(out) {
  const rows = TARGETS.map((t) => {
    const r = out.routes[t.route];
    const value = r.answered ? r.p99 : NaN;
    return { name: t.name, value: Number.isFinite(value) ? `${value.toFixed(0)} ms` : 'no requests', ok: value <= t.limitMs };
  });
  const worst = Object.entries(out.routes)
    .filter(([, r]) => r.offered)
    .map(([name, r]) => ({ name, share: r.served / r.offered }))
    .sort((a, b) => a.share - b.share)[0];
  rows.push({ name: 'served ≥ 95 % of offered (every route)', value: worst ? `${(worst.share * 100).toFixed(1)} % (${worst.name})` : 'nothing offered', ok: !!worst && worst.share >= 0.95 });
  rows.push({ name: '0 5xx', value: String(out.status5xx), ok: out.status5xx === 0 });
  return rows;
}

const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '–');

function printStep(out) {
  const cpus = os.cpus();
  const lines = [];
  const log = (s = '') => lines.push(s);
  log(`## Shift start: ${out.tablets} tablets, ${out.managers} managers, ${out.seconds} s, ${out.permits.toLocaleString('en')} permits seeded (${out.spread})`);
  log();
  log(`- System: ${out.system}.`);
  log(
    `- Machine: ${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), node ${process.version}, load average ${fmt(out.loadStart, 1)} at the start, ${fmt(out.loadEnd, 1)} at the end (shared machine: compare like with like).`,
  );
  log(`- Throttle: ${out.throttle}.`);
  if (out.permits)
    log(
      `- Seed: ${out.permits.toLocaleString('en')} permits over p1…p20 (a quarter in p1; p1 held ${out.baseP1.toLocaleString('en')} before the run), ${out.isolationPoints} isolation points, permit-number counters, users tab-1… (worker, p1) and mgr-1… (manager, ${out.managerProjects}), in ${fmt(out.seedSeconds, 1)} s; ` +
        'no revisions, audit events, workflow steps or closeouts for the seeded permits (no route of this load reads them).',
    );
  if (!out.permits) log(`- Seed: none; p1 held ${out.baseP1.toLocaleString('en')} permits before the run.`);
  log(
    out.warmUp
      ? `- Start: warm, as a shift on a running system: before the run, ${out.warmUp.requests} requests one at a time (each seeded project's drafts, then the managers' KPIs) in ${fmt(out.warmUp.seconds, 1)} s${out.warmUp.failed ? ` (**${out.warmUp.failed} not 200**)` : ''} (--cold skips them).`
      : '- Start: cold (--cold, or a running system): the run began as soon as the stack answered.',
  );
  log(
    `- Load: every tablet (all on p1) one batch/s of 8 creates + 2 edits of its own acknowledged permits (1 batch in 8 re-sent as is); every manager (${out.managerProjects}) list + KPIs + one permit read per second; at most ${out.maxInFlight} requests in flight per client and route; latency from the scheduled time; the targets use the whole run's p99, its first seconds included. Generator timer lag max ${fmt(out.maxLagMs)} ms.`,
  );
  log();
  log(`| route | offered | sent | not sent (cap) | served (2xx in run) | answered | p50 ms | p99 ms | max ms | p99 after ${WARM_MS / 1000} s | statuses |`);
  log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  let offered = 0;
  let served = 0;
  for (const [name, r] of Object.entries(out.routes)) {
    offered += r.offered;
    served += r.served;
    const label = { sync: 'POST /sync-offline-data/', list: 'GET /permits/?page_size=20', kpis: 'GET /permits/kpis/', read: 'GET /permits/{id}/' }[name];
    log(
      `| ${label} | ${r.offered} | ${r.sent} | ${r.notSent} | ${r.served} | ${r.answered} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.max)} | ${fmt(r.p99Warm)} | ${r.statuses.map(([s, n]) => `${s}: ${n}`).join(', ') || '–'}${r.retried ? ` (${r.retried} sent again after a reset kept-alive connection)` : ''} |`,
    );
  }
  log();
  log(
    `Offered ${offered} requests (${fmt(offered / out.seconds, 1)}/s), served ${served} (${fmt(served / out.seconds, 1)}/s, ${fmt((100 * served) / Math.max(1, offered), 1)} %); 5xx: ${out.status5xx}. ` +
      `Sync outcomes per change: ${out.outcomes.map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}. ` +
      `Re-sent batches: ${out.replays.sent} (${out.replays.unanswered} not answered 200), changes applied before and checked again: ${out.replays.checked}, already_applied: ${out.replays.alreadyApplied}, otherwise: ${out.replays.mismatches}.`,
  );
  log();
  log(`| process | CPU s | % of one core (over ${fmt(out.wallSeconds, 1)} s) | waited for a CPU, s |`);
  log('|---|---:|---:|---:|');
  for (const n of PROCESS_ORDER) {
    if (!(n in out.cpu)) continue;
    const label = { ferretdb: 'store: FerretDB', postgres: 'store: PostgreSQL (postmaster + backends)', generator: 'load generator (this process)' }[n] ?? n;
    log(`| ${label} | ${fmt(out.cpu[n], 2)} | ${fmt((100 * out.cpu[n]) / out.wallSeconds, 1)} | ${fmt(out.wait[n], 2)} |`);
  }
  const storeCpu = (out.cpu.ferretdb ?? 0) + (out.cpu.postgres ?? 0);
  const storeWait = (out.wait.ferretdb ?? 0) + (out.wait.postgres ?? 0);
  if ('ferretdb' in out.cpu) log(`| store total | ${fmt(storeCpu, 2)} | ${fmt((100 * storeCpu) / out.wallSeconds, 1)} | ${fmt(storeWait, 2)} |`);
  log();
  log(
    '"Waited for a CPU" is run-queue time of the live threads (/proc/…/schedstat): ready to run while every core was busy. ' +
      'When it is large next to the CPU seconds, the machine (other load included) was the bottleneck, not the process.',
  );
  log();
  log('| target | measured | |');
  log('|---|---:|---|');
  for (const t of out.targets) log(`| ${t.name} | ${t.value} | ${t.ok ? 'PASS' : 'FAIL'} |`);
  log();
  const v = out.verify;
  log(
    `Verification: ${v.ackedCreates} acknowledged creates each stored once under its sync origin with its acknowledged id (${v.readBack} read back by _id), ` +
      `${v.permitsChecked} at the version their ${v.ackedEdits} acknowledged edits give (${v.uncertainEdits} edits uncertain: answer lost); ` +
      `${v.uncertainCreates} creates uncertain (${v.uncertainLanded} of them stored), ${v.refusedCreates} refused; ${v.doubled} sync origins stored twice; ` +
      `list of p1 for a fresh manager: ${v.listCount ?? '–'} (expected ${v.expectedLo}${v.expectedHi !== v.expectedLo ? `…${v.expectedHi}` : ''}; the store holds ${v.storeP1}). ` +
      `**${out.ok ? 'PASS' : 'FAIL'}**`,
  );
  for (const f of v.failures.slice(0, 20)) log(`- ${f}`);
  if (v.failures.length > 20) log(`- … and ${v.failures.length - 20} more`);
  console.log(lines.join('\n') + '\n');
}

function printSweep(rows) {
  console.log('## Sweep: one fresh system per tablet count\n');
  console.log('| tablets | offered/s | served % | sync p50 / p99 ms | list p99 ms | KPIs p99 ms | read p99 ms | 5xx | store CPU % | gateway CPU % | verification | targets |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|');
  for (const r of rows) {
    if (r.error) {
      console.log(`| ${r.tablets} | failed: ${r.error} ||||||||||| |`);
      continue;
    }
    const offered = Object.values(r.routes).reduce((s, x) => s + x.offered, 0);
    const served = Object.values(r.routes).reduce((s, x) => s + x.served, 0);
    const pct = (n) => fmt((100 * (n ?? NaN)) / r.wallSeconds, 0);
    const held = r.targets.every((t) => t.ok);
    console.log(
      `| ${r.tablets} | ${fmt(offered / r.seconds, 1)} | ${fmt((100 * served) / Math.max(1, offered), 1)} | ${fmt(r.routes.sync.p50)} / ${fmt(r.routes.sync.p99)} | ${fmt(r.routes.list.p99)} | ${fmt(r.routes.kpis.p99)} | ${fmt(r.routes.read.p99)} | ${r.status5xx} | ` +
        `${pct((r.cpu.ferretdb ?? NaN) + (r.cpu.postgres ?? 0))} | ${pct(r.cpu.gateway)} | ${r.ok ? 'PASS' : 'FAIL'} | ${
          held
            ? 'hold'
            : `fail: ${r.targets
                .filter((t) => !t.ok)
                .map((t) => t.name)
                .join('; ')}`
        } |`,
    );
  }
  const holding = rows.filter((r) => !r.error && r.targets.every((t) => t.ok)).map((r) => r.tablets);
  const largest = holding.length ? Math.max(...holding) : undefined;
  const brokenBelow = largest !== undefined && rows.some((r) => r.tablets < largest && (r.error || !r.targets.every((t) => t.ok)));
  console.log(`\nlargest count that holds the targets: ${largest ?? 'none'}${brokenBelow ? ' (a smaller count did not hold them: noise on a shared machine?)' : ''}\n`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  for (const dist of ['libs/devstore/dist/stack.js', 'libs/db/dist/index.js', 'libs/common/dist/index.js', 'services/workflow/dist/seed.js', 'gateway/dist/main.js']) {
    if (!fs.existsSync(path.join(root, dist))) throw new Error(`${dist} is missing: run \`npx tsc -b\` (or make build) first`);
  }
  process.on('SIGINT', () => interrupt('SIGINT'));
  process.on('SIGTERM', () => interrupt('SIGTERM'));
  const counts = opts.sweep ?? [opts.tablets];
  // Bounded whatever happens: each step's load, its drain and generous time to start, seed and verify.
  const budgetMs = counts.length * (opts.seconds * 1000 + opts.timeoutMs + 15 * 60_000);
  const watchdog = setTimeout(() => {
    interrupt(`watchdog (${Math.round(budgetMs / 1000)} s)`);
    setTimeout(() => process.exit(2), 120_000).unref();
  }, budgetMs);
  watchdog.unref();
  const rows = [];
  let exitCode = 0;
  for (const [i, tablets] of counts.entries()) {
    try {
      const out = await runStep({ ...opts, tablets }, i);
      printStep(out);
      rows.push(out);
      if (!out.ok) exitCode = 1;
    } catch (err) {
      if (err instanceof Interrupted || state.interrupted) {
        progress('interrupted; the stack is stopped');
        process.exit(130);
      }
      progress(`step with ${tablets} tablets failed: ${err.stack ?? err}`);
      rows.push({
        tablets,
        error: String(err.message ?? err)
          .split('\n')[0]
          .slice(0, 200),
      });
      exitCode = 1;
    }
  }
  if (opts.sweep) printSweep(rows);
  clearTimeout(watchdog);
  process.exitCode = exitCode;
}

main().catch((err) => {
  console.error(`load: ${err instanceof UsageError ? err.message : (err.stack ?? err)}`);
  process.exit(1);
});
