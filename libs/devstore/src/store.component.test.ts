/** The local store: its own folder, its backends, and the private PostgreSQL cluster it runs. */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { startStore, storeBackend, type RunningStore } from './index';
import { execFileSync } from 'node:child_process';
import { postgresBinDir, startPrivateCluster } from './postgres';

jest.setTimeout(120_000);

async function roundTrip(store: RunningStore, doc: Record<string, unknown>): Promise<number> {
  const client = await MongoClient.connect(store.url, { serverSelectionTimeoutMS: 10_000 });
  try {
    const col = client.db().collection('things');
    await col.insertOne(doc);
    return await col.countDocuments({});
  } finally {
    await client.close();
  }
}

/** True while the process of a postmaster.pid file (first line) is alive. */
function postmasterAlive(pidFile: string): boolean {
  if (!fs.existsSync(pidFile)) return false;
  const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits up to 5 s for `pid` to be gone or a zombie (pg_ctl -w returns when the pid file is removed, just before the exit). */
async function exited(pid: number): Promise<boolean> {
  for (let i = 0; i < 50; i++) {
    const stat = `/proc/${pid}/stat`;
    if (!fs.existsSync(stat) || / Z /.test(fs.readFileSync(stat, 'utf8'))) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** psql on the private cluster of store folder `dir` (its socket is in <dir>/pg), as the server's user when we are root. */
function psqlOn(dir: string): (sql: string) => string {
  return (sql) => {
    const cmd = [path.join(postgresBinDir(), 'psql'), '-h', path.join(dir, 'pg'), '-U', 'postgres', '-d', 'postgres', '-X', '-At', '-c', sql];
    return process.getuid?.() === 0 ? execFileSync('runuser', ['-u', 'postgres', '--', ...cmd], { encoding: 'utf8' }) : execFileSync(cmd[0], cmd.slice(1), { encoding: 'utf8' });
  };
}

function givenDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-store-given-'));
}

describe('startStore', () => {
  it('when it made its data folder, then stop() removes it; a given folder is kept', async () => {
    const own = await startStore();
    expect(fs.existsSync(own.dataDir)).toBe(true);
    await own.stop();
    expect(fs.existsSync(own.dataDir)).toBe(false);

    const given = givenDir();
    const marker = path.join(given, 'keep-me');
    fs.writeFileSync(marker, 'x');
    try {
      const kept = await startStore({ dataDir: given });
      expect(kept.dataDir).toBe(given);
      await kept.stop();
      expect(fs.existsSync(marker)).toBe(true);
    } finally {
      fs.rmSync(given, { recursive: true, force: true });
    }
  });

  it('when no backend is chosen, then it is PostgreSQL; PTW_STORE_BACKEND picks SQLite and rejects anything else', () => {
    expect(storeBackend({})).toBe('postgresql');
    expect(storeBackend({ PTW_STORE_BACKEND: 'sqlite' })).toBe('sqlite');
    expect(() => storeBackend({ PTW_STORE_BACKEND: 'mysql' })).toThrow(/PTW_STORE_BACKEND: expected postgresql or sqlite/);
  });
});

describe('the PostgreSQL backend without a URL', () => {
  it('when started, then a private socket-only cluster in the store folder serves it, and stop() ends the cluster and removes the folder', async () => {
    const store = await startStore({ backend: 'postgresql', database: 'private_cluster' });
    const pidFile = path.join(store.dataDir, 'pg', 'data', 'postmaster.pid');
    try {
      expect(store.backend).toBe('postgresql');
      expect(postmasterAlive(pidFile)).toBe(true);
      // Socket-only: the server listens on no TCP address (line 6 of postmaster.pid is empty).
      expect(fs.readFileSync(pidFile, 'utf8').split('\n')[5]).toBe('');
      expect(await roundTrip(store, { n: 1 })).toBe(1);
    } catch (err) {
      await store.stop();
      throw err;
    }
    const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
    await store.stop();
    expect(fs.existsSync(store.dataDir)).toBe(false);
    expect(await exited(pid)).toBe(true);
  });

  it('when started again on the same folder, then the cluster and its data are reused, not made again', async () => {
    const dir = givenDir();
    try {
      const first = await startStore({ backend: 'postgresql', dataDir: dir, database: 'reuse' });
      await roundTrip(first, { n: 1 }).finally(() => first.stop());
      const versionFile = path.join(dir, 'pg', 'data', 'PG_VERSION');
      const madeAt = fs.statSync(versionFile).mtimeMs;
      expect(postmasterAlive(path.join(dir, 'pg', 'data', 'postmaster.pid'))).toBe(false);

      const second = await startStore({ backend: 'postgresql', dataDir: dir, database: 'reuse' });
      try {
        expect(await roundTrip(second, { n: 2 })).toBe(2);
        expect(fs.statSync(versionFile).mtimeMs).toBe(madeAt);
      } finally {
        await second.stop();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('when FerretDB makes an index, then its equality fields (a unique key whole, a compound one but its last, sort field) get one GIN index that its pushed-down equality uses; older indexes get theirs at the next start, and older mirrors no rule makes are dropped', async () => {
    const dir = givenDir();
    const psql = psqlOn(dir);
    const ginOf = (table: string) =>
      psql(`SELECT indexdef FROM pg_indexes WHERE schemaname = 'mirror' AND tablename LIKE '${table}%' AND indexdef LIKE '%USING gin%'`).trim().split('\n').filter(Boolean);
    try {
      const first = await startStore({ backend: 'postgresql', dataDir: dir, database: 'mirror' });
      const client = await MongoClient.connect(first.url, { serverSelectionTimeoutMS: 10_000 });
      try {
        const things = client.db('mirror').collection('things');
        await things.createIndex({ project_id: 1, status: 1, created_at: -1 });
        await things.createIndex({ project_id: 1, seq: 1 }, { unique: true });
        await things.insertMany(Array.from({ length: 2000 }, (_, i) => ({ project_id: `p${i % 20}`, status: ['a', 'b'][i % 2], created_at: new Date(i), seq: i })));
        const gin = ginOf('things_');
        const mirrored = (field: string) => gin.some((d) => d.includes(`(_jsonb -> '${field}'::text)`));
        expect(['_id', 'project_id', 'status', 'created_at', 'seq'].map((f) => [f, mirrored(f)])).toEqual([
          ['_id', true],
          ['project_id', true],
          ['status', true],
          ['created_at', false],
          ['seq', true],
        ]);
        // One GIN per index over its equality fields: the unique key whole, the compound one but its last field.
        const covers = (fields: string[]) => gin.some((d) => fields.every((f) => d.includes(`(_jsonb -> '${f}'::text)`)));
        expect([covers(['project_id', 'seq']), covers(['project_id', 'status'])]).toEqual([true, true]);
        const table = psql(`SELECT tablename FROM pg_tables WHERE schemaname = 'mirror' AND tablename LIKE 'things_%'`).trim();
        // A probe of a unique key on a table not analysed yet (no statistics, as a new collection):
        // one index scan over both fields, not one per field ANDed (that reads all of the project's entries).
        const probe = psql(
          `PREPARE k(text, jsonb, text, jsonb) AS SELECT _jsonb FROM mirror.${table} WHERE _jsonb->$1 @> $2 AND _jsonb->$3 @> $4; EXPLAIN EXECUTE k('project_id', '"p3"', 'seq', '103')`,
        );
        expect(probe).toMatch(/Bitmap Index Scan on ptw_gin_/);
        expect(probe).not.toMatch(/BitmapAnd|Seq Scan/);
        expect(await things.findOne({ project_id: 'p3', seq: 103 })).toMatchObject({ status: 'b' });
        // What FerretDB sends for find({_id}) and find({project_id, status}), planned as it plans them.
        psql(`ANALYZE mirror.${table}`);
        const one = await things.findOne({ project_id: 'p3' });
        const plan = psql(
          `PREPARE q(text, jsonb, text, jsonb) AS SELECT _jsonb FROM mirror.${table} WHERE _jsonb->$1 @> $2 AND _jsonb->$3 @> $4; EXPLAIN EXECUTE q('project_id', '"p3"', 'status', '"b"')`,
        );
        expect(plan).toMatch(/Bitmap Index Scan on ptw_gin_/);
        expect(plan).not.toMatch(/Seq Scan/);
        expect(await things.countDocuments({ project_id: 'p3', status: 'b' })).toBe(100);
        expect(await things.findOne({ _id: one!._id })).toMatchObject({ project_id: 'p3' });

        // An index made while the trigger was not there (a store folder of an older version).
        psql('DROP EVENT TRIGGER ptw_mirror_indexes');
        await client.db('mirror').collection('older').createIndex({ owner: 1 });
        expect(ginOf('older_')).toEqual([]);
        // A mirror of an earlier rule (one GIN per field): not made by this one, so dropped at the next start.
        psql(`CREATE INDEX ptw_gin_earlier_rule ON mirror.${table} USING gin ((_jsonb -> 'seq') jsonb_path_ops)`);
      } finally {
        await client.close();
        await first.stop();
      }
      const second = await startStore({ backend: 'postgresql', dataDir: dir, database: 'mirror' });
      try {
        expect(ginOf('older_').filter((d) => d.includes(`(_jsonb -> 'owner'::text)`))).toHaveLength(1);
        const after = ginOf('things_');
        expect(after.some((d) => d.includes('ptw_gin_earlier_rule'))).toBe(false);
        expect(after.some((d) => d.includes(`(_jsonb -> 'project_id'::text)`) && d.includes(`(_jsonb -> 'seq'::text)`))).toBe(true);
      } finally {
        await second.stop();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('when FerretDB makes an index that is not unique, then PostgreSQL keeps it empty (WHERE false) while FerretDB lists, uses and drops it; unique ones stay whole; an older store gets this at its next start', async () => {
    const dir = givenDir();
    const psql = psqlOn(dir);
    /** The btree indexes of a collection's table (FerretDB's), `unique`/`empty`/`whole` by name. */
    const btrees = (prefix: string) =>
      Object.fromEntries(
        psql(
          `SELECT c.relname, CASE WHEN i.indisunique THEN 'unique' WHEN i.indpred IS NOT NULL THEN 'empty' ELSE 'whole' END FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_am am ON am.oid = c.relam WHERE n.nspname = 'neutral' AND t.relname LIKE '${prefix}%' AND am.amname = 'btree'`,
        )
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => l.split('|'))
          .map(([name, kind]) => [name.replace(/^[a-z]+_[0-9a-f]+_/, '').replace(/_[0-9a-f]{8}_idx$/, ''), kind]),
      );
    try {
      const first = await startStore({ backend: 'postgresql', dataDir: dir, database: 'neutral' });
      const client = await MongoClient.connect(first.url, { serverSelectionTimeoutMS: 10_000 });
      try {
        const things = client.db('neutral').collection('things');
        await things.createIndex({ project_id: 1, created_at: -1 });
        await things.createIndex({ code: 1 }, { unique: true });
        await things.insertMany(Array.from({ length: 50 }, (_, i) => ({ project_id: `p${i % 5}`, code: `c${i}`, created_at: new Date(i) })));
        expect(btrees('things_')).toEqual({ _id_: 'unique', code__: 'unique', project_id___creat: 'empty' });
        // FerretDB still knows, uses and enforces what it made.
        expect((await things.indexes()).map((i) => i.name).sort()).toEqual(['_id_', 'code_1', 'project_id_1_created_at_-1']);
        expect(await things.countDocuments({ project_id: 'p2' })).toBe(10);
        expect((await things.find({ project_id: 'p2' }).sort({ created_at: -1 }).limit(1).toArray())[0]).toMatchObject({ code: 'c47' });
        await expect(things.insertOne({ project_id: 'p1', code: 'c3' })).rejects.toMatchObject({ code: 11000 });
        await things.dropIndex('project_id_1_created_at_-1');
        expect(btrees('things_')).toEqual({ _id_: 'unique', code__: 'unique' });
        // An index made while the trigger was not there (a store folder of an older version) stays whole until the next start.
        psql('DROP EVENT TRIGGER ptw_mirror_indexes');
        await client.db('neutral').collection('older').createIndex({ owner: 1 });
        expect(btrees('older_')).toEqual({ _id_: 'unique', owner__: 'whole' });
      } finally {
        await client.close();
        await first.stop();
      }
      const second = await startStore({ backend: 'postgresql', dataDir: dir, database: 'neutral' });
      try {
        expect(btrees('older_')).toEqual({ _id_: 'unique', owner__: 'empty' });
      } finally {
        await second.stop();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('when the store cannot start (its port is taken), then the cluster it started is stopped too', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    const dir = givenDir();
    try {
      await expect(startStore({ backend: 'postgresql', dataDir: dir, port })).rejects.toThrow(/store exited/);
      expect(fs.existsSync(path.join(dir, 'pg', 'data', 'PG_VERSION'))).toBe(true);
      expect(postmasterAlive(path.join(dir, 'pg', 'data', 'postmaster.pid'))).toBe(false);
    } finally {
      holder.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the PostgreSQL backend with a URL', () => {
  it('when a PostgreSQL URL is given, then the store uses it, starts no cluster of its own and leaves it running on stop', async () => {
    const outside = givenDir();
    const cluster = await startPrivateCluster(outside);
    try {
      const store = await startStore({ backend: 'postgresql', postgresqlUrl: cluster.url, database: 'external' });
      try {
        expect(await roundTrip(store, { n: 1 })).toBe(1);
        expect(fs.existsSync(path.join(store.dataDir, 'pg'))).toBe(false);
      } finally {
        await store.stop();
      }
      expect(postmasterAlive(path.join(cluster.dir, 'data', 'postmaster.pid'))).toBe(true);
    } finally {
      await cluster.stop();
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });
});

describe('the SQLite backend', () => {
  it('when PTW_STORE_BACKEND=sqlite, then the store runs on SQLite files and no PostgreSQL cluster', async () => {
    const saved = process.env.PTW_STORE_BACKEND;
    process.env.PTW_STORE_BACKEND = 'sqlite';
    let store: RunningStore;
    try {
      store = await startStore({ database: 'on_sqlite' });
    } finally {
      if (saved === undefined) delete process.env.PTW_STORE_BACKEND;
      else process.env.PTW_STORE_BACKEND = saved;
    }
    try {
      expect(store.backend).toBe('sqlite');
      expect(await roundTrip(store, { n: 1 })).toBe(1);
      expect(fs.existsSync(path.join(store.dataDir, 'pg'))).toBe(false);
      expect(fs.readdirSync(store.dataDir).some((f) => f.endsWith('.sqlite'))).toBe(true);
    } finally {
      await store.stop();
    }
  });
});
