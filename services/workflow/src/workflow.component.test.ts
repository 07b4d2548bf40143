/**
 * Component tests: the real workflow service in-process on a real store, called over gRPC with the
 * generated client. Covers the status machine, gates, audit, scoping and version races.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createClient, createLogger, DEV_JWT_SECRET, mintToken, type Role, type StartedService } from '@ptw/common';
import { connectMongo, registerModels, type Models, type PermitStatus, PERMIT_STATUSES } from '@ptw/db';
import { createPermit, createPermits, TRANSITIONS } from '@ptw/domain';
import { workflowPb } from '@ptw/proto';
import { testStore } from '@ptw/devstore';
import { Types, type Connection } from 'mongoose';
import { start } from './main';
import { seed } from './seed';

jest.setTimeout(120_000);

let store: { url: string; stop(): Promise<void> };
let svc: StartedService;
let conn: Connection;
let m: Models;
let wf: ReturnType<typeof createClient<workflowPb.WorkflowServiceClient>>['call'];
const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
const tokens = new Map<string, string>();

async function as(user: string, role: Role, projects = ['p1']) {
  const key = `${user}|${role}|${projects.join(',')}`;
  if (!tokens.has(key)) tokens.set(key, await mintToken(auth, { user, role, projects, ttlSeconds: 3600 }));
  return { token: tokens.get(key)! };
}

const worker = () => as('u-worker', 'worker');
const supervisor = () => as('u-supervisor', 'supervisor');
const manager = () => as('u-manager', 'manager', ['p1', 'p2']);
const hour = 3600_000;

function permitInput(extra: Record<string, unknown> = {}) {
  const now = Date.now();
  return {
    permit_type_id: 'hot-work',
    title: 'Replace flange gasket',
    probability: 2,
    severity: 3,
    planned_start_time: new Date(now + hour).toISOString(),
    planned_end_time: new Date(now + 5 * hour).toISOString(),
    ...extra,
  };
}

/** Someone SPEC §2 allows to make the move (the permit's creator is u-worker). */
function actorFor(from: PermitStatus, to: PermitStatus) {
  if (from === 'under_review') return manager();
  if (from === 'submitted' && to !== 'draft') return supervisor();
  if (to === 'submitted' || to === 'draft' || to === 'cancelled') return worker();
  return supervisor();
}

/** Places a permit directly in a status (with the facts its gates need) for transition tests. */
async function placed(status: PermitStatus, typeId = 'hot-work') {
  const p = await wf.createPermit({ data: permitInput({ permit_type_id: typeId }) }, await worker());
  await m.Permit.updateOne({ _id: p.id }, { $set: { status } });
  return { ...p, status };
}

beforeAll(async () => {
  store = await testStore('workflow_component');
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-wf-'));
  svc = await start({
    ...process.env,
    ...auth,
    NODE_ENV: 'test',
    PTW_JOBS_WORKER: 'false',
    MONGO_URL: store.url,
    PTW_WORKFLOW_ADDR: '127.0.0.1:0',
    PTW_METRICS_LISTEN: '127.0.0.1:0',
    LOG_DIR: logDir,
  });
  conn = await connectMongo(store.url, createLogger('test', { stdout: false }), { appName: 'test' });
  m = registerModels(conn);
  await seed(m);
  wf = createClient(workflowPb.WorkflowServiceClient, `127.0.0.1:${svc.port}`, { defaultDeadlineMs: 30_000 }).call;
});

afterAll(async () => {
  await svc?.stop();
  await conn?.close();
  await store?.stop();
});

describe('happy path with gates and audit', () => {
  it('when a permit needing isolation goes draft → completed, then every gate holds and every transition is audited', async () => {
    const p = await wf.createPermit({ data: permitInput({ permit_type_id: 'electrical-isolation', approver_id: 'u-manager' }) }, await worker());
    expect(p).toMatchObject({ status: 'draft', version: 1, risk_score: 6, risk_level: 'medium' });
    expect(p.permit_number).toMatch(/^PTW-\d{4}-\d{6}$/);

    await wf.transitionPermit({ id: p.id, status: 'submitted', comments: '' }, await worker());
    const steps = await m.WorkflowStep.find({ permit_id: p.id }).lean();
    expect(steps.map((s) => [s.step, s.status, !!s.started_at]).sort()).toEqual([
      ['approval', 'pending', false],
      ['verification', 'pending', true],
    ]);
    await wf.transitionPermit({ id: p.id, status: 'under_review', comments: 'checked' }, await supervisor());
    expect((await wf.myTasks({}, await manager())).results.map((t) => [t.permit_id, t.step])).toContainEqual([p.id, 'approval']);

    await expect(wf.transitionPermit({ id: p.id, status: 'approved', comments: '' }, await manager())).rejects.toMatchObject({
      code: 9,
      details: expect.stringMatching(/requires isolation/),
    });
    const iso = await wf.assignIsolation({ permit_id: p.id, points: [{ name: 'MCC-4 breaker', energy_type: 'electrical', required: true, lock_ids: ['L1'] }] }, await worker());
    const pointId = iso.points[0].id;
    expect(iso.summary).toEqual({ total: 1, required: 1, verified: 0, deisolated: 0, pending_verification: 1 });
    await wf.updateIsolation({ permit_id: p.id, point_id: pointId, action: 'isolate', lock_ids: ['L2'], notes: '' }, await supervisor());
    await expect(wf.transitionPermit({ id: p.id, status: 'approved', comments: '' }, await manager())).rejects.toMatchObject({
      code: 9,
      details: expect.stringMatching(/not verified: MCC-4 breaker/),
    });
    const verified = await wf.updateIsolation({ permit_id: p.id, point_id: pointId, action: 'verify', lock_ids: [], notes: '' }, await supervisor());
    expect(verified).toMatchObject({ status: 'verified', lock_ids: ['L1', 'L2'], verified_by: 'u-supervisor', version: 3 });
    const optional = await wf.assignIsolation({ permit_id: p.id, points: [{ name: 'Spare feeder', energy_type: 'electrical', required: false, lock_ids: [] }] }, await worker());
    expect(optional.summary).toEqual({ total: 2, required: 1, verified: 1, deisolated: 0, pending_verification: 0 });

    const approved = await wf.transitionPermit({ id: p.id, status: 'approved', comments: '' }, await manager());
    expect(approved.approved_at).toBeDefined();
    const active = await wf.transitionPermit({ id: p.id, status: 'active', comments: '' }, await worker());
    expect(active.actual_start_time).toBeDefined();

    await expect(wf.transitionPermit({ id: p.id, status: 'completed', comments: '' }, await supervisor())).rejects.toMatchObject({
      code: 9,
      details: 'Closeout must be completed before the permit is completed',
    });
    await expect(wf.completeCloseout({ permit_id: p.id }, await supervisor())).rejects.toMatchObject({
      code: 3,
      details: 'Closeout is incomplete: All locks removed, Equipment tested',
    });
    await wf.updateCloseout({ permit_id: p.id, checklist: { locks_removed: { done: true }, equipment_tested: { done: true, comments: 'megger ok' } }, remarks: 'done' }, await supervisor());
    const closeout = await wf.completeCloseout({ permit_id: p.id }, await supervisor());
    expect(closeout).toMatchObject({ completed: true, completed_by: 'u-supervisor' });
    expect(closeout.checklist.equipment_tested).toMatchObject({ done: true, comments: 'megger ok', by: 'u-supervisor' });

    await expect(wf.transitionPermit({ id: p.id, status: 'completed', comments: '' }, await supervisor())).rejects.toMatchObject({
      details: 'Isolation points are not de-isolated: MCC-4 breaker',
    });
    await wf.updateIsolation({ permit_id: p.id, point_id: pointId, action: 'deisolate', lock_ids: [], notes: '' }, await supervisor());
    expect((await wf.getIsolation({ permit_id: p.id }, await supervisor())).summary).toEqual({ total: 2, required: 1, verified: 0, deisolated: 1, pending_verification: 1 });
    const done = await wf.transitionPermit({ id: p.id, status: 'completed', comments: 'all clear' }, await supervisor());
    expect(done).toMatchObject({ status: 'completed' });
    expect(done.actual_end_time).toBeDefined();
    // create 1, submitted 2, under_review 3, approved 4, active 5, completed 6
    expect(done.version).toBe(6);

    const audit = await m.AuditEvent.find({ permit_id: p.id, action: 'status_change' }).sort({ at: 1, _id: 1 }).lean();
    expect(audit.map((a) => `${a.from}>${a.to}:${a.user_id}`)).toEqual([
      'draft>submitted:u-worker',
      'submitted>under_review:u-supervisor',
      'under_review>approved:u-manager',
      'approved>active:u-worker',
      'active>completed:u-supervisor',
    ]);
    expect((await m.WorkflowStep.find({ permit_id: p.id }).lean()).every((s) => s.status === 'completed')).toBe(true);
  });
});

describe('status machine', () => {
  const allowed = PERMIT_STATUSES.flatMap((from) => TRANSITIONS[from].filter((to) => to !== 'expired').map((to) => [from, to] as const));

  it.each(allowed)('when a permit in %s is moved to %s by someone allowed, then it moves and is audited', async (from, to) => {
    const p = await placed(from);
    const who = await actorFor(from, to);
    if (to === 'completed') {
      await m.Closeout.create({ permit_id: p.id, project_id: 'p1', checklist: {}, completed: true, version: 1 });
    }
    const moved = await wf.transitionPermit({ id: p.id, status: to, comments: 'x' }, who);
    expect(moved.status).toBe(to);
    expect(await m.AuditEvent.countDocuments({ permit_id: p.id, action: 'status_change', from, to })).toBe(1);
  });

  it('when active → expired is asked by a manager, then only the system may; a service token may', async () => {
    const p = await placed('active');
    await expect(wf.transitionPermit({ id: p.id, status: 'expired', comments: '' }, await manager())).rejects.toMatchObject({ code: 7 });
    const moved = await wf.transitionPermit({ id: p.id, status: 'expired', comments: '' }, await as('svc-jobs', 'service', []));
    expect(moved.status).toBe('expired');
  });

  const refused = PERMIT_STATUSES.flatMap((from) => PERMIT_STATUSES.filter((to) => !TRANSITIONS[from].includes(to)).map((to) => [from, to] as const));

  it(`when any of the ${refused.length} transitions outside the machine is asked, then it is refused naming both statuses`, async () => {
    const byStatus = new Map<string, string>();
    for (const s of PERMIT_STATUSES) byStatus.set(s, (await placed(s)).id);
    for (const [from, to] of refused) {
      const err = await wf.transitionPermit({ id: byStatus.get(from)!, status: to, comments: '' }, await as('svc', 'service', [])).catch((e) => e);
      expect([from, to, err.code, err.details]).toEqual([from, to, 9, `Invalid status transition from ${from} to ${to}`]);
    }
  });

  it('when a worker or supervisor approves, then 403; the manager may', async () => {
    const p = await placed('under_review');
    await expect(wf.transitionPermit({ id: p.id, status: 'approved', comments: '' }, await worker())).rejects.toMatchObject({ code: 7 });
    await expect(wf.transitionPermit({ id: p.id, status: 'approved', comments: '' }, await supervisor())).rejects.toMatchObject({ code: 7 });
    await expect(wf.transitionPermit({ id: p.id, status: 'approved', comments: '' }, await manager())).resolves.toMatchObject({ status: 'approved' });
  });
});

describe('scoping and bad input', () => {
  it("when another project's user reads or changes a permit, then NOT_FOUND everywhere", async () => {
    const p = await placed('active', 'electrical-isolation');
    const outsider = await as('u-other', 'manager', ['p2']);
    const calls = [
      wf.getPermit({ id: p.id }, outsider),
      wf.updatePermit({ id: p.id, version: 1, changes: { title: 'x' } }, outsider),
      wf.transitionPermit({ id: p.id, status: 'suspended', comments: '' }, outsider),
      wf.getIsolation({ permit_id: p.id }, outsider),
      wf.updateIsolation({ permit_id: p.id, point_id: '0'.repeat(24), action: 'isolate', lock_ids: [], notes: '' }, outsider),
      wf.getCloseout({ permit_id: p.id }, outsider),
      wf.updateCloseout({ permit_id: p.id, checklist: {}, remarks: 'x' }, outsider),
      wf.completeCloseout({ permit_id: p.id }, outsider),
    ];
    for (const c of calls) await expect(c).rejects.toMatchObject({ code: 5 });
    const list = await wf.listPermits({ filter: undefined, page: 1, page_size: 100 }, outsider);
    expect(list.results.map((r) => r.id)).not.toContain(p.id);
  });

  it.each([
    [{ title: 'x', permit_type_id: 'hot-work', bogus: 1 }, 'bogus: unknown field'],
    [{ title: 'x', permit_type_id: 'hot-work', probability: 'high' }, 'probability:'],
    [{ title: 'x', permit_type_id: 'hot-work', probability: 9 }, 'probability:'],
    [{ title: 'x', permit_type_id: 'nope' }, 'permit_type_id: unknown permit type'],
    [{ permit_type_id: 'hot-work' }, 'title: required'],
    [{ title: 'x', permit_type_id: 'hot-work', planned_start_time: '2026-01-02T00:00:00Z', planned_end_time: '2026-01-01T00:00:00Z' }, 'planned_end_time: must be after planned_start_time'],
    [{ title: 'x', permit_type_id: 'hot-work', planned_start_time: 'tomorrow' }, 'planned_start_time: expected an ISO 8601 date-time'],
    [{ title: 'x', permit_type_id: 'hot-work', safety_checklist: { gas_test: 'yes' } }, 'safety_checklist.gas_test:'],
  ])('when a permit is created with %j, then INVALID_ARGUMENT naming the field', async (data, message) => {
    await expect(wf.createPermit({ data }, await worker())).rejects.toMatchObject({ code: 3, details: expect.stringContaining(message) });
  });

  it('when ids are malformed or unknown, then NOT_FOUND (never INTERNAL)', async () => {
    for (const id of ['abc', '{"$gt":""}', '0'.repeat(24), 'ffffffffffffffffffffffff']) {
      await expect(wf.getPermit({ id }, await manager())).rejects.toMatchObject({ code: 5 });
    }
  });
});

describe('races', () => {
  it('when 20 edits race from the same version, then exactly one wins, 19 conflict and the version is start + 1', async () => {
    const p = await wf.createPermit({ data: permitInput() }, await worker());
    const who = await worker();
    const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => wf.updatePermit({ id: p.id, version: p.version, changes: { title: `edit ${i}` } }, who)));
    const ok = results.filter((r) => r.status === 'fulfilled');
    const conflicts = results.filter((r) => r.status === 'rejected' && (r.reason as { code: number }).code === 10);
    expect([ok.length, conflicts.length]).toEqual([1, 19]);
    const final = await wf.getPermit({ id: p.id }, who);
    expect(final.version).toBe(p.version + 1);
    expect(final.title).toBe(ok[0].value.title);
  });

  it('when 50 permits are created at once, then they get 50 distinct permit numbers', async () => {
    const who = await worker();
    const created = await Promise.all(Array.from({ length: 50 }, (_, i) => wf.createPermit({ data: permitInput({ title: `bulk ${i}` }) }, who)));
    expect(new Set(created.map((c) => c.permit_number)).size).toBe(50);
  });

  /**
   * 1 January of a year no test has numbered (its counter does not exist yet), a permit input planned
   * after it, and a connection open for each of the creators about to race, so that their counter
   * steps do meet.
   */
  async function newYear(year: number) {
    const now = new Date(Date.UTC(year, 0, 1, 0, 0, 1));
    const data = permitInput({ planned_start_time: new Date(now.getTime() + hour).toISOString(), planned_end_time: new Date(now.getTime() + 5 * hour).toISOString() });
    await Promise.all(Array.from({ length: 8 }, () => m.PermitType.findById('hot-work').lean()));
    return { now, data, who: { user_id: 'u-worker', role: 'worker' as const, project_ids: ['p1'] } };
  }

  it("when the first permits of a year are created at once, then each is created with its own number (the year's counter is upserted by all)", async () => {
    for (let year = 2031; year < 2036; year++) {
      const { now, data, who } = await newYear(year);
      const created = await Promise.all(Array.from({ length: 8 }, () => createPermit(m, who, data, now)));
      const numbers = created.map((c) => c.permit_number);
      expect(new Set(numbers).size).toBe(8);
      for (const n of numbers) expect(n).toMatch(new RegExp(`^PTW-${year}-\\d{6}$`));
    }
  });

  it('when the first bulk creates of a year (sync batches) run at once, then every permit is created with its own number', async () => {
    for (let year = 2036; year < 2041; year++) {
      const { now, data, who } = await newYear(year);
      const batches = await Promise.all(
        Array.from({ length: 6 }, () =>
          createPermits(
            m,
            who,
            [0, 1, 2].map(() => ({ id: new Types.ObjectId(), data })),
            now,
          ),
        ),
      );
      const results = batches.flat();
      expect(results.map((r) => r.ok)).toEqual(Array(18).fill(true));
      const ids = results.map((r) => (r as { ok: true; id: string }).id);
      const numbers = (await m.Permit.find({ _id: { $in: ids } }, { permit_number: 1 }).lean()).map((d) => d.permit_number);
      expect(numbers).toHaveLength(18);
      expect(new Set(numbers).size).toBe(18);
      for (const n of numbers) expect(n).toMatch(new RegExp(`^PTW-${year}-\\d{6}$`));
    }
  });

  it("when a project's first permits are created and listed at once, then every request answers and the places are 1…n, once each", async () => {
    for (let round = 0; round < 3; round++) {
      const project = `p-first-lists-${round}`;
      const who = await as('u-manager', 'manager', [project]);
      const [made, lists] = await Promise.all([
        Promise.all(Array.from({ length: 10 }, (_, i) => wf.createPermit({ data: permitInput({ title: `first ${i}`, project_id: project }) }, who))),
        Promise.all(Array.from({ length: 10 }, () => wf.listPermits({ filter: undefined, page: 1, page_size: 2 }, who))),
      ]);
      expect(made).toHaveLength(10);
      expect(lists.every((l) => l.count >= 0 && l.count <= 10)).toBe(true);
      expect((await wf.listPermits({ filter: undefined, page: 1, page_size: 20 }, who)).count).toBe(10);
      const places = ((await m.Permit.find({ project_id: project }).lean()) as { list_seq: number }[]).map((p) => p.list_seq).sort((x, y) => x - y);
      expect(places).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    }
  });

  it('when a writer died after claiming the next version, then edits conflict until the claim is older than 15 s, then succeed', async () => {
    const p = await wf.createPermit({ data: permitInput() }, await worker());
    const claim = await m.Revision.create({ entity: 'permit', entity_id: p.id, version: 2, user_id: 'crashed', at: new Date() });
    await expect(wf.updatePermit({ id: p.id, version: 1, changes: { location: 'A' } }, await worker())).rejects.toMatchObject({ code: 10 });
    await m.Revision.updateOne({ _id: claim._id }, { $set: { at: new Date(Date.now() - 20_000) } });
    await expect(wf.updatePermit({ id: p.id, version: 1, changes: { location: 'B' } }, await worker())).resolves.toMatchObject({ version: 2, location: 'B' });
  });

  it('when a stale version is sent, then 409 carries the server state', async () => {
    const p = await wf.createPermit({ data: permitInput() }, await worker());
    await wf.updatePermit({ id: p.id, version: 1, changes: { location: 'Bay 2' } }, await worker());
    const err = await wf.updatePermit({ id: p.id, version: 1, changes: { location: 'Bay 3' } }, await worker()).catch((e) => e);
    expect(err.code).toBe(10);
    const details = JSON.parse(err.metadata.get('ptw-error-details-bin')[0].toString());
    expect(details).toMatchObject({ server_version: 2, server_state: { id: p.id, location: 'Bay 2', version: 2 } });
  });
});
