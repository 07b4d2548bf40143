/**
 * Counts over time windows ("applied in the last 24 hours") read from per-bucket documents instead
 * of counting events with a range filter. FerretDB 1.24 pushes no range down: `{at: {$gte: since}}`
 * decodes every event ever written, and 50,000 of them miss any deadline.
 *
 * A writer adds one small `tallies` document per operation (a sync batch, an export) with its counts
 * and its UTC minute. A reader sums, for the window:
 *   - the closed hours it touches: one `tally_rollups` document per hour holding the hour's sums
 *     minute by minute (level `hour-by-minute`, read by day, equality), so that a whole hour and
 *     any part of it come from the same document (see `encodeMinutes`);
 *   - the closed minutes of an hour that is not closed yet: one rollup per minute (read by hour);
 *   - the open minutes: their raw tallies (read by minute).
 * A bucket is closed CLOSE_MARGIN_MS after its end (no writer stamps a tally that long before its
 * insert lands), so its sum never changes: the first reader that needs a missing rollup reads the
 * hour's raw tallies once (equality on the hour) and saves it (racing readers save the same
 * figures). Every read is an equality on a bucket key; once the rollups exist, the cost is the
 * buckets of the window, not the events in it.
 *
 * The window starts at the minute of `since` (whole minutes: up to 59 s more than asked).
 *
 * Several windows ending now (the health history's "since 1, 2, … 24 hours ago") are counted in one
 * pass by `countSinceEach`: each bucket is read once for all of them, not once per window.
 *
 * Rollups that earlier versions saved and this one no longer reads: level `hour` (an hour's sum
 * alone) and the minute rollups of closed hours (their `hour-by-minute` rollup is read instead).
 */
import { invalidArgument } from '@ptw/common';
import type { Models } from './models';
import { mapLimit, waitAtMost } from './each';
import { insertOne } from './revisions';

const MINUTE = 60_000;
const HOUR = 3_600_000;
export const TALLY_CLOSE_MARGIN_MS = 60_000;
/** How many rollup reads of one count run at once. */
const ROLLUP_READS = 8;

export type Counts = Record<string, number>;

const minuteKey = (t: number) => new Date(t).toISOString().slice(0, 16);
const hourKey = (t: number) => new Date(t).toISOString().slice(0, 13);
const dayKey = (t: number) => new Date(t).toISOString().slice(0, 10);
const floorTo = (t: number, unit: number) => Math.floor(t / unit) * unit;

function add(into: Counts, c: Counts | undefined): Counts {
  for (const [k, v] of Object.entries(c ?? {})) if (typeof v === 'number') into[k] = (into[k] ?? 0) + v;
  return into;
}

/** Records the counts of one operation in `series` (e.g. `sync`), at `at`. */
export async function recordTally(models: Models, series: string, counts: Counts, at = new Date()): Promise<void> {
  const clean = Object.fromEntries(Object.entries(counts).filter(([, v]) => v > 0));
  if (Object.keys(clean).length === 0) return;
  await insertOne(models.Tally, { series, minute: minuteKey(at.getTime()), hour: hourKey(at.getTime()), counts: clean, at });
}

const closed = (end: number, now: number) => end + TALLY_CLOSE_MARGIN_MS <= now;

async function rawMinute(models: Models, series: string, start: number): Promise<Counts> {
  const rows = await models.Tally.find({ series, minute: minuteKey(start) }, { counts: 1 }).lean();
  return rows.reduce<Counts>((acc, r) => add(acc, r.counts as Counts), {});
}

type Level = 'minute' | 'hour-by-minute';

async function saveRollups(models: Models, series: string, rows: { level: Level; key: string; parent: string; counts: Counts | Record<string, string> }[]): Promise<void> {
  if (rows.length === 0) return;
  // Same figures from any reader: a racing reader's copy already saved is a duplicate key, ignored.
  await models.TallyRollup.insertMany(
    rows.map((r) => ({ _id: `${series}:${r.level}:${r.key}`, series, level: r.level, parent: r.parent, counts: r.counts })),
    { ordered: false, lean: true },
  ).catch((err: { writeErrors?: { code?: number; err?: { code?: number } }[] }) => {
    if (!err?.writeErrors?.every((e) => (e.code ?? e.err?.code) === 11000)) throw err;
  });
}

/** An hour's tallies by minute key: one read of the hour. */
async function rawHourByMinute(models: Models, series: string, hourStart: number): Promise<Map<string, Counts>> {
  const rows = await models.Tally.find({ series, hour: hourKey(hourStart) }, { minute: 1, counts: 1 }).lean();
  const out = new Map<string, Counts>();
  for (const r of rows) out.set(r.minute, add(out.get(r.minute) ?? {}, r.counts as Counts));
  return out;
}

/** A closed hour's sums minute by minute: per field, 60 numbers (minute 0-59 of the hour). */
type HourByMinute = Record<string, number[]>;

/**
 * How an `hour-by-minute` rollup keeps its minutes: per field, one string of 60 comma-separated
 * numbers (empty for 0), not 60 values. FerretDB turns every value of a document into BSON in its
 * own process: a day of hours as 4,320 values read in ~35 ms, as 72 strings in ~5 ms (2 cores, 2026-12-06).
 */
const encodeMinutes = (byField: HourByMinute): Record<string, string> => Object.fromEntries(Object.entries(byField).map(([f, v]) => [f, v.map((n) => n || '').join(',')]));

/** The minutes of a saved `hour-by-minute` rollup; undefined when it is not in that shape. */
function decodeMinutes(counts: unknown): HourByMinute | undefined {
  if (!counts || typeof counts !== 'object') return undefined;
  const out: HourByMinute = {};
  for (const [f, v] of Object.entries(counts)) {
    const nums = typeof v === 'string' ? v.split(',').map(Number) : [];
    if (nums.length !== 60 || nums.some((n) => !Number.isFinite(n))) return undefined;
    out[f] = nums;
  }
  return out;
}

/**
 * The closed hours `hours` (hour starts) minute by minute: their `hour-by-minute` rollups read a day
 * at a time, and the missing ones made from the hour's raw tallies (one read each) and saved.
 */
async function closedHours(models: Models, series: string, hours: readonly number[]): Promise<Map<number, HourByMinute>> {
  const out = new Map<number, HourByMinute>();
  const days = [...new Set(hours.map(dayKey))];
  const saved = await mapLimit(days, ROLLUP_READS, (d) => models.TallyRollup.find({ series, level: 'hour-by-minute', parent: d }, { counts: 1 }).lean());
  const prefix = `${series}:hour-by-minute:`;
  const byKey = new Map(saved.flat().map((r) => [String(r._id).slice(prefix.length), r.counts as unknown]));
  await mapLimit(hours, 4, async (h) => {
    let minutes = decodeMinutes(byKey.get(hourKey(h)));
    if (!minutes) {
      const byField: HourByMinute = {};
      for (const [key, c] of await rawHourByMinute(models, series, h)) {
        const mm = Number(key.slice(14, 16));
        for (const [f, v] of Object.entries(c)) (byField[f] ??= Array<number>(60).fill(0))[mm] += v;
      }
      // A rollup in another shape (none is written) stays; this reader uses what it just read.
      await saveRollups(models, series, [{ level: 'hour-by-minute', key: hourKey(h), parent: dayKey(h), counts: encodeMinutes(byField) }]);
      minutes = byField;
    }
    out.set(h, minutes);
  });
  return out;
}

/** The sums of minutes `from` to `to` (exclusive) of a closed hour. */
function addMinutes(into: Counts, hour: HourByMinute | undefined, from: number, to: number): void {
  for (const [f, v] of Object.entries(hour ?? {})) {
    let sum = 0;
    for (let i = from; i < to; i++) sum += v[i];
    if (sum) into[f] = (into[f] ?? 0) + sum;
  }
}

/**
 * The closed minutes of the hour at `hourStart` (an hour not closed yet), from their minute rollups
 * (one read), by minute key. When one of `needed` has no rollup yet, the hour's tallies are read
 * once and every closed minute of the hour still missing is saved, not only the needed ones: the
 * windows' starts and ends move on minute by minute into the rest of the hour.
 */
async function closedMinutesOf(models: Models, series: string, hourStart: number, needed: readonly string[], tNow: number): Promise<Map<string, Counts>> {
  const prefix = `${series}:minute:`;
  const saved = await models.TallyRollup.find({ series, level: 'minute', parent: hourKey(hourStart) }, { counts: 1 }).lean();
  const byKey = new Map(saved.map((r) => [String(r._id).slice(prefix.length), r.counts as Counts]));
  if (needed.some((k) => !byKey.has(k))) {
    const raw = await rawHourByMinute(models, series, hourStart);
    const rows: { level: 'minute'; key: string; parent: string; counts: Counts }[] = [];
    for (let t = hourStart; t < hourStart + HOUR && closed(t + MINUTE, tNow); t += MINUTE) {
      const key = minuteKey(t);
      if (!byKey.has(key)) rows.push({ level: 'minute', key, parent: hourKey(hourStart), counts: raw.get(key) ?? {} });
    }
    await saveRollups(models, series, rows);
    for (const r of rows) byKey.set(r.key, r.counts);
  }
  return byKey;
}

/** Most starts one `countSinceEach` request may ask for (a day of hourly starts, with room). */
export const MAX_WINDOW_STARTS = 48;
/** How far back a start of a `countSinceEach` request may be (the health history asks for a day). */
export const MAX_WINDOW_BACK_MS = 48 * HOUR;

/**
 * The starts of a request for several windows (`since_each` of a StatsEachRequest): 1 to
 * MAX_WINDOW_STARTS ISO 8601 times, none more than MAX_WINDOW_BACK_MS before `now`, so that one
 * request reads a bounded number of buckets. Anything else is INVALID_ARGUMENT.
 */
export function windowStarts(sinceEach: readonly string[], now = new Date()): Date[] {
  if (sinceEach.length < 1 || sinceEach.length > MAX_WINDOW_STARTS) {
    throw invalidArgument(`since_each: expected 1-${MAX_WINDOW_STARTS} ISO 8601 date-times`, { field: 'since_each' });
  }
  return sinceEach.map((s) => {
    const t = s ? Date.parse(s) : NaN;
    if (Number.isNaN(t)) throw invalidArgument('since_each: expected ISO 8601 date-times', { field: 'since_each' });
    if (t < now.getTime() - MAX_WINDOW_BACK_MS) throw invalidArgument(`since_each: at most ${MAX_WINDOW_BACK_MS / HOUR} hours back`, { field: 'since_each' });
    return new Date(t);
  });
}

/** One stretch between two consecutive window starts, as the buckets that sum it. */
interface Stretch {
  /** Parts of closed hours: the hour's start and its minutes `from` to `to` (0-60, exclusive end). */
  hourParts: { h: number; from: number; to: number }[];
  /** Closed minutes of hours not closed yet, by minute key. */
  closedMinutes: string[];
  openMinutes: number[];
}

/**
 * The sums of `series` from the minute of each of `sinces` to `now`, in the order given: what
 * `countSince` answers for each, in one pass that reads every bucket once. The time from the
 * earliest start to now is cut at every start; each stretch between two consecutive starts is summed
 * once from the buckets it covers (closed hours minute by minute, read a day at a time; the closed
 * minutes of the hour not closed yet, one read; the open minutes raw, one read each), and a window is
 * the sum of the stretches from its start on. A start after `now` counts nothing.
 */
export async function countSinceEach(models: Models, series: string, sinces: readonly Date[], now = new Date()): Promise<Counts[]> {
  const tNow = now.getTime();
  const endMinute = floorTo(tNow, MINUTE) + MINUTE;
  const starts = sinces.map((s) => floorTo(s.getTime(), MINUTE));
  const cuts = [...new Set(starts.filter((t) => t <= tNow))].sort((a, b) => a - b);
  // The plan: which buckets each stretch sums, and what must be read for them.
  const stretches: Stretch[] = [];
  const wholeHours = new Set<number>();
  const minutesByHour = new Map<number, string[]>();
  const openMinutes = new Set<number>();
  cuts.forEach((a, j) => {
    const b = cuts[j + 1] ?? endMinute;
    const st: Stretch = { hourParts: [], closedMinutes: [], openMinutes: [] };
    for (let h = floorTo(a, HOUR); h < b; h += HOUR) {
      const from = Math.max(a, h);
      const to = Math.min(b, h + HOUR);
      if (closed(h + HOUR, tNow)) {
        wholeHours.add(h);
        st.hourParts.push({ h, from: (from - h) / MINUTE, to: (to - h) / MINUTE });
        continue;
      }
      for (let m = from; m < to; m += MINUTE) {
        if (closed(m + MINUTE, tNow)) {
          const key = minuteKey(m);
          st.closedMinutes.push(key);
          const keys = minutesByHour.get(h);
          if (keys) keys.push(key);
          else minutesByHour.set(h, [key]);
        } else {
          st.openMinutes.push(m);
          openMinutes.add(m);
        }
      }
    }
    stretches.push(st);
  });
  // The reads: closed hours by day, closed minutes of the other hours by hour, open minutes raw.
  const [hours, minuteLists, openList] = await Promise.all([
    closedHours(models, series, [...wholeHours]),
    mapLimit([...minutesByHour], ROLLUP_READS, ([h, keys]) => closedMinutesOf(models, series, h, keys, tNow)),
    mapLimit([...openMinutes], ROLLUP_READS, async (m) => [m, await rawMinute(models, series, m)] as const),
  ]);
  const minuteSums = new Map(minuteLists.flatMap((got) => [...got]));
  const openSums = new Map(openList);
  // Each stretch once, then each window as the stretches from its start on.
  const fromCut = new Map<number, Counts>();
  let running: Counts = {};
  for (let j = cuts.length - 1; j >= 0; j--) {
    const st = stretches[j];
    running = { ...running };
    for (const { h, from, to } of st.hourParts) addMinutes(running, hours.get(h), from, to);
    for (const k of st.closedMinutes) add(running, minuteSums.get(k));
    for (const m of st.openMinutes) add(running, openSums.get(m));
    fromCut.set(cuts[j], running);
  }
  return starts.map((t) => ({ ...fromCut.get(t) }));
}

/** The sums of `series` from the minute of `since` to `now`. */
export async function countSince(models: Models, series: string, since: Date, now = new Date()): Promise<Counts> {
  const [counts] = await countSinceEach(models, series, [since], now);
  return counts;
}

/**
 * Builds the rollups of the last 24 hours of `series` (the closed hours and minutes a health request
 * would read); resolves after at most `waitMs` (the rest goes on; a failure then is dropped: the first
 * reader builds what is missing).
 */
export async function warmTallies(models: Models, series: string, waitMs: number): Promise<void> {
  const now = new Date();
  await waitAtMost(countSince(models, series, new Date(now.getTime() - 24 * HOUR), now), waitMs);
}
