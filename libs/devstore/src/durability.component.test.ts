/** The private cluster's durability: which settings each start runs with, and a folder switched between them. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { startStore, storeDurability, type RunningStore } from './index';
import { postgresBinDir } from './postgres';

jest.setTimeout(120_000);

/** fsync, full_page_writes and synchronous_commit of the store's running cluster, as SHOW reports them. */
function settings(store: RunningStore): string {
  if (!store.cluster) throw new Error('the store has no private cluster');
  const sql = "SELECT current_setting('fsync') || ' ' || current_setting('full_page_writes') || ' ' || current_setting('synchronous_commit')";
  const cmd = [path.join(postgresBinDir(), 'psql'), store.cluster.url, '-X', '-At', '-c', sql];
  const out = process.getuid?.() === 0 ? execFileSync('runuser', ['-u', 'postgres', '--', ...cmd], { encoding: 'utf8' }) : execFileSync(cmd[0], cmd.slice(1), { encoding: 'utf8' });
  return out.trim();
}

async function insertAndCount(store: RunningStore, n: number): Promise<number> {
  const client = await MongoClient.connect(store.url, { serverSelectionTimeoutMS: 10_000 });
  try {
    const col = client.db().collection('things');
    await col.insertOne({ n });
    return await col.countDocuments({});
  } finally {
    await client.close();
  }
}

const onPostgres = () => !process.env.PTW_STORE_BACKEND || process.env.PTW_STORE_BACKEND === 'postgresql';

describe('storeDurability', () => {
  it('when PTW_STORE_DURABILITY is unset, durable or fast, then it is undefined (the caller decides) or that value; otherwise start-up fails naming it', () => {
    expect(storeDurability({})).toBeUndefined();
    expect(storeDurability({ PTW_STORE_DURABILITY: 'durable' })).toBe('durable');
    expect(storeDurability({ PTW_STORE_DURABILITY: 'fast' })).toBe('fast');
    expect(() => storeDurability({ PTW_STORE_DURABILITY: 'safe' })).toThrow(/PTW_STORE_DURABILITY/);
  });
});

(onPostgres() ? describe : describe.skip)('the private cluster durability', () => {
  const saved = process.env.PTW_STORE_DURABILITY;
  beforeEach(() => delete process.env.PTW_STORE_DURABILITY);
  afterAll(() => {
    if (saved === undefined) delete process.env.PTW_STORE_DURABILITY;
    else process.env.PTW_STORE_DURABILITY = saved;
  });

  it('when a store makes its own (throwaway) folder, then its cluster runs fast: no fsync, no full-page images', async () => {
    const store = await startStore({ backend: 'postgresql', database: 'own' });
    try {
      expect(store.cluster?.durability).toBe('fast');
      expect(settings(store)).toBe('off off off');
    } finally {
      await store.stop();
    }
  });

  it('when a folder made fast is started durable, then it keeps its data, runs with fsync and full-page images, and is synced once; fast again, then fast', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-store-durability-'));
    const modeFile = path.join(dir, 'pg', 'durability');
    try {
      const fast = await startStore({ backend: 'postgresql', dataDir: dir, database: 'switch', durability: 'fast' });
      try {
        expect(settings(fast)).toBe('off off off');
        expect(await insertAndCount(fast, 1)).toBe(1);
      } finally {
        await fast.stop();
      }
      expect(fs.readFileSync(modeFile, 'utf8')).toBe('fast');

      // A kept folder is durable unless told otherwise.
      const durable = await startStore({ backend: 'postgresql', dataDir: dir, database: 'switch' });
      try {
        expect(durable.cluster?.durability).toBe('durable');
        expect(settings(durable)).toBe('on on off');
        expect(await insertAndCount(durable, 2)).toBe(2);
      } finally {
        await durable.stop();
      }
      expect(fs.readFileSync(modeFile, 'utf8')).toBe('durable');

      process.env.PTW_STORE_DURABILITY = 'fast';
      const again = await startStore({ backend: 'postgresql', dataDir: dir, database: 'switch' });
      try {
        expect(settings(again)).toBe('off off off');
        expect(await insertAndCount(again, 3)).toBe(3);
      } finally {
        await again.stop();
      }
      expect(fs.readFileSync(modeFile, 'utf8')).toBe('fast');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
