/**
 * The store connection's pool bound (connectMongo) against FerretDB 1.24's findAndModify deadlock:
 * FerretDB holds one PostgreSQL connection for a findAndModify's query while it takes a second for
 * the update, so when every connection of its pool is held that way nothing moves again. Here the
 * store's pool is made small (4) to show both sides: more operations at once than it has
 * connections stall; fewer always complete.
 */
import { createLogger } from '@ptw/common';
import { storeBackend, testStore } from '@ptw/devstore';
import mongoose, { type Connection } from 'mongoose';
import { connectMongo, DEFAULT_MAX_POOL_SIZE } from './connection';

jest.setTimeout(120_000);

const STORE_POOL = 4;
let store: { url: string; stop(): Promise<void> };
const conns: Connection[] = [];
const log = createLogger('test', { stdout: false });

beforeAll(async () => {
  if (process.env.MONGO_URL) return;
  store = await testStore('pool', { poolMaxConns: STORE_POOL });
});

afterAll(async () => {
  for (const c of conns) await c.close(true).catch(() => undefined);
  await store?.stop();
});

async function burst(maxPoolSize: number, n: number, within: number): Promise<'done' | 'stalled'> {
  const conn = await connectMongo(store.url, log, { appName: `pool-${maxPoolSize}`, maxPoolSize });
  conns.push(conn);
  const docs = conn.collection(`pool_${maxPoolSize}`);
  await docs.insertMany(Array.from({ length: n }, (_, i) => ({ _id: `d${i}` as never, n: 0 })));
  const all = Promise.all(Array.from({ length: n }, (_, i) => docs.findOneAndUpdate({ _id: `d${i}` as never }, { $inc: { n: 1 } }, { returnDocument: 'after' })));
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([all.then(() => 'done' as const), new Promise<'stalled'>((r) => (timer = setTimeout(() => r('stalled'), within)))]);
  clearTimeout(timer);
  all.catch(() => undefined);
  return outcome;
}

it('when no pool size is given, then a process runs at most the default number of store operations at once', async () => {
  const conn = await connectMongo(process.env.MONGO_URL ?? store.url, log, { appName: 'pool-default' });
  conns.push(conn);
  expect(conn.getClient().options.maxPoolSize).toBe(DEFAULT_MAX_POOL_SIZE);
});

it('when a service connects, then mongoose no longer captures a stack trace per query (its documented option)', async () => {
  mongoose.set('skipOriginalStackTraces', false);
  const conn = await connectMongo(process.env.MONGO_URL ?? store.url, log, { appName: 'pool-stacks' });
  conns.push(conn);
  expect(mongoose.get('skipOriginalStackTraces')).toBe(true);
});

it('when a process runs fewer findAndModify at once than the local store has connections, then 200 complete; with more at once, they stall', async () => {
  if (process.env.MONGO_URL || storeBackend() !== 'postgresql') {
    process.stdout.write('pool.component: not run on MONGO_URL or the SQLite backend (the deadlock is FerretDB 1.24’s PostgreSQL pool)\n');
    return;
  }
  expect(await burst(STORE_POOL - 1, 200, 30_000)).toBe('done');
  expect(await burst(50, 200, 10_000)).toBe('stalled');
});
