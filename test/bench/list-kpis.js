#!/usr/bin/env node
/**
 * Permit list pages and KPIs on a store holding many permits (default 10,000 in 20 projects, a
 * quarter of them in p1, the caller's project), through the real workflow and export services
 * (in-process, called over gRPC), one request at a time, in rounds (each case once per round).
 * Baseline, measured in the same run on the same store: the raw driver returning the same page and
 * count (`find` sorted newest first with `limit`, and `countDocuments`, sent together); "before" is
 * the raw driver with the query shape the list used before issue 12 (`project_id: {$in}`). Prints p50/p99 in ms, the ratio to the baseline
 * and the store commands per request (the driver's command monitoring on the service's connection).
 * Store: MONGO_URL (a database of its own, dropped at the end) or a local FerretDB.
 * Run after `make build store`:  node test/bench/list-kpis.js [permits, default 10000] [rounds, default 30]
 */
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const { MongoClient } = require('mongodb');

const root = path.resolve(__dirname, '..', '..');
const { testStore } = require(path.join(root, 'libs/devstore/dist'));
const { countStoreCommands } = require(path.join(root, 'libs/db/dist'));
const { createClient, DEV_JWT_SECRET, mintToken } = require(path.join(root, 'libs/common/dist'));
const { workflowPb, exportPb, commonPb } = require(path.join(root, 'libs/proto/dist'));
const workflow = require(path.join(root, 'services/workflow/dist/main.js'));
const exporter = require(path.join(root, 'services/export/dist/main.js'));

const PERMITS = Number(process.argv[2] || 10_000);
const RUNS = Number(process.argv[3] || 30);
const PROJECTS = 20;
const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
const H = 3600_000;

// A year of a large site: most permits closed, a few hundred open in each state.
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

function permit(i, now) {
  const status = WHEEL[(i * 37) % WHEEL.length];
  const created = new Date(now - 365 * 24 * H + (i / PERMITS) * 365 * 24 * H);
  const end = status === 'active' ? new Date(now + ((i % 48) - 12) * H) : new Date(created.getTime() + 10 * H);
  return {
    permit_number: `PTW-2026-${String(i + 1).padStart(6, '0')}`,
    // p1 holds a quarter of the permits, the 19 other projects share the rest.
    project_id: i % 4 === 0 ? 'p1' : `p${2 + (i % (PROJECTS - 1))}`,
    permit_type_id: 'hot-work',
    title: `Hot work on line ${i % 97} (bench permit ${i})`,
    description: 'Cut and weld the support bracket of the pipe rack; fire watch for 60 minutes after the work ends.',
    location: `Unit ${i % 13}, rack ${i % 7}`,
    priority: ['low', 'medium', 'high', 'critical'][i % 4],
    probability: 1 + (i % 5),
    severity: 1 + (i % 3),
    risk_score: (1 + (i % 5)) * (1 + (i % 3)),
    risk_level: 'medium',
    control_measures: 'Gas test before and every two hours; fire blankets; extinguisher at hand.',
    ppe_requirements: ['helmet', 'gloves', 'face shield'],
    safety_checklist: { gas_test: true, fire_watch: true, area_cleared: i % 2 === 0 },
    planned_start_time: new Date(end.getTime() - 8 * H),
    planned_end_time: end,
    status,
    created_by: `u${i % 50}`,
    verifier_id: 'u-supervisor',
    approver_id: 'u-manager',
    ...(['submitted', 'under_review', 'approved', 'active', 'suspended', 'completed', 'expired'].includes(status) ? { submitted_at: new Date(now - ((i % 30) + 1) * H) } : {}),
    ...(['under_review', 'approved', 'active', 'suspended', 'completed', 'expired'].includes(status) ? { verified_at: new Date(now - ((i % 10) + 1) * H) } : {}),
    version: 1 + (i % 6),
    created_at: created,
    updated_at: status === 'completed' && i % 50 === 0 ? new Date(now - H) : created,
  };
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function main() {
  const store = await testStore('bench_list_kpis');
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-bench-'));
  const driver = await MongoClient.connect(store.url);
  const db = driver.db();
  const now = Date.now();
  process.stderr.write(`${new Date().toISOString()} seeding ${PERMITS} permits…\n`);
  await db.collection('permit_types').insertOne({ _id: 'hot-work', name: 'Hot Work', category: 'hot_work', risk_level: 'high', active: true, closeout_items: [] });
  for (let i = 0; i < PERMITS; i += 1000) {
    await db.collection('permits').insertMany(Array.from({ length: Math.min(1000, PERMITS - i) }, (_, k) => permit(i + k, now)));
  }
  const points = Array.from({ length: PERMITS / 5 }, (_, i) => ({
    permit_id: `x${i}`,
    project_id: i % 4 === 0 ? 'p1' : `p${2 + (i % (PROJECTS - 1))}`,
    name: `Valve ${i}`,
    energy_type: 'electrical',
    required: true,
    status: ['assigned', 'isolated', 'verified', 'deisolated'][i % 4],
    lock_ids: [],
    version: 1,
  }));
  if (points.length) await db.collection('isolation_points').insertMany(points);

  process.stderr.write(`${new Date().toISOString()} starting the services…\n`);
  const env = { ...process.env, ...auth, NODE_ENV: 'test', MONGO_URL: store.url, PTW_METRICS_LISTEN: '127.0.0.1:0', LOG_DIR: logDir, LOG_LEVEL: 'warn' };
  // The services' own connections (the bench's raw driver is not counted).
  const counter = countStoreCommands();
  const wfSvc = await workflow.start({ ...env, PTW_JOBS_WORKER: 'false', PTW_WORKFLOW_ADDR: '127.0.0.1:0' });
  const exSvc = await exporter.start({ ...env, PTW_EXPORT_ADDR: '127.0.0.1:0' });
  const wf = createClient(workflowPb.WorkflowServiceClient, `127.0.0.1:${wfSvc.port}`, { defaultDeadlineMs: 120_000 }).call;
  const ex = createClient(exportPb.ExportServiceClient, `127.0.0.1:${exSvc.port}`, { defaultDeadlineMs: 120_000 }).call;
  const one = { token: await mintToken(auth, { user: 'u-manager', role: 'manager', projects: ['p1'], ttlSeconds: 3600 }) };
  const three = { token: await mintToken(auth, { user: 'u-manager', role: 'manager', projects: ['p1', 'p2', 'p3'], ttlSeconds: 3600 }) };
  const permits = db.collection('permits');
  const newest = { created_at: -1, _id: -1 };
  const raw = (filter, skip = 0) => Promise.all([permits.find(filter).sort(newest).skip(skip).limit(20).toArray(), permits.countDocuments(filter)]);

  const cases = [
    ['raw driver: page 1 + count, {project_id: p1}', () => raw({ project_id: 'p1' })],
    ['before (raw driver, the old query shape): page 1 + count, {project_id: {$in: [p1]}}', () => raw({ project_id: { $in: ['p1'] } })],
    ['list page 1, page_size 20 (caller in p1)', () => wf.listPermits({ filter: undefined, page: 1, page_size: 20 }, one)],
    ['list ?status=active (caller in p1)', () => wf.listPermits({ filter: commonPb.PermitFilter.fromPartial({ status: ['active'] }), page: 1, page_size: 20 }, one)],
    ['list page 10 (caller in p1)', () => wf.listPermits({ filter: undefined, page: 10, page_size: 20 }, one)],
    ['raw driver: page 1 + count, {project_id: {$in: [p1, p2, p3]}}', () => raw({ project_id: { $in: ['p1', 'p2', 'p3'] } })],
    ['list page 1 (caller in p1, p2, p3)', () => wf.listPermits({ filter: undefined, page: 1, page_size: 20 }, three)],
    ['KPIs (caller in p1)', () => ex.getKpis({ project: '' }, one)],
    ['KPIs (caller in p1, p2, p3)', () => ex.getKpis({ project: '' }, three)],
  ];

  // Rounds: every case once per round, so a load change on the machine hits all cases alike.
  for (const [, fn] of cases) await fn();
  const times = cases.map(() => []);
  for (let round = 0; round < RUNS; round++) {
    for (const [i, [, fn]] of cases.entries()) {
      const t0 = process.hrtime.bigint();
      await fn();
      times[i].push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    process.stderr.write(`${new Date().toISOString()} round ${round + 1}/${RUNS}\n`);
  }
  const rows = [];
  for (const [i, [name, fn]] of cases.entries()) {
    const ms = times[i].sort((a, b) => a - b);
    const { commands } = await counter.measure(fn);
    rows.push({ name, p50: quantile(ms, 0.5), p99: quantile(ms, 0.99), commands });
  }
  const base1 = rows[0].p50;
  const base3 = rows[5].p50;

  console.log(`\n## list and KPIs — ${PERMITS} permits in ${PROJECTS} projects (${process.env.MONGO_URL ? 'MONGO_URL' : 'local FerretDB'}; ${RUNS} requests per case, one at a time)\n`);
  console.log('| case | p50 ms | p99 ms | p50 / raw driver | service store commands |');
  console.log('|---|---:|---:|---:|---:|');
  rows.forEach((r, i) =>
    console.log(
      `| ${r.name} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${i < 5 ? (r.p50 / base1).toFixed(2) : i < 7 ? (r.p50 / base3).toFixed(2) : '–'} | ${r.name.startsWith('raw') || r.name.startsWith('before') ? '–' : r.commands} |`,
    ),
  );

  await wfSvc.stop();
  await exSvc.stop();
  if (process.env.MONGO_URL) await db.dropDatabase();
  await driver.close();
  await store.stop();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
