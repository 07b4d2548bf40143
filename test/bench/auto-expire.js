#!/usr/bin/env node
/**
 * `auto_expire_permits` on many active permits past their planned end (default 10,000): the permits
 * are inserted with insertMany, then the job runs once and the program prints its wall time,
 * permits/s and the store commands it issued (the driver's command monitoring: `commandStarted`
 * events), and checks the outcome (every permit expired once, one audit event and one notification
 * each). Baseline, measured in the same run on a smaller set: the same transition done permit by
 * permit (claim, guarded update, audit insert, notification insert — what a naive job does).
 * Store: MONGO_URL (a fresh database, dropped at the end; e.g. FerretDB on PostgreSQL) or a local
 * FerretDB. Prints Markdown.
 * On FerretDB 1.24 with SQLite expect minutes for 10,000 permits: its UPDATE looks documents up by
 * an expression its `_id` index does not match, so every updated document costs a table scan. With
 * PostgreSQL the per-document write uses the `_id` index and the job's filters push down their
 * equalities (project, version, status), so the time follows the documents written. The job's
 * command count, not its wall time, is the figure that carries over to MongoDB.
 * Run after `make build store`:  node test/bench/auto-expire.js [permits, default 10000] [baseline permits, default 100]
 */
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..');
const mongoose = require(require.resolve('mongoose', { paths: [path.join(root, 'libs/db')] }));
const { registerModels, ensureIndexes, claimVersion } = require(path.join(root, 'libs/db/dist'));
const { startStore } = require(path.join(root, 'libs/devstore/dist'));
const { autoExpirePermits } = require(path.join(root, 'services/workflow/dist/jobs'));

const PERMITS = Number(process.argv[2] ?? 10_000);
const BASELINE = Number(process.argv[3] ?? 100);
const BATCH = 500;
const HOUR = 3600_000;

let seq = 0;
function permits(n, now) {
  return Array.from({ length: n }, () => {
    seq++;
    return {
      permit_number: `PTW-2030-${String(seq).padStart(6, '0')}`,
      project_id: `p${seq % 7}`,
      permit_type_id: 'hot-work',
      title: `Bench permit ${seq}`,
      description: '',
      location: 'Unit 4',
      priority: 'medium',
      status: 'active',
      created_by: `u${seq % 50}`,
      // Active permits carry a handful of versions (created, submitted, verified, approved, activated, edits).
      version: 5 + (seq % 4),
      planned_start_time: new Date(now - 10 * HOUR),
      planned_end_time: new Date(now - HOUR - (seq % 600) * 1000),
      created_at: new Date(now - 20 * HOUR),
      updated_at: new Date(now - 20 * HOUR),
    };
  });
}

async function main() {
  let store;
  const url = process.env.MONGO_URL ? process.env.MONGO_URL.replace(/^(mongodb(?:\+srv)?:\/\/[^/?]+)(\/[^?]*)?/, `$1/ptw_bench_auto_expire_${Date.now()}`) : (store = await startStore()).url;
  const conn = await mongoose.createConnection(url, { monitorCommands: true, retryWrites: false }).asPromise();
  let counting = false;
  let counts = {};
  conn.getClient().on('commandStarted', (e) => {
    if (counting) counts[e.commandName] = (counts[e.commandName] ?? 0) + 1;
  });
  const models = registerModels(conn);
  await ensureIndexes(conn);
  const measure = async (fn) => {
    counts = {};
    counting = true;
    const t0 = process.hrtime.bigint();
    const out = await fn();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    counting = false;
    return { out, ms, commands: { ...counts }, total: Object.values(counts).reduce((a, b) => a + b, 0) };
  };
  try {
    process.stderr.write(`inserting ${PERMITS} permits…\n`);
    const now = Date.now();
    const insert = await measure(async () => {
      for (let i = 0; i < PERMITS; i += 1000) await models.Permit.collection.insertMany(permits(Math.min(1000, PERMITS - i), now), { ordered: false });
    });

    process.stderr.write('running auto_expire_permits…\n');
    const job = await measure(() => autoExpirePermits({ models, batchSize: BATCH }, new Date()));
    const [expired, audits, notes] = await Promise.all([
      models.Permit.countDocuments({ status: 'expired' }),
      models.AuditEvent.countDocuments({ to: 'expired' }),
      models.Notification.countDocuments({ type: 'ptw_expired' }),
    ]);
    const ok = job.out.permit_count === PERMITS && expired === PERMITS && audits === PERMITS && notes === PERMITS;

    process.stderr.write(`baseline: ${BASELINE} permits one by one…\n`);
    await models.Permit.collection.insertMany(permits(BASELINE, Date.now()), { ordered: false });
    const naive = await measure(async () => {
      const at = new Date();
      const rows = await models.Permit.collection.find({ status: 'active', planned_end_time: { $lt: at } }).toArray();
      for (const p of rows) {
        if (!(await claimVersion(models, 'permit', String(p._id), p.version, 'system'))) continue;
        await models.Permit.collection.updateOne(
          { _id: p._id, version: p.version, status: 'active' },
          { $set: { status: 'expired', version: p.version + 1, updated_at: at, actual_end_time: at } },
        );
        await models.AuditEvent.collection.insertOne({
          permit_id: String(p._id),
          project_id: p.project_id,
          action: 'status_change',
          from: 'active',
          to: 'expired',
          user_id: 'system',
          comments: 'Auto-expired: planned end time passed',
          at,
        });
        await models.Notification.collection.insertOne({
          user_id: p.created_by,
          type: 'ptw_expired',
          title: `Permit ${p.permit_number} expired`,
          message: '',
          data: { permit_id: String(p._id) },
          dedupe_key: `expired_${p._id}`,
          read: false,
          created_at: at,
        });
      }
      return rows.length;
    });

    const rate = (n, ms) => Math.round((n / ms) * 1000);
    const jobRate = rate(PERMITS, job.ms);
    const naiveRate = rate(BASELINE, naive.ms);
    console.log(
      `## auto_expire_permits — ${PERMITS} active permits past their end (${store ? `FerretDB 1.24, ${store.backend === 'sqlite' ? 'SQLite' : 'PostgreSQL'}` : `MONGO_URL ${new URL(url).host}`}; batch ${BATCH})\n`,
    );
    console.log('| case | permits | wall time | permits/s | store commands | commands per 1,000 permits |');
    console.log('|---|---:|---:|---:|---:|---:|');
    console.log(
      `| insertMany (set-up) | ${PERMITS} | ${(insert.ms / 1000).toFixed(2)} s | ${rate(PERMITS, insert.ms)} | ${insert.total} | ${((insert.total / PERMITS) * 1000).toFixed(1)} |`,
    );
    console.log(`| **job (bulk)** | ${PERMITS} | ${(job.ms / 1000).toFixed(2)} s | ${jobRate} | ${job.total} | ${((job.total / PERMITS) * 1000).toFixed(1)} |`);
    console.log(`| baseline: one by one | ${BASELINE} | ${(naive.ms / 1000).toFixed(2)} s | ${naiveRate} | ${naive.total} | ${((naive.total / BASELINE) * 1000).toFixed(1)} |`);
    console.log(
      `\njob commands: ${Object.entries(job.commands)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
    console.log(
      `ratio: the bulk job expires ${(jobRate / naiveRate).toFixed(1)}× as many permits per second as the baseline, with ${(naive.total / BASELINE / (job.total / PERMITS)).toFixed(0)}× fewer commands per permit`,
    );
    console.log(`outcome: expired ${expired}, audit events ${audits}, notifications ${notes} → ${ok ? 'OK' : 'MISMATCH'}; peak RSS ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB`);
    if (!ok) process.exitCode = 1;
  } finally {
    if (!store) await conn.db.dropDatabase().catch(() => undefined);
    await conn.close();
    await store?.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
