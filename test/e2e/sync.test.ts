/**
 * Offline sync through the real gateway: envelope limits (nothing applied when refused), a change
 * of the wrong shape rejected alone, and nothing from `data` in any log.
 */
import fs from 'node:fs';
import path from 'node:path';
import mongoose, { type Connection } from 'mongoose';
import { registerModels, type Models } from '@ptw/db';
import { startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(120_000);

let stack: Stack & { logDir: string };
let conn: Connection;
let m: Models;
let w: string;

/** The fields of a sync answer (or of its error) the tests read. */
type SyncBody = {
  summary: { total: number; applied: number; conflicts: number; rejected: number };
  rejected: { reason: string; detail: string }[];
  error: { details: { field: string } };
};

async function post(body: unknown, raw?: string) {
  const res = await fetch(`${stack.gatewayUrl}/api/v1/ptw/sync-offline-data/`, {
    method: 'POST',
    headers: { authorization: `Bearer ${w}`, 'content-type': 'application/json' },
    body: raw ?? JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as SyncBody };
}

const create = (i: number, title = `Sync e2e ${i}`) => ({
  entity: 'permit',
  op: 'create',
  offline_id: `e2e-${i}`,
  data: { permit_type_id: 'hot-work', title },
});

beforeAll(async () => {
  stack = await startTestStack('sync', { PTW_THROTTLE_SYNC: '1000/min' });
  conn = await mongoose.createConnection(stack.mongoUrl).asPromise();
  m = registerModels(conn);
  w = await token('u-worker', 'worker', ['p1']);
});

afterAll(async () => {
  await conn?.close();
  await stack?.stop();
});

it('when a batch has 501 changes, then 400 naming changes and nothing is applied', async () => {
  const before = await m.Permit.countDocuments();
  const res = await post({ device_id: 'tab-big', changes: Array.from({ length: 501 }, (_, i) => create(i)) });
  expect([res.status, res.body.error.details.field]).toEqual([400, 'changes']);
  expect(await m.Permit.countDocuments()).toBe(before);
});

it('when a batch is over 1 MiB, then 413 and nothing is applied', async () => {
  const before = await m.Permit.countDocuments();
  const changes = Array.from({ length: 20 }, (_, i) => create(i, 'x'.repeat(60_000)));
  const res = await post({ device_id: 'tab-huge', changes });
  expect(res.status).toBe(413);
  expect(await m.Permit.countDocuments()).toBe(before);
});

it('when one change has the wrong shape, then it alone is rejected and the others are applied', async () => {
  const res = await post({
    device_id: 'tab-mixed',
    changes: [create(1), { entity: 'permit', op: 'update', offline_id: 'bad-1', server_id: 'x', client_version: 'two', data: {} }, { ...create(2), extra: true }],
  });
  expect(res.status).toBe(200);
  expect(res.body.summary).toEqual({ total: 3, applied: 1, conflicts: 0, rejected: 2 });
  expect(res.body.rejected.map((r: { reason: string; detail: string }) => [r.reason, r.detail.split(':')[0]])).toEqual([
    ['validation_error', 'client_version'],
    ['validation_error', 'extra'],
  ]);
});

it('when the envelope is malformed, then 400 naming the field', async () => {
  expect((await post({ changes: [] })).body.error.details.field).toBe('device_id');
  expect((await post({ device_id: 'a b@c', changes: [] })).body.error.details.field).toBe('device_id');
  expect((await post({ device_id: 'ok', changes: 'all' })).body.error.details.field).toBe('changes');
  expect((await post(undefined, '{"device_id":')).status).toBe(400);
});

it('when a change carries personal data, then none of it reaches any log and the sync line has counts', async () => {
  const secret = 'jane.doe@example.com';
  const res = await post({ device_id: 'tab-log', changes: [{ ...create(9, `Call ${secret}`), offline_id: 'log-1' }] });
  expect(res.body.summary.applied).toBe(1);
  await new Promise((r) => setTimeout(r, 300));
  const logs = fs.readdirSync(stack.logDir).filter((f) => f.endsWith('.log'));
  for (const f of logs) expect([f, fs.readFileSync(path.join(stack.logDir, f), 'utf8').includes(secret)]).toEqual([f, false]);
  const lines = fs
    .readFileSync(path.join(stack.logDir, 'sync.log'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  expect(lines.find((l) => l.event === 'sync_offline_data' && l.device_id === 'tab-log')).toMatchObject({ applied_count: 1, conflict_count: 0, rejected_count: 0 });
});
