/**
 * Registration order: each permit holds `list_seq`, its place among its project's permits in the
 * order they were written (1, 2, 3, … with no gap), and `list_block` = ⌊list_seq / LIST_BLOCK⌋.
 *
 * Why: FerretDB counts and sorts in its own process, decoding every permit a filter matches; only
 * plain equality reaches its backend's indexes. With a sequence without gaps, a project's count is
 * its highest place (found by a few equality probes), and the permits at places [lo, hi] are read
 * by equality on their blocks: a page costs about a page of documents whatever the project holds,
 * even when all of it was created today. On MongoDB the same queries are plain indexed reads.
 *
 * No gap, on any store: the unique index (project_id, list_seq) is the claim. A creator asks the
 * store where the sequence ends and inserts its permits at the next places in one ordered insert;
 * an ordered insert that stops at a refused document has written exactly the ones before it, so
 * the places written always form a prefix. A place refused because another process took it is
 * asked for again; a permit number refused gets a fresh number (numbers may have gaps, places not).
 * Within a process the creates of a project are written one insert at a time, every waiting
 * request's permits together, so they do not refuse each other.
 *
 * Permits written without a place (an older version's, or seeded straight into the store) are
 * given places in creation order by {@link registerUnlisted}, once per store (a mark in
 * `counters`), before the first list or create of a process is served.
 */
import { conflict } from '@ptw/common';
import { isDuplicateKey, upsertRetried, type Models } from '@ptw/db';

/** Places per block: a page of 20 reads 1–2 blocks, a page of 100 at most 5. */
export const LIST_BLOCK = 25;

export const placeOf = (seq: number) => ({ list_seq: seq, list_block: Math.floor(seq / LIST_BLOCK) });

const exists = async (models: Models, project: string, seq: number) => seq <= 0 || (await models.Permit.exists({ project_id: project, list_seq: seq })) !== null;

/**
 * The highest place written in `project` (its permit count, the sequence having no gap): from a
 * hint, doubling steps up or a bisection down, each probe one equality read of the unique index.
 * With a right hint it is two reads.
 */
export async function lastPlace(models: Models, project: string, hint = 0): Promise<number> {
  let lo: number;
  let hi: number;
  const [atHint, afterHint] = await Promise.all([exists(models, project, hint), exists(models, project, hint + 1)]);
  if (atHint && !afterHint) return hint;
  if (!atHint) {
    lo = 0;
    hi = hint;
  } else {
    lo = hint + 1;
    for (let step = 1; ; step *= 2) {
      if (!(await exists(models, project, lo + step))) {
        hi = lo + step;
        break;
      }
      lo += step;
    }
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await exists(models, project, mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** What became of one permit handed to {@link insertRegistered}. */
export type Registered = 'inserted' | 'exists';

/** Told the blocks a create completed (their last place written), before the create is answered. */
export type OnFilled = (blocks: number[]) => Promise<unknown>;

interface Ask {
  docs: Record<string, unknown>[];
  out: Registered[];
  renumber: () => Promise<string>;
  onFilled?: OnFilled;
  /** Blocks whose last place this ask's permits took. */
  filled: number[];
  failed?: unknown;
  resolve(out: Registered[]): void;
  reject(err: unknown): void;
}

interface ProjectWriter {
  /** The last place this process saw written (a hint: checked before each insert). */
  last: number;
  queue: Ask[];
  busy: boolean;
  /** The highest place this process has published as the shared hint (see publishLater). */
  published: number;
  /** Whether a publishing loop runs (publishLater). */
  publishing: boolean;
  /** Callers waiting until the hint holds their place (publishLater). */
  waiting: { place: number; resolve(): void }[];
}

const writersByStore = new WeakMap<Models, Map<string, ProjectWriter>>();

function writerOf(models: Models, project: string): ProjectWriter {
  let writers = writersByStore.get(models);
  if (!writers) writersByStore.set(models, (writers = new Map<string, ProjectWriter>()));
  let w = writers.get(project);
  if (!w) writers.set(project, (w = { last: 0, queue: [], busy: false, published: 0, publishing: false, waiting: [] }));
  return w;
}

/** Attempts per round of a project's inserts before the waiting creates are refused (retryable). */
const MAX_ATTEMPTS = 50;

/**
 * Inserts permits of one project at the next places of its registration order. A permit whose
 * `_id` already exists is not written again (`exists`: a retried create). `renumber` gives a fresh
 * permit number when the store refuses one. `onFilled` is given the blocks whose last place these
 * permits took (every place of such a block is written then) and awaited before the answer; its
 * failure is dropped. Store errors reject (permits before the failing one may have been written,
 * as with any unordered insert).
 */
export async function insertRegistered(models: Models, project: string, docs: Record<string, unknown>[], renumber: () => Promise<string>, onFilled?: OnFilled): Promise<Registered[]> {
  if (docs.length === 0) return [];
  await ensureRegistered(models);
  const w = writerOf(models, project);
  return new Promise<Registered[]>((resolve, reject) => {
    w.queue.push({ docs: docs.map((d) => ({ ...d })), out: new Array<Registered>(docs.length), renumber, onFilled, filled: [], resolve, reject });
    void pump(models, project, w);
  });
}

async function pump(models: Models, project: string, w: ProjectWriter): Promise<void> {
  if (w.busy) return;
  w.busy = true;
  try {
    while (w.queue.length) {
      const asks = w.queue.splice(0);
      const before = w.last;
      await writeRound(models, project, w, asks).catch((err: unknown) => {
        for (const a of asks) a.failed ??= err;
      });
      // The creates are answered once the hint holds their places (publishLater never rejects): a
      // write request leaves nothing behind its answer (the hostile-input fuzz compares the store
      // around each refused request). The next round does not wait for it: it probes the store itself.
      const published = w.last > before ? publishLater(models, project, w) : Promise.resolve();
      const filled = asks.map((a) => (a.onFilled && a.filled.length ? a.onFilled(a.filled).catch(() => undefined) : undefined));
      void Promise.all([published, ...filled]).then(() => {
        for (const a of asks) {
          if (a.failed !== undefined) a.reject(a.failed);
          else a.resolve(a.out);
        }
      });
    }
  } finally {
    w.busy = false;
  }
}

async function writeRound(models: Models, project: string, w: ProjectWriter, asks: Ask[]): Promise<void> {
  let rows = asks.flatMap((ask) => ask.docs.map((doc, i) => ({ ask, i, doc })));
  for (let attempt = 0; rows.length; attempt++) {
    if (attempt >= MAX_ATTEMPTS) {
      for (const r of rows) r.ask.failed ??= conflict('Could not register the permit, retry');
      return;
    }
    // First attempt: the writer's own last place, checked to exist (so the insert leaves no gap);
    // the place after it is not probed, the ordered insert claims it (a refusal there is told
    // apart below). This process writes most of its projects' places: one probe, not two.
    w.last = attempt === 0 && w.last > 0 && (await exists(models, project, w.last)) ? w.last : await lastPlace(models, project, w.last);
    const first = w.last + 1;
    let stop = rows.length;
    let error: unknown;
    try {
      await models.Permit.insertMany(
        rows.map((r, k) => ({ ...r.doc, ...placeOf(first + k) })),
        { ordered: true, lean: true },
      );
    } catch (err) {
      const refused = firstRefused(err);
      if (!refused) throw err;
      stop = refused.index;
      error = refused.duplicate ? undefined : err;
    }
    for (let k = 0; k < stop; k++) {
      rows[k].ask.out[rows[k].i] = 'inserted';
      // The last place of its block: every place of the block is written now (no gaps below it).
      if ((first + k) % LIST_BLOCK === LIST_BLOCK - 1) rows[k].ask.filled.push(Math.floor((first + k) / LIST_BLOCK));
    }
    if (stop > 0) w.last = first + stop - 1;
    if (stop === rows.length) return;
    const r = rows[stop];
    if (error !== undefined) {
      // This permit's own fault: its request fails, the others go on.
      r.ask.failed = error;
      rows = rows.slice(stop).filter((x) => x.ask !== r.ask);
    } else {
      const [written, placeTaken] = await Promise.all([models.Permit.exists({ _id: r.doc._id }), exists(models, project, first + stop)]);
      if (written) {
        r.ask.out[r.i] = 'exists';
        rows = rows.slice(stop + 1);
      } else {
        // Its place was taken by another process (asked of the store again), else its number (a fresh one).
        if (!placeTaken) r.doc.permit_number = await r.ask.renumber();
        rows = rows.slice(stop);
      }
    }
  }
}

/** Where an ordered bulk write stopped, and whether for a duplicate key; undefined for other errors. */
function firstRefused(err: unknown): { index: number; duplicate: boolean } | undefined {
  const at = (err as { writeErrors?: { index?: number; code?: number; err?: { index?: number; code?: number } }[] }).writeErrors?.[0];
  const index = at?.index ?? at?.err?.index;
  if (typeof index !== 'number') return undefined;
  return { index, duplicate: (at?.code ?? at?.err?.code ?? (err as { code?: number }).code) === 11000 };
}

/** A permit document as read, with its place. */
export type PlacedDoc = Record<string, unknown> & { _id: unknown; list_seq: number };

export interface RegisteredPage {
  count: number;
  /** The permits at the asked places, newest place first. */
  docs: PlacedDoc[];
}

/**
 * The id of `project`'s shared place hint in `counters`: the last place some process wrote (at most
 * the real last place, and a little behind it while a write is being published). Readers that do
 * not write (lists and KPIs in the workflow and export services, while the sync service creates)
 * start their probes there instead of at their own hint, which falls behind by every permit other
 * processes write: 16 probes per list under the shift-start load, 3 commands with it.
 */
const placeHintId = (project: string) => `list_place:${project}`;

/** Publishes `last` as `project`'s place hint (a hint only: a failure or a lost race costs readers a few probes). */
async function publishPlace(models: Models, project: string, last: number): Promise<void> {
  await upsertRetried(() => models.Counter.updateOne({ _id: placeHintId(project) }, { $max: { seq: last } }, { upsert: true })).catch(() => undefined);
}

/**
 * Publishes the writer's last place, one write at a time per project and process, and the newest
 * place once the write before it ends. FerretDB's `$max` reads, then writes: two at once can leave
 * the lower value (a CI run saw the hint stay at 285 after 310 was written), and under load every
 * batch would publish its own. Another process's write can still race this one: it is a hint.
 * Resolves once the hint holds the writer's last place as of the call.
 */
function publishLater(models: Models, project: string, w: ProjectWriter): Promise<void> {
  const place = w.last;
  if (w.published >= place) return Promise.resolve();
  // Resolved when a write covering this place ends, not when the loop does: under a stream of
  // rounds the loop goes on publishing newer places, and this caller's answer waits for none of them.
  const done = new Promise<void>((resolve) => w.waiting.push({ place, resolve }));
  if (!w.publishing) {
    w.publishing = true;
    void (async () => {
      try {
        while (w.published < w.last) {
          const last = w.last;
          await publishPlace(models, project, last);
          w.published = last;
          settle(w, (x) => x.place <= last);
        }
      } finally {
        w.publishing = false;
        // publishPlace never rejects; should anything else, no caller waits forever on a hint.
        settle(w, () => true);
      }
    })();
  }
  return done;
}

/** Resolves the callers of publishLater that `covered` says the hint now holds. */
function settle(w: ProjectWriter, covered: (x: { place: number }) => boolean): void {
  const still: ProjectWriter['waiting'] = [];
  for (const x of w.waiting) {
    if (covered(x)) x.resolve();
    else still.push(x);
  }
  w.waiting = still;
}

/** `project`'s permit count: its last place, probed from the higher of this process's hint and the shared one (two probes when it is right). */
export async function projectCount(models: Models, project: string): Promise<number> {
  await ensureRegistered(models);
  const w = writerOf(models, project);
  const shared = (await models.Counter.findById(placeHintId(project), { seq: 1 }).lean()) as { seq?: unknown } | null;
  const hint = Math.max(w.last, Number(shared?.seq) || 0);
  const count = await lastPlace(models, project, hint);
  if (!w.busy) w.last = count;
  return count;
}

/** `project`'s permit count and its `n` permits after the `skip` newest, by registration order. */
export async function registeredPage(models: Models, project: string, skip: number, n: number): Promise<RegisteredPage> {
  const count = await projectCount(models, project);
  const hi = count - skip;
  const lo = Math.max(1, hi - n + 1);
  if (hi < 1 || n < 1) return { count, docs: [] };
  const blocks: number[] = [];
  for (let b = Math.floor(lo / LIST_BLOCK); b <= Math.floor(hi / LIST_BLOCK); b++) blocks.push(b);
  const read = await Promise.all(
    blocks.map((b) =>
      models.Permit.find({ project_id: project, list_block: b })
        .batchSize(LIST_BLOCK + 1)
        .lean(),
    ),
  );
  const docs = (read.flat() as PlacedDoc[]).filter((d) => d.list_seq >= lo && d.list_seq <= hi).sort((a, b) => b.list_seq - a.list_seq);
  return { count, docs };
}

const MARK = 'migration:permit_list_seq';
const LOCK = 'lock:permit_list_seq';
/** A lock older than this is taken over (its holder died). */
const LOCK_STALE_MS = 5 * 60_000;

const ensured = new WeakMap<Models, Promise<void>>();

/**
 * Resolves once every permit of the store has a place (see {@link registerUnlisted}); one read of
 * the mark per process afterwards.
 */
export function ensureRegistered(models: Models): Promise<void> {
  let p = ensured.get(models);
  if (!p) {
    p = (async () => {
      for (;;) {
        if (await models.Counter.exists({ _id: MARK })) return;
        const now = Date.now();
        let mine = false;
        try {
          await models.Counter.create({ _id: LOCK, seq: now });
          mine = true;
        } catch (err) {
          if (!isDuplicateKey(err)) throw err;
        }
        if (mine) {
          try {
            const n = await registerUnlisted(models);
            await upsertRetried(() => models.Counter.updateOne({ _id: MARK }, { $set: { seq: n } }, { upsert: true }));
          } finally {
            await models.Counter.deleteOne({ _id: LOCK });
          }
          return;
        }
        // Another process is registering: wait for its mark, or take over a dead holder's lock.
        const lock = await models.Counter.findById(LOCK).lean();
        if (lock && now - Number(lock.seq) > LOCK_STALE_MS) await models.Counter.deleteOne({ _id: LOCK, seq: lock.seq });
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    p.catch(() => ensured.delete(models));
    ensured.set(models, p);
  }
  return p;
}

/**
 * Gives places to the permits that have none, per project in creation order after the places
 * already written, with ordered bulk writes (a place another process takes meanwhile stops the
 * write there; the rest are placed again after it). 20 writes per command: FerretDB 1.24 was seen
 * to stall for good on an ordered update command of 50. Reads every permit without a place once: run
 * at a version upgrade (by {@link ensureRegistered}) or after seeding permits straight into the store.
 */
export async function registerUnlisted(models: Models, chunk = 20): Promise<number> {
  const rows = (await models.Permit.find({ list_seq: { $exists: false } }, { _id: 1, project_id: 1, created_at: 1 }).lean()) as { _id: unknown; project_id: string; created_at: Date }[];
  const byProject = new Map<string, typeof rows>();
  for (const r of rows) {
    const list = byProject.get(r.project_id) ?? [];
    list.push(r);
    byProject.set(r.project_id, list);
  }
  for (const [project, list] of byProject) {
    list.sort((a, b) => new Date(a.created_at).getTime() - new Date(b.created_at).getTime() || (String(a._id) < String(b._id) ? -1 : 1));
    const w = writerOf(models, project);
    let todo = list;
    for (let attempt = 0; todo.length; attempt++) {
      if (attempt >= MAX_ATTEMPTS * 10) throw conflict('Could not register the permits, retry');
      w.last = await lastPlace(models, project, w.last);
      const part = todo.slice(0, chunk);
      let stop = part.length;
      try {
        await models.Permit.bulkWrite(
          part.map((r, k) => ({ updateOne: { filter: { _id: r._id }, update: { $set: placeOf(w.last + 1 + k) } } })),
          { ordered: true },
        );
      } catch (err) {
        const refused = firstRefused(err);
        if (!refused?.duplicate) throw err;
        stop = refused.index;
      }
      w.last += stop;
      todo = todo.slice(stop);
    }
    await publishLater(models, project, w);
  }
  return rows.length;
}
