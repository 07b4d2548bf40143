/**
 * Permit numbers under concurrency: the requests of one process share counter steps (one step at a
 * time, for everyone waiting), so concurrent bulk creates never read the same counter value and never
 * collide on the unique index (FerretDB's `$inc` reads, then writes).
 */
import { createLogger } from '@ptw/common';
import { connectMongo, countStoreCommands, ensureIndexes, registerModels, type CommandCounter, type Models } from '@ptw/db';
import { testStore } from '@ptw/devstore';
import type { Connection } from 'mongoose';
import { reserveNumbers } from './bulk';

jest.setTimeout(60_000);

let store: { url: string; stop(): Promise<void> };
let conn: Connection;
let m: Models;
let counter: CommandCounter;

beforeAll(async () => {
  store = await testStore('permit_numbers');
  counter = countStoreCommands('numbers');
  conn = await connectMongo(store.url, createLogger('test', { stdout: false }), { appName: 'numbers' });
  m = registerModels(conn);
  await ensureIndexes(conn);
});

afterAll(async () => {
  counter?.close();
  await conn?.close();
  await store?.stop();
});

it('when 20 requests reserve 8 numbers each at once, then the 160 numbers are distinct and consecutive, in a few counter steps', async () => {
  const now = new Date('2041-03-01T00:00:00Z');
  const { result, byName } = await counter.measure(() => Promise.all(Array.from({ length: 20 }, () => reserveNumbers(m, now, 8))));
  const all = result.flat();
  expect(new Set(all).size).toBe(160);
  expect(result.every((r) => r.length === 8)).toBe(true);
  const seqs = all.map((s) => Number(s.slice('PTW-2041-'.length))).sort((a, b) => a - b);
  expect(seqs[0]).toBe(1);
  expect(seqs[159]).toBe(160);
  // The first step for the first request, one more for all who waited meanwhile.
  expect(byName['findAndModify counters']).toBeLessThanOrEqual(3);
});

it('when a counter step fails, then every request it served is refused and the next ones are served', async () => {
  const now = new Date('2042-03-01T00:00:00Z');
  const spy = jest.spyOn(m.Counter, 'findOneAndUpdate').mockImplementationOnce(() => {
    throw Object.assign(new Error('store down'), { name: 'MongoNetworkError' });
  });
  await expect(reserveNumbers(m, now, 2)).rejects.toThrow(/store down/);
  spy.mockRestore();
  expect(await reserveNumbers(m, now, 2)).toEqual(['PTW-2042-000001', 'PTW-2042-000002']);
});
