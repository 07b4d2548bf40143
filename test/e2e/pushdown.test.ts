/**
 * The pushdown guard (issue 22 item 2): every hot operation runs against the real services
 * (in-process, over gRPC, on a real store) under the driver's command monitoring, and every query
 * it sends is explained by the store. A query passes when the store pushes it down with an equality
 * that bounds what it can match (libs/db pushdown.ts BOUNDING_KEYS), or when it is on the
 * allow-list below, whose bound each entry states. The next query whose cost grows with a
 * collection fails here before any benchmark sees it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createClient, createLogger, DEV_JWT_SECRET, mintToken, type Role, type StartedService } from '@ptw/common';
import {
  BOUNDING_KEYS,
  captureQueries,
  checkBounded,
  connectMongo,
  describeUnbounded,
  ensureIndexes,
  registerModels,
  SHARED_ALLOWED,
  type AllowedQuery,
  type Models,
  type QueryCapture,
} from '@ptw/db';
import { testStore } from '@ptw/devstore';
import { registerUnlisted } from '@ptw/domain';
import { commonPb, exportPb, syncPb, workflowPb } from '@ptw/proto';
import type { Connection } from 'mongoose';
import { start as startExport } from '../../services/export/src/main';
import { exportRecords, selectPermits } from '../../services/export/src/source';
import { start as startSync } from '../../services/sync/src/main';
import { start as startWorkflow } from '../../services/workflow/src/main';
import { seed } from '../../services/workflow/src/seed';

jest.setTimeout(300_000);

const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
const H = 3600_000;

/** Bounded by something other than a key: each entry says what. */
const ALLOWED: AllowedQuery[] = [
  ...SHARED_ALLOWED,
  { collection: 'permits', fields: ['project_id', 'status'], bound: "one project's permits in one status (filtered list pages, KPI counts): grows with that status, see docs" },
  { collection: 'permits', fields: ['project_id', 'created_at'], ranged: ['created_at'], bound: "a created_from/created_to filter: one project's permits in that window" },
  { collection: 'permits', fields: ['project_id'], bound: "an export selection without filters: at most limit + 1 of one project's permits (no sort)" },
  { collection: 'permits', fields: ['project_id', 'status', 'updated_at'], ranged: ['updated_at'], bound: "KPIs' completed/cancelled today: one project's permits in that status" },
  { collection: 'permits', fields: ['status', 'submitted_at'], ranged: ['submitted_at'], bound: 'health: the permits awaiting verification (open work, system-wide)' },
  { collection: 'permits', fields: ['status', 'verified_at'], ranged: ['verified_at'], bound: 'health: the permits awaiting approval (open work, system-wide)' },
  { collection: 'isolation_points', fields: ['project_id', 'status'], bound: "KPIs: one project's isolated points" },
  {
    collection: 'block_tallies',
    fields: ['project_id'],
    bound: "a status-filtered list: one reading per 25 of the project's permits (@ptw/domain status-blocks.ts), plus readings left by racing writers until the next refresh",
  },
  {
    collection: 'block_texts',
    fields: ['project_id'],
    bound: "a `q` search: one text reading per 25 of the project's permits (@ptw/domain text-blocks.ts), plus readings left by racing writers until the next refresh",
  },
  { collection: 'block_marks', fields: ['project_id'], bound: "a `q` search: at most one edit mark per 25 of the project's permits (@ptw/domain text-blocks.ts)" },
];

let store: { url: string; stop(): Promise<void> };
let capture: { workflow: QueryCapture; sync: QueryCapture; export: QueryCapture; test: QueryCapture };
const services: StartedService[] = [];
let conn: Connection;
let m: Models;
let wf: ReturnType<typeof createClient<workflowPb.WorkflowServiceClient>>['call'];
let sy: ReturnType<typeof createClient<syncPb.SyncServiceClient>>['call'];
let ex: ReturnType<typeof createClient<exportPb.ExportServiceClient>>['call'];
const clients: { close(): void }[] = [];

const as = async (user: string, role: Role, projects: string[]) => ({ token: await mintToken(auth, { user, role, projects, ttlSeconds: 3600 }) });
const filter = (f: Partial<commonPb.PermitFilter>) => commonPb.PermitFilter.fromPartial(f);

let n = 0;
function permitDoc(project: string, status: string, ageMs: number) {
  n++;
  const at = new Date(Date.now() - ageMs);
  return {
    permit_number: `PTW-2033-${String(n).padStart(6, '0')}`,
    project_id: project,
    permit_type_id: 'hot-work',
    title: `Guard permit ${n}`,
    status,
    created_by: 'u-worker',
    version: 1,
    created_at: at,
    updated_at: at,
    submitted_at: at,
    verified_at: at,
    planned_end_time: new Date(Date.now() + H),
  };
}

async function guard(which: QueryCapture, fn: () => Promise<unknown>): Promise<string[]> {
  const { queries } = await which.measure(fn);
  expect(queries.length).toBeGreaterThan(0);
  return describeUnbounded(await checkBounded(conn, queries, BOUNDING_KEYS, ALLOWED));
}

beforeAll(async () => {
  store = await testStore('pushdown_guard');
  capture = { workflow: captureQueries('ptw-workflow'), sync: captureQueries('ptw-sync'), export: captureQueries('ptw-export'), test: captureQueries('guard-export') };
  const env = {
    ...process.env,
    ...auth,
    NODE_ENV: 'test',
    PTW_JOBS_WORKER: 'false',
    MONGO_URL: store.url,
    PTW_METRICS_LISTEN: '127.0.0.1:0',
    LOG_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-guard-')),
    LOG_LEVEL: 'warn',
    PTW_KPI_MAX_AGE_SECONDS: '0',
  };
  const w = await startWorkflow({ ...env, PTW_WORKFLOW_ADDR: '127.0.0.1:0' });
  const s = await startSync({ ...env, PTW_SYNC_ADDR: '127.0.0.1:0' });
  const e = await startExport({ ...env, PTW_EXPORT_ADDR: '127.0.0.1:0' });
  services.push(w, s, e);
  conn = await connectMongo(store.url, createLogger('test', { stdout: false }), { appName: 'guard-export' });
  m = registerModels(conn);
  await ensureIndexes(conn);
  await seed(m);
  const statuses = ['draft', 'submitted', 'under_review', 'approved', 'active', 'completed'];
  await m.Permit.insertMany(['p1', 'p2'].flatMap((p) => Array.from({ length: 150 }, (_, i) => permitDoc(p, statuses[i % statuses.length], i * 20 * 60_000))));
  // Seeded straight into the store after the services registered the store's permits (once per
  // store, at their start): given their places now, as after a seeding script.
  await registerUnlisted(m);
  const o = { defaultDeadlineMs: 60_000 };
  const cw = createClient(workflowPb.WorkflowServiceClient, `127.0.0.1:${w.port}`, o);
  const cs = createClient(syncPb.SyncServiceClient, `127.0.0.1:${s.port}`, o);
  const ce = createClient(exportPb.ExportServiceClient, `127.0.0.1:${e.port}`, o);
  clients.push(cw, cs, ce);
  [wf, sy, ex] = [cw.call, cs.call, ce.call];
});

afterAll(async () => {
  for (const c of clients) c.close();
  for (const c of Object.values(capture ?? {})) c.close();
  for (const s of services) await s.stop();
  await conn?.close();
  await store?.stop();
});

describe('sync', () => {
  const change = (offline: string, extra: Partial<syncPb.Change> = {}): syncPb.Change => ({
    entity: 'permit',
    op: 'create',
    offline_id: offline,
    data: { permit_type_id: 'hot-work', title: `Guard ${offline}` },
    invalid_reason: '',
    ...extra,
  });

  it('when a fresh batch, the same batch re-sent and a batch of edits are synced, then every query is bounded', async () => {
    const who = await as('u-worker', 'worker', ['p1']);
    const batch = { device_id: 'guard-tab', changes: Array.from({ length: 8 }, (_, i) => change(`g-${i}`)) };
    let applied: syncPb.Applied[] = [];
    expect(await guard(capture.sync, async () => (applied = (await sy.syncOfflineData(batch, who)).applied))).toEqual([]);
    expect(applied).toHaveLength(8);
    expect(await guard(capture.sync, () => sy.syncOfflineData(batch, who))).toEqual([]);
    const edits = applied.slice(0, 2).map((a, i) => change(`e-${i}`, { op: 'update', server_id: a.server_id, client_version: 1, data: { title: `Edited ${i}` } }));
    const stale = change('e-stale', { op: 'update', server_id: applied[2].server_id, client_version: 7, data: { title: 'Stale' } });
    expect(await guard(capture.sync, () => sy.syncOfflineData({ device_id: 'guard-tab', changes: [...edits, stale] }, who))).toEqual([]);
  });

  it('when the sync figures of health are read, then every query is bounded', async () => {
    expect(await guard(capture.sync, async () => sy.getSyncStats({ since: '' }, { token: (await as('svc', 'service', [])).token }))).toEqual([]);
  });
});

describe('workflow', () => {
  it('when lists are read (default, one and two statuses, a deep page, q), then every query is bounded or allowed', async () => {
    const mgr = await as('u-manager', 'manager', ['p1', 'p2']);
    const worker = await as('u-worker', 'worker', ['p1']);
    for (const [who, f, page] of [
      [worker, undefined, 1],
      [mgr, undefined, 2],
      [mgr, filter({ status: ['active'] }), 1],
      [mgr, filter({ status: ['completed', 'draft'] }), 1],
      [worker, undefined, 15],
      [mgr, filter({ q: 'guard permit 1' }), 1],
    ] as const) {
      expect({ f, page, refused: await guard(capture.workflow, () => wf.listPermits({ filter: f, page, page_size: 20 }, who)) }).toEqual({ f, page, refused: [] });
    }
  });

  it('when a permit is created, read, edited and moved through submit and verify, then every query is bounded', async () => {
    const worker = await as('u-worker', 'worker', ['p1']);
    const sup = await as('u-supervisor', 'supervisor', ['p1']);
    let id = '';
    expect(
      await guard(capture.workflow, async () => {
        id = (await wf.createPermit({ data: { project_id: 'p1', permit_type_id: 'hot-work', title: 'Guarded' } }, worker)).id;
      }),
    ).toEqual([]);
    expect(await guard(capture.workflow, () => wf.getPermit({ id }, worker))).toEqual([]);
    expect(await guard(capture.workflow, () => wf.updatePermit({ id, version: 1, changes: { location: 'Bay 2' } }, worker))).toEqual([]);
    expect(await guard(capture.workflow, () => wf.transitionPermit({ id, status: 'submitted', comments: '' }, worker))).toEqual([]);
    expect(await guard(capture.workflow, () => wf.transitionPermit({ id, status: 'under_review', comments: '' }, sup))).toEqual([]);
  });

  it('when the workflow figures of health are read, then every query is bounded or allowed', async () => {
    expect(await guard(capture.workflow, async () => wf.getWorkflowStats({}, { token: (await as('svc', 'service', [])).token }))).toEqual([]);
  });
});

describe('export', () => {
  it('when KPIs are computed for one and two projects, then every query is bounded or allowed', async () => {
    expect(await guard(capture.export, async () => ex.getKpis({ project: '' }, await as('u-manager', 'manager', ['p1'])))).toEqual([]);
    expect(await guard(capture.export, async () => ex.getKpis({ project: '' }, await as('u-manager', 'manager', ['p1', 'p2'])))).toEqual([]);
  });

  it('when an export selects by ids and by filters and reads its records, then every query is bounded or allowed', async () => {
    const who = { role: 'manager', user_id: 'u-manager', project_ids: ['p1'] } as never;
    const ids = (await m.Permit.find({ project_id: 'p1' }, { _id: 1 }).limit(60).lean()).map((p) => String(p._id));
    expect(
      await guard(capture.test, async () => {
        const sel = await selectPermits(m, who, { permit_ids: ids, use_filters: false, detailed: true, filter: undefined }, 200);
        let k = 0;
        for await (const _ of exportRecords(m, sel.ids)) k++;
        expect(k).toBe(60);
      }),
    ).toEqual([]);
    expect(await guard(capture.test, () => selectPermits(m, who, { permit_ids: [], use_filters: true, detailed: false, filter: filter({ status: ['active'] }) }, 200))).toEqual([]);
    // Over the limit, by projects and statuses only: refused from the count alone (the project's last
    // place, the block readings), with the exact count and no permit read.
    const inP1 = await m.Permit.countDocuments({ project_id: 'p1' });
    const active = await m.Permit.countDocuments({ project_id: 'p1', status: { $in: ['active', 'draft'] } });
    for (const [f, count] of [
      [undefined, inP1],
      [filter({ status: ['active', 'draft'] }), active],
    ] as const) {
      let refused: unknown;
      const { queries } = await capture.test.measure(() =>
        selectPermits(m, who, { permit_ids: [], use_filters: true, detailed: false, filter: f }, 2).catch((err: unknown) => (refused = err)),
      );
      expect(refused).toMatchObject({ message: `Too many permits to export: ${count} selected, the limit is 2. Narrow the selection.` });
      // Permits are only probed by place or read by block (a block read again), never selected.
      const permitReads = queries.filter((q) => q.collection === 'permits').map((q) => Object.keys(q.filter).sort().join(','));
      expect(permitReads.filter((k) => k !== 'list_seq,project_id' && !k.startsWith('list_block,project_id'))).toEqual([]);
      expect(describeUnbounded(await checkBounded(conn, queries, BOUNDING_KEYS, ALLOWED))).toEqual([]);
    }
  });

  it('when the export figures of health are read, then every query is bounded', async () => {
    expect(await guard(capture.export, async () => ex.getExportStats({ since: '' }, { token: (await as('svc', 'service', [])).token }))).toEqual([]);
  });
});
