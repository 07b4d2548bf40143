/**
 * The job bodies against the real store, with `now` injected: what each job changes and notifies,
 * that a second run the same day sends nothing new, and that the number of store commands a job
 * issues does not grow with the number of permits it touches.
 */
import mongoose, { type Connection, type Types } from 'mongoose';
import { startStore, type RunningStore } from '@ptw/devstore';
import { ensureIndexes, registerModels, type Models } from '@ptw/db';
import { autoExpirePermits, checkExpiringPermits, checkOverdueWorkflowTasks, type JobContext, type JobFunction } from './jobs';

jest.setTimeout(60_000);

const NOW = new Date('2030-01-15T10:00:00.000Z');
const H = 3600_000;
const at = (offsetMs: number) => new Date(NOW.getTime() + offsetMs);

let store: RunningStore | undefined;
let conn: Connection;
let models: Models;
let ctx: JobContext;
let commands: string[] = [];

function databaseUrl(name: string): Promise<string> {
  const base = process.env.MONGO_URL;
  if (base) return Promise.resolve(base.replace(/^(mongodb(?:\+srv)?:\/\/[^/?]+)(\/[^?]*)?/, `$1/${name}_${Date.now()}`));
  return startStore().then((s) => (store = s).url);
}

beforeAll(async () => {
  conn = await mongoose.createConnection(await databaseUrl('ptw_jobs_bodies'), { monitorCommands: true, retryWrites: false }).asPromise();
  conn.getClient().on('commandStarted', (e) => commands.push(e.commandName));
  models = registerModels(conn);
  await ensureIndexes(conn);
  ctx = { models, batchSize: 500 };
  await models.User.insertMany([
    { _id: 'u-creator', name: 'Carla Creator', email: 'carla@example.com', role: 'worker', project_ids: ['p1'] },
    { _id: 'u-verifier', name: 'Vic Verifier', email: 'vic@example.com', role: 'supervisor', project_ids: ['p1'] },
    { _id: 'u-m1', name: 'Mona Manager', email: 'mona@example.com', role: 'manager', project_ids: ['p1', 'p3'] },
    { _id: 'u-m2', name: 'Max Manager', email: 'max@example.com', role: 'manager', project_ids: ['p1'] },
    { _id: 'u-m3', name: 'Other Manager', email: 'other@example.com', role: 'manager', project_ids: ['p2'] },
    { _id: 'u-sup', name: 'Sam Supervisor', email: 'sam@example.com', role: 'supervisor', project_ids: ['p1', 'p2'] },
  ]);
});

afterAll(async () => {
  await conn?.close();
  await store?.stop();
});

beforeEach(async () => {
  await Promise.all([models.Permit.deleteMany({}), models.WorkflowStep.deleteMany({}), models.Notification.deleteMany({}), models.AuditEvent.deleteMany({}), models.Revision.deleteMany({})]);
});

let seq = 0;
function permit(fields: Record<string, unknown>) {
  seq++;
  return {
    permit_number: `PTW-2030-${String(seq).padStart(6, '0')}`,
    project_id: 'p1',
    permit_type_id: 'hot-work',
    title: `Permit ${seq}`,
    status: 'active',
    created_by: 'u-creator',
    version: 1,
    planned_start_time: at(-10 * H),
    planned_end_time: at(H),
    created_at: at(-20 * H),
    updated_at: at(-20 * H),
    ...fields,
  };
}

async function insertPermits(docs: Record<string, unknown>[]): Promise<Types.ObjectId[]> {
  const out = await models.Permit.insertMany(docs.map(permit));
  return out.map((d) => d._id);
}

const notifications = async () =>
  (await models.Notification.find().lean())
    .map((n) => ({ user_id: n.user_id, type: n.type, dedupe_key: n.dedupe_key }))
    .sort((a, b) => `${a.user_id}${a.dedupe_key}`.localeCompare(`${b.user_id}${b.dedupe_key}`));

const PERSONAL = /Carla|Creator|Mona|Max |Manager|Vic|Sam|@example\.com/;

describe('check_expiring_permits', () => {
  it('when active permits end within 2 h, then each creator gets one ptw_expiring and a second run the same day sends nothing new', async () => {
    const [soon, , , , late] = await insertPermits([
      { planned_end_time: at(H) },
      { planned_end_time: at(3 * H) },
      { planned_end_time: at(-10 * 60_000) },
      { status: 'approved', planned_end_time: at(H) },
      { planned_end_time: at(2 * H - 1000), created_by: 'u-verifier' },
    ]);
    const first = await checkExpiringPermits(ctx, NOW);
    expect(first).toEqual({ permit_count: 2, notified: 2 });
    expect(await notifications()).toEqual([
      { user_id: 'u-creator', type: 'ptw_expiring', dedupe_key: `expiring_${soon}_2030-01-15` },
      { user_id: 'u-verifier', type: 'ptw_expiring', dedupe_key: `expiring_${late}_2030-01-15` },
    ]);
    const doc = await models.Notification.findOne({ user_id: 'u-creator' }).lean();
    expect(doc?.data).toEqual({ permit_id: String(soon), permit_number: expect.stringMatching(/^PTW-2030-/) });
    expect(doc?.title).toContain(doc?.data.permit_number);
    expect(`${doc?.title} ${doc?.message}`).not.toMatch(PERSONAL);
    expect(doc?.read).toBe(false);

    const again = await checkExpiringPermits(ctx, at(30 * 60_000));
    expect(again).toEqual({ permit_count: 2, notified: 0 });
    expect(await models.Notification.countDocuments()).toBe(2);
  });
});

describe('check_overdue_workflow_tasks', () => {
  it('when steps are pending past their limit, then assignees get ptw_overdue, past twice the limit the project managers get ptw_escalated, once a day', async () => {
    const [p1, p2] = await insertPermits([{ status: 'submitted' }, { status: 'submitted', project_id: 'p2' }]);
    const step = (fields: Record<string, unknown>) => ({
      permit_id: String(p1),
      project_id: 'p1',
      step: 'verification',
      assignee_id: 'u-verifier',
      status: 'pending',
      limit_hours: 4,
      ...fields,
    });
    const steps = await models.WorkflowStep.insertMany([
      step({ started_at: at(-5 * H) }), // overdue
      step({ started_at: at(-9 * H), step: 'approval', assignee_id: 'u-m1' }), // overdue and escalated
      step({ started_at: at(-9 * H), assignee_id: undefined }), // escalated only (no assignee)
      step({ started_at: at(-20 * H), status: 'completed' }),
      step({ started_at: at(-H) }),
      step({ started_at: at(-1.5 * H), limit_hours: 1 }), // overdue under its own, shorter limit
      step({ started_at: at(-3 * H), limit_hours: 1, permit_id: String(p2), project_id: 'p2', assignee_id: 'u-sup' }), // escalated in p2
    ]);
    const id = (i: number) => String(steps[i]._id);
    const result = await checkOverdueWorkflowTasks(ctx, NOW);
    expect(result).toEqual({ permit_count: 2, notified: 9, overdue_count: 5 });
    const day = '2030-01-15';
    expect(await notifications()).toEqual(
      [
        { user_id: 'u-verifier', type: 'ptw_overdue', dedupe_key: `${id(0)}_${day}` },
        { user_id: 'u-m1', type: 'ptw_overdue', dedupe_key: `${id(1)}_${day}` },
        { user_id: 'u-m1', type: 'ptw_escalated', dedupe_key: `escalated_${id(1)}_${day}` },
        { user_id: 'u-m2', type: 'ptw_escalated', dedupe_key: `escalated_${id(1)}_${day}` },
        { user_id: 'u-m1', type: 'ptw_escalated', dedupe_key: `escalated_${id(2)}_${day}` },
        { user_id: 'u-m2', type: 'ptw_escalated', dedupe_key: `escalated_${id(2)}_${day}` },
        { user_id: 'u-verifier', type: 'ptw_overdue', dedupe_key: `${id(5)}_${day}` },
        { user_id: 'u-sup', type: 'ptw_overdue', dedupe_key: `${id(6)}_${day}` },
        { user_id: 'u-m3', type: 'ptw_escalated', dedupe_key: `escalated_${id(6)}_${day}` },
      ].sort((a, b) => `${a.user_id}${a.dedupe_key}`.localeCompare(`${b.user_id}${b.dedupe_key}`)),
    );
    const escalated = await models.Notification.findOne({ type: 'ptw_escalated', user_id: 'u-m3' }).lean();
    expect(escalated?.data).toEqual({ permit_id: String(p2), step_id: id(6), permit_number: expect.stringMatching(/^PTW-2030-/) });
    expect(`${escalated?.title} ${escalated?.message}`).not.toMatch(PERSONAL);

    const again = await checkOverdueWorkflowTasks(ctx, at(10 * 60_000));
    expect(again.notified).toBe(0);
    const nextDay = await checkOverdueWorkflowTasks(ctx, at(24 * H));
    expect(nextDay.notified).toBeGreaterThan(0);
  });
});

describe('auto_expire_permits', () => {
  it('when active permits are past their end, then they become expired through the version guard, with an audit event and one ptw_expired each', async () => {
    const ended = at(-H);
    const [plain, withEnd, future, suspended, raced] = await insertPermits([
      { planned_end_time: ended, version: 3 },
      { planned_end_time: ended, actual_end_time: at(-2 * H) },
      { planned_end_time: at(H) },
      { status: 'suspended', planned_end_time: ended },
      { planned_end_time: ended, version: 7 },
    ]);
    // A concurrent writer already claimed version 8 of this permit: the job must leave it alone.
    await models.Revision.create({ entity: 'permit', entity_id: String(raced), version: 8, user_id: 'u-creator', at: NOW });

    const result = await autoExpirePermits(ctx, NOW);
    expect(result).toEqual({ permit_count: 2, notified: 2 });
    const byId = new Map((await models.Permit.find().lean()).map((p) => [String(p._id), p]));
    expect(byId.get(String(plain))).toMatchObject({ status: 'expired', version: 4, updated_at: NOW, actual_end_time: NOW });
    expect(byId.get(String(withEnd))).toMatchObject({ status: 'expired', version: 2, actual_end_time: at(-2 * H) });
    expect(byId.get(String(future))).toMatchObject({ status: 'active', version: 1 });
    expect(byId.get(String(suspended))).toMatchObject({ status: 'suspended', version: 1 });
    expect(byId.get(String(raced))).toMatchObject({ status: 'active', version: 7 });
    expect(await models.Revision.countDocuments({ entity_id: String(plain), version: 4, user_id: 'system' })).toBe(1);

    const audits = await models.AuditEvent.find().lean();
    expect(
      audits
        .map((a) => ({ permit_id: a.permit_id, action: a.action, from: a.from, to: a.to, user_id: a.user_id, comments: a.comments }))
        .sort((a, b) => a.permit_id.localeCompare(b.permit_id)),
    ).toEqual(
      [String(plain), String(withEnd)].sort().map((permit_id) => ({
        permit_id,
        action: 'status_change',
        from: 'active',
        to: 'expired',
        user_id: 'system',
        comments: 'Auto-expired: planned end time passed',
      })),
    );
    expect(await notifications()).toEqual([String(plain), String(withEnd)].sort().map((id) => ({ user_id: 'u-creator', type: 'ptw_expired', dedupe_key: `expired_${id}` })));

    expect(await autoExpirePermits(ctx, at(H))).toEqual({ permit_count: 0, notified: 0 });
    expect(await models.AuditEvent.countDocuments()).toBe(2);
  });
});

describe('bulk work', () => {
  async function commandsFor(job: JobFunction, now: Date): Promise<string[]> {
    commands = [];
    await job(ctx, now);
    return [...commands];
  }

  async function seedAll(n: number): Promise<void> {
    const ids = await insertPermits([...Array.from({ length: n }, () => ({ planned_end_time: at(H) })), ...Array.from({ length: n }, () => ({ planned_end_time: at(-H) }))]);
    await models.WorkflowStep.insertMany(
      ids.slice(0, n).map((id) => ({ permit_id: String(id), project_id: 'p1', step: 'approval', status: 'pending', started_at: at(-9 * H), limit_hours: 4, assignee_id: 'u-m2' })),
    );
  }

  it.each([
    ['check_expiring_permits', checkExpiringPermits],
    ['check_overdue_workflow_tasks', checkOverdueWorkflowTasks],
    ['auto_expire_permits', autoExpirePermits],
  ] as const)('when %s touches 10 or 150 permits, then it issues the same store commands (one per batch and kind)', async (_name, job) => {
    await seedAll(10);
    const small = await commandsFor(job, NOW);
    await Promise.all([models.Permit.deleteMany({}), models.WorkflowStep.deleteMany({}), models.Notification.deleteMany({})]);
    await seedAll(150);
    const large = await commandsFor(job, NOW);
    expect(large).toEqual(small);
    expect(large.length).toBeLessThanOrEqual(6);
  });

  it('when there are more permits than one batch, then the commands grow with the batches, not the permits', async () => {
    await insertPermits(Array.from({ length: 120 }, () => ({ planned_end_time: at(-H) })));
    commands = [];
    const result = await autoExpirePermits({ models, batchSize: 50 }, NOW);
    expect(result.permit_count).toBe(120);
    // 3 batches × (claim, bulk update, audit, notifications) + find and its getMores.
    expect(commands.filter((c) => c !== 'find' && c !== 'getMore')).toHaveLength(12);
    expect(await models.Permit.countDocuments({ status: 'expired' })).toBe(120);
  });
});
