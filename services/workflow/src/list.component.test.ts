/**
 * The default permit list (no filter but the projects) served by day buckets (@ptw/domain list.ts):
 * through the real service on a real store, every page and count equal what the plain sorted query
 * and countDocuments return, for dense, sparse, old-only, empty and busy-today projects, and the
 * saved "created before" figure is rolled forward, recounted or left alone as it should.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createClient, createLogger, DEV_JWT_SECRET, mintToken, type Role, type StartedService } from '@ptw/common';
import { connectMongo, countStoreCommands, registerModels, utcDay, type CommandCounter, type Models } from '@ptw/db';
import { backfillCreatedDay, CLOSE_MARGIN_MS } from '@ptw/domain';
import { testStore } from '@ptw/devstore';
import { workflowPb } from '@ptw/proto';
import type { Connection } from 'mongoose';
import { start } from './main';
import { seed } from './seed';

jest.setTimeout(300_000);

const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
const H = 3600_000;
const DAY = 24 * H;
let store: { url: string; stop(): Promise<void> };
let svc: StartedService;
let conn: Connection;
let m: Models;
let wf: ReturnType<typeof createClient<workflowPb.WorkflowServiceClient>>['call'];
let onSqlite: StartedService;
let wfSqlite: ReturnType<typeof createClient<workflowPb.WorkflowServiceClient>>['call'];
let counter: CommandCounter;
const as = async (role: Role, projects: string[]) => ({ token: await mintToken(auth, { user: 'u-list', role, projects, ttlSeconds: 3600 }) });

let n = 0;
function permitAt(project: string, at: number) {
  n++;
  return {
    permit_number: `PTW-2032-${String(n).padStart(6, '0')}`,
    project_id: project,
    permit_type_id: 'hot-work',
    title: `List ${n}`,
    status: 'draft',
    created_by: 'u-worker',
    version: 1,
    created_at: new Date(at),
    updated_at: new Date(at),
  };
}

/** What the plain query returns: the reference every page is held to. */
async function reference(projects: string[], page: number, size: number) {
  const q = { project_id: { $in: projects } };
  const docs = await m.Permit.find(q)
    .sort({ created_at: -1, _id: -1 })
    .skip((page - 1) * size)
    .limit(size)
    .lean();
  return { count: await m.Permit.countDocuments(q), ids: docs.map((d) => String(d._id)) };
}

async function expectSameAsReference(projects: string[], pages: number[], size = 20) {
  const who = await as('manager', projects);
  for (const page of pages) {
    const got = await wf.listPermits({ filter: undefined, page, page_size: size }, who);
    const want = await reference(projects, page, size);
    expect({ projects, page, count: got.count, ids: got.results.map((p) => p.id) }).toEqual({ projects, page, count: want.count, ids: want.ids });
  }
}

beforeAll(async () => {
  store = await testStore('workflow_list');
  counter = countStoreCommands('ptw-workflow');
  const env = {
    ...process.env,
    ...auth,
    NODE_ENV: 'test',
    PTW_JOBS_WORKER: 'false',
    MONGO_URL: store.url,
    PTW_WORKFLOW_ADDR: '127.0.0.1:0',
    PTW_METRICS_LISTEN: '127.0.0.1:0',
    LOG_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-list-')),
    LOG_LEVEL: 'warn',
  };
  svc = await start({ ...env, PTW_STORE_BACKEND: 'postgresql' });
  // The same store, but the service told it is FerretDB on SQLite (only `_id` pushed down).
  onSqlite = await start({ ...env, PTW_STORE_BACKEND: 'sqlite' });
  conn = await connectMongo(store.url, createLogger('test', { stdout: false }), { appName: 'test' });
  m = registerModels(conn);
  await seed(m);
  const now = Date.now();
  const docs = [
    // dense: 5 a day over 60 days (page 10 of 20 lies past the walk's 39 days: the rest query)
    ...Array.from({ length: 300 }, (_, i) => permitAt('l1', now - Math.floor(i / 5) * DAY - (i % 5) * 37 * 60_000 - 1000)),
    // old only: 100 to 130 days ago (the walk finds nothing)
    ...Array.from({ length: 30 }, (_, i) => permitAt('l2', now - (100 + i) * DAY)),
    // busy in the last hour (today and, around midnight, the still open day before)
    ...Array.from({ length: 50 }, (_, i) => permitAt('l4', now - i * 60_000 - 1000)),
    // two permits in the same millisecond: the order falls back to _id
    permitAt('l5', now - 2 * DAY),
    permitAt('l5', now - 2 * DAY),
  ];
  await m.Permit.insertMany(docs);
  wf = createClient(workflowPb.WorkflowServiceClient, `127.0.0.1:${svc.port}`, { defaultDeadlineMs: 120_000 }).call;
  wfSqlite = createClient(workflowPb.WorkflowServiceClient, `127.0.0.1:${onSqlite.port}`, { defaultDeadlineMs: 120_000 }).call;
});

afterAll(async () => {
  counter?.close();
  await onSqlite?.stop();
  await svc?.stop();
  await conn?.close();
  await store?.stop();
});

it('when a project is dense, old-only, empty or busy today, then every page and count equal the plain query', async () => {
  await expectSameAsReference(['l1'], [1, 2, 5, 9, 10, 11]);
  await expectSameAsReference(['l2'], [1, 2]);
  await expectSameAsReference(['l3'], [1]);
  await expectSameAsReference(['l4'], [1, 3]);
  await expectSameAsReference(['l5'], [1]);
  await expectSameAsReference(['l1', 'l2', 'l3', 'l4', 'l5'], [1, 2, 4, 10]);
  await expectSameAsReference(['l1', 'l4'], [1, 2], 100);
});

it('when a permit is created, then it heads the next page and the count grows by one', async () => {
  const who = await as('worker', ['l1']);
  const before = await wf.listPermits({ filter: undefined, page: 1, page_size: 20 }, who);
  const made = await wf.createPermit({ data: { permit_type_id: 'hot-work', title: 'Newest', project_id: 'l1' } }, who);
  const after = await wf.listPermits({ filter: undefined, page: 1, page_size: 20 }, who);
  expect(after.count).toBe(before.count + 1);
  expect(after.results[0].id).toBe(made.id);
  expect((await m.Permit.findById(made.id).lean())!.created_day).toBe(utcDay(new Date()));
});

it('when the saved figure is some days old, then it is rolled forward; over a month old or wrong by then, recounted; ahead of this clock, left alone', async () => {
  const closed = utcDay(Date.now() - CLOSE_MARGIN_MS);
  const dayAgo = (d: number) => utcDay(Date.parse(`${closed}T00:00:00Z`) - d * DAY);
  const exactBefore = async (day: string) => m.Permit.countDocuments({ project_id: 'l1', created_at: { $lt: new Date(`${day}T00:00:00Z`) } });

  await m.ListCount.updateOne({ _id: 'l1' }, { $set: { day: dayAgo(10), before: await exactBefore(dayAgo(10)) } }, { upsert: true });
  await expectSameAsReference(['l1'], [1]);
  expect(await m.ListCount.findById('l1').lean()).toMatchObject({ day: closed, before: await exactBefore(closed) });

  await m.ListCount.updateOne({ _id: 'l1' }, { $set: { day: dayAgo(40), before: 123_456 } });
  await expectSameAsReference(['l1'], [1]);
  expect(await m.ListCount.findById('l1').lean()).toMatchObject({ day: closed, before: await exactBefore(closed) });

  const ahead = utcDay(Date.parse(`${closed}T00:00:00Z`) + 2 * DAY);
  await m.ListCount.updateOne({ _id: 'l1' }, { $set: { day: ahead, before: await exactBefore(ahead) } });
  await expectSameAsReference(['l1'], [1]);
  expect((await m.ListCount.findById('l1').lean())!.day).toBe(ahead);
});

it('when permits of an older version lack created_day, then the backfill gives it to them once and later starts only read its mark', async () => {
  const at = Date.now() - 3 * DAY;
  // As an older version wrote them: every field but created_day.
  const older = (project: string, t: number) => {
    const { created_day: _, ...doc } = new m.Permit(permitAt(project, t)).toObject();
    return doc;
  };
  await m.Permit.collection.insertMany([older('l6', at), older('l6', at - DAY)]);
  await m.Counter.deleteOne({ _id: 'migration:permit_created_day' });
  expect(await backfillCreatedDay(m)).toBe(2);
  expect((await m.Permit.find({ project_id: 'l6' }).lean()).map((p) => p.created_day).sort()).toEqual([utcDay(at - DAY), utcDay(at)]);
  await expectSameAsReference(['l6'], [1]);
  await m.Permit.collection.insertOne(older('l7', at));
  expect(await backfillCreatedDay(m)).toBe(0);
  expect((await m.Permit.findOne({ project_id: 'l7' }).lean())!.created_day).toBeUndefined();
});

it('when the store is FerretDB on SQLite, then the default list is one count and one page query (the same page)', async () => {
  const who = await as('manager', ['l1']);
  const r = await counter.measure(() => wfSqlite.listPermits({ filter: undefined, page: 1, page_size: 20 }, who));
  expect(r.commands).toBe(2);
  const want = await reference(['l1'], 1, 20);
  expect({ count: r.result.count, ids: r.result.results.map((p) => p.id) }).toEqual({ count: want.count, ids: want.ids });
});
