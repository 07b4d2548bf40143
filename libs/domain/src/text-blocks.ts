/**
 * `q` searches of one project by registration order (registration.ts), reading one small document
 * per 25 places instead of every permit of the project.
 *
 * Why: `q` is a case-insensitive substring of four text fields, which no index serves. FerretDB
 * decodes every permit it tests (about 0.1 ms each here, whatever the filter), so a search of a
 * project of 2,500 permits cost 350–450 ms. Here each block of 25 places has a text reading: its
 * permits' place, id, status, creation time and searched fields as one JSON string (a string
 * decodes ~20× faster on the local store than the same permits), and a search tests those in Node,
 * then reads only the page's permits by id.
 *
 * Exact by the argument of status-blocks.ts: a reading is insert-only and stamped with the sum of
 * its block's permit versions (every write raises one), so the highest stamp of a block is its
 * newest and a reading with the highest possible stamp saw every permit at its last version. A
 * search reads a block again when its newest text reading
 *   - saw fewer places than the block holds (new permits);
 *   - is older than the block's newest status reading (a status changed since: transitions and the
 *     expiry job read the status reading again before they answer, see permits/effects.ts);
 *   - or the block carries an edit mark: an edit of a searched field marks its block before
 *     writing the permit ({@link markEdited}). A mark covers a 10-second slot and says "edited
 *     before `at`" (the slot's end); marks are inserted, never updated (FerretDB's updates read,
 *     then write: a racing update could be lost), and the first mark of a slot deletes the block's
 *     older ones, which it covers, so a block has one or two; a process that saved (or found) a
 *     slot's mark sends nothing for the slot's other edits (the mark cannot go before the slot
 *     ends). A reading deletes the block's marks whose `at` is more than {@link EDIT_GRACE_MS}
 *     before the reading began: an edit whose write lands after the reading read the block keeps
 *     its block marked (an edit still writing after half the grace marks it again). Clocks of the
 *     processes are assumed within seconds of each other.
 * As with status lists, a search running while a write is in flight may see the permit as it was;
 * the next search sees it as written.
 *
 * Matching: the pattern is the list's own (`permitQuery`'s escaped `q`), run by JavaScript with
 * Unicode case folding (`iu`), as the stores' regular expressions fold case; each field is tested
 * on its own, as the `$or` of the store query does.
 */
import { insertOne, insertUnordered, isDuplicateKey, mapLimit, type Models } from '@ptw/db';
import { LIST_BLOCK, projectCount } from './registration';
import { blockReadings, placesInBlock } from './status-blocks';
import type { PermitDoc } from './permits/types';

/** The fields `q` searches (permitQuery's `$or`). */
export const SEARCHED_FIELDS = ['title', 'permit_number', 'location', 'description'] as const;

/** How long after an edit's mark a text reading may clear it (see the module comment). */
export const EDIT_GRACE_MS = 60_000;

/** Length of a mark's slot: the edits of one block within it share one mark. */
const MARK_SLOT_MS = 10_000;

/** Blocks read at once when a search finds several without a current reading. */
const REFRESH_CONCURRENCY = 4;

/** One permit in a text reading: place, id, status, creation time (ms), then SEARCHED_FIELDS in order. */
type Entry = [number, string, string, number, ...string[]];

interface TextReading {
  block: number;
  stamp: number;
  filled: number;
  entries: Entry[];
}

type Placed = { project_id?: unknown; list_block?: unknown };

/**
 * Marks the block of `permit` as edited now (before the edit's permit write; see the module
 * comment): the slot's mark is inserted unless another edit did, and the first edit of a slot
 * deletes the block's marks of earlier slots (the new mark covers them). A permit without a place
 * (not registered yet) has no block to mark.
 */
export async function markEdited(models: Models, permit: Placed, now = Date.now()): Promise<void> {
  const { project_id: project, list_block: block } = permit;
  if (typeof project !== 'string' || typeof block !== 'number') return;
  const end = (Math.floor(now / MARK_SLOT_MS) + 1) * MARK_SLOT_MS;
  const id = `${project}:${block}:${end}`;
  // This process saved the slot's mark already: it stays until EDIT_GRACE_MS after the slot's end.
  const known = savedMarks(models);
  if (known.has(id) && Date.now() < end) return;
  const at = new Date(end);
  try {
    await insertOne(models.BlockMark, { _id: id, project_id: project, block, at });
  } catch (err) {
    // Another edit of this block marked the slot already.
    if (isDuplicateKey(err)) return remember(known, id, end);
    throw err;
  }
  remember(known, id, end);
  await models.BlockMark.deleteMany({ project_id: project, block, at: { $lt: at } });
}

const marksSaved = new WeakMap<Models, Map<string, number>>();

/** The slot marks this process saved or found saved, by id, with their slot's end (ms). */
function savedMarks(models: Models): Map<string, number> {
  let known = marksSaved.get(models);
  if (!known) marksSaved.set(models, (known = new Map<string, number>()));
  return known;
}

function remember(known: Map<string, number>, id: string, end: number): void {
  if (known.size >= 1_000) {
    const now = Date.now();
    for (const [k, e] of known) if (e <= now) known.delete(k);
  }
  known.set(id, end);
}

/** A block's text reading as just read, and when the read began (ms). */
interface ReadBlock extends TextReading {
  readAt: number;
}

/** Reads block `block` of `project`: its text reading, not saved yet. */
async function readTextBlock(models: Models, project: string, block: number): Promise<ReadBlock> {
  const readAt = Date.now();
  const projection = { list_seq: 1, status: 1, version: 1, created_at: 1, ...Object.fromEntries(SEARCHED_FIELDS.map((f) => [f, 1])) };
  const rows = (await models.Permit.find({ project_id: project, list_block: block }, projection)
    .batchSize(LIST_BLOCK + 1)
    .lean()) as unknown as Record<string, unknown>[];
  let stamp = 0;
  const entries: Entry[] = [];
  for (const r of rows) {
    stamp += Number(r.version) || 0;
    const created = r.created_at instanceof Date ? r.created_at.getTime() : Number.NaN;
    entries.push([Number(r.list_seq), String(r._id), String(r.status), created, ...SEARCHED_FIELDS.map((f) => (typeof r[f] === 'string' ? r[f] : ''))]);
  }
  return { block, stamp, filled: rows.length, entries, readAt };
}

/**
 * Saves readings of `project` with one insert (a reading a racing reader saved with the same stamp
 * is the same reading), then deletes the older readings of the blocks in `replacing` (a block the
 * caller saw none of has none: one left by a racing reader goes at its next reading) and the edit
 * marks of the blocks in `marked` that are old enough.
 */
async function saveTextReadings(models: Models, project: string, read: ReadBlock[], replacing: Set<number>, marked: Set<number>): Promise<void> {
  const docs = read.map((r) => ({ _id: `${project}:${r.block}:${r.stamp}`, project_id: project, block: r.block, stamp: r.stamp, filled: r.filled, entries: JSON.stringify(r.entries) }));
  await insertUnordered(models.BlockText, docs, { lean: true });
  await mapLimit(
    read.filter((r) => replacing.has(r.block) || marked.has(r.block)),
    REFRESH_CONCURRENCY,
    async (r) => {
      if (replacing.has(r.block)) await models.BlockText.deleteMany({ project_id: project, block: r.block, stamp: { $lt: r.stamp } });
      if (marked.has(r.block)) await models.BlockMark.deleteMany({ project_id: project, block: r.block, at: { $lt: new Date(r.readAt - EDIT_GRACE_MS) } });
    },
  );
}

/** The current text reading of every block of `project` up to its last place `n`, reading again those that are not. */
async function textReadings(models: Models, project: string, n: number): Promise<TextReading[]> {
  const [status, saved, marks] = await Promise.all([
    blockReadings(models, project, n),
    models.BlockText.find({ project_id: project }, { block: 1, stamp: 1, filled: 1, entries: 1 }).lean() as Promise<unknown> as Promise<
      { block: number; stamp: number; filled: number; entries: string }[]
    >,
    models.BlockMark.find({ project_id: project }, { block: 1 }).lean() as Promise<unknown> as Promise<{ block: number }[]>,
  ]);
  const newest = new Map<number, { block: number; stamp: number; filled: number; entries: string }>();
  for (const r of saved) {
    const have = newest.get(r.block);
    if (!have || r.stamp > have.stamp) newest.set(r.block, r);
  }
  const statusStamp = new Map(status.map((r) => [r.block, r.stamp]));
  const marked = new Set(marks.map((m) => m.block));
  const last = Math.floor(n / LIST_BLOCK);
  const out: TextReading[] = [];
  const stale: number[] = [];
  for (let b = 0; b <= last; b++) {
    const places = placesInBlock(b, n);
    if (places === 0) continue;
    const r = newest.get(b);
    if (!r || r.filled < places || (statusStamp.get(b) ?? 0) > r.stamp || marked.has(b)) stale.push(b);
    else out.push({ block: r.block, stamp: r.stamp, filled: r.filled, entries: JSON.parse(r.entries) as Entry[] });
  }
  const read = await mapLimit(stale, REFRESH_CONCURRENCY, (b) => readTextBlock(models, project, b));
  await saveTextReadings(models, project, read, new Set(stale.filter((b) => newest.has(b))), new Set(stale.filter((b) => marked.has(b))));
  out.push(...read);
  return out;
}

/**
 * `project`'s permits (in `statuses`, or any) with a searched field matching `pattern`: their
 * count, and the `n` after the `skip` newest by registration order (newest place first), read by id
 * as they are now (one removed meanwhile is left out).
 */
export async function searchPage(models: Models, project: string, statuses: string[] | 'all', pattern: RegExp, skip: number, n: number): Promise<{ count: number; docs: PermitDoc[] }> {
  const places = await projectCount(models, project);
  const wanted = statuses === 'all' ? undefined : new Set(statuses);
  const matches: Entry[] = [];
  for (const r of await textReadings(models, project, places)) {
    for (const e of r.entries) {
      // Places written after the count was read are left to the next list, as the default page does.
      if (e[0] > places || (wanted && !wanted.has(e[2]))) continue;
      for (let i = 4; i < e.length; i++) {
        if (pattern.test(e[i] as string)) {
          matches.push(e);
          break;
        }
      }
    }
  }
  matches.sort((a, b) => b[0] - a[0]);
  const shown = matches.slice(skip, skip + n);
  const docs = (await Promise.all(shown.map((e) => models.Permit.findById(e[1]).lean()))) as unknown as (PermitDoc | null)[];
  return { count: matches.length, docs: docs.filter((d): d is PermitDoc => d !== null) };
}
