/**
 * Window counts from buckets (tallies.ts) on a real store: the sums equal a brute-force count of the
 * same tallies, closed buckets are saved once and reused, and every query the reader sends is an
 * equality on a bucket key that the store pushes down (the pushdown guard, pushdown.ts). Several
 * windows at once (countSinceEach, the health history's) equal the same brute-force count each.
 */
import { createLogger } from '@ptw/common';
import { testStore } from '@ptw/devstore';
import type { Connection } from 'mongoose';
import { connectMongo, ensureIndexes } from './connection';
import { registerModels, type Models } from './models';
import { captureQueries, checkBounded, describeUnbounded, type QueryCapture } from './pushdown';
import { countSince, countSinceEach, recordTally, TALLY_CLOSE_MARGIN_MS, warmTallies, windowStarts } from './tallies';

jest.setTimeout(120_000);

const MIN = 60_000;
const HOUR = 60 * MIN;
let store: { url: string; stop(): Promise<void> };
let conn: Connection;
let m: Models;
let capture: QueryCapture;
const now = new Date();
const written: { at: number; applied: number; rejected: number }[] = [];
/** Series `gaps`: events in a few hours only (the others have none), some in the open minutes. */
const gapsWritten: { at: number; applied: number; rejected: number }[] = [];
const GAP_HOURS_WITH_EVENTS = [0, 1, 4, 5, 9, 17, 23];
/**
 * An earlier "now", 25 minutes into an hour that is then not closed (its closed minutes come from
 * minute rollups), at the end of its minute so that no tally of that minute was written after it.
 */
const earlier = Math.floor(now.getTime() / HOUR) * HOUR - 3 * HOUR + 25 * MIN + 59_999;

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
  const gapAts = [now.getTime() - 2_000, now.getTime() - 40_000, now.getTime() - 61_000];
  // In the hour of `earlier`: its first minute, a closed one, its last closed one, an open one.
  gapAts.push(earlier - 25 * MIN, earlier - 12 * MIN - 30_000, earlier - 2 * MIN, earlier - 30_000);
  for (const k of GAP_HOURS_WITH_EVENTS) for (const back of [3 * MIN + 11_000, 29 * MIN, 52 * MIN + 58_000]) gapAts.push(now.getTime() - k * HOUR - back);
  for (const [i, at] of gapAts.entries()) {
    const t = { at, applied: 1 + (i % 4), rejected: i % 3 === 0 ? 1 : 0 };
    gapsWritten.push(t);
    await recordTally(m, 'gaps', { applied: t.applied, rejected: t.rejected }, new Date(at));
  }
});

afterAll(async () => {
  capture?.close();
  await conn?.close();
  await store?.stop();
});

function bruteForce(since: number, of = written, until = now.getTime()) {
  const from = Math.floor(since / MIN) * MIN;
  const inside = of.filter((t) => t.at >= from && t.at <= until);
  return { applied: inside.reduce((a, t) => a + t.applied, 0), rejected: inside.reduce((a, t) => a + t.rejected, 0) };
}

/** The health history's starts: 1 to `hours` hours before `at` (inside a minute unless `at` is on one). */
const hourlyStarts = (at: number, hours: number) => Array.from({ length: hours }, (_, k) => new Date(at - (k + 1) * HOUR));

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
  const hours = await m.TallyRollup.countDocuments({ series: 'sync', level: 'hour-by-minute' });
  expect(hours).toBeGreaterThanOrEqual(22);
  const { queries } = await capture.measure(() => countSince(m, 'sync', since, now));
  // Closed hours by day (≤ 2), the minutes of the hours not closed (≤ 2), the open minutes raw (≤ 2 + margin).
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
  expect(await m.TallyRollup.countDocuments({ series: 'sync', level: 'hour-by-minute' })).toBeGreaterThanOrEqual(22);
  const { queries } = await capture.measure(() => countSince(m, 'sync', new Date(Date.now() - 24 * HOUR)));
  expect(queries.length).toBeLessThanOrEqual(2 + 2 + 2 + Math.ceil(TALLY_CLOSE_MARGIN_MS / MIN) + 1);
});

describe('several windows at once (countSinceEach)', () => {
  const series = { sync: written, gaps: gapsWritten };
  const wholeHour = Math.floor(now.getTime() / HOUR) * HOUR;
  const cases: [string, Date[]][] = [
    ['hourly starts inside a minute', hourlyStarts(now.getTime(), 24)],
    ['hourly starts on whole hours', hourlyStarts(wholeHour, 25)],
    [
      'starts in the open minutes, on a minute, in any order and repeated',
      [new Date(now.getTime() - 30_000), new Date(now.getTime() - 2 * HOUR), new Date(now.getTime() - 65_000), new Date(now.getTime() - 2 * HOUR), new Date(wholeHour - 3 * HOUR)],
    ],
  ];

  it.each(Object.keys(series).flatMap((name) => cases.map(([what, starts]) => [name, what, starts] as const)))(
    'when the windows of %s are counted from %s, then each equals the tallies written since its start',
    async (name, _what, starts) => {
      const got = await countSinceEach(m, name, starts, now);
      const want = starts.map((d) => bruteForce(d.getTime(), series[name as keyof typeof series]));
      expect(got.map((c, i) => ({ since: starts[i].toISOString(), applied: c.applied ?? 0, rejected: c.rejected ?? 0 }))).toEqual(
        want.map((w, i) => ({ since: starts[i].toISOString(), ...w })),
      );
    },
  );

  it.each(Object.keys(series))('when the windows of %s end 25 minutes into an hour, then the closed minutes of that hour count too, and each window equals its tallies', async (name) => {
    const at = earlier;
    const starts = [...hourlyStarts(at, 20), new Date(at - 10 * MIN - 5_000), new Date(at - 30_000), new Date(at - 90_000)];
    const got = await countSinceEach(m, name, starts, new Date(at));
    const want = starts.map((d) => bruteForce(d.getTime(), series[name as keyof typeof series], at));
    expect(got.map((c, i) => ({ since: starts[i].toISOString(), applied: c.applied ?? 0, rejected: c.rejected ?? 0 }))).toEqual(
      want.map((w, i) => ({ since: starts[i].toISOString(), ...w })),
    );
  });

  it('when the hourly windows are differenced, then hours with no events read 0 and the others their own events', async () => {
    const starts = hourlyStarts(now.getTime(), 24);
    const got = (await countSinceEach(m, 'gaps', starts, now)).map((c) => c.applied ?? 0);
    const perHour = got.map((c, k) => c - (k === 0 ? 0 : got[k - 1]));
    // Hour k: from the minute of its start to the minute of the next one's; the newest to now.
    const minuteOf = (back: number) => Math.floor((now.getTime() - back) / MIN) * MIN;
    const inHour = (k: number) => gapsWritten.filter((t) => t.at >= minuteOf((k + 1) * HOUR) && (k === 0 ? t.at <= now.getTime() : t.at < minuteOf(k * HOUR)));
    expect(perHour).toEqual(Array.from({ length: 24 }, (_, k) => inHour(k).reduce((a, t) => a + t.applied, 0)));
    // Most hours have none (events in GAP_HOURS_WITH_EVENTS and around `earlier` only).
    expect(perHour.filter((c) => c === 0).length).toBeGreaterThanOrEqual(24 - GAP_HOURS_WITH_EVENTS.length - 2);
  });

  it('when one window is asked, then it is the count of countSince, and a start after now counts nothing', async () => {
    const since = new Date(now.getTime() - 5 * HOUR - 17 * MIN - 5_000);
    expect(await countSinceEach(m, 'sync', [since, new Date(now.getTime() + 2 * MIN)], now)).toEqual([await countSince(m, 'sync', since, now), {}]);
  });

  it('when 24 hourly windows are counted again, then every bucket is read once for all of them, each read an equality the store pushes down', async () => {
    const starts = hourlyStarts(now.getTime(), 24);
    const first = await countSinceEach(m, 'sync', starts, now);
    const { queries } = await capture.measure(() => countSinceEach(m, 'sync', starts, now));
    // What one window reads: closed hours by day (≤ 2), the minutes of the hours not closed (≤ 2),
    // the open minutes raw (≤ 2 + margin); one countSince per window read about 6 each (144).
    expect(queries.length).toBeLessThanOrEqual(2 + 2 + 2 + Math.ceil(TALLY_CLOSE_MARGIN_MS / MIN) + 1);
    const verdicts = await checkBounded(conn, queries, {
      tallies: [
        ['series', 'minute'],
        ['series', 'hour'],
      ],
      tally_rollups: [['_id'], ['series', 'level', 'parent']],
    });
    expect(describeUnbounded(verdicts)).toEqual([]);
    expect(await countSinceEach(m, 'sync', starts, now)).toEqual(first);
  });

  it('when a saved hour rollup is not in its shape, then the hour is counted from its tallies instead', async () => {
    const hourStart = Math.floor(now.getTime() / HOUR) * HOUR - 5 * HOUR;
    for (const at of [hourStart + 10 * MIN, hourStart + 40 * MIN]) await recordTally(m, 'odd', { applied: 2 }, new Date(at));
    const key = new Date(hourStart).toISOString().slice(0, 13);
    await m.TallyRollup.create({ _id: `odd:hour-by-minute:${key}`, series: 'odd', level: 'hour-by-minute', parent: key.slice(0, 10), counts: { applied: '1,2' } });
    expect(await countSinceEach(m, 'odd', [new Date(hourStart - HOUR), new Date(hourStart + 20 * MIN)], now)).toEqual([{ applied: 4 }, { applied: 2 }]);
  });

  it('when a request asks for no windows, too many, a start that is not a date or one more than 48 hours back, then INVALID_ARGUMENT', () => {
    const at = new Date();
    const iso = (back: number) => new Date(at.getTime() - back).toISOString();
    for (const bad of [[], Array<string>(49).fill(iso(HOUR)), [iso(HOUR), 'yesterday'], [''], [iso(49 * HOUR)]]) {
      expect(() => windowStarts(bad, at)).toThrow(expect.objectContaining({ code: 3, details: { field: 'since_each' } }) as Error);
    }
    expect(windowStarts([iso(HOUR), iso(48 * HOUR)], at).map((d) => d.toISOString())).toEqual([iso(HOUR), iso(48 * HOUR)]);
  });
});
