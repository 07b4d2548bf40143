/**
 * The local store serves an equality only through the GIN indexes libs/devstore mirrors from each
 * index's equality fields (FerretDB pushes equality down as JSONB containment, which btree
 * expression indexes cannot serve). A bounding key of the pushdown guard (pushdown.ts) with a field
 * left out reads every document matching the other fields: filterPushdown says true, yet the
 * store's work grows with the data. This checks, on a real store with every model's indexes, that
 * each bounding key's fields are mirrored, except where the mirrored ones bound the read themselves.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '@ptw/common';
import { startStore } from '@ptw/devstore';
import { postgresBinDir } from '@ptw/devstore/dist/postgres';
import { connectMongo, ensureIndexes } from './connection';
import { registerModels } from './models';
import { BOUNDING_KEYS } from './pushdown';

jest.setTimeout(120_000);

/** Fields left unmirrored on purpose: the mirrored fields of the same key bound the read. */
const BOUNDED_BY_THE_OTHERS: Record<string, string> = {
  'revisions.version': "one entity's revisions (entity_id)",
  'notifications.dedupe_key': "one user's notifications (user_id; the unique key cannot take a trailing field)",
  'sync_receipts.entity': "one device's offline id (device_id, offline_id)",
  'job_runs.attempt': "one job's slot (job, slot)",
};

it('when every model has its indexes, then each bounding key of the pushdown guard is served by one mirrored GIN index', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-mirror-'));
  fs.chmodSync(dir, 0o777);
  const store = await startStore({ backend: 'postgresql', dataDir: dir, database: 'mirror' });
  const conn = await connectMongo(store.url, createLogger('test', { stdout: false }), { appName: 'mirror' });
  try {
    const models = registerModels(conn);
    await ensureIndexes(conn);
    const cmd = [path.join(postgresBinDir(), 'psql'), '-h', path.join(dir, 'pg'), '-U', 'postgres', '-d', 'postgres', '-X', '-At', '-c'];
    const sql = `SELECT tablename || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'mirror' AND indexdef LIKE '%USING gin%'`;
    const out =
      process.getuid?.() === 0 ? execFileSync('runuser', ['-u', 'postgres', '--', ...cmd, sql], { encoding: 'utf8' }) : execFileSync(cmd[0], [...cmd.slice(1), sql], { encoding: 'utf8' });
    const gin = out.trim().split('\n');
    expect(Object.keys(models).length).toBeGreaterThan(10);
    const missing: string[] = [];
    const split: string[] = [];
    for (const [collection, keys] of Object.entries(BOUNDING_KEYS)) {
      for (const fields of keys) {
        const own = gin.filter((row) => row.startsWith(`${collection}_`));
        for (const f of fields) {
          const mirrored = own.some((row) => row.includes(`(_jsonb -> '${f}'::text)`));
          if (!mirrored && !BOUNDED_BY_THE_OTHERS[`${collection}.${f}`]) missing.push(`${collection}.${f} of ${JSON.stringify(fields)}`);
        }
        // All of them in one index: PostgreSQL without statistics (a collection not analysed yet) ANDs
        // one GIN scan per field, reading every entry of the least selective one (a project's permits).
        const wanted = fields.filter((f) => !BOUNDED_BY_THE_OTHERS[`${collection}.${f}`]);
        if (wanted.length > 1 && !own.some((row) => wanted.every((f) => row.includes(`(_jsonb -> '${f}'::text)`)))) split.push(`${collection} ${JSON.stringify(wanted)}`);
      }
    }
    expect(missing).toEqual([]);
    expect(split).toEqual([]);
  } finally {
    await conn.close();
    await store.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
