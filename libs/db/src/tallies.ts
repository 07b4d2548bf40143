/**
 * Counts over time windows ("applied in the last 24 hours") read from per-bucket documents instead
 * of counting events with a range filter. FerretDB 1.24 pushes no range down: `{at: {$gte: since}}`
 * decodes every event ever written, and 50,000 of them miss any deadline.
 *
 * A writer adds one small `tallies` document per operation (a sync batch, an export) with its counts
 * and its UTC minute. A reader sums, for the window:
 *   - whole hours that are closed: one `tally_rollups` document per hour (read by day, equality);
 *   - other closed minutes (the window's ragged edges): one rollup per minute (read by hour);
 *   - the open minutes: their raw tallies (read by minute).
 * A bucket is closed CLOSE_MARGIN_MS after its end (no writer stamps a tally that long before its
 * insert lands), so its sum never changes: the first reader that needs a missing rollup reads the
 * hour's raw tallies once (equality on the hour) and saves it (racing readers save the same
 * figures). Every read is an equality on a bucket key; once the rollups exist, the cost is the
 * buckets of the window, not the events in it.
 *
 * The window starts at the minute of `since` (whole minutes: up to 59 s more than asked).
 */
import type { Models } from './models';
import { mapLimit } from './each';

const MINUTE = 60_000;
const HOUR = 3_600_000;
export const TALLY_CLOSE_MARGIN_MS = 60_000;

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
  await models.Tally.create({ series, minute: minuteKey(at.getTime()), hour: hourKey(at.getTime()), counts: clean, at });
}

const closed = (end: number, now: number) => end + TALLY_CLOSE_MARGIN_MS <= now;

async function rawMinute(models: Models, series: string, start: number): Promise<Counts> {
  const rows = await models.Tally.find({ series, minute: minuteKey(start) }, { counts: 1 }).lean();
  return rows.reduce<Counts>((acc, r) => add(acc, r.counts as Counts), {});
}

async function saveRollups(models: Models, series: string, rows: { level: 'minute' | 'hour'; key: string; parent: string; counts: Counts }[]): Promise<void> {
  if (rows.length === 0) return;
  // Same figures from any reader: a racing reader's copy already saved is a duplicate key, ignored.
  await models.TallyRollup.insertMany(
    rows.map((r) => ({ _id: `${series}:${r.level}:${r.key}`, series, level: r.level, parent: r.parent, counts: r.counts })),
    { ordered: false, lean: true },
  ).catch((err: { writeErrors?: { code?: number; err?: { code?: number } }[] }) => {
    if (!err?.writeErrors?.every((e) => (e.code ?? e.err?.code) === 11000)) throw err;
  });
}

/** A closed hour's tallies by minute: one read of the hour, once per hour and level (its rollups are saved). */
async function rawHourByMinute(models: Models, series: string, hourStart: number): Promise<Map<string, Counts>> {
  const rows = await models.Tally.find({ series, hour: hourKey(hourStart) }, { minute: 1, counts: 1 }).lean();
  const out = new Map<string, Counts>();
  for (const r of rows) out.set(r.minute, add(out.get(r.minute) ?? {}, r.counts as Counts));
  return out;
}

/** The closed minutes of one hour from `from` to `to` (ms, minute-aligned, exclusive end), from rollups (made when missing). */
async function closedMinutes(models: Models, series: string, hourStart: number, from: number, to: number): Promise<Counts> {
  const saved = await models.TallyRollup.find({ series, level: 'minute', parent: hourKey(hourStart) }, { counts: 1 }).lean();
  const byId = new Map(saved.map((r) => [String(r._id), r.counts as Counts]));
  const keys: string[] = [];
  for (let t = from; t < to; t += MINUTE) keys.push(minuteKey(t));
  const missing = keys.filter((k) => !byId.has(`${series}:minute:${k}`));
  if (missing.length) {
    const raw = await rawHourByMinute(models, series, hourStart);
    const rows = missing.map((key) => ({ level: 'minute' as const, key, parent: hourKey(hourStart), counts: raw.get(key) ?? {} }));
    await saveRollups(models, series, rows);
    for (const r of rows) byId.set(`${series}:minute:${r.key}`, r.counts);
  }
  return keys.reduce<Counts>((acc, k) => add(acc, byId.get(`${series}:minute:${k}`)), {});
}

/** The sums of `series` from the minute of `since` to `now`. */
export async function countSince(models: Models, series: string, since: Date, now = new Date()): Promise<Counts> {
  const t0 = floorTo(since.getTime(), MINUTE);
  const tNow = now.getTime();
  const total: Counts = {};
  if (t0 > tNow) return total;
  // Whole closed hours inside the window, read a day at a time.
  const firstWholeHour = Math.ceil(t0 / HOUR) * HOUR;
  const wholeHours: number[] = [];
  for (let h = firstWholeHour; closed(h + HOUR, tNow); h += HOUR) wholeHours.push(h);
  const days = [...new Set(wholeHours.map(dayKey))];
  const savedHours = new Map<string, Counts>();
  for (const rows of await Promise.all(days.map((d) => models.TallyRollup.find({ series, level: 'hour', parent: d }, { counts: 1 }).lean()))) {
    for (const r of rows) savedHours.set(String(r._id), r.counts as Counts);
  }
  const hourSums = await mapLimit(wholeHours, 4, async (h) => {
    const have = savedHours.get(`${series}:hour:${hourKey(h)}`);
    if (have) return have;
    const counts = [...(await rawHourByMinute(models, series, h)).values()].reduce<Counts>((acc, c) => add(acc, c), {});
    await saveRollups(models, series, [{ level: 'hour', key: hourKey(h), parent: dayKey(h), counts }]);
    return counts;
  });
  for (const c of hourSums) add(total, c);
  // The ragged edges: before the first whole hour, and after the last one.
  const endMinute = floorTo(tNow, MINUTE) + MINUTE;
  const edges: [number, number][] = wholeHours.length
    ? [
        [t0, firstWholeHour],
        [wholeHours[wholeHours.length - 1] + HOUR, endMinute],
      ]
    : [[t0, endMinute]];
  for (const [from, to] of edges) {
    for (let h = floorTo(from, HOUR); h < to; h += HOUR) {
      const a = Math.max(from, h);
      const b = Math.min(to, h + HOUR);
      // Closed minutes of this stretch from rollups, open ones raw.
      let firstOpen = a;
      while (firstOpen < b && closed(firstOpen + MINUTE, tNow)) firstOpen += MINUTE;
      if (firstOpen > a) add(total, await closedMinutes(models, series, h, a, firstOpen));
      for (let m = firstOpen; m < b; m += MINUTE) add(total, await rawMinute(models, series, m));
    }
  }
  return total;
}

/**
 * Builds the rollups of the last 24 hours of `series` (the closed hours and minutes a health request
 * would read); resolves after at most `waitMs` (the rest goes on; a failure then is dropped: the first
 * reader builds what is missing).
 */
export async function warmTallies(models: Models, series: string, waitMs: number): Promise<void> {
  const now = new Date();
  const work = countSince(models, series, new Date(now.getTime() - 24 * HOUR), now);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([work, new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
  } finally {
    clearTimeout(timer);
    work.catch(() => undefined);
  }
}
