/**
 * The default permit list (no filter but the caller's projects), served by day buckets instead of
 * a count and a sort over every permit of the project.
 *
 * FerretDB counts and sorts in its own memory, decoding every permit the filter matches (some
 * 250 µs each); only plain equality reaches its backend's indexes. So each permit carries
 * `created_day` (its UTC creation day), and per project:
 *   - the count is `before` (permits created before a closed day, kept in `list_counts`: days
 *     that are closed never change again) plus the permits of the days since, read by equality;
 *   - the newest page is the permits of the newest days, read day by day (equality again, as
 *     many days at a time as the rate of the days already read says are missing) until the page
 *     is full, then sorted here; past the walk, the plain sorted query for the rest.
 * A day counts as closed CLOSE_MARGIN_MS after its end: a create stamps its time before its insert
 * lands, and no create takes that long (request deadlines are seconds). Exact on every store;
 * the cost follows the permits of the newest days, not of the project.
 */
import { upsertRetried, utcDay, type Models } from '@ptw/db';
import type { PermitDoc } from './permits/types';

const DAY_MS = 86_400_000;
export const CLOSE_MARGIN_MS = 3_600_000;
/**
 * After the open days (read with the count), each round reads as many older days as the rate seen
 * so far says the page still needs (×1.5, at most MAX_ROUND_DAYS), at most MAX_ROUNDS rounds.
 */
const MAX_ROUND_DAYS = 16;
const MAX_ROUNDS = 2;
/** A `before` this many days old or less is rolled forward day by day; older, it is recounted. */
const ROLL_FORWARD_MAX_DAYS = 31;
/** Deepest result (page × page_size) served this way; deeper pages take the general query. */
export const DAY_WALK_MAX_DEPTH = 200;

const dayStart = (day: string) => Date.parse(`${day}T00:00:00.000Z`);
const addDays = (day: string, n: number) => utcDay(dayStart(day) + n * DAY_MS);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

function daysFrom(first: string, until: string): string[] {
  const out: string[] = [];
  for (let d = first; d < until; d = addDays(d, 1)) out.push(d);
  return out;
}

export interface CreatedBefore {
  /** Permits of the project created before the day. */
  before: number;
  /** The day of its first permit, when known (for the rate of creates). */
  firstDay?: string;
}

/**
 * The counts being computed in this process, per project and day: the list requests that find no
 * saved count at once (a restart, a new day, a burst of managers) share one computation instead of
 * each reading the project's older permits, a herd that saturated the store under load.
 */
const computingByStore = new WeakMap<Models, Map<string, Promise<CreatedBefore>>>();

/** How many permits of `project` were created before `day` (a closed day). */
export function countCreatedBefore(models: Models, project: string, day: string): Promise<CreatedBefore> {
  const key = `${project}\n${day}`;
  let computing = computingByStore.get(models);
  if (!computing) computingByStore.set(models, (computing = new Map()));
  let p = computing.get(key);
  if (!p) {
    p = computeCreatedBefore(models, project, day).finally(() => computing!.delete(key));
    computing.set(key, p);
  }
  return p;
}

async function computeCreatedBefore(models: Models, project: string, day: string): Promise<CreatedBefore> {
  const saved = await models.ListCount.findById(project).lean();
  const firstDay = saved?.first_day ?? undefined;
  if (saved && saved.day === day) return { before: saved.before, firstDay };
  const countDay = (d: string) => models.Permit.countDocuments({ project_id: project, created_day: d });
  const span = saved ? Math.abs(dayStart(day) - dayStart(saved.day)) / DAY_MS : Infinity;
  if (saved && span <= ROLL_FORWARD_MAX_DAYS && saved.day > day) {
    // Another replica's clock is ahead: derive, do not move the saved day back.
    return { before: saved.before - sum(await Promise.all(daysFrom(day, saved.day).map(countDay))), firstDay };
  }
  let out: CreatedBefore;
  if (saved && span <= ROLL_FORWARD_MAX_DAYS) {
    out = { before: saved.before + sum(await Promise.all(daysFrom(saved.day, day).map(countDay))), firstDay };
  } else {
    // One read of the project's older permits (FerretDB decodes them to count them anyway): the
    // count, and the first day for the rate of creates.
    const rows = await models.Permit.find({ project_id: project, created_at: { $lt: new Date(dayStart(day)) } }, { _id: 0, created_at: 1 })
      .batchSize(10_000_000)
      .lean();
    const first = rows.reduce<number>((min, r) => Math.min(min, new Date(r.created_at).getTime()), Infinity);
    out = { before: rows.length, firstDay: Number.isFinite(first) ? utcDay(first) : undefined };
  }
  // Replicas rolling forward at once compute the same figure: the writes agree.
  await upsertRetried(() => models.ListCount.updateOne({ _id: project }, { $set: { day, before: out.before, ...(out.firstDay ? { first_day: out.firstDay } : {}) } }, { upsert: true }));
  return out;
}

/** Permit lists' order: newest first, `_id` breaking ties. */
export const NEWEST_FIRST = { created_at: -1, _id: -1 } as const;

/**
 * The permit count of `project` and at least its `need` newest permits (all of them when it has
 * fewer), in no particular order.
 */
export function newestOfProject(models: Models, project: string, need: number, now: Date): Promise<{ count: number; docs: PermitDoc[] }> {
  // Requests for the same project's head while one is being read join it (as KPI snapshots do): a
  // busy project's newest days can hold thousands of permits, and several managers watching it would
  // each read them all. A joined request gets a head read since it was asked for at most.
  let running = headsByStore.get(models);
  if (!running) headsByStore.set(models, (running = new Map()));
  const key = `${project}\n${need}`;
  let p = running.get(key);
  if (!p) {
    p = readNewestOfProject(models, project, need, now).finally(() => running!.delete(key));
    running.set(key, p);
  }
  return p;
}

const headsByStore = new WeakMap<Models, Map<string, Promise<{ count: number; docs: PermitDoc[] }>>>();

async function readNewestOfProject(models: Models, project: string, need: number, now: Date): Promise<{ count: number; docs: PermitDoc[] }> {
  const closed = utcDay(now.getTime() - CLOSE_MARGIN_MS);
  const today = utcDay(now);
  // One reply per day, however busy (the driver's first batch is otherwise 101 documents).
  const byDay = (day: string) => models.Permit.find({ project_id: project, created_day: day }).batchSize(100_000).lean() as unknown as Promise<PermitDoc[]>;
  const recentDays = closed === today ? [today] : [closed, today];
  const [{ before, firstDay }, recent] = await Promise.all([countCreatedBefore(models, project, closed), Promise.all(recentDays.map(byDay))]);
  const docs = recent.flat();
  const count = before + docs.length;
  // The project's rate of creates over its life: the first guess when the open days hold few.
  const lifeRate = firstDay ? before / Math.max(1, (dayStart(closed) - dayStart(firstDay)) / DAY_MS) : 0;
  let oldestRead = recentDays[0];
  for (let round = 0; docs.length < need && docs.length < count && round < MAX_ROUNDS; round++) {
    const daysRead = (now.getTime() - dayStart(oldestRead)) / DAY_MS;
    const perDay = Math.max(docs.length / daysRead, round === 0 ? lifeRate : 0, 0.1);
    const wanted = Math.ceil(((need - docs.length) / perDay) * 1.5);
    // A sparse project: the days it would take cost more queries than its permits are worth reading.
    if (wanted > MAX_ROUND_DAYS * (MAX_ROUNDS - round)) break;
    const n = Math.min(MAX_ROUND_DAYS, wanted);
    const days = Array.from({ length: n }, (_, k) => addDays(oldestRead, -1 - k));
    docs.push(...(await Promise.all(days.map(byDay))).flat());
    oldestRead = days.at(-1)!;
  }
  if (docs.length < need && docs.length < count) {
    const rest = await models.Permit.find({ project_id: project, created_at: { $lt: new Date(dayStart(oldestRead)) } })
      .sort(NEWEST_FIRST)
      .limit(need - docs.length)
      .batchSize(need - docs.length)
      .lean();
    docs.push(...(rest as unknown as PermitDoc[]));
  }
  return { count, docs };
}

const BACKFILL_MARK = 'migration:permit_created_day';

/**
 * Gives `created_day` to permits written before it existed (a store of an older version), once:
 * a mark in `counters` makes later starts cost one read. Without it those permits would be missing
 * from the days they were created on.
 */
export async function backfillCreatedDay(models: Models, chunk = 100): Promise<number> {
  if (await models.Counter.exists({ _id: BACKFILL_MARK })) return 0;
  const missing = await models.Permit.find({ created_day: { $exists: false } }, { _id: 1, created_at: 1 }).lean();
  for (let i = 0; i < missing.length; i += chunk) {
    await models.Permit.bulkWrite(
      missing.slice(i, i + chunk).map((p) => ({ updateOne: { filter: { _id: p._id }, update: { $set: { created_day: utcDay(p.created_at) } } } })),
      { ordered: false },
    );
  }
  await upsertRetried(() => models.Counter.updateOne({ _id: BACKFILL_MARK }, { $set: { seq: missing.length } }, { upsert: true }));
  return missing.length;
}
