#!/usr/bin/env node
/**
 * Offline sync throughput through the real system (gateway → sync service → store, as processes),
 * one request at a time, for batches of 1, 100 and 500 permit creates, against two raw-driver
 * baselines measured in the same run on the same store:
 *   - "raw, same permits": insertMany of the very documents sync stored (read back, new numbers)
 *     into a collection with the permits' indexes — what the permits alone cost;
 *   - "raw, bench docs": insertMany of the change payloads (plus number, project, status) into a
 *     collection without indexes — the earlier baseline, kept for comparison.
 * Prints a table; asserts nothing. Store: MONGO_URL when set (a database of its own), else a
 * fresh local store. Run after `make build`:  node test/bench/sync.js [changes per size, default 1000]
 */
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const { MongoClient, ObjectId } = require('mongodb');
const root = path.resolve(__dirname, '..', '..');
const { startStack } = require(path.join(root, 'libs/devstore/dist/stack.js'));
const { createLogger, DEV_JWT_SECRET, mintToken } = require(path.join(root, 'libs/common/dist'));
const { connectMongo, registerModels } = require(path.join(root, 'libs/db/dist'));

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

const seconds = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;

async function main() {
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-bench-sync-'));
  const mongoUrl = process.env.MONGO_URL ? `${process.env.MONGO_URL.replace(/\/[^/]*$/, '')}/ptw_bench_sync_${Date.now()}` : undefined;
  const stack = await startStack({ ports: 'free', logDir, mongoUrl, env: { ...auth, NODE_ENV: 'test', LOG_LEVEL: 'warn', PTW_THROTTLE_SYNC: '1000000/min' } });
  const driver = await MongoClient.connect(stack.mongoUrl);
  const db = driver.db();
  await db
    .collection('permit_types')
    .updateOne({ _id: 'hot-work' }, { $setOnInsert: { name: 'Hot Work', category: 'hot_work', risk_level: 'high', active: true, closeout_items: [] } }, { upsert: true });
  // The "same permits" baseline collection gets exactly the permits' indexes.
  const conn = await connectMongo(stack.mongoUrl, createLogger('bench', { stdout: false }), { appName: 'bench' });
  const { Permit } = registerModels(conn);
  const samePermits = db.collection('bench_raw_permits');
  for (const [keys, options] of Permit.schema.indexes()) await samePermits.createIndex(keys, options);
  const plain = db.collection('bench_raw');
  const token = await mintToken(auth, { user: 'u-bench', role: 'worker', projects: ['p1'], ttlSeconds: 3600 });

  const rows = [];
  let n = 0;
  let raw = 0;
  for (const size of [1, 100, 500]) {
    const batches = Math.max(1, Math.round(TOTAL / size));
    let syncSec = 0;
    let sameSec = 0;
    let plainSec = 0;
    for (let b = 0; b < batches; b++) {
      const changes = Array.from({ length: size }, () => ({ entity: 'permit', op: 'create', offline_id: `bench-${++n}`, data: permitData(n) }));
      let t0 = process.hrtime.bigint();
      const res = await fetch(`${stack.gatewayUrl}/api/v1/ptw/sync-offline-data/`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ device_id: 'bench-device', changes }),
      });
      const r = await res.json();
      syncSec += seconds(t0);
      if (res.status !== 200 || r.summary.applied !== size) throw new Error(`expected ${size} applied, got ${res.status} ${JSON.stringify(r.summary ?? r)}`);

      const stored = await db
        .collection('permits')
        .find({ _id: { $in: r.applied.map((a) => new ObjectId(a.server_id)) } })
        .toArray();
      const same = stored.map(({ _id, ...doc }) => ({ ...doc, permit_number: `RAW-${++raw}` }));
      t0 = process.hrtime.bigint();
      await samePermits.insertMany(same);
      sameSec += seconds(t0);

      const docs = changes.map((c) => ({ ...c.data, permit_number: `PLAIN-${++raw}`, project_id: 'p1', status: 'draft', version: 1, created_at: new Date() }));
      t0 = process.hrtime.bigint();
      await plain.insertMany(docs);
      plainSec += seconds(t0);
    }
    const changes = batches * size;
    rows.push({ batch: size, changes, sync: changes / syncSec, same: changes / sameSec, plain: changes / plainSec });
  }

  console.log(`\nsync throughput through the gateway (${process.env.MONGO_URL ? 'MONGO_URL' : 'local store'}; ${os.cpus().length} cores)`);
  console.log('| batch | changes | sync changes/s | raw, same permits docs/s | sync / raw same | raw, bench docs docs/s | sync / raw bench |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.batch} | ${r.changes} | ${r.sync.toFixed(0)} | ${r.same.toFixed(0)} | ${(r.sync / r.same).toFixed(3)} | ${r.plain.toFixed(0)} | ${(r.sync / r.plain).toFixed(3)} |`);
  }

  await conn.close();
  await driver.close();
  await stack.stop();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
