/**
 * The default permit list (no filter but the projects) served by registration order (@ptw/domain
 * registration.ts): through the real service on a real store, permits seeded without a place are
 * registered at the service's first list, and then every page and count equal what the plain
 * sorted query and countDocuments return, for dense, sparse, old-only, empty and busy-today projects.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createClient, createLogger, DEV_JWT_SECRET, mintToken, type Role, type StartedService } from '@ptw/common';
import { connectMongo, countStoreCommands, registerModels, type CommandCounter, type Models } from '@ptw/db';
import { registerUnlisted } from '@ptw/domain';
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

let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  store = await testStore('workflow_list');
  counter = countStoreCommands('ptw-workflow');
  env = {
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
    // dense: 5 a day over 60 days
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
  // Seeded straight into the store after the seed's creates registered the store: given places now.
  await registerUnlisted(m);
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
  expect((await m.Permit.findById(made.id).lean())!.list_seq).toBe(after.count);
});

it('when permits are written without a place after the first list (an older replica during an upgrade), then they are listed once registered', async () => {
  await m.Permit.insertMany([permitAt('l8', Date.now() - 1000), permitAt('l8', Date.now())]);
  await registerUnlisted(m);
  await expectSameAsReference(['l8'], [1]);
  await expectSameAsReference(['l1', 'l8'], [1]);
});

it('when a service starts on a store whose permits have no place (an older version wrote them), then it gives them places in creation order before serving', async () => {
  const at = Date.now() - 3 * DAY;
  // As an older version wrote them: every field (the schema's defaults) but a place.
  await m.Permit.collection.insertMany([new m.Permit(permitAt('l6', at)).toObject(), new m.Permit(permitAt('l6', at - DAY)).toObject()]);
  await m.Counter.deleteOne({ _id: 'migration:permit_list_seq' });
  const again = await start({ ...env, PTW_STORE_BACKEND: 'postgresql' });
  try {
    const placed = ((await m.Permit.find({ project_id: 'l6' }).lean()) as { list_seq?: number; created_at: Date }[]).sort((a, b) => (a.list_seq ?? 0) - (b.list_seq ?? 0));
    expect(placed.map((p) => [p.list_seq, new Date(p.created_at).getTime()])).toEqual([
      [1, at - DAY],
      [2, at],
    ]);
    expect(await m.Counter.exists({ _id: 'migration:permit_list_seq' })).not.toBeNull();
    await expectSameAsReference(['l6'], [1]);
  } finally {
    await again.stop();
  }
});

it('when the store is FerretDB on SQLite, then the default list is one count and one page query (the same page)', async () => {
  const who = await as('manager', ['l1']);
  const r = await counter.measure(() => wfSqlite.listPermits({ filter: undefined, page: 1, page_size: 20 }, who));
  expect(r.commands).toBe(2);
  const want = await reference(['l1'], 1, 20);
  expect({ count: r.result.count, ids: r.result.results.map((p) => p.id) }).toEqual({ count: want.count, ids: want.ids });
});
