/**
 * No half-applied transition (issue 23 item 2): a store failure injected between the status change
 * and its audit event, or between the audit event and the workflow steps, leaves a pending mark in
 * the permit; the next read completes exactly what is missing (no duplicate event or step).
 */
import { createLogger, type Principal } from '@ptw/common';
import { connectMongo, ensureIndexes, registerModels, type Models } from '@ptw/db';
import { testStore } from '@ptw/devstore';
import type { Connection } from 'mongoose';
import { transitionPermit } from './permits/commands';
import { PENDING_GRACE_MS } from './permits/effects';
import { getScopedPermit } from './permits/query';

jest.setTimeout(120_000);

let store: { url: string; stop(): Promise<void> };
let conn: Connection;
let m: Models;
const worker: Principal = { user_id: 'u-worker', role: 'worker', project_ids: ['p1'] };

beforeAll(async () => {
  store = await testStore('transition_effects');
  conn = await connectMongo(store.url, createLogger('test', { stdout: false }), { appName: 'test' });
  m = registerModels(conn);
  await ensureIndexes(conn);
  await m.PermitType.create({ _id: 'hot-work', name: 'Hot Work', category: 'hot_work', risk_level: 'high', escalation_hours: 4 });
});

afterAll(async () => {
  jest.restoreAllMocks();
  await conn?.close();
  await store?.stop();
});

let n = 0;
async function draft(): Promise<string> {
  n++;
  const now = new Date();
  const p = await m.Permit.create({
    permit_number: `PTW-2034-${String(n).padStart(6, '0')}`,
    project_id: 'p1',
    permit_type_id: 'hot-work',
    title: `Effects ${n}`,
    status: 'draft',
    created_by: 'u-worker',
    version: 1,
    created_at: now,
    updated_at: now,
  });
  await m.Revision.create({ entity: 'permit', entity_id: String(p._id), version: 1, user_id: 'u-worker', at: now });
  return String(p._id);
}

const storeDown = () => Object.assign(new Error('connection 3 to 127.0.0.1:27017 closed'), { name: 'MongoNetworkError' });

/** Reads the permit as a reader would once the mark is older than the grace (the clock moved on). */
async function readLater(id: string) {
  const later = Date.now() + PENDING_GRACE_MS + 1000;
  const clock = jest.spyOn(Date, 'now').mockReturnValue(later);
  try {
    return await getScopedPermit(m, worker, id);
  } finally {
    clock.mockRestore();
  }
}

async function effects(id: string) {
  return {
    audit: await m.AuditEvent.countDocuments({ permit_id: id, action: 'status_change', to: 'submitted' }),
    steps: await m.WorkflowStep.countDocuments({ permit_id: id }),
    pending: !!((await m.Permit.findById(id).lean()) as { pending?: unknown }).pending,
  };
}

it('when the audit write fails after the status change, then the permit keeps a pending mark and the next read writes its event and steps once', async () => {
  const id = await draft();
  const spy = jest.spyOn(m.AuditEvent, 'insertMany').mockRejectedValueOnce(storeDown());
  await expect(transitionPermit(m, worker, id, 'submitted', 'ready')).rejects.toThrow(/closed/);
  spy.mockRestore();
  expect(await effects(id)).toEqual({ audit: 0, steps: 0, pending: true });
  const at = ((await m.Permit.findById(id).lean()) as { pending?: { at: Date } }).pending?.at;
  const doc = await readLater(id);
  expect(doc.status).toBe('submitted');
  expect(await effects(id)).toEqual({ audit: 1, steps: 2, pending: false });
  const event = await m.AuditEvent.findOne({ permit_id: id, action: 'status_change' }).lean();
  expect({ from: event?.from, user: event?.user_id, comments: event?.comments, at: event?.at?.getTime() }).toEqual({
    from: 'draft',
    user: 'u-worker',
    comments: 'ready',
    at: new Date(at!).getTime(),
  });
});

it('when the steps write fails after the audit event, then a recovery adds the steps without a second event; reading again changes nothing', async () => {
  const id = await draft();
  const spy = jest.spyOn(m.WorkflowStep, 'insertMany').mockRejectedValueOnce(storeDown());
  await expect(transitionPermit(m, worker, id, 'submitted', '')).rejects.toThrow(/closed/);
  spy.mockRestore();
  expect(await effects(id)).toEqual({ audit: 1, steps: 0, pending: true });
  await readLater(id);
  await readLater(id);
  expect(await effects(id)).toEqual({ audit: 1, steps: 2, pending: false });
});

it('when a pending mark is younger than the grace, then a read leaves it to its writer; the next transition completes it first', async () => {
  const id = await draft();
  const spy = jest.spyOn(m.AuditEvent, 'insertMany').mockRejectedValueOnce(storeDown());
  await expect(transitionPermit(m, worker, id, 'submitted', '')).rejects.toThrow(/closed/);
  spy.mockRestore();
  await getScopedPermit(m, worker, id);
  expect(await effects(id)).toEqual({ audit: 0, steps: 0, pending: true });
  await transitionPermit(m, worker, id, 'draft', 'withdrawn');
  expect(await effects(id)).toEqual({ audit: 1, steps: 2, pending: false });
  expect(await m.WorkflowStep.countDocuments({ permit_id: id, status: 'rejected' })).toBe(2);
});

it('when a transition succeeds, then no mark is left and the answer carries none', async () => {
  const id = await draft();
  const updated = await transitionPermit(m, worker, id, 'submitted', '');
  expect(updated.pending).toBeUndefined();
  expect(await effects(id)).toEqual({ audit: 1, steps: 2, pending: false });
});
