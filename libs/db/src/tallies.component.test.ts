/**
 * Window counts from buckets (tallies.ts) on a real store: the sums equal a brute-force count of the
 * same tallies, closed buckets are saved once and reused, and every query the reader sends is an
 * equality on a bucket key that the store pushes down (the pushdown guard, pushdown.ts).
 */
import { createLogger } from '@ptw/common';
import { testStore } from '@ptw/devstore';
import type { Connection } from 'mongoose';
import { connectMongo, ensureIndexes } from './connection';
import { registerModels, type Models } from './models';
import { captureQueries, checkBounded, describeUnbounded, type QueryCapture } from './pushdown';
import { countSince, recordTally, TALLY_CLOSE_MARGIN_MS, warmTallies } from './tallies';

jest.setTimeout(120_000);

const MIN = 60_000;
const HOUR = 60 * MIN;
let store: { url: string; stop(): Promise<void> };
let conn: Connection;
let m: Models;
let capture: QueryCapture;
const now = new Date();
const written: { at: number; applied: number; rejected: number }[] = [];

beforeAll(async () => {
  store = await testStore('tallies');
  capture = captureQueries();
  conn = await connectMongo(store.url, createLogger('test', { stdout: false }), { appName: 'test' });
  m = registerModels(conn);
  await ensureIndexes(conn);
  // 30 hours of operations, a few per hour, and some in the open minutes.
  const ats: number[] = [];
  for (let k = 0; k < 30 * 4; k++) ats.push(now.getTime() - k * 15 * MIN - 7_000);
  ats.push(now.getTime() - 5_000, now.getTime() - 30_000);
  for (const at of ats) {
    const t = { at, applied: 1 + (at % 5), rejected: at % 2 };
    written.push(t);
    await recordTally(m, 'sync', { applied: t.applied, rejected: t.rejected }, new Date(at));
  }
});

afterAll(async () => {
  capture?.close();
  await conn?.close();
  await store?.stop();
});

function bruteForce(since: number) {
  const from = Math.floor(since / MIN) * MIN;
  const inside = written.filter((t) => t.at >= from && t.at <= now.getTime());
  return { applied: inside.reduce((a, t) => a + t.applied, 0), rejected: inside.reduce((a, t) => a + t.rejected, 0) };
}

it('when windows of 1 minute to 24 hours are counted, then each equals the tallies written in it (from the minute of its start)', async () => {
  for (const back of [MIN, 20 * MIN, HOUR, 90 * MIN, 5 * HOUR + 17 * MIN, 24 * HOUR]) {
    const since = now.getTime() - back;
    const got = await countSince(m, 'sync', new Date(since), now);
    expect({ back, applied: got.applied ?? 0, rejected: got.rejected ?? 0 }).toEqual({ back, ...bruteForce(since) });
  }
});

it('when a window is counted again, then its closed hours come from saved rollups, and the answer is the same', async () => {
  const since = new Date(now.getTime() - 24 * HOUR);
  const first = await countSince(m, 'sync', since, now);
  const hours = await m.TallyRollup.countDocuments({ series: 'sync', level: 'hour' });
  expect(hours).toBeGreaterThanOrEqual(22);
  const { queries } = await capture.measure(() => countSince(m, 'sync', since, now));
  // Hours by day (≤ 2), the edge hours' minutes (≤ 2), the open minutes raw (≤ 2 + margin).
  expect(queries.length).toBeLessThanOrEqual(2 + 2 + 2 + Math.ceil(TALLY_CLOSE_MARGIN_MS / MIN) + 1);
  expect(await countSince(m, 'sync', since, now)).toEqual(first);
});

it('when a 24-hour window is counted, then every query is an equality on a bucket key that the store pushes down', async () => {
  const { queries } = await capture.measure(() => countSince(m, 'sync', new Date(now.getTime() - 24 * HOUR), now));
  expect(queries.length).toBeGreaterThan(0);
  const verdicts = await checkBounded(conn, queries, {
    tallies: [
      ['series', 'minute'],
      ['series', 'hour'],
    ],
    tally_rollups: [['_id'], ['series', 'level', 'parent']],
  });
  expect(describeUnbounded(verdicts)).toEqual([]);
});

it('when the guard sees a range count of events or an `_id` `$in`, then it refuses both', async () => {
  const { queries } = await capture.measure(async () => {
    await m.SyncEvent.countDocuments({ at: { $gte: new Date(now.getTime() - HOUR) }, outcome: 'applied' });
    await m.Tally.find({ _id: { $in: [new (await import('mongoose')).Types.ObjectId()] } }).lean();
  });
  const verdicts = await checkBounded(conn, queries, { sync_events: [['device_id', 'offline_id']], tallies: [['_id'], ['series', 'minute']] });
  expect(verdicts.map((v) => v.ok)).toEqual([false, false]);
  // The range count is pushed down in part (its equality), the `$in` not at all.
  expect(verdicts.map((v) => v.pushedDown)).toEqual([true, false]);
});

it('when a service warms the last day at start, then the closed hours are rolled up before any reader asks', async () => {
  await m.TallyRollup.deleteMany({ series: 'sync' });
  await warmTallies(m, 'sync', 10_000);
  expect(await m.TallyRollup.countDocuments({ series: 'sync', level: 'hour' })).toBeGreaterThanOrEqual(22);
  const { queries } = await capture.measure(() => countSince(m, 'sync', new Date(Date.now() - 24 * HOUR)));
  expect(queries.length).toBeLessThanOrEqual(2 + 2 + 2 + Math.ceil(TALLY_CLOSE_MARGIN_MS / MIN) + 1);
});
