/**
 * Registration order on the real store: places without gap or duplicate when two processes (two
 * connections) create at once, retried creates, refused numbers, pages read by place, and the
 * registration of permits written without a place.
 */
import { countStoreCommands, type CommandCounter, type Models } from '@ptw/db';
import { Types } from 'mongoose';
import { ensureRegistered, insertRegistered, lastPlace, LIST_BLOCK, projectCount, registeredPage, registerUnlisted } from './registration';
import { storePair } from '../../../test/support/store-pair';

jest.setTimeout(120_000);

let counter: CommandCounter;
const pair = storePair('registration', ['reg-a', 'reg-b'], () => {
  // Before b connects: a connection monitors its commands only when a counter listens then.
  counter = countStoreCommands('reg-b');
});
let a: Models;
let b: Models;
let n = 0;

beforeAll(() => {
  ({ a, b } = pair);
});
afterAll(() => counter?.close());

const number = () => `PTW-2042-${String(++n).padStart(6, '0')}`;
const permit = (project: string, at = new Date()) => ({
  _id: new Types.ObjectId(),
  project_id: project,
  permit_type_id: 'hot-work',
  title: `Permit ${n}`,
  status: 'draft',
  created_by: 'u1',
  version: 1,
  created_at: at,
  updated_at: at,
  permit_number: number(),
});
const renumber = async () => number();

async function places(m: Models, project: string): Promise<number[]> {
  return ((await m.Permit.find({ project_id: project }, { list_seq: 1 }).lean()) as { list_seq?: number }[]).map((p) => p.list_seq ?? -1).sort((x, y) => x - y);
}

it('when two processes create 8 permits 10 times each at once in one project, then the 160 places are 1…160 and the count and pages follow them', async () => {
  const p = 'reg-p1';
  const batches = Array.from({ length: 20 }, (_, k) => ({ m: k % 2 ? a : b, docs: Array.from({ length: 8 }, () => permit(p)) }));
  const out = await Promise.all(batches.map(({ m, docs }) => insertRegistered(m, p, docs, renumber)));
  expect(out.flat().every((o) => o === 'inserted')).toBe(true);
  expect(await places(a, p)).toEqual(Array.from({ length: 160 }, (_, i) => i + 1));
  expect(await lastPlace(a, p)).toBe(160);
  expect(await lastPlace(b, p, 7)).toBe(160);
  expect(await lastPlace(b, p, 500)).toBe(160);
  const head = await registeredPage(a, p, 0, 20);
  expect(head.count).toBe(160);
  expect(head.docs.map((d) => d.list_seq)).toEqual(Array.from({ length: 20 }, (_, i) => 160 - i));
  const deep = await registeredPage(b, p, 100, 30);
  expect(deep.docs.map((d) => d.list_seq)).toEqual(Array.from({ length: 30 }, (_, i) => 60 - i));
  const tail = await registeredPage(a, p, 150, 20);
  expect(tail.docs.map((d) => d.list_seq)).toEqual(Array.from({ length: 10 }, (_, i) => 10 - i));
  expect((await registeredPage(a, p, 160, 20)).docs).toEqual([]);
  // Every place's block is the one its equality read asks for.
  const blocks = (await a.Permit.find({ project_id: p }, { list_seq: 1, list_block: 1 }).lean()) as { list_seq: number; list_block: number }[];
  expect(blocks.every((d) => d.list_block === Math.floor(d.list_seq / LIST_BLOCK))).toBe(true);
});

it('when a create is retried with the same ids, or a number is taken, then nothing is written twice and the places stay without gap', async () => {
  const p = 'reg-p2';
  const first = Array.from({ length: 5 }, () => permit(p));
  expect(await insertRegistered(a, p, first, renumber)).toEqual(Array(5).fill('inserted'));
  const again = [...first.slice(2), permit(p)];
  expect(await insertRegistered(b, p, again, renumber)).toEqual(['exists', 'exists', 'exists', 'inserted']);
  const taken = { ...permit(p), permit_number: first[0].permit_number };
  expect(await insertRegistered(a, p, [taken, permit(p)], renumber)).toEqual(['inserted', 'inserted']);
  expect(await places(a, p)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  expect(new Set(((await a.Permit.find({ project_id: p }).lean()) as { permit_number: string }[]).map((d) => d.permit_number)).size).toBe(8);
});

it('when permits were written without a place, then registration gives them places in creation order after the written ones, once', async () => {
  const p = 'reg-p3';
  await insertRegistered(a, p, [permit(p), permit(p)], renumber);
  const t0 = Date.UTC(2042, 0, 1);
  const raw = [3, 1, 2].map((k) => permit(p, new Date(t0 + k * 1000)));
  await a.Permit.collection.insertMany(raw);
  await a.Permit.collection.insertOne(permit('reg-p4', new Date(t0)));
  expect(await registerUnlisted(b)).toBe(4);
  const byTime = ((await a.Permit.find({ project_id: p, list_seq: { $gt: 2 } }).lean()) as { created_at: Date; list_seq: number }[]).sort((x, y) => x.list_seq - y.list_seq);
  expect(byTime.map((d) => new Date(d.created_at).getTime())).toEqual([1, 2, 3].map((k) => t0 + k * 1000));
  expect(await places(a, p)).toEqual([1, 2, 3, 4, 5]);
  expect(await places(a, 'reg-p4')).toEqual([1]);
  expect(await registerUnlisted(b)).toBe(0);
  // The mark: later starts read it and register nothing.
  await ensureRegistered(a);
  expect(await a.Counter.exists({ _id: 'migration:permit_list_seq' })).not.toBeNull();
  expect((await registeredPage(b, p, 0, 3)).docs.map((d) => d.list_seq)).toEqual([5, 4, 3]);
});

it('when another process wrote permits since a reader last looked, then the shared place hint holds their places when they are answered, and the reader finds the count from it in 3 commands, not by probing its way up', async () => {
  const p = 'reg-hint';
  await insertRegistered(
    a,
    p,
    Array.from({ length: 10 }, () => permit(p)),
    renumber,
  );
  expect(await projectCount(b, p)).toBe(10);
  for (let k = 0; k < 12; k++)
    await insertRegistered(
      a,
      p,
      Array.from({ length: 25 }, () => permit(p)),
      renumber,
    );
  // A create is answered once the hint holds its place: nothing of it is written after the answer.
  expect(Number((await b.Counter.findById(`list_place:${p}`).lean())?.seq)).toBe(310);
  const r = await counter.measure(() => projectCount(b, p));
  expect(r.result).toBe(310);
  // the hint, then the two probes at it (without it: doubling from 10 and halving back, 2 × 9 probes)
  expect(r.byName).toEqual({ 'find counters': 1, 'find permits': 2 });
});

it('when a process writes permits round after round, then it publishes the shared place hint one write at a time and ends at its last place', async () => {
  const p = 'reg-serial';
  const client = a.Permit.db.getClient();
  const mine = new Set<number>();
  let inFlight = 0;
  let most = 0;
  const started = (e: { requestId: number; commandName: string; command: Record<string, unknown> }) => {
    if (e.commandName !== 'update' || e.command.update !== 'counters' || !JSON.stringify(e.command.updates).includes(`list_place:${p}`)) return;
    mine.add(e.requestId);
    most = Math.max(most, ++inFlight);
  };
  const ended = (e: { requestId: number }) => {
    if (mine.delete(e.requestId)) inFlight--;
  };
  client.on('commandStarted', started);
  client.on('commandSucceeded', ended);
  client.on('commandFailed', ended);
  try {
    // Rounds back to back (each answered once its hint is written), then several at once.
    for (let k = 0; k < 30; k++) await insertRegistered(a, p, [permit(p)], renumber);
    await Promise.all(Array.from({ length: 8 }, () => insertRegistered(a, p, [permit(p), permit(p)], renumber)));
    expect(inFlight).toBe(0);
    expect(Number((await a.Counter.findById(`list_place:${p}`).lean())?.seq)).toBe(46);
    expect(most).toBe(1);
  } finally {
    client.off('commandStarted', started);
    client.off('commandSucceeded', ended);
    client.off('commandFailed', ended);
  }
});
