/**
 * Active permit types on the real store: remembered per process for ACTIVE_TYPE_TTL_MS once found
 * active, never remembered as missing.
 */
import { createLogger } from '@ptw/common';
import { connectMongo, countStoreCommands, registerModels, type CommandCounter, type Models } from '@ptw/db';
import { testStore } from '@ptw/devstore';
import type { Connection } from 'mongoose';
import { ACTIVE_TYPE_TTL_MS, activeTypeIds } from './permit-types';

jest.setTimeout(120_000);

let store: { url: string; stop(): Promise<void> };
let conn: Connection;
let m: Models;
let counter: CommandCounter;

beforeAll(async () => {
  store = await testStore('permit-types');
  counter = countStoreCommands('pt-test');
  conn = await connectMongo(store.url, createLogger('test', { stdout: false }), { appName: 'pt-test' });
  m = registerModels(conn);
  await m.PermitType.create([
    { _id: 'hot-work', name: 'Hot Work', category: 'hot_work', risk_level: 'high', closeout_items: [] },
    { _id: 'old', name: 'Old', category: 'general', risk_level: 'low', closeout_items: [], active: false },
  ]);
});

afterAll(async () => {
  counter?.close();
  await conn?.close();
  await store?.stop();
});

it('when a type was found active, then it is taken as active without a store read until its time is up', async () => {
  const t0 = Date.now();
  const first = await counter.measure(() => activeTypeIds(m, ['hot-work', 'old', 'nope', 'hot-work'], t0));
  expect([...first.result].sort()).toEqual(['hot-work']);
  expect(first.commands).toBe(3);
  const again = await counter.measure(() => activeTypeIds(m, ['hot-work'], t0 + 1000));
  expect([...again.result]).toEqual(['hot-work']);
  expect(again.commands).toBe(0);

  // Deactivated in the store: still taken as active within the time, refused after it.
  await m.PermitType.updateOne({ _id: 'hot-work' }, { $set: { active: false } });
  expect([...(await activeTypeIds(m, ['hot-work'], t0 + ACTIVE_TYPE_TTL_MS - 1))]).toEqual(['hot-work']);
  expect([...(await activeTypeIds(m, ['hot-work'], t0 + ACTIVE_TYPE_TTL_MS + 1))]).toEqual([]);
  // And asked again each time while it is not active.
  expect((await counter.measure(() => activeTypeIds(m, ['hot-work'], t0 + ACTIVE_TYPE_TTL_MS + 2))).commands).toBe(1);
});

it('when a type missing earlier is added or activated, then the next create may use it at once', async () => {
  const t0 = Date.now();
  expect([...(await activeTypeIds(m, ['confined', 'old'], t0))]).toEqual([]);
  await m.PermitType.create({ _id: 'confined', name: 'Confined Space', category: 'confined_space', risk_level: 'high', closeout_items: [] });
  await m.PermitType.updateOne({ _id: 'old' }, { $set: { active: true } });
  expect([...(await activeTypeIds(m, ['confined', 'old'], t0 + 1))].sort()).toEqual(['confined', 'old']);
});
