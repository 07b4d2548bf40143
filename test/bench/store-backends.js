#!/usr/bin/env node
/**
 * The local store's backends side by side: FerretDB 1.24 on SQLite and on PostgreSQL (a private
 * cluster, as `make up` and the tests run it), in the same run, with the raw MongoDB driver.
 * Each backend gets a fresh store with the application's indexes and the same permits (default
 * 10,000 over 20 projects, a quarter of them in p1); then the queries of issue 12 run one at a time
 * and the program prints the median (p50) of each in a Markdown table.
 * Run after `make build store`:
 *   node test/bench/store-backends.js [--permits 10000] [--backends postgresql,sqlite] [--reps 9]
 */
const path = require('node:path');
const { median } = require('./proc');

const root = path.resolve(__dirname, '..', '..');
const HOUR = 3600_000;
const DAY = 24 * HOUR;

/** One status per twentieth of the permits: a site's year, most permits closed, a third of them still open. */
const STATUS_MIX = [
  'draft',
  'draft',
  'draft',
  'submitted',
  'submitted',
  'under_review',
  'approved',
  'active',
  'active',
  'active',
  'active',
  'active',
  'suspended',
  'completed',
  'completed',
  'completed',
  'completed',
  'cancelled',
  'expired',
  'rejected',
];

/**
 * `n` permits as the application stores them (libs/db's Permit model): a quarter in p1, the rest
 * over p2…p20, created over the past year, mixed statuses; a third of the active ones are past
 * their planned end (due for auto-expiry). `allDue`: every permit active and past its end.
 * `tag` keeps permit numbers unique across calls.
 */
function permitDocs(n, { now = Date.now(), tag = 'b', allDue = false, offset = 0 } = {}) {
  return Array.from({ length: n }, (_, k) => {
    const i = offset + k;
    const status = allDue ? 'active' : STATUS_MIX[i % STATUS_MIX.length];
    const created = now - 365 * DAY + Math.floor((i * 7919) % ((364 * DAY) / HOUR)) * HOUR;
    const due = allDue || (status === 'active' && i % 3 === 0);
    const start = due ? now - 10 * HOUR : now - HOUR;
    const end = due ? now - HOUR - (i % 600) * 1000 : now + (1 + (i % 48)) * HOUR;
    const doc = {
      permit_number: `BENCH-${tag}-${String(i).padStart(7, '0')}`,
      project_id: i % 4 === 0 ? 'p1' : `p${2 + (Math.floor(i / 4) % 19)}`,
      permit_type_id: ['hot-work', 'electrical-isolation', 'confined-space'][i % 3],
      title: `Weld bracket on pump P-${100 + (i % 900)}`,
      description: 'Replace the cracked support bracket; grind, weld and paint.',
      location: `Unit ${1 + (i % 40)}`,
      priority: ['low', 'medium', 'high'][i % 3],
      probability: 1 + (i % 5),
      severity: 1 + (i % 3),
      risk_score: (1 + (i % 5)) * (1 + (i % 3)),
      risk_level: ['low', 'medium', 'high'][i % 3],
      control_measures: 'Fire watch, extinguisher at hand, hot-work screen.',
      ppe_requirements: ['helmet', 'gloves', 'welding_mask'],
      safety_checklist: { gas_test: true, area_cleared: true },
      planned_start_time: new Date(start),
      planned_end_time: new Date(end),
      status,
      created_by: `u${i % 50}`,
      version: 1 + (i % 6),
      created_at: new Date(created),
      updated_at: new Date(created + HOUR),
    };
    if (!['draft', 'cancelled'].includes(status)) doc.submitted_at = new Date(created + 2 * HOUR);
    if (['approved', 'active', 'suspended', 'completed', 'expired'].includes(status)) {
      doc.verified_at = new Date(created + 3 * HOUR);
      doc.approved_at = new Date(created + 4 * HOUR);
      doc.verifier_id = 'u-supervisor';
      doc.approver_id = 'u-manager';
    }
    if (['active', 'suspended', 'completed', 'expired'].includes(status)) doc.actual_start_time = new Date(start);
    if (status === 'completed') doc.actual_end_time = new Date(end);
    return doc;
  });
}

/** Inserts `docs` in chunks (FerretDB on SQLite stalls on very large commands). */
async function insertChunked(collection, docs, chunk = 1000) {
  for (let i = 0; i < docs.length; i += chunk) await collection.insertMany(docs.slice(i, i + chunk), { ordered: false });
}

/**
 * Gives `docs` (permits about to be inserted) their places in their projects' registration order
 * (@ptw/domain registration.ts), in creation order after the places the store already holds, as
 * the services would have written them. Mutates and returns `docs`.
 */
async function placePermits(collection, docs) {
  const byProject = new Map();
  for (const d of docs) {
    if (!byProject.has(d.project_id)) byProject.set(d.project_id, []);
    byProject.get(d.project_id).push(d);
  }
  for (const [project, list] of byProject) {
    const [last] = await collection
      .find({ project_id: project, list_seq: { $exists: true } }, { projection: { list_seq: 1 } })
      .sort({ list_seq: -1 })
      .limit(1)
      .toArray();
    let seq = last?.list_seq ?? 0;
    list.sort((a, b) => a.created_at - b.created_at || (String(a._id) < String(b._id) ? -1 : 1));
    for (const d of list) {
      seq++;
      d.list_seq = seq;
      d.list_block = Math.floor(seq / 25);
    }
  }
  return docs;
}

async function timeMs(fn) {
  const t0 = process.hrtime.bigint();
  const out = await fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, out };
}

/** p50 of `reps` runs of `fn` (after one warm-up run). */
async function p50(reps, fn) {
  await fn(-1);
  const times = [];
  for (let r = 0; r < reps; r++) times.push((await timeMs(() => fn(r))).ms);
  return median(times);
}

function parseArgs(argv) {
  const args = { permits: 10_000, backends: ['postgresql', 'sqlite'], reps: 9 };
  for (let i = 0; i < argv.length; i++) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (k === '--permits') args.permits = Number(v);
    else if (k === '--backends') args.backends = v.split(',');
    else if (k === '--reps') args.reps = Number(v);
    else throw new Error(`unknown argument ${k}; usage: node test/bench/store-backends.js [--permits N] [--backends postgresql,sqlite] [--reps N]`);
    i++;
  }
  if (!(args.permits >= 100) || !(args.reps >= 1) || args.backends.some((b) => !['postgresql', 'sqlite'].includes(b))) {
    throw new Error('--permits ≥ 100, --reps ≥ 1, --backends from postgresql,sqlite');
  }
  return args;
}

async function measureBackend(backend, { permits, reps }) {
  const mongoose = require(require.resolve('mongoose', { paths: [path.join(root, 'libs/db')] }));
  const { registerModels, ensureIndexes } = require(path.join(root, 'libs/db/dist'));
  const { startStore } = require(path.join(root, 'libs/devstore/dist'));
  const started = await timeMs(() => startStore({ backend, database: 'bench_backends' }));
  const store = started.out;
  const conn = await mongoose.createConnection(store.url, { retryWrites: false, autoIndex: false }).asPromise();
  try {
    registerModels(conn);
    await ensureIndexes(conn);
    const col = conn.db.collection('permits');
    const docs = permitDocs(permits);
    const seeded = await timeMs(() => insertChunked(col, docs));
    const ids = (
      await col
        .find({ project_id: 'p1' }, { projection: { _id: 1 } })
        .limit(reps + 1)
        .toArray()
    ).map((d) => d._id);
    const byCreated = { created_at: -1, _id: -1 };
    const page = (filter) => async () => {
      const rows = await col.find(filter).sort(byCreated).limit(20).toArray();
      if (rows.length !== 20) throw new Error(`expected a page of 20, got ${rows.length}`);
    };
    const p1 = Math.ceil(permits / 4);
    const count = (filter, expected) => async () => {
      const n = await col.countDocuments(filter);
      if (expected !== undefined && n !== expected) throw new Error(`count ${JSON.stringify(filter)}: expected ${expected}, got ${n}`);
    };
    let batch = 0;
    const rows = {
      start: started.ms,
      seed: seeded.ms,
      find: await p50(reps, page({ project_id: 'p1' })),
      findIn: await p50(reps, page({ project_id: { $in: ['p1'] } })),
      count: await p50(reps, count({ project_id: 'p1' }, p1)),
      countStatus: await p50(reps, count({ project_id: 'p1', status: 'active' })),
      update: await p50(reps, async (r) => {
        const res = await col.updateOne({ _id: ids[r + 1] }, { $set: { updated_at: new Date() } });
        if (res.matchedCount !== 1) throw new Error('updateOne matched nothing');
      }),
      insert500: await p50(Math.min(reps, 5), () => col.insertMany(permitDocs(500, { tag: `ins${batch++}` }), { ordered: false })),
    };
    return rows;
  } finally {
    await conn.close();
    await store.stop();
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  for (const dist of ['libs/db/dist/index.js', 'libs/devstore/dist/index.js']) {
    if (!require('node:fs').existsSync(path.join(root, dist))) throw new Error(`${dist} is missing: run \`npx tsc -b\` (or make build) first`);
  }
  const results = {};
  for (const b of args.backends) {
    process.stderr.write(`${b}: starting a store, seeding ${args.permits} permits, measuring…\n`);
    results[b] = await measureBackend(b, args);
  }
  const p1 = Math.ceil(args.permits / 4);
  const lines = [
    ['store start (fresh; PostgreSQL: initdb + start)', 'start'],
    [`seed ${args.permits} permits (insertMany by 1,000)`, 'seed'],
    [`find({project_id: 'p1'}).sort({created_at: -1, _id: -1}).limit(20) — ${p1} in p1`, 'find'],
    ["same with project_id: {$in: ['p1']}", 'findIn'],
    ["countDocuments({project_id: 'p1'})", 'count'],
    ["countDocuments({project_id: 'p1', status: 'active'})", 'countStatus'],
    ['updateOne({_id}, {$set: {updated_at}})', 'update'],
    ['insertMany of 500 permits', 'insert500'],
  ];
  console.log(`## Store backends: FerretDB 1.24, ${args.permits} permits over 20 projects, one request at a time (p50 of ${args.reps}, ms)\n`);
  console.log(`| query | ${args.backends.map((b) => `FerretDB / ${b === 'sqlite' ? 'SQLite' : 'PostgreSQL (private cluster)'}`).join(' | ')} |`);
  console.log(`|---|${args.backends.map(() => '---:').join('|')}|`);
  for (const [label, key] of lines) console.log(`| ${label} | ${args.backends.map((b) => results[b][key].toFixed(1)).join(' | ')} |`);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

module.exports = { permitDocs, insertChunked, placePermits, STATUS_MIX };
