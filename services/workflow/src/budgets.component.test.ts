/**
 * Store command budgets of the workflow service (issue 12 item 6): the real service in-process on
 * a real store, and the number of commands its own connection sends per operation, counted with
 * the driver's command monitoring. A budget is a ceiling that does not depend on the data size
 * (beyond chunking), so a change that adds round trips, or makes them grow with the permits, fails
 * here before any benchmark would notice. The budgets hold on MongoDB as on FerretDB: they count
 * what the service asks, not how the store answers.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createClient, createLogger, DEV_JWT_SECRET, mintToken, type Role, type StartedService } from '@ptw/common';
import { connectMongo, countStoreCommands, registerModels, type CommandCounter, type Models } from '@ptw/db';
import { MAX_LIST_DEPTH, MAX_SPLIT_QUERIES, registerUnlisted } from '@ptw/domain';
import { commonPb, workflowPb } from '@ptw/proto';
import { testStore } from '@ptw/devstore';
import type { Connection } from 'mongoose';
import { start } from './main';
import { seed } from './seed';

jest.setTimeout(300_000);

const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
const H = 3600_000;
// Small batches keep the run short on FerretDB's SQLite backend, whose updates scan the collection.
const JOB_BATCH = 50;
let store: { url: string; stop(): Promise<void> };
let svc: StartedService;
let conn: Connection;
let m: Models;
let counter: CommandCounter;
let wf: ReturnType<typeof createClient<workflowPb.WorkflowServiceClient>>['call'];

const as = async (user: string, role: Role, projects: string[]) => ({ token: await mintToken(auth, { user, role, projects, ttlSeconds: 3600 }) });
const filter = (f: Partial<commonPb.PermitFilter>) => commonPb.PermitFilter.fromPartial(f);

let n = 0;
function permitDoc(project: string, status: string, extra: Record<string, unknown> = {}) {
  n++;
  const created = new Date(Date.now() - n * 60_000);
  return {
    permit_number: `PTW-2031-${String(n).padStart(6, '0')}`,
    project_id: project,
    permit_type_id: 'hot-work',
    title: `Budget permit ${n}`,
    status,
    created_by: 'u-worker',
    version: 3,
    created_at: created,
    updated_at: created,
    ...extra,
  };
}

/** Runs `fn` and returns the commands the service sent meanwhile, with their names for the failure message. */
async function commandsOf(fn: () => Promise<unknown>): Promise<{ commands: number; byName: Record<string, number> }> {
  const { commands, byName } = await counter.measure(fn);
  return { commands, byName };
}

beforeAll(async () => {
  store = await testStore('workflow_budgets');
  // Before the service connects: its connection turns monitoring on only while a counter listens.
  counter = countStoreCommands('ptw-workflow');
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-budget-'));
  svc = await start({
    ...process.env,
    ...auth,
    NODE_ENV: 'test',
    PTW_JOBS_WORKER: 'false',
    PTW_JOB_BATCH_SIZE: String(JOB_BATCH),
    MONGO_URL: store.url,
    PTW_WORKFLOW_ADDR: '127.0.0.1:0',
    PTW_METRICS_LISTEN: '127.0.0.1:0',
    LOG_DIR: logDir,
    LOG_LEVEL: 'warn',
  });
  conn = await connectMongo(store.url, createLogger('test', { stdout: false }), { appName: 'test' });
  m = registerModels(conn);
  // Enough permits that a budget growing with the data could not hide: 3 projects, every status.
  const statuses = ['draft', 'submitted', 'under_review', 'approved', 'active', 'completed', 'cancelled', 'expired'];
  await m.Permit.insertMany(['p1', 'p2', 'p3'].flatMap((p) => Array.from({ length: 120 }, (_, i) => permitDoc(p, statuses[i % statuses.length]))));
  // Seeded straight into the store (older than anything created after): given their places in the
  // registration order before the seed's creates take the next ones, as creates would have.
  await registerUnlisted(m);
  await seed(m);
  wf = createClient(workflowPb.WorkflowServiceClient, `127.0.0.1:${svc.port}`, { defaultDeadlineMs: 120_000 }).call;
});

afterAll(async () => {
  counter?.close();
  await svc?.stop();
  await conn?.close();
  await store?.stop();
});

describe('permit list', () => {
  // p1's permits were created one a minute over the last two hours: its pages lie in the open days.
  it('when a caller with one project lists a page without filters, then the place hint, the two reads that find its last place and a read per block of places', async () => {
    const who = await as('u-worker', 'worker', ['p1']);
    const first = await commandsOf(() => wf.listPermits({ filter: undefined, page: 1, page_size: 20 }, who));
    // the project's shared place hint only: the store's registration mark was read at the service's start
    expect(first.byName['find counters']).toBe(1);
    // A process's first look finds the last place by doubling then halving: 2 × ⌈log2 121⌉ probes at most.
    expect(first.byName['find permits']).toBeLessThanOrEqual(2 + 2 * 7 + 2);
    for (const page of [1, 3]) {
      const r = await commandsOf(() => wf.listPermits({ filter: undefined, page, page_size: 20 }, who));
      // the place hint, 2 probes of the last place, then the 1 or 2 blocks of 25 places the page covers
      expect(r.byName['find permits']).toBeLessThanOrEqual(4);
      expect(r.commands).toBeLessThanOrEqual(6);
    }
    const list = await wf.listPermits({ filter: undefined, page: 1, page_size: 20 }, who);
    expect(list.count).toBe(await m.Permit.countDocuments({ project_id: 'p1' }));
  });

  it('when a caller with three projects lists, then a few commands per project without filters (2 per project past the merge depth); two statuses in one project, a few by block readings', async () => {
    const who = await as('u-manager', 'manager', ['p1', 'p2', 'p3']);
    await wf.listPermits({ filter: undefined, page: 1, page_size: 10 }, who);
    const all = await counter.measure(() => wf.listPermits({ filter: undefined, page: 2, page_size: 10 }, who));
    // per project: its place hint, 2 probes of the last place, the 1 or 2 blocks holding its 20 newest places
    expect(all.commands).toBeLessThanOrEqual(3 * 5);
    const scope = { project_id: { $in: ['p1', 'p2', 'p3'] } };
    const expected = await m.Permit.find(scope).sort({ created_at: -1, _id: -1 }).skip(10).limit(10).lean();
    expect(all.result.results.map((p) => p.id)).toEqual(expected.map((p) => String(p._id)));
    expect(all.result.count).toBe(await m.Permit.countDocuments(scope));
    // Past the merge depth: one read of each project's ids and creation times, then one read per permit shown.
    const deep = await counter.measure(() => wf.listPermits({ filter: undefined, page: 3, page_size: 100 }, who));
    expect(deep.commands).toBe(3 + deep.result.results.length);
    expect(deep.result.results.length).toBeGreaterThan(0);
    // Two statuses in one project, by block readings: the first list reads the project's blocks
    // (none had a reading), the next ones the place hint and 2 probes, the readings, and per status the 1–2 blocks holding the page.
    const twoStatuses = () => wf.listPermits({ filter: filter({ status: ['active', 'draft'], project: 'p2' }), page: 1, page_size: 10 }, who);
    await twoStatuses();
    const two = await counter.measure(twoStatuses);
    expect(two.commands).toBeLessThanOrEqual(1 + 2 + 1 + 2 * 2);
    const statusScope = { project_id: 'p2', status: { $in: ['active', 'draft'] } };
    expect(two.result.count).toBe(await m.Permit.countDocuments(statusScope));
  });

  it('when a project is searched with q (its text readings current), then the place hint, 2 probes, the status and text readings, the marks, and one read per permit shown', async () => {
    const who = await as('u-manager', 'manager', ['p1']);
    const search = () => wf.listPermits({ filter: filter({ q: 'permit', project: 'p1' }), page: 1, page_size: 10 }, who);
    await search();
    const r = await counter.measure(search);
    expect(r.result.results.length).toBeGreaterThan(0);
    expect(r.commands).toBeLessThanOrEqual(6 + r.result.results.length);
    const rx = { $regex: 'permit', $options: 'i' };
    expect(r.result.count).toBe(await m.Permit.countDocuments({ project_id: 'p1', $or: [{ title: rx }, { permit_number: rx }, { location: rx }, { description: rx }] }));
  });

  it('when a caller has more projects than the split limit, then the service sends one read of the matches and one per permit shown', async () => {
    const projects = Array.from({ length: MAX_SPLIT_QUERIES + 1 }, (_, i) => `p${i + 1}`);
    const who = await as('u-manager', 'manager', projects);
    const r = await counter.measure(() => wf.listPermits({ filter: undefined, page: 1, page_size: 20 }, who));
    expect(r.commands).toBe(1 + r.result.results.length);
    expect(r.result.results.length).toBeGreaterThan(0);
  });

  it('when a page lies past the deepest listable result, then INVALID_ARGUMENT naming page, and nothing is sent to the store', async () => {
    const who = await as('u-worker', 'worker', ['p1']);
    const r = await commandsOf(() =>
      expect(wf.listPermits({ filter: undefined, page: MAX_LIST_DEPTH / 100 + 1, page_size: 100 }, who)).rejects.toMatchObject({
        code: 3,
        details: expect.stringMatching(/^page: only the first 10000 results/),
      }),
    );
    expect(r.commands).toBe(0);
  });
});

describe('one permit', () => {
  let id = '';
  let version = 0;

  it('when a permit is created, then at most 8 commands (type, number, 1 or 2 probes of the last place of its project, permit, its place published, revision, audit)', async () => {
    const who = await as('u-worker', 'worker', ['p1']);
    const data = { permit_type_id: 'hot-work', title: 'Budgeted', planned_start_time: new Date(Date.now() + H).toISOString(), planned_end_time: new Date(Date.now() + 5 * H).toISOString() };
    const r = await counter.measure(() => wf.createPermit({ data }, who));
    ({ id, version } = r.result);
    expect(r.commands).toBeLessThanOrEqual(8);
  });

  it('when a permit is read, then 1 command', async () => {
    const who = await as('u-worker', 'worker', ['p1']);
    const r = await commandsOf(() => wf.getPermit({ id }, who));
    expect(r.commands).toBe(1);
  });

  it('when a field no search reads is edited, then at most 4 commands (read, version claim, guarded update, audit)', async () => {
    const who = await as('u-worker', 'worker', ['p1']);
    const r = await counter.measure(() => wf.updatePermit({ id, version, changes: { priority: 'high' } }, who));
    expect(r.result.version).toBe(version + 1);
    version = r.result.version;
    expect(r.commands).toBeLessThanOrEqual(4);
  });

  it("when a searched field is edited, then at most 6 commands (read, the block's edit mark and, first in its 10 s slot, the block's older marks deleted, version claim, guarded update, audit)", async () => {
    const who = await as('u-worker', 'worker', ['p1']);
    const r = await counter.measure(() => wf.updatePermit({ id, version, changes: { location: 'Rack 9' } }, who));
    expect(r.result.version).toBe(version + 1);
    expect(r.commands).toBeLessThanOrEqual(6);
  });

  it('when a permit is submitted, then at most 10 commands (read, claim, update with its pending mark, audit, type, steps, its block read again with the reading saved and older ones deleted, mark cleared)', async () => {
    const who = await as('u-worker', 'worker', ['p1']);
    const r = await commandsOf(() => wf.transitionPermit({ id, status: 'submitted', comments: '' }, who));
    expect(r.commands).toBeLessThanOrEqual(10);
  });
});

describe('auto_expire_permits', () => {
  async function dueRun(count: number) {
    const end = new Date(Date.now() - H);
    await m.Permit.insertMany(Array.from({ length: count }, () => permitDoc('p2', 'active', { planned_end_time: end, version: 5 + (n % 3) })));
    const manager = await as('u-manager', 'manager', ['p1', 'p2']);
    const run = await counter.measure(() => wf.runJob({ name: 'auto_expire_permits' }, manager));
    expect(run.result.outcome).toBe('success');
    return run;
  }

  it('when 100 and then 200 permits are due, then the commands grow with the batches only (a fixed budget per 1,000 permits)', async () => {
    const first = await dueRun(100);
    expect(await m.Permit.countDocuments({ project_id: 'p2', status: 'expired' })).toBe(100 + 15);
    const second = await dueRun(200);
    // Per batch: version claims, grouped guarded update, audit events, notifications, and at most
    // one getMore of the cursor; plus the run's own bookkeeping and the cursor's find. With batches
    // of 500 (the default) that is 10 + 5 × 2 = 20 commands per 1,000 permits.
    const perBatch = 5;
    const fixed = 10;
    const budget = (permits: number) => fixed + perBatch * Math.ceil(permits / JOB_BATCH);
    expect(first.commands).toBeLessThanOrEqual(budget(100));
    expect(second.commands).toBeLessThanOrEqual(budget(200));
    expect(second.commands - first.commands).toBeLessThanOrEqual(perBatch * (100 / JOB_BATCH));
    expect(await m.Permit.countDocuments({ project_id: 'p2', status: 'expired' })).toBe(300 + 15);
    expect(await m.Notification.countDocuments({ type: 'ptw_expired' })).toBe(300);
  });
});
