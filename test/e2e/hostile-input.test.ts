/**
 * Issue 23's table, row by row, through the real gateway and services on a real store: input the
 * store cannot hold, numbers beyond their wire type and answers that could outgrow the hop each get
 * a 4xx (or the full 2xx) with SPEC §4's error shape within a second, nothing half-applied, and
 * nothing internal in any body.
 */
import mongoose, { type Connection } from 'mongoose';
import { registerModels, type Models } from '@ptw/db';
import { startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(180_000);

let stack: Stack;
let conn: Connection;
let m: Models;
let W = '';
const api = (p: string) => `${stack.gatewayUrl}/api/v1/ptw${p}`;

async function call(method: string, path: string, body?: unknown) {
  const started = Date.now();
  const res = await fetch(api(path), { method, headers: { authorization: `Bearer ${W}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, ms: Date.now() - started, text, body: text ? JSON.parse(text) : undefined };
}

function expectClientError(r: { status: number; ms: number; body: { error?: { code?: string; message?: string } } }, status = 400) {
  expect({ status: r.status, shape: typeof r.body?.error?.code === 'string' && typeof r.body?.error?.message === 'string' }).toEqual({ status, shape: true });
  expect(r.ms).toBeLessThan(1000);
}

const CJK = (n: number) => '漢'.repeat(n);
const fullPermit = () => ({ permit_type_id: 'hot-work', title: CJK(200), description: CJK(5000), location: CJK(500), control_measures: CJK(5000) });

beforeAll(async () => {
  stack = await startTestStack('hostile_input', { PTW_THROTTLE_SYNC: '1000/min' });
  conn = await mongoose.createConnection(stack.mongoUrl).asPromise();
  m = registerModels(conn);
  W = await token('u-worker', 'worker', ['p1']);
});

afterAll(async () => {
  await conn?.close();
  await stack?.stop();
});

describe('input the store cannot hold', () => {
  it.each([
    ['a NUL in a title', { permit_type_id: 'hot-work', title: 'Weld\u0000' }, 'title'],
    ['a NUL in a PPE item', { permit_type_id: 'hot-work', title: 'Weld', ppe_requirements: ['gloves\u0000'] }, 'ppe_requirements.0'],
    ['a dotted checklist key', { permit_type_id: 'hot-work', title: 'Weld', safety_checklist: { 'gas.test': true } }, 'safety_checklist.gas.test'],
    ['a $ checklist key', { permit_type_id: 'hot-work', title: 'Weld', safety_checklist: { $gt: true } }, 'safety_checklist.$gt'],
  ])('when a create carries %s, then 400 naming the field and nothing is stored', async (_, body, field) => {
    const before = await m.Permit.countDocuments();
    const r = await call('POST', '/permits/', body);
    expectClientError(r);
    expect(r.body.error.details.field).toBe(field);
    expect(await m.Permit.countDocuments()).toBe(before);
  });

  it('when a transition carries a NUL in its comments, then 400 and the permit is untouched (not half applied)', async () => {
    const id = (await call('POST', '/permits/', { permit_type_id: 'hot-work', title: 'Transition me' })).body.id;
    const r = await call('POST', `/permits/${id}/transition/`, { status: 'submitted', comments: 'ok\u0000' });
    expectClientError(r);
    const doc = await m.Permit.findById(id).lean();
    expect({ status: doc?.status, version: doc?.version }).toEqual({ status: 'draft', version: 1 });
    expect(await m.AuditEvent.countDocuments({ permit_id: id, action: 'status_change' })).toBe(0);
  });

  it('when a list filter carries a NUL, then 400', async () => {
    expectClientError(await call('GET', `/permits/?permit_type=${encodeURIComponent('hot\u0000')}`));
  });

  it.each([2147483648, 4294967296, 2 ** 53 - 1])('when a PATCH names version %d, then 400 naming version', async (version) => {
    const id = (await call('POST', '/permits/', { permit_type_id: 'hot-work', title: 'Patch me' })).body.id;
    const r = await call('PATCH', `/permits/${id}/`, { version, title: 'x' });
    expectClientError(r);
    expect(r.text).not.toMatch(/serialization|int32 overflow|invalid int32/i);
    expect(r.body.error.details.field).toBe('version');
  });
});

describe('answers of any size arrive', () => {
  it('when a create or PATCH carries 3,000 unknown fields, then 400 at once with at most 20 of them listed', async () => {
    const body: Record<string, unknown> = { permit_type_id: 'hot-work', title: 'Wide' };
    for (let i = 0; i < 3000; i++) body[`unknown_field_${i}`] = i;
    const created = await call('POST', '/permits/', body);
    expectClientError(created);
    expect(created.body.error.details).toMatchObject({ truncated: true, error_count: 3000 });
    expect(created.body.error.details.errors.length).toBeLessThanOrEqual(20);
    const id = (await call('POST', '/permits/', { permit_type_id: 'hot-work', title: 'Wide patch' })).body.id;
    expectClientError(await call('PATCH', `/permits/${id}/`, { version: 1, ...body }));
  });

  it('when a stale PATCH hits a permit at its maximum lengths (CJK), then 409 at once with the named fields of the server state', async () => {
    const id = (await call('POST', '/permits/', fullPermit())).body.id;
    expect((await call('PATCH', `/permits/${id}/`, { version: 1, description: CJK(5000) })).status).toBe(200);
    const r = await call('PATCH', `/permits/${id}/`, { version: 1, ...fullPermit(), permit_type_id: undefined });
    expectClientError(r, 409);
    expect(r.body.error.details.server_state).toMatchObject({ id, version: 2 });
  });

  it('when a sync carries 100 stale edits of such a permit, then 200 with 100 conflicts showing only the fields they named', async () => {
    const id = (await call('POST', '/permits/', fullPermit())).body.id;
    expect((await call('PATCH', `/permits/${id}/`, { version: 1, title: CJK(199) })).status).toBe(200);
    const changes = Array.from({ length: 100 }, (_, i) => ({
      entity: 'permit',
      op: 'update',
      offline_id: `stale-${i}`,
      server_id: id,
      client_version: 1,
      data: { title: `${i}${CJK(190)}`, location: CJK(500) },
    }));
    const r = await call('POST', '/sync-offline-data/', { device_id: 'tab-hostile', changes });
    expect(r.status).toBe(200);
    expect(r.ms).toBeLessThan(10_000);
    expect(r.body.summary).toEqual({ total: 100, applied: 0, conflicts: 100, rejected: 0 });
    expect(Object.keys(r.body.conflicts[0].server_state).sort()).toEqual(['id', 'location', 'status', 'title', 'version']);
  });

  it('when the conflicts of a sync outgrow the budget of its answer, then the later ones keep their merge hints and say truncated', async () => {
    const id = (await call('POST', '/permits/', fullPermit())).body.id;
    expect((await call('PATCH', `/permits/${id}/`, { version: 1, description: CJK(4990) })).status).toBe(200);
    const changes = Array.from({ length: 60 }, (_, i) => ({
      entity: 'permit',
      op: 'update',
      offline_id: `big-${i}`,
      server_id: id,
      client_version: 1,
      data: { description: CJK(5000 - (i % 5)) },
    }));
    const r = await call('POST', '/sync-offline-data/', { device_id: 'tab-hostile2', changes });
    expect(r.status).toBe(200);
    expect(r.body.summary.conflicts).toBe(60);
    const truncated = r.body.conflicts.filter((c: { truncated: boolean }) => c.truncated);
    expect(truncated.length).toBeGreaterThan(0);
    expect(truncated.length).toBeLessThan(60);
    expect(truncated[0]).toMatchObject({ fields: { description: { merge_hint: 'last_write_wins' } }, server_state: {} });
    expect(Buffer.byteLength(r.text)).toBeLessThan(4 * 1024 * 1024);
  });
});

describe('only API fields leave the system', () => {
  it('when a stale sync edit names _id, sync_origin, created_day and list_seq, then its conflict shows none of them', async () => {
    const first = await call('POST', '/sync-offline-data/', {
      device_id: 'tab-leak',
      changes: [{ entity: 'permit', op: 'create', offline_id: 'leak-1', data: { permit_type_id: 'hot-work', title: 'Leak' } }],
    });
    const id = first.body.applied[0].server_id;
    expect((await call('PATCH', `/permits/${id}/`, { version: 1, title: 'Moved on' })).status).toBe(200);
    const r = await call('POST', '/sync-offline-data/', {
      device_id: 'tab-leak',
      changes: [
        {
          entity: 'permit',
          op: 'update',
          offline_id: 'leak-2',
          server_id: id,
          client_version: 1,
          data: { title: 'Mine', _id: 'x', sync_origin: 'y', created_day: 'z', sync_batch: 'w', list_seq: 7 },
        },
      ],
    });
    expect(r.status).toBe(200);
    const c = r.body.conflicts[0];
    expect(Object.keys(c.fields)).toEqual(['title']);
    expect(r.text).not.toMatch(/tab-leak\/leak-1|created_day|sync_origin|sync_batch|list_seq|list_block/);
    expect(Object.keys(c.server_state).sort()).toEqual(['id', 'status', 'title', 'version']);
  });

  it('when one create of a sync batch carries a NUL, then only it is rejected (validation_error) and the others are applied', async () => {
    const r = await call('POST', '/sync-offline-data/', {
      device_id: 'tab-nul',
      changes: [
        { entity: 'permit', op: 'create', offline_id: 'nul-1', data: { permit_type_id: 'hot-work', title: 'Fine' } },
        { entity: 'permit', op: 'create', offline_id: 'nul-2', data: { permit_type_id: 'hot-work', title: 'Bad\u0000' } },
        { entity: 'permit', op: 'create', offline_id: 'nul-3', data: { permit_type_id: 'hot-work', title: 'Fine too', safety_checklist: { 'a.b': true } } },
      ],
    });
    expect(r.status).toBe(200);
    expect(r.body.summary).toEqual({ total: 3, applied: 1, conflicts: 0, rejected: 2 });
    expect(r.body.rejected.map((x: { offline_id: string; reason: string }) => [x.offline_id, x.reason])).toEqual([
      ['nul-2', 'validation_error'],
      ['nul-3', 'validation_error'],
    ]);
  });
});
