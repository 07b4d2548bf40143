/**
 * Status-filtered pages of one project by registration order (registration.ts), reading about a
 * page of permits whatever the project holds.
 *
 * Why: FerretDB decodes every permit a filter matches to count or sort it (about 0.2 ms per permit
 * here), so `status=completed` in a project of 2,500 permits cost ~400 ms. Here a project's count
 * in some statuses is the sum of per-block status counts (`block_tallies`: one small document per
 * 25 places), and a page reads, by equality, only the blocks whose counts say they hold it.
 *
 * Exact without a shared counter: a block's tally is never incremented. It is a reading of the
 * block's permits (their statuses) stamped with the sum of their versions, inserted as a new
 * document; the highest stamp of a block is its newest reading. Every permit write raises its
 * version, so after the last write to a block, the reading taken after it has the highest stamp any
 * reading can have, and a reading with that stamp saw every permit at its last version (racing
 * readings with lower stamps lose; equal stamps are the same reading). A block is read again:
 *   - after a status change, by the transition's effects (permits/effects.ts: a crash before it is
 *     completed later, as the audit event is) and by the expiry job for the permits it moves;
 *   - by the create that writes its last place (readFilledBlocks);
 *   - when a list finds a block with more places written than its newest reading saw (new
 *     permits), or with no reading at all (the first list after an upgrade reads every block once).
 * A list running while a status change is in flight may count the permit in its old status; the
 * next list counts it right. A reading also counts its completed and cancelled permits by the day of
 * their `updated_at` (the KPIs' "today"): exact by the same argument, since those statuses are
 * terminal and the reading after the status change saw the `updated_at` it set.
 */
import { insertOne, isDuplicateKey, mapLimit, utcDay, waitAtMost, type Models } from '@ptw/db';
import { LIST_BLOCK, projectCount, type OnFilled, type PlacedDoc } from './registration';

/** One block's newest reading. */
export interface BlockReading {
  block: number;
  stamp: number;
  /** Permits the reading saw (places written in the block then). */
  filled: number;
  counts: Record<string, number>;
  /**
   * The block's permits in each of CLOSED_BY_DAY by the UTC day of their `updated_at`
   * (`closed.completed['2026-12-07']`). Those statuses are terminal (never edited again), so their
   * `updated_at` is when they closed and stays so. Absent in readings saved before it existed: such
   * a reading counts as stale (read again).
   */
  closed?: Record<string, Record<string, number>>;
}

/** Statuses whose permits a reading also counts by the day they reached it (the KPIs' "today" counts). */
export const CLOSED_BY_DAY: readonly string[] = ['completed', 'cancelled'];

/** A project's counts from its block readings (statusCounts). */
export interface BlockCounts {
  /** Permits per status (a status no permit has is absent). */
  byStatus: Record<string, number>;
  /** Permits per CLOSED_BY_DAY status and UTC day of `updated_at` (`YYYY-MM-DD`). */
  closed: Record<string, Record<string, number>>;
}

/** Of `counts`, the permits in `status` (one of CLOSED_BY_DAY) with `updated_at` on UTC day `day` (`YYYY-MM-DD`) or later. */
export function closedSince(counts: BlockCounts, status: string, day: string): number {
  let n = 0;
  for (const [d, k] of Object.entries(counts.closed[status] ?? {})) if (d >= day) n += k;
  return n;
}

/** Blocks read at once when a list finds several without a current reading. */
const REFRESH_CONCURRENCY = 4;

/** How many places of block `b` exist when the project's last place is `n` (place 0 never does). */
export function placesInBlock(b: number, n: number): number {
  const lo = Math.max(1, b * LIST_BLOCK);
  const hi = Math.min(n, b * LIST_BLOCK + LIST_BLOCK - 1);
  return Math.max(0, hi - lo + 1);
}

/** Reads block `block` of `project` and saves the reading (older readings of the block are deleted). */
export async function refreshBlock(models: Models, project: string, block: number): Promise<BlockReading> {
  const rows = (await models.Permit.find({ project_id: project, list_block: block }, { status: 1, version: 1, updated_at: 1 })
    .batchSize(LIST_BLOCK + 1)
    .lean()) as unknown as { status: string; version?: number; updated_at?: Date }[];
  const counts: Record<string, number> = {};
  const closed: Record<string, Record<string, number>> = {};
  let stamp = 0;
  for (const r of rows) {
    counts[r.status] = (counts[r.status] ?? 0) + 1;
    stamp += Number(r.version) || 0;
    // A permit without a valid `updated_at` is in no day, as `updated_at >= day` never matches it either.
    if (CLOSED_BY_DAY.includes(r.status) && r.updated_at instanceof Date && !Number.isNaN(r.updated_at.getTime())) {
      const day = utcDay(r.updated_at);
      const days = (closed[r.status] ??= {});
      days[day] = (days[day] ?? 0) + 1;
    }
  }
  const reading: BlockReading = { block, stamp, filled: rows.length, counts, closed };
  // `:c`: a reading with `closed`. One saved before it existed may hold the same stamp (and would
  // take this id); it goes with the older readings.
  const id = `${project}:${block}:${stamp}:c`;
  await Promise.all([
    insertOne(models.BlockTally, { _id: id, project_id: project, ...reading }).catch((err: unknown) => {
      // The same stamp saved by a racing reader: the same reading.
      if (!isDuplicateKey(err)) throw err;
    }),
    models.BlockTally.deleteMany({ project_id: project, block, stamp: { $lte: stamp }, _id: { $ne: id } }),
  ]);
  return reading;
}

/** Reads again the blocks holding these permits (after their statuses changed); permits without a place are skipped. */
export async function refreshBlocksOf(models: Models, permits: { project_id?: unknown; list_block?: unknown }[]): Promise<void> {
  const keys = new Map<string, [string, number]>();
  for (const p of permits) {
    if (typeof p.project_id === 'string' && typeof p.list_block === 'number') keys.set(`${p.project_id}:${p.list_block}`, [p.project_id, p.list_block]);
  }
  await mapLimit([...keys.values()], REFRESH_CONCURRENCY, ([project, block]) => refreshBlock(models, project, block));
}

/**
 * The creates' hook (insertRegistered's `onFilled`): reads each block a create completed, so that a
 * project being filled keeps current readings and a count or KPI reads at most its last, partial
 * block instead of every block created since it last looked (at 320 creates/s, some 60 blocks
 * every 5 s, read in one burst: docs/benchmarks.md).
 */
export function readFilledBlocks(models: Models, project: string): OnFilled {
  return (blocks) => mapLimit(blocks.slice(-FILLED_READS_MAX), REFRESH_CONCURRENCY, (b) => refreshBlock(models, project, b));
}

/**
 * Blocks one create reads (its newest): a sync batch of up to 50 permits fills at most 2; a bulk
 * create of more leaves the older ones to the first reader, so that its commands stay bounded.
 */
export const FILLED_READS_MAX = 2;

/** The saved newest reading of each block of `project` up to its last place `n`, and the blocks with none or one that missed new permits. */
async function savedReadings(models: Models, project: string, n: number): Promise<{ newest: Map<number, BlockReading>; stale: number[]; last: number }> {
  const saved = (await models.BlockTally.find({ project_id: project }, { block: 1, stamp: 1, filled: 1, counts: 1, closed: 1 }).lean()) as unknown as BlockReading[];
  const newest = new Map<number, BlockReading>();
  for (const r of saved) {
    const have = newest.get(r.block);
    if (!have || r.stamp > have.stamp || (r.stamp === have.stamp && r.closed && !have.closed)) newest.set(r.block, r);
  }
  const last = Math.floor(n / LIST_BLOCK);
  const stale: number[] = [];
  for (let b = 0; b <= last; b++) {
    const r = newest.get(b);
    const places = placesInBlock(b, n);
    if (places > 0 && (!r || r.filled < places || !r.closed)) stale.push(b);
  }
  return { newest, stale, last };
}

/** Reads `blocks` of `project` again and puts their new readings in `newest`. */
async function readInto(models: Models, project: string, blocks: number[], newest: Map<number, BlockReading>): Promise<void> {
  for (const r of await mapLimit(blocks, REFRESH_CONCURRENCY, (b) => refreshBlock(models, project, b))) newest.set(r.block, r);
}

const inOrder = (newest: Map<number, BlockReading>, last: number) => [...newest.values()].filter((r) => r.block <= last).sort((a, b) => a.block - b.block);

/** The newest reading of every block of `project` up to its last place `n`, reading blocks that have none or missed new permits. */
export async function blockReadings(models: Models, project: string, n: number): Promise<BlockReading[]> {
  const { newest, stale, last } = await savedReadings(models, project, n);
  await readInto(models, project, stale, newest);
  return inOrder(newest, last);
}

/** Blocks a count reads again itself; past this (and past half the project) it counts in the store and they are read in the background. */
const INLINE_REFRESH_BLOCKS = 8;

const refreshing = new WeakMap<Models, Set<string>>();

/** Reads `blocks` of `project` in the background, once at a time per project and process; a failure is dropped (the next count finds them stale). */
function refreshLater(models: Models, project: string, blocks: number[]): void {
  let running = refreshing.get(models);
  if (!running) refreshing.set(models, (running = new Set<string>()));
  if (running.has(project)) return;
  const mine = running;
  mine.add(project);
  void mapLimit(blocks, REFRESH_CONCURRENCY, (b) => refreshBlock(models, project, b))
    .catch(() => undefined)
    .finally(() => mine.delete(project));
}

/**
 * `project`'s permit count in each status, and in each CLOSED_BY_DAY status by day, from its block
 * readings: what `countDocuments({project_id, status})` (and `…, updated_at: {$gte: day}`, see
 * closedSince) give, read from one small document per 25 places instead of every permit of the
 * status. `undefined` when most of the project's blocks have no current reading (permits seeded or
 * written by an older version, not read yet): reading them all would cost more than counting in the
 * store, so the caller counts there while they are read in the background.
 */
export async function statusCounts(models: Models, project: string): Promise<BlockCounts | undefined> {
  const { newest, stale, last } = await savedReadings(models, project, await projectCount(models, project));
  if (stale.length > Math.max(INLINE_REFRESH_BLOCKS, (last + 1) / 2)) {
    refreshLater(models, project, stale);
    return undefined;
  }
  await readInto(models, project, stale, newest);
  const byStatus: Record<string, number> = {};
  const closed: Record<string, Record<string, number>> = {};
  for (const r of inOrder(newest, last)) {
    for (const [status, k] of Object.entries(r.counts)) byStatus[status] = (byStatus[status] ?? 0) + k;
    for (const [status, days] of Object.entries(r.closed ?? {})) {
      const into = (closed[status] ??= {});
      for (const [day, k] of Object.entries(days)) into[day] = (into[day] ?? 0) + k;
    }
  }
  return { byStatus, closed };
}

/**
 * `project`'s permits in `statuses`: their count, and the `n` after the `skip` newest by
 * registration order (newest place first). Reads the block readings, then only the blocks that
 * hold the page, by (block, status) equality.
 */
export async function statusPage(models: Models, project: string, statuses: string[], skip: number, n: number): Promise<{ count: number; docs: PlacedDoc[] }> {
  const places = await projectCount(models, project);
  const readings = await blockReadings(models, project, places);
  const matches = (r: BlockReading) => statuses.reduce((a, s) => a + (r.counts[s] ?? 0), 0);
  const count = readings.reduce((a, r) => a + matches(r), 0);
  // Newest block first: the blocks whose matches overlap [skip, skip + n).
  const wanted: BlockReading[] = [];
  let before = 0;
  let firstBefore = -1;
  for (let i = readings.length - 1; i >= 0 && before < skip + n; i--) {
    const m = matches(readings[i]);
    if (m > 0 && before + m > skip) {
      if (firstBefore < 0) firstBefore = before;
      wanted.push(readings[i]);
    }
    before += m;
  }
  if (wanted.length === 0 || n < 1) return { count, docs: [] };
  const reads = wanted.flatMap((r) => statuses.filter((s) => (r.counts[s] ?? 0) > 0).map((status) => ({ block: r.block, status })));
  const found = await Promise.all(
    reads.map(
      ({ block, status }) =>
        models.Permit.find({ project_id: project, list_block: block, status })
          .batchSize(LIST_BLOCK + 1)
          .lean() as Promise<unknown> as Promise<PlacedDoc[]>,
    ),
  );
  const docs = found.flat().sort((a, b) => b.list_seq - a.list_seq);
  const from = skip - firstBefore;
  return { count, docs: docs.slice(from, from + n) };
}

/**
 * Reads the blocks of every project in `projects` that have no current reading (after an upgrade,
 * or permits seeded straight into the store), so that the first status-filtered list does not;
 * resolves after at most `waitMs` (the rest goes on; a failure then is dropped: the first list reads
 * what is missing).
 */
export async function warmBlockReadings(models: Models, waitMs: number): Promise<void> {
  const work = (async () => {
    const projects = (await models.Project.find({}, { _id: 1 }).lean()) as { _id: unknown }[];
    for (const p of projects) await blockReadings(models, String(p._id), await projectCount(models, String(p._id)));
  })();
  await waitAtMost(work, waitMs);
}
