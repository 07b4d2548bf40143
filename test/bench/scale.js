#!/usr/bin/env node
/**
 * The data path at scale (issue 12): for each store backend and each number of permits, a fresh
 * store and the real system (gateway + services as processes, startStack), N permits inserted with
 * the raw driver (20 projects, a quarter in p1, mixed statuses, some due for expiry), then one
 * request at a time:
 *   - `GET /permits/?page_size=20` as a worker and as a manager of p1, next to the raw driver's
 *     page + count returning the same (find sorted newest first, limit 20, and countDocuments);
 *   - `GET /permits/kpis/` as a manager of p1;
 *   - a sync of 500 permit creates next to a raw insertMany of the same 500 permits (throughput ratio);
 *   - `POST /jobs/auto_expire_permits/run/` on N permits all due (the collection is re-seeded for it).
 * Each case stops repeating when its time budget is spent; a case whose first request does not
 * finish within the budget prints "skipped: over budget". Prints Markdown.
 * Run after `make build store`:
 *   node test/bench/scale.js [--sizes 1000,10000,100000] [--backends postgresql,sqlite] [--reps 15] [--budget-s 300]
 * (or BENCH_SIZES / BENCH_BACKENDS / BENCH_REPS / BENCH_BUDGET_S). Backend `mongodb` = MONGO_URL
 * (a fresh database there, dropped at the end). BENCH_CODE_ROOT=<another checkout, built> runs that
 * checkout's services, gateway, seed and models on this checkout's stores: a before/after pair of
 * figures from one machine state (e.g. `git worktree add /tmp/before <commit>`, then `npm ci` and
 * `npx tsc -b` there).
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { permitDocs, insertChunked } = require('./store-backends');
const { median } = require('./proc');

const root = path.resolve(__dirname, '..', '..');
/** The code under test: this checkout, or BENCH_CODE_ROOT's (the stores always come from this one). */
const codeRoot = process.env.BENCH_CODE_ROOT ? path.resolve(process.env.BENCH_CODE_ROOT) : root;
const AUTH = { PTW_JWT_SECRET: null, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
const HUGE_RATE = '9999999/hour';
const SYNC_BATCH = 500;
const SYNC_REPS = 3;

function parseArgs(argv) {
  const env = process.env;
  const args = {
    sizes: (env.BENCH_SIZES ?? '1000,10000,100000').split(',').map(Number),
    backends: (env.BENCH_BACKENDS ?? 'postgresql,sqlite').split(','),
    reps: Number(env.BENCH_REPS ?? 15),
    budgetS: Number(env.BENCH_BUDGET_S ?? 300),
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1] ?? ''];
    if (k === '--sizes') args.sizes = v.split(',').map(Number);
    else if (k === '--backends') args.backends = v.split(',');
    else if (k === '--reps') args.reps = Number(v);
    else if (k === '--budget-s') args.budgetS = Number(v);
    else throw new Error(`unknown argument ${k}; usage: node test/bench/scale.js [--sizes 1000,10000] [--backends postgresql,sqlite] [--reps 15] [--budget-s 300]`);
  }
  if (args.sizes.some((n) => !Number.isInteger(n) || n < 100)) throw new Error('--sizes: whole numbers ≥ 100');
  if (!(args.reps >= 1) || !(args.budgetS > 0)) throw new Error('--reps ≥ 1 and --budget-s > 0');
  for (const b of args.backends) {
    if (!['postgresql', 'sqlite', 'mongodb'].includes(b)) throw new Error(`--backends: postgresql, sqlite or mongodb, not "${b}"`);
    if (b === 'mongodb' && !process.env.MONGO_URL) throw new Error('--backends mongodb needs MONGO_URL');
  }
  return args;
}

const progress = (msg) => process.stderr.write(`scale: ${msg}\n`);

/**
 * Runs `fn` one call at a time until `reps` calls are done or `budgetMs` is spent (every call is
 * bounded by the rest of the budget through its abort signal), after `warmup` unmeasured calls.
 * Returns the p50 in ms, `{ overBudget }` when no measured call finished in time, or `{ error }`.
 */
async function sample(reps, budgetMs, fn, { warmup = 0 } = {}) {
  const until = Date.now() + budgetMs;
  const times = [];
  for (let i = 0; times.length < reps && Date.now() < until; i++) {
    const signal = AbortSignal.timeout(Math.max(1, until - Date.now()));
    const t0 = process.hrtime.bigint();
    try {
      await fn(signal, i);
    } catch (err) {
      if (signal.aborted) break;
      return {
        error: String(err.message ?? err)
          .split('\n')[0]
          .slice(0, 160),
      };
    }
    if (i >= warmup) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return times.length ? { p50: median(times), runs: times.length } : { overBudget: true };
}

async function http(url, { token, method = 'GET', body, signal }) {
  const res = await fetch(url, {
    method,
    signal,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${method} ${url}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

function syncChange(i) {
  return {
    entity: 'permit',
    op: 'create',
    offline_id: `scale-${i}`,
    data: {
      project_id: 'p1',
      permit_type_id: 'hot-work',
      title: `Weld bracket on pump P-${100 + (i % 900)}`,
      description: 'Replace the cracked support bracket; grind, weld and paint.',
      location: `Unit ${1 + (i % 40)}`,
      probability: 1 + (i % 5),
      severity: 1 + (i % 3),
      ppe_requirements: ['helmet', 'gloves', 'welding_mask'],
      planned_start_time: new Date(Date.now() + 3600_000).toISOString(),
      planned_end_time: new Date(Date.now() + 9 * 3600_000).toISOString(),
    },
  };
}

/** One backend × size: fresh store and stack, seed, every case; returns the row of figures. */
async function runCase(backend, size, args, shared) {
  const { startStore } = require(path.join(root, 'libs/devstore/dist'));
  const { startStack } = require(path.join(codeRoot, 'libs/devstore/dist/stack.js'));
  const { registerModels, ensureIndexes } = require(path.join(codeRoot, 'libs/db/dist'));
  const mongoose = require(require.resolve('mongoose', { paths: [path.join(codeRoot, 'libs/db')] }));
  const budgetMs = args.budgetS * 1000;
  const row = { backend, size };
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-bench-scale-'));
  let store;
  let stack;
  let conn;
  try {
    const mongoUrl =
      backend === 'mongodb'
        ? process.env.MONGO_URL.replace(/^(mongodb(?:\+srv)?:\/\/[^/?]+)(\/[^?]*)?/, `$1/ptw_bench_scale_${Date.now()}`)
        : (store = await startStore({ backend, database: 'ptw_scale' })).url;
    conn = await mongoose.createConnection(mongoUrl, { retryWrites: false, autoIndex: false }).asPromise();
    const models = registerModels(conn);
    await ensureIndexes(conn);
    const permits = models.Permit.collection;
    progress(`${backend} ${size}: seeding`);
    const t0 = Date.now();
    await insertChunked(permits, permitDocs(size, { tag: 'seed' }));
    row.seedS = (Date.now() - t0) / 1000;
    progress(`${backend} ${size}: starting the stack`);
    stack = await startStack({
      ports: 'free',
      logDir,
      mongoUrl,
      redisUrl: shared.redisUrl,
      env: {
        PTW_JWT_SECRET: shared.secret,
        LOG_LEVEL: 'warn',
        PTW_THROTTLE_KPI: HUGE_RATE,
        PTW_THROTTLE_SYNC: HUGE_RATE,
        // A slow request is measured, not cut at the default 10 s (the budget bounds it).
        PTW_GRPC_DEADLINE_MS: String(Math.min(600_000, budgetMs)),
        // Only the run this bench starts may expire permits.
        PTW_JOB_AUTO_EXPIRE_EVERY: '1 day',
        PTW_JOB_CHECK_EXPIRING_EVERY: '1 day',
        PTW_JOB_CHECK_OVERDUE_EVERY: '1 day',
        // The services choose query shapes by the local store's backend (MONGO_URL hides it).
        ...(backend === 'sqlite' ? { PTW_STORE_BACKEND: 'sqlite' } : {}),
      },
    });
    // Projects, users and permit types; the permits are already there, so it adds no demo permit.
    const seed = spawnSync(process.execPath, [path.join(codeRoot, 'services/workflow/dist/seed.js')], { env: stack.env, encoding: 'utf8' });
    if (seed.status !== 0) throw new Error(`seed failed: ${seed.stderr}`);
    const api = `${stack.gatewayUrl}/api/v1/ptw`;
    const { worker, manager } = shared.tokens;

    progress(`${backend} ${size}: list`);
    const inP1 = await permits.countDocuments({ project_id: 'p1' });
    const listAs = (token) => async (signal) => {
      const body = await http(`${api}/permits/?page_size=20`, { token, signal });
      if (body.count !== inP1 || body.results.length !== 20) throw new Error(`list: expected ${inP1} permits and a page of 20, got ${body.count} / ${body.results.length}`);
    };
    row.listWorker = await sample(args.reps, budgetMs, listAs(worker), { warmup: 1 });
    row.listManager = await sample(args.reps, budgetMs, listAs(manager));
    row.listRaw = await sample(args.reps, budgetMs, async () => {
      const [count, page] = await Promise.all([permits.countDocuments({ project_id: 'p1' }), permits.find({ project_id: 'p1' }).sort({ created_at: -1, _id: -1 }).limit(20).toArray()]);
      if (count !== inP1 || page.length !== 20) throw new Error('raw list: wrong count or page');
    });

    progress(`${backend} ${size}: KPIs`);
    row.kpis = await sample(args.reps, budgetMs, async (signal) => {
      const body = await http(`${api}/permits/kpis/`, { token: manager, signal });
      if (typeof body.counts !== 'object') throw new Error(`KPIs: unexpected body ${JSON.stringify(body).slice(0, 200)}`);
    });

    progress(`${backend} ${size}: sync of ${SYNC_BATCH} creates`);
    let next = 0;
    row.sync = await sample(SYNC_REPS, budgetMs, async (signal) => {
      const changes = Array.from({ length: SYNC_BATCH }, () => syncChange(next++));
      const body = await http(`${api}/sync-offline-data/`, { token: worker, method: 'POST', body: { device_id: `scale-${backend}-${size}`, changes }, signal });
      if (body.summary?.applied !== SYNC_BATCH) throw new Error(`sync: expected ${SYNC_BATCH} applied, got ${JSON.stringify(body.summary)}`);
    });
    let raw = 0;
    row.syncRaw = await sample(SYNC_REPS, budgetMs, () => permits.insertMany(permitDocs(SYNC_BATCH, { tag: `raw${raw++}` }), { ordered: false }));

    progress(`${backend} ${size}: auto-expire of ${size} due permits`);
    await permits.drop();
    await models.Permit.createIndexes();
    await insertChunked(permits, permitDocs(size, { tag: 'due', allDue: true }));
    // The gateway gives a job run 300 s; a longer run answers 504 while the job goes on.
    row.expire = await sample(1, budgetMs, (signal) => http(`${api}/jobs/auto_expire_permits/run/`, { token: manager, method: 'POST', signal }));
    if (row.expire.p50 !== undefined) {
      const expired = await permits.countDocuments({ status: 'expired' });
      if (expired !== size) row.expireNote = `${expired} of ${size} expired`;
    }
  } finally {
    await stack?.stop();
    if (backend === 'mongodb' && conn) await conn.dropDatabase().catch(() => undefined);
    await conn?.close();
    await store?.stop();
    fs.rmSync(logDir, { recursive: true, force: true });
  }
  return row;
}

const ms = (s, scale = 1) => (s.error ? `failed: ${s.error}` : s.overBudget ? 'skipped: over budget' : (s.p50 / scale).toFixed(1));
const ratio = (a, b, digits = 2) => (a.p50 !== undefined && b.p50 !== undefined ? `${(a.p50 / b.p50).toFixed(digits)}×` : '–');

function print(rows, args) {
  const cpus = os.cpus();
  console.log('## Data path at scale (issue 12): one request at a time\n');
  console.log(
    `Code: ${codeRoot === root ? 'this checkout' : codeRoot}. Machine: ${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), node ${process.version}, load average ${os.loadavg()[0].toFixed(1)} at the end. ` +
      `p50 of up to ${args.reps} requests (sync: ${SYNC_REPS} batches), ${args.budgetS} s budget per case. ` +
      'Permits: 20 projects, a quarter in p1, mixed statuses; the callers are a worker and a manager of p1. ' +
      `Raw = the MongoDB driver on the same store in the same run: find({project_id: 'p1'}).sort({created_at: -1, _id: -1}).limit(20) with countDocuments, and insertMany of ${SYNC_BATCH}.\n`,
  );
  console.log(
    '| backend | permits | list, worker (ms) | list, manager (ms) | raw page + count (ms) | list ÷ raw | KPIs, manager (ms) | ' +
      `sync ${SYNC_BATCH} creates (ms) | raw insertMany ${SYNC_BATCH} (ms) | sync throughput ÷ raw | auto-expire all due (s) | seed insertMany (s) |`,
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    if (r.error) {
      console.log(`| ${r.backend} | ${r.size} | failed: ${r.error} |||||||||| |`);
      continue;
    }
    const expire = r.expire.p50 !== undefined ? `${ms(r.expire, 1000)} (${Math.round(r.size / (r.expire.p50 / 1000))}/s)${r.expireNote ? `, ${r.expireNote}` : ''}` : ms(r.expire);
    console.log(
      `| ${r.backend} | ${r.size.toLocaleString('en')} | ${ms(r.listWorker)} | ${ms(r.listManager)} | ${ms(r.listRaw)} | ${ratio(r.listWorker, r.listRaw)} | ${ms(r.kpis)} | ` +
        `${ms(r.sync)} | ${ms(r.syncRaw)} | ${ratio(r.syncRaw, r.sync, 3)} | ${expire} | ${r.seedS.toFixed(1)} |`,
    );
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  for (const dist of ['libs/devstore/dist/stack.js', 'libs/db/dist/index.js', 'services/workflow/dist/seed.js', 'gateway/dist/main.js']) {
    if (!fs.existsSync(path.join(codeRoot, dist))) throw new Error(`${dist} is missing: run \`npx tsc -b\` (or make build) first`);
  }
  const { DEV_JWT_SECRET, mintToken } = require(path.join(root, 'libs/common/dist'));
  const { ensureRedis } = require(path.join(root, 'libs/devstore/dist'));
  const secret = DEV_JWT_SECRET;
  const auth = { ...AUTH, PTW_JWT_SECRET: secret };
  const shared = {
    secret,
    redisUrl: process.env.REDIS_URL || (await ensureRedis()),
    tokens: {
      worker: await mintToken(auth, { user: 'u-worker', role: 'worker', projects: ['p1'], ttlSeconds: 24 * 3600 }),
      manager: await mintToken(auth, { user: 'u-manager', role: 'manager', projects: ['p1'], ttlSeconds: 24 * 3600 }),
    },
  };
  const rows = [];
  for (const backend of args.backends) {
    for (const size of args.sizes) {
      try {
        rows.push(await runCase(backend, size, args, shared));
      } catch (err) {
        progress(`${backend} ${size}: ${err.stack ?? err}`);
        rows.push({
          backend,
          size,
          error: String(err.message ?? err)
            .split('\n')[0]
            .slice(0, 200),
        });
      }
    }
  }
  print(rows, args);
  if (rows.some((r) => r.error)) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
