/**
 * `q` searches by text readings on the real store: counts and pages equal the store's own regex
 * query, after edits (by the product's edit, from another process), after status changes, after new
 * permits, with an edit landing after a reading began, with two processes editing, moving and
 * searching the same blocks at once, and across projects through the list.
 */
import type { Principal } from '@ptw/common';
import { countStoreCommands, type Models } from '@ptw/db';
import { Types } from 'mongoose';
import { updatePermit } from './permits/commands';
import { listPermits, permitQuery } from './permits/query';
import type { PermitDoc } from './permits/types';
import { guardedPermitWrite } from './permits/versioning';
import { insertRegistered } from './registration';
import { refreshBlocksOf } from './status-blocks';
import { EDIT_GRACE_MS, markEdited, searchPage } from './text-blocks';
import { storePair } from '../../../test/support/store-pair';

jest.setTimeout(120_000);

const pair = storePair('text-blocks', ['tb-a', 'tb-b']);
let a: Models;
let b: Models;
let n = 0;

beforeAll(() => {
  ({ a, b } = pair);
});

const STATUSES = ['draft', 'submitted', 'active', 'completed', 'cancelled'];
const TITLES = ['Erect scaffold at rack 3', 'Weld bracket on pump', 'SCAFFOLDING inspection', 'Échafaudage côté est', 'Paint the échafaudage'];
const renumber = async () => `PTW-2044-${String(++n).padStart(6, '0')}`;
const permit = (project: string, k: number) => ({
  _id: new Types.ObjectId(),
  project_id: project,
  permit_type_id: 'hot-work',
  title: TITLES[k % TITLES.length],
  location: k % 7 === 0 ? 'Scaffold yard' : `Unit ${k % 9}`,
  description: k % 11 === 0 ? undefined : 'Replace the cracked support bracket.',
  status: STATUSES[(k * 3) % STATUSES.length],
  created_by: 'u1',
  version: 1 + (k % 3),
  created_at: new Date(Date.now() + k),
  updated_at: new Date(),
  permit_number: `PTW-2044-${String(++n).padStart(6, '0')}`,
});

async function seed(m: Models, project: string, count: number) {
  const docs = Array.from({ length: count }, (_, k) => permit(project, k));
  await insertRegistered(m, project, docs, renumber);
  return docs;
}

const manager = (...projects: string[]): Principal => ({ user_id: 'u-mgr', role: 'manager', project_ids: projects });

/** The store's own answer: permitQuery's filter (the `$or` of regexes), by registration order. */
async function raw(m: Models, project: string, q: string, statuses: string[] | 'all', skip: number, size: number) {
  const filter = { ...permitQuery(manager(project), { q }), project_id: project, ...(statuses === 'all' ? {} : { status: { $in: statuses } }) };
  const count = await m.Permit.countDocuments(filter);
  const page = (await m.Permit.find(filter, { list_seq: 1 }).sort({ list_seq: -1 }).skip(skip).limit(size).lean()) as { list_seq: number }[];
  return { count, seqs: page.map((d) => d.list_seq) };
}

async function ours(m: Models, project: string, q: string, statuses: string[] | 'all', skip: number, size: number) {
  const pattern = (permitQuery(manager(project), { q }).$or as { title: { $regex: string } }[])[0].title.$regex;
  const { count, docs } = await searchPage(m, project, statuses, new RegExp(pattern, 'iu'), skip, size);
  return { count, seqs: docs.map((d) => (d as unknown as { list_seq: number }).list_seq) };
}

it('when 130 permits are searched for several words, statuses and depths, then count and page equal the store', async () => {
  const p = 'tb-p1';
  await seed(a, p, 130);
  for (const q of ['scaffold', 'SCAFF', 'échafaudage', 'ÉCHAF', 'PTW-2044', 'unit 4', 'bracket', 'nothing like it', 'a.b', '(']) {
    for (const statuses of ['all', ['draft'], ['completed', 'cancelled']] as const) {
      for (const [skip, size] of [
        [0, 20],
        [20, 20],
        [7, 13],
        [120, 50],
      ]) {
        const want = await raw(a, p, q, statuses as string[] | 'all', skip, size);
        expect({ q, statuses, skip, size, ...(await ours(b, p, q, statuses as string[] | 'all', skip, size)) }).toEqual({ q, statuses, skip, size, ...want });
      }
    }
  }
  // One text reading per block: 130 places = blocks 0…5.
  expect(await a.BlockText.countDocuments({ project_id: p })).toBe(6);
});

it('when a permit is edited by the product from another process, then the next search finds its new title and not the old one', async () => {
  const p = 'tb-p2';
  const docs = await seed(a, p, 30);
  expect((await ours(a, p, 'crane lift', 'all', 0, 50)).count).toBe(0);
  const target = docs.find((d) => d.status === 'draft')!;
  await updatePermit(b, manager(p), String(target._id), target.version, { title: 'Crane lift over the scaffold' });
  expect(await ours(a, p, 'crane lift', 'all', 0, 50)).toEqual(await raw(a, p, 'crane lift', 'all', 0, 50));
  expect((await ours(a, p, 'crane lift', 'all', 0, 50)).count).toBe(1);
  expect(await ours(a, p, 'scaffold', 'all', 0, 50)).toEqual(await raw(a, p, 'scaffold', 'all', 0, 50));
  // The edit's mark is younger than the grace: it stays, and the block is read again by each search.
  expect(await a.BlockMark.countDocuments({ project_id: p })).toBe(1);
});

it('when an edit lands after a search began reading its block, then its mark keeps the block read again until the grace has passed', async () => {
  const p = 'tb-p3';
  const docs = await seed(a, p, 10);
  const doc = (await a.Permit.findById(docs[0]._id).lean()) as PermitDoc;
  await markEdited(a, doc);
  expect(await a.BlockMark.countDocuments({ project_id: p })).toBe(1);
  // A search reads the block before the edit's write lands.
  expect((await ours(b, p, 'forklift', 'all', 0, 10)).count).toBe(0);
  await guardedPermitWrite(a, doc, { title: 'Forklift repair' }, 'u1', new Date());
  expect((await ours(b, p, 'forklift', 'all', 0, 10)).count).toBe(1);
  // Once the mark is older than the grace, a reading clears it.
  await a.BlockMark.updateOne({ project_id: p }, { $set: { at: new Date(Date.now() - 2 * EDIT_GRACE_MS) } });
  expect((await ours(b, p, 'forklift', 'all', 0, 10)).count).toBe(1);
  expect(await a.BlockMark.countDocuments({ project_id: p })).toBe(0);
});

it("when a block is edited in many slots without a search, then it keeps one mark, the newest slot's, and the next search still reads it again", async () => {
  const p = 'tb-p7';
  const docs = await seed(a, p, 5);
  expect((await ours(a, p, 'hoist', 'all', 0, 10)).count).toBe(0);
  const doc = (await a.Permit.findById(docs[1]._id).lean()) as PermitDoc;
  const t0 = Date.now();
  // Five edits ten seconds apart, the last one writing the permit; two of the same slot.
  for (const t of [t0, t0 + 10_000, t0 + 20_000, t0 + 20_001, t0 + 30_000]) await markEdited(b, doc, t);
  await guardedPermitWrite(b, doc, { description: 'Hoist the pump motor' }, 'u1', new Date());
  const marks = (await a.BlockMark.find({ project_id: p }).lean()) as { at: Date }[];
  expect(marks.map((m) => m.at.getTime())).toEqual([(Math.floor((t0 + 30_000) / 10_000) + 1) * 10_000]);
  expect(await ours(a, p, 'hoist', 'all', 0, 10)).toEqual(await raw(a, p, 'hoist', 'all', 0, 10));
  expect((await ours(a, p, 'hoist', 'all', 0, 10)).count).toBe(1);
});

it('when one process marks a block again within the slot it marked, then nothing is sent to the store; another process inserts nothing new', async () => {
  const p = 'tb-p8';
  const docs = await seed(a, p, 3);
  const doc = (await a.Permit.findById(docs[0]._id).lean()) as PermitDoc;
  // Counted commands need a connection opened while a counter listens (the driver's monitoring).
  const counter = countStoreCommands('tb-c');
  const c = await pair.connect('tb-c');
  // Mongoose creates each model's collection once, on its first use.
  await Promise.all(Object.values(c).map((model) => model.init()));
  const first = await counter.measure(() => markEdited(c, doc));
  const again = await counter.measure(() => markEdited(c, doc));
  expect({ first: first.commands, again: again.commands }).toEqual({ first: 2, again: 0 });
  await markEdited(b, doc);
  expect(await a.BlockMark.countDocuments({ project_id: p })).toBe(1);
});

it('when a status changes (with its block read again, as a transition does) or permits are added, then status-filtered searches follow', async () => {
  const p = 'tb-p4';
  const docs = await seed(a, p, 40);
  const q = 'scaffold';
  expect(await ours(a, p, q, ['cancelled'], 0, 50)).toEqual(await raw(a, p, q, ['cancelled'], 0, 50));
  const target = docs.find((d) => d.status === 'draft' && /scaffold/i.test(d.title))!;
  const doc = (await a.Permit.findById(target._id).lean()) as PermitDoc;
  const moved = await guardedPermitWrite(b, doc, { status: 'cancelled' }, 'u1', new Date());
  await refreshBlocksOf(b, [moved]);
  expect(await ours(a, p, q, ['cancelled'], 0, 50)).toEqual(await raw(a, p, q, ['cancelled'], 0, 50));
  expect(await ours(a, p, q, ['draft'], 0, 50)).toEqual(await raw(a, p, q, ['draft'], 0, 50));
  await insertRegistered(b, p, [permit(p, 0), permit(p, 5)], renumber);
  expect(await ours(a, p, q, 'all', 0, 50)).toEqual(await raw(a, p, q, 'all', 0, 50));
});

it('when two processes edit titles, move statuses and search the same blocks at once, then once they stop every search equals the store', async () => {
  const p = 'tb-race';
  const docs = await seed(a, p, 60);
  const words = ['crane', 'hoist', 'ladder'];
  const edit = async (m: Models, k: number) => {
    const doc = (await m.Permit.findById(docs[k % docs.length]._id).lean()) as PermitDoc;
    if (['completed', 'cancelled'].includes(doc.status)) return;
    // A lost race is a 409, as a client would get: the permit keeps the other writer's change.
    await updatePermit(m, manager(p), String(doc._id), doc.version, { title: `${words[k % 3]} job ${k}` }).catch(() => undefined);
  };
  const moveTo = async (m: Models, k: number) => {
    const doc = (await m.Permit.findById(docs[(k * 7) % docs.length]._id).lean()) as PermitDoc;
    const moved = await guardedPermitWrite(m, doc, { status: ['draft', 'submitted', 'active'][k % 3] }, 'u1', new Date()).catch(() => null);
    if (moved) await refreshBlocksOf(m, [moved]);
  };
  // Edits, moves and searches at once; then, with every block read, edits and searches only.
  const round = (from: number, moves: boolean) =>
    Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const k = from + i;
        const m = k % 2 ? a : b;
        return Promise.all([edit(m, k), moves ? moveTo(m, k) : undefined, k % 5 === 0 ? ours(k % 2 ? b : a, p, words[k % 3], 'all', 0, 20) : undefined]);
      }),
    );
  await round(0, true);
  for (const q of words) await ours(a, p, q, 'all', 0, 20);
  await round(40, false);
  let found = 0;
  for (const q of words) {
    found += (await raw(a, p, q, 'all', 0, 1)).count;
    for (const statuses of ['all', ['draft'], ['submitted', 'active']] as const) {
      const s = statuses as string[] | 'all';
      expect({ q, statuses, ...(await ours(b, p, q, s, 0, 60)) }).toEqual({ q, statuses, ...(await raw(a, p, q, s, 0, 60)) });
    }
  }
  expect(found).toBeGreaterThanOrEqual(5);
});

it("when a manager of two projects searches through the list, then the count is both projects' and the page the newest matches of either", async () => {
  await seed(a, 'tb-p5', 35);
  await seed(a, 'tb-p6', 20);
  const who = manager('tb-p5', 'tb-p6');
  const filter = { ...permitQuery(who, { q: 'scaffold' }), project_id: { $in: ['tb-p5', 'tb-p6'] } };
  const count = await a.Permit.countDocuments(filter);
  const ids = ((await a.Permit.find(filter, { _id: 1 }).sort({ created_at: -1, _id: -1 }).limit(10).lean()) as { _id: unknown }[]).map((d) => String(d._id));
  const list = await listPermits(b, who, { q: 'scaffold' }, 1, 10);
  expect(list.count).toBe(count);
  expect(list.results.map((r) => (r as { id: string }).id)).toEqual(ids);
  expect(count).toBeGreaterThan(10);
});
