#!/usr/bin/env node
/**
 * Offline sync throughput: changes/s through the real sync service (gRPC, FerretDB or MONGO_URL)
 * for batches of 1, 100 and 500 permit creates, against writing the same documents with the raw
 * MongoDB driver (insertMany of the batch) in the same run. Prints a table; asserts nothing.
 * Run after `make build store`:  node test/bench/sync.js [total changes per size, default 1000]
 */
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const { MongoClient } = require('mongodb');
const root = path.resolve(__dirname, '..', '..');
const { testStore } = require(path.join(root, 'libs/devstore/dist'));
const { createClient, DEV_JWT_SECRET, mintToken } = require(path.join(root, 'libs/common/dist'));
const { syncPb } = require(path.join(root, 'libs/proto/dist'));
const { start } = require(path.join(root, 'services/sync/dist/main.js'));

const TOTAL = Number(process.argv[2] || 1000);
const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };

function permitData(i) {
  return {
    permit_type_id: 'hot-work',
    title: `Bench permit ${i}`,
    location: `Area ${i % 17}`,
    probability: 1 + (i % 5),
    severity: 1 + (i % 3),
    ppe_requirements: ['helmet', 'gloves'],
    planned_start_time: '2026-12-01T08:00:00Z',
    planned_end_time: '2026-12-01T16:00:00Z',
  };
}

async function main() {
  const store = await testStore('bench_sync');
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-bench-'));
  const driver = await MongoClient.connect(store.url);
  const db = driver.db();
  await db.collection('permit_types').insertOne({ _id: 'hot-work', name: 'Hot Work', category: 'hot_work', risk_level: 'high', active: true, closeout_items: [] });
  const svc = await start({ ...process.env, ...auth, NODE_ENV: 'test', MONGO_URL: store.url, PTW_SYNC_ADDR: '127.0.0.1:0', PTW_METRICS_LISTEN: '127.0.0.1:0', LOG_DIR: logDir, LOG_LEVEL: 'warn' });
  const client = createClient(syncPb.SyncServiceClient, `127.0.0.1:${svc.port}`, { defaultDeadlineMs: 600_000 }).call;
  const who = { token: await mintToken(auth, { user: 'u-bench', role: 'worker', projects: ['p1'], ttlSeconds: 3600 }) };

  const rows = [];
  let n = 0;
  for (const size of [1, 100, 500]) {
    const batches = Math.max(1, Math.round(TOTAL / size));
    let t0 = process.hrtime.bigint();
    for (let b = 0; b < batches; b++) {
      const changes = Array.from({ length: size }, () => ({ entity: 'permit', op: 'create', offline_id: `bench-${++n}`, data: permitData(n), invalid_reason: '' }));
      const r = await client.syncOfflineData({ device_id: 'bench-device', changes }, who);
      if (r.summary.applied !== size) throw new Error(`expected ${size} applied, got ${JSON.stringify(r.summary)}`);
    }
    const syncSec = Number(process.hrtime.bigint() - t0) / 1e9;

    const raw = db.collection('bench_raw');
    t0 = process.hrtime.bigint();
    for (let b = 0; b < batches; b++) {
      const docs = Array.from({ length: size }, () => ({ ...permitData(++n), permit_number: `RAW-${n}`, project_id: 'p1', status: 'draft', version: 1, created_at: new Date() }));
      await raw.insertMany(docs);
    }
    const rawSec = Number(process.hrtime.bigint() - t0) / 1e9;
    const changes = batches * size;
    rows.push({ batch: size, changes, sync_per_s: changes / syncSec, raw_per_s: changes / rawSec });
  }

  console.log(`\nsync throughput (${process.env.MONGO_URL ? 'MONGO_URL' : 'FerretDB/SQLite'}; ${os.cpus().length} cores)`);
  console.log('| batch | changes | sync changes/s | raw driver docs/s | sync / raw |');
  console.log('|---:|---:|---:|---:|---:|');
  for (const r of rows) console.log(`| ${r.batch} | ${r.changes} | ${r.sync_per_s.toFixed(0)} | ${r.raw_per_s.toFixed(0)} | ${(r.sync_per_s / r.raw_per_s).toFixed(3)} |`);

  await svc.stop();
  await driver.close();
  await store.stop();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
