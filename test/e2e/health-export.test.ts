/**
 * The original module's throttle, export and health regression cases, re-expressed against the
 * real gateway and services: throttled scopes, export scoping and limits, health figures equal to
 * what the test did, and a degraded health report when the export service is down.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mongoose, { type Connection } from 'mongoose';
import { registerModels, type Models } from '@ptw/db';
import { startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(180_000);

let stack: Stack;
let conn: Connection;
let m: Models;
const H = 3600_000;
// Throttle counters live in the shared Redis across runs: user ids are unique per run.
const RUN = Date.now().toString(36);

/** A JSON answer's shape is the caller's to say (T); other answers come as a Buffer. */
async function req<T = unknown>(method: string, p: string, tok: string, body?: unknown) {
  const res = await fetch(`${stack.gatewayUrl}/api/v1/ptw${p}`, {
    method,
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const type = res.headers.get('content-type') ?? '';
  const data = (type.includes('json') ? await res.json() : Buffer.from(await res.arrayBuffer())) as T;
  return { status: res.status, headers: res.headers, data };
}

let n = 0;
const permitDoc = (project: string, extra: Record<string, unknown> = {}) => ({
  permit_number: `PTW-2026-${String(700000 + ++n)}`,
  project_id: project,
  permit_type_id: 'electrical-isolation',
  title: `Export ${project} ${n}`,
  status: 'active',
  created_by: 'u-worker',
  version: 1,
  created_at: new Date(),
  updated_at: new Date(),
  ...extra,
});

beforeAll(async () => {
  stack = await startTestStack('health', { PTW_THROTTLE_SYNC: '2/min', PTW_THROTTLE_BULK_EXPORT: '2/hour' });
  conn = await mongoose.createConnection(stack.mongoUrl).asPromise();
  m = registerModels(conn);
});

afterAll(async () => {
  await conn?.close();
  await stack?.stop();
});

describe('throttling (original module cases)', () => {
  it('when ptw_sync is 2/min, then three syncs answer 200, 200, 429 with Retry-After', async () => {
    const w = await token(`u-throttle-sync-${RUN}`, 'worker', ['p1']);
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await req('POST', '/sync-offline-data/', w, { device_id: 'tab-t', changes: [] }));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 429]);
    const last = answers[2];
    expect(Number(last.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(last.data).toMatchObject({ error: { code: 'throttled' } });
  });

  it('when ptw_bulk_export is 2/hour, then the third export is 429', async () => {
    await m.Permit.create(permitDoc('p1'));
    const mgr = await token(`u-throttle-export-${RUN}`, 'manager', ['p1']);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await req('POST', '/permits/bulk_export_excel/', mgr, {})).status);
    expect(statuses).toEqual([200, 200, 429]);
  });
});

describe('exports (scoping and limits)', () => {
  it('when a manager of A exports ids of A and B, then only A is in the ZIP and each PDF names its permit, in Devanagari, Tamil, Arabic or Chinese too', async () => {
    // Site crews write in their own scripts (issue 15): the PDF prints them, pdftotext reads them back.
    const [a1, a2] = await m.Permit.create([
      permitDoc('pA', { title: 'वेल्डिंग कार्य', location: 'பம்ப் அறை 2', description: 'صيانة المضخة الرئيسية. 更换锅炉房泵的机械密封。' }),
      permitDoc('pA'),
    ]);
    const [b1] = await m.Permit.create([permitDoc('pB')]);
    await m.IsolationPoint.create({ permit_id: String(a1._id), project_id: 'pA', name: 'Breaker CB-12', energy_type: 'electrical', status: 'verified', version: 1 });
    const mgr = await token(`u-export-a-${RUN}`, 'manager', ['pA']);
    const res = await req('POST', '/permits/bulk_export_pdf/', mgr, { permit_ids: [String(a1._id), String(a2._id), String(b1._id)] });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toMatch(/permits_bulk_\d{8}_\d{6}\.zip/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-zip-'));
    fs.writeFileSync(path.join(dir, 'e.zip'), res.data as Buffer);
    execFileSync('unzip', ['-q', 'e.zip'], { cwd: dir });
    const pdfs = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.pdf'))
      .sort();
    expect(pdfs).toEqual([`PTW_${a1.permit_number}.pdf`, `PTW_${a2.permit_number}.pdf`].sort());
    const text = execFileSync('pdftotext', [path.join(dir, `PTW_${a1.permit_number}.pdf`), '-'], { encoding: 'utf8' });
    expect(text).toContain(a1.permit_number);
    expect(text).toContain('Breaker CB-12');
    for (const sample of ['वेल्डिंग कार्य', 'பம்ப் அறை 2', 'صيانة المضخة الرئيسية', '更换锅炉房泵的机械密封']) expect(text).toContain(sample);
    expect(text).not.toContain(b1.permit_number);
  });

  it('when only foreign ids are given, then 404; when 201 permits are selected, then 400 naming the limit', async () => {
    const [b] = await m.Permit.create([permitDoc('pB')]);
    const mgrA = await token(`u-export-a2-${RUN}`, 'manager', ['pA']);
    expect((await req('POST', '/permits/bulk_export_pdf/', mgrA, { permit_ids: [String(b._id)] })).status).toBe(404);
    await m.Permit.insertMany(Array.from({ length: 201 }, () => permitDoc('pBig')));
    const mgrBig = await token(`u-export-big-${RUN}`, 'manager', ['pBig']);
    const tooMany = await req('POST', '/permits/bulk_export_excel/', mgrBig, {});
    expect(tooMany.status).toBe(400);
    expect((tooMany.data as { error: { message: string } }).error.message).toMatch(/^Too many permits/);
  });

  it('when a worker exports, then 403; unknown body fields are 400', async () => {
    expect((await req('POST', '/permits/bulk_export_pdf/', await token(`u-w-exp-${RUN}`, 'worker', ['pA']), {})).status).toBe(403);
    expect((await req('POST', '/permits/bulk_export_pdf/', await token(`u-m-exp-${RUN}`, 'manager', ['pA']), { format: 'pdf' })).status).toBe(400);
  });
});

type Health = {
  degraded: boolean;
  services: Record<string, string>;
  sync: { applied_last_24h: number; conflicts_last_24h: number; rejected_last_24h: number };
  exports: { bulk_exports_last_24h: number };
  workflow: { overdue_verification: number; overdue_approval: number };
  jobs: { name: string; last_success_at: string | null; last_error: string | null }[];
};

describe('health', () => {
  it('when a non-manager asks, then 403; a manager gets every key of SPEC §8', async () => {
    expect((await req('GET', '/permits/health/', await token(`u-w-h-${RUN}`, 'worker', ['p1']))).status).toBe(403);
    expect((await req('GET', '/permits/health/', await token(`u-s-h-${RUN}`, 'supervisor', ['p1']))).status).toBe(403);
    const res = await req<Health>('GET', '/permits/health/', await token(`u-m-h-${RUN}`, 'manager', ['p1']));
    expect(res.status).toBe(200);
    expect(Object.keys(res.data).sort()).toEqual(['as_of', 'degraded', 'exports', 'jobs', 'services', 'sync', 'workflow']);
    expect(Object.keys(res.data.sync).sort()).toEqual(['applied_last_24h', 'conflicts_last_24h', 'rejected_last_24h']);
    expect(res.data.services).toEqual({ sync: 'SERVING', workflow: 'SERVING', export: 'SERVING' });
  });

  it('when the test syncs, exports and leaves permits overdue, then health counts exactly that', async () => {
    const mgr = await token(`u-m-h2-${RUN}`, 'manager', ['p1']);
    const before = (await req<Health>('GET', '/permits/health/', mgr)).data;
    await m.Permit.create([
      permitDoc('p9', { status: 'submitted', submitted_at: new Date(Date.now() - 5 * H) }),
      permitDoc('p9', { status: 'submitted', submitted_at: new Date(Date.now() - 6 * H) }),
      permitDoc('p9', { status: 'under_review', verified_at: new Date(Date.now() - 5 * H) }),
    ]);
    // N=2 applied, M=1 conflict, K=3 rejected, over two users (throttle is 2/min per user).
    const w1 = await token(`u-h-sync1-${RUN}`, 'worker', ['p1']);
    const w2 = await token(`u-h-sync2-${RUN}`, 'worker', ['p1']);
    const created = await req<{ applied: { server_id: string }[] }>('POST', '/sync-offline-data/', w1, {
      device_id: 'tab-h',
      changes: [{ entity: 'permit', op: 'create', offline_id: 'h1', data: { permit_type_id: 'hot-work', title: 'H1' } }],
    });
    const id = created.data.applied[0].server_id;
    await req('POST', '/sync-offline-data/', w2, {
      device_id: 'tab-h2',
      changes: [
        { entity: 'permit', op: 'create', offline_id: 'h2', data: { permit_type_id: 'hot-work', title: 'H2' } },
        { entity: 'permit', op: 'update', offline_id: 'h3', server_id: id, data: { title: 'no version' } },
        { entity: 'ghost', op: 'create', offline_id: 'h4', data: {} },
        { entity: 'permit', op: 'update', offline_id: 'h5', data: {}, client_version: 1 },
        { entity: 'permit', op: 'create', offline_id: 'h6', data: { title: 1 } },
      ],
    });
    await req('POST', '/permits/bulk_export_pdf/', await token(`u-h-exp-${RUN}`, 'manager', ['p9']), {});
    const after = (await req<Health>('GET', '/permits/health/', mgr)).data;
    expect(after.sync.applied_last_24h - before.sync.applied_last_24h).toBe(2);
    expect(after.sync.conflicts_last_24h - before.sync.conflicts_last_24h).toBe(1);
    expect(after.sync.rejected_last_24h - before.sync.rejected_last_24h).toBe(3);
    expect(after.exports.bulk_exports_last_24h - before.exports.bulk_exports_last_24h).toBe(1);
    expect(after.workflow.overdue_verification - before.workflow.overdue_verification).toBe(2);
    expect(after.workflow.overdue_approval - before.workflow.overdue_approval).toBe(1);
  });

  it('when a manager runs a job now, then its run is recorded and health shows its state; unknown jobs are 404', async () => {
    const mgr = await token(`u-m-jobs-${RUN}`, 'manager', ['p1']);
    await m.Permit.create(permitDoc('pJ', { status: 'active', planned_end_time: new Date(Date.now() - H) }));
    const run = await req('POST', '/jobs/auto_expire_permits/run/', mgr);
    expect(run.status).toBe(200);
    expect(run.data).toMatchObject({ job: 'auto_expire_permits', outcome: 'success', attempt: 1 });
    expect(await m.Permit.countDocuments({ project_id: 'pJ', status: 'expired' })).toBe(1);
    const jobs = await req<{ jobs: { name: string }[]; recent_runs: unknown[] }>('GET', '/jobs/', mgr);
    expect(jobs.data.jobs.map((j: { name: string }) => j.name).sort()).toEqual(['auto_expire_permits', 'check_expiring_permits', 'check_overdue_workflow_tasks']);
    expect(jobs.data.recent_runs[0]).toMatchObject({ job: 'auto_expire_permits', outcome: 'success' });
    const health = (await req<Health>('GET', '/permits/health/', mgr)).data;
    const state = health.jobs.find((j: { name: string }) => j.name === 'auto_expire_permits');
    expect(state!.last_success_at).not.toBeNull();
    expect(state!.last_error).toBeNull();
    // Running one job records nothing on another. The other job's own schedule (every 15 minutes,
    // on the quarter hour) may have ticked while the suite ran: such a run starts on its tick.
    const other = health.jobs.find((j: { name: string }) => j.name === 'check_expiring_permits') as unknown as { last_run_at: string | null; last_error: unknown };
    expect(other.last_error).toBeNull();
    if (other.last_run_at !== null) expect(Date.parse(other.last_run_at) % (15 * 60_000)).toBeLessThan(5_000);
    expect((await req('POST', '/jobs/no_such_job/run/', mgr)).status).toBe(404);
  });

  it('when the export service is stopped, then health still answers 200 degraded in under 2 s', async () => {
    const child = stack.procs.export;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    const mgr = await token(`u-m-h3-${RUN}`, 'manager', ['p1']);
    const t0 = Date.now();
    const res = await req<Health>('GET', '/permits/health/', mgr);
    const elapsed = Date.now() - t0;
    expect(res.status).toBe(200);
    expect(res.data.degraded).toBe(true);
    expect(res.data.services.export).not.toBe('SERVING');
    expect(res.data.services.sync).toBe('SERVING');
    expect(elapsed).toBeLessThan(2000);
    await stack.start('export');
  });
});
