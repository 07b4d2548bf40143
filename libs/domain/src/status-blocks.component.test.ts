/**
 * Status-filtered pages by block readings on the real store: counts and pages equal the raw
 * store's, after status changes by two processes at once, after new permits, with a stale racing
 * reading, after a transition's effects, after an interrupted refresh and as creates fill blocks.
 */
import { AppError, Status } from '@ptw/common';
import type { Models } from '@ptw/db';
import { Types } from 'mongoose';
import { completeEffects } from './permits/effects';
import type { PermitDoc } from './permits/types';
import { guardedPermitWrite } from './permits/versioning';
import { insertRegistered, LIST_BLOCK } from './registration';
import { blockReadings, closedSince, FILLED_READS_MAX, readFilledBlocks, refreshBlocksOf, statusCounts, statusPage } from './status-blocks';
import { storePair } from '../../../test/support/store-pair';

jest.setTimeout(120_000);

const pair = storePair('status-blocks', ['sb-a', 'sb-b']);
let a: Models;
let b: Models;
let n = 0;

beforeAll(() => {
  ({ a, b } = pair);
});

const STATUSES = ['draft', 'submitted', 'active', 'completed', 'cancelled'];
const renumber = async () => `PTW-2043-${String(++n).padStart(6, '0')}`;
const permit = (project: string, status: string) => ({
  _id: new Types.ObjectId(),
  project_id: project,
  permit_type_id: 'hot-work',
  title: `Permit ${++n}`,
  status,
  created_by: 'u1',
  version: 1 + (n % 3),
  created_at: new Date(),
  updated_at: new Date(),
  permit_number: `PTW-2043-${String(n).padStart(6, '0')}`,
});

/** What the store itself says: the count, and the page by registration order, newest first. */
async function raw(m: Models, project: string, statuses: string[], skip: number, size: number) {
  const q = { project_id: project, status: { $in: statuses } };
  const count = await m.Permit.countDocuments(q);
  const page = (await m.Permit.find(q, { list_seq: 1 }).sort({ list_seq: -1 }).skip(skip).limit(size).lean()) as { list_seq: number }[];
  return { count, seqs: page.map((d) => d.list_seq) };
}

async function ours(m: Models, project: string, statuses: string[], skip: number, size: number) {
  const { count, docs } = await statusPage(m, project, statuses, skip, size);
  return { count, seqs: docs.map((d) => d.list_seq) };
}

async function seed(m: Models, project: string, count: number) {
  const docs = Array.from({ length: count }, (_, k) => permit(project, STATUSES[(k * 7) % STATUSES.length]));
  await insertRegistered(m, project, docs, renumber);
  return docs;
}

/**
 * A status change as the product's versioned write makes it (the next version claimed in the
 * revisions index, then the guarded update), then the block read again (as the transition's effects
 * do). A bare `findOneAndUpdate({_id, version})` is not enough on FerretDB, whose findAndModify reads
 * then writes: two racing moves could both apply at the same version, and their readings share a stamp.
 */
async function move(m: Models, id: unknown, to: string, refresh = true) {
  const doc = (await m.Permit.findById(id).lean()) as PermitDoc;
  // Another move got this version first: a 409 (ABORTED), as a client would get.
  const updated = await guardedPermitWrite(m, doc, { status: to }, 'u1', new Date()).catch((err: unknown) => {
    if (err instanceof AppError && err.code === Status.ABORTED) return null;
    throw err;
  });
  if (updated && refresh) await refreshBlocksOf(m, [updated]);
  return updated !== null;
}

it('when 130 permits in five statuses are listed by one or several statuses at several depths, then count and page equal the raw store', async () => {
  const p = 'sb-p1';
  await seed(a, p, 130);
  for (const statuses of [['draft'], ['completed', 'cancelled'], ['active', 'draft', 'submitted'], ['expired'], STATUSES]) {
    for (const [skip, size] of [
      [0, 20],
      [20, 20],
      [7, 13],
      [100, 50],
      [125, 10],
      [500, 20],
    ]) {
      expect({ statuses, skip, size, ...(await ours(b, p, statuses, skip, size)) }).toEqual({ statuses, skip, size, ...(await raw(a, p, statuses, skip, size)) });
    }
  }
  // One reading per block: 130 places = blocks 0…5.
  expect((await blockReadings(a, p, 130)).map((r) => r.block)).toEqual([0, 1, 2, 3, 4, 5]);
  expect(await a.BlockTally.countDocuments({ project_id: p })).toBe(6);
});

it('when two processes change the statuses of 40 permits of the same blocks at once, then every status count equals the raw store afterwards', async () => {
  const p = 'sb-p2';
  const docs = await seed(a, p, 50);
  await statusPage(a, p, ['draft'], 0, 10);
  const moves = docs.slice(0, 40).map((d, k) => ({ m: k % 2 ? a : b, id: d._id, to: STATUSES[(k * 3 + 1) % STATUSES.length] }));
  // Twice over the same permits: the second round races the first round's readings.
  await Promise.all([...moves, ...moves.map((x) => ({ ...x, to: STATUSES[(STATUSES.indexOf(x.to) + 2) % STATUSES.length] }))].map((x) => move(x.m, x.id, x.to)));
  for (const s of STATUSES) expect({ s, ...(await ours(b, p, [s], 0, 100)) }).toEqual({ s, ...(await raw(a, p, [s], 0, 100)) });
  // The KPIs' counts (statusCounts) are the same readings: every status as the store counts it.
  const counts = (await statusCounts(b, p))?.byStatus ?? {};
  const stored = Object.fromEntries(await Promise.all(STATUSES.map(async (s) => [s, await a.Permit.countDocuments({ project_id: p, status: s })] as const)));
  expect(Object.fromEntries(STATUSES.map((s) => [s, counts[s] ?? 0]))).toEqual(stored);
  expect(Object.values(counts).reduce((x, y) => x + y, 0)).toBe(50);
});

it("when most of a project's blocks have no reading, then statusCounts leaves the count to the store and reads them in the background, after which it counts", async () => {
  const p = 'sb-unread';
  await seed(a, p, 400);
  const stored = async () => Object.fromEntries(await Promise.all(STATUSES.map(async (s) => [s, await a.Permit.countDocuments({ project_id: p, status: s })] as const)));
  expect(await statusCounts(b, p)).toBeUndefined();
  let counts: Record<string, number> | undefined;
  for (let i = 0; i < 100 && !counts; i++) {
    await new Promise((r) => setTimeout(r, 100));
    counts = (await statusCounts(b, p))?.byStatus;
  }
  expect(Object.fromEntries(STATUSES.map((s) => [s, counts?.[s] ?? 0]))).toEqual(await stored());
  expect(await a.BlockTally.countDocuments({ project_id: p })).toBe(17);
});

it('when permits are registered after the blocks were read, then the next list counts them without any refresh', async () => {
  const p = 'sb-p3';
  await seed(a, p, 30);
  expect((await ours(a, p, STATUSES, 0, 5)).count).toBe(30);
  await seed(b, p, 12);
  expect(await ours(a, p, STATUSES, 0, 50)).toEqual(await raw(a, p, STATUSES, 0, 50));
  expect((await ours(a, p, STATUSES, 0, 5)).count).toBe(42);
});

it('when a stale reading lands after a newer one (a slow racing reader), then the newer reading still counts', async () => {
  const p = 'sb-p4';
  const docs = await seed(a, p, 10);
  await statusPage(a, p, ['draft'], 0, 5);
  await move(a, docs[0]._id, 'cancelled');
  const [newest] = await blockReadings(a, p, 10);
  await a.BlockTally.create({ _id: `${p}:0:1`, project_id: p, block: 0, stamp: 1, filled: 10, counts: { draft: 10 } });
  expect((await blockReadings(b, p, 10))[0]).toMatchObject({ stamp: newest.stamp, counts: newest.counts });
  expect(await ours(b, p, ['draft', 'cancelled'], 0, 10)).toEqual(await raw(a, p, ['draft', 'cancelled'], 0, 10));
});

it('when a status change is not followed by its refresh (a crash), then the count is stale until its effects are completed, which read the block again', async () => {
  const p = 'sb-p5';
  const docs = await seed(a, p, 10);
  const before = await ours(a, p, ['cancelled'], 0, 10);
  const target = docs.find((d) => d.status === 'draft')!;
  await move(a, target._id, 'cancelled', false);
  // The crash window: the reading still has the old status (this is what the pending mark is for).
  expect((await ours(a, p, ['cancelled'], 0, 10)).count).toBe(before.count);
  const doc = (await a.Permit.findById(target._id).lean()) as PermitDoc;
  const pending = { version: doc.version, from: 'draft', to: 'cancelled', user_id: 'u1', comments: '', at: new Date() };
  await a.Permit.updateOne({ _id: target._id }, { $set: { pending } });
  await completeEffects(a, { ...doc, pending });
  expect(await ours(a, p, ['cancelled'], 0, 10)).toEqual(await raw(a, p, ['cancelled'], 0, 10));
  expect((await ours(a, p, ['cancelled'], 0, 10)).count).toBe(before.count + 1);
  expect(await a.Permit.exists({ _id: target._id, pending: { $exists: true } })).toBeNull();
});

it('when permits closed on several days, then the day counts equal the store counting updated_at since each day, also after a reading without them', async () => {
  const p = 'sb-days';
  const DAY = 86_400_000;
  const midnight = Date.parse(new Date().toISOString().slice(0, 10));
  // 40 permits over two blocks: completed or cancelled 0…3 days ago (at midday, and a minute after
  // midnight), the rest open; one closed permit without `updated_at`.
  const docs = Array.from({ length: 40 }, (_, k) => ({
    ...permit(p, ['completed', 'cancelled', 'draft', 'active'][k % 4]),
    updated_at: new Date(midnight - (k % 3) * DAY + (k % 2 ? 60_000 : DAY / 2)),
  }));
  delete (docs[4] as { updated_at?: Date }).updated_at;
  await insertRegistered(a, p, docs, renumber);
  const target = docs.find((d) => d.status === 'draft')!;
  // A transition as the services make it: status, version and updated_at together, then its block read.
  const doc = (await a.Permit.findById(target._id).lean()) as PermitDoc;
  const closedNow = await a.Permit.findOneAndUpdate(
    { _id: target._id, version: doc.version },
    { $set: { status: 'completed', version: doc.version + 1, updated_at: new Date() } },
    { new: true },
  ).lean();
  await refreshBlocksOf(a, [closedNow!]);
  const expectDays = async () => {
    const counts = await statusCounts(b, p);
    expect(counts).toBeDefined();
    for (const status of ['completed', 'cancelled']) {
      for (const back of [-1, 0, 1, 2, 3, 4]) {
        const from = new Date(midnight - back * DAY);
        const stored = await a.Permit.countDocuments({ project_id: p, status, updated_at: { $gte: from } });
        expect({ status, back, n: closedSince(counts!, status, from.toISOString().slice(0, 10)) }).toEqual({ status, back, n: stored });
      }
    }
  };
  await expectDays();
  // A reading saved before the day counts existed, with the block's current stamp: read again, and replaced.
  const [first] = await blockReadings(a, p, 40);
  await a.BlockTally.deleteMany({ project_id: p, block: first.block });
  await a.BlockTally.create({ _id: `${p}:${first.block}:${first.stamp}`, project_id: p, block: first.block, stamp: first.stamp, filled: first.filled, counts: first.counts });
  await expectDays();
  expect(await a.BlockTally.countDocuments({ project_id: p, block: first.block })).toBe(1);
  expect(await a.BlockTally.exists({ project_id: p, block: first.block, closed: { $exists: true } })).not.toBeNull();
});

it('when a page is read, then it reads only the block that holds it, by status', async () => {
  const p = 'sb-p6';
  // Places 1…74: blocks 0, 1 and 2, each full; the newest block holds ten drafts and completed ones.
  await seed(a, p, 3 * LIST_BLOCK - 1);
  await statusPage(a, p, ['draft'], 0, 1);
  const expected = (await raw(a, p, ['draft', 'completed'], 0, 3)).seqs;
  const filters: Record<string, unknown>[] = [];
  const find = a.Permit.find.bind(a.Permit);
  const spy = jest.spyOn(a.Permit, 'find').mockImplementation(((filter: Record<string, unknown>, ...rest: unknown[]) => {
    filters.push(filter);
    return (find as (...args: unknown[]) => unknown)(filter, ...rest);
  }) as never);
  try {
    const page = await statusPage(a, p, ['draft', 'completed'], 0, 3);
    expect(page.docs.map((d) => d.list_seq)).toEqual(expected);
  } finally {
    spy.mockRestore();
  }
  expect(filters.map((f) => [f.list_block, f.status]).sort()).toEqual([
    [2, 'completed'],
    [2, 'draft'],
  ]);
});

it('when creates write the last places of blocks, then those blocks (the newest 2 per create) have current readings when the creates are answered, and a count reads only the others', async () => {
  const p = 'sb-fill';
  const hook = readFilledBlocks(a, p);
  const readBlocks = async () => ((await a.BlockTally.find({ project_id: p }, { block: 1 }).lean()) as { block: number }[]).map((r) => r.block).sort((x, y) => x - y);
  // Places 1…20: block 0 (1–24) not full yet; nothing read.
  await insertRegistered(
    a,
    p,
    Array.from({ length: 20 }, () => permit(p, 'draft')),
    renumber,
    hook,
  );
  expect(await readBlocks()).toEqual([]);
  // Places 21…30 (another process's writer): block 0 now full, read by this create.
  await insertRegistered(
    b,
    p,
    Array.from({ length: 10 }, (_, k) => permit(p, STATUSES[k % STATUSES.length])),
    renumber,
    readFilledBlocks(b, p),
  );
  expect((await a.BlockTally.find({ project_id: p }).lean()).map((r) => [r.block, r.filled])).toEqual([[0, 24]]);
  // Places 31…130 fill blocks 1, 2, 3 and 4: the newest FILLED_READS_MAX (3 and 4) are read, 1 and 2 are left to readers.
  expect(FILLED_READS_MAX).toBe(2);
  await insertRegistered(
    a,
    p,
    Array.from({ length: 100 }, (_, k) => permit(p, STATUSES[(k * 3) % STATUSES.length])),
    renumber,
    hook,
  );
  expect(await readBlocks()).toEqual([0, 3, 4]);
  // A count reads the rest: blocks 1 and 2, and 5 (places 125–130, not full); its figures are the store's.
  const counts = await statusCounts(b, p);
  expect(await readBlocks()).toEqual([0, 1, 2, 3, 4, 5]);
  for (const s of STATUSES) expect([s, counts?.byStatus[s] ?? 0]).toEqual([s, await a.Permit.countDocuments({ project_id: p, status: s })]);
});
