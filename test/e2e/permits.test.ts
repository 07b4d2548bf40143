/**
 * Permit lifecycle through the real gateway and services: the permission regression matrix
 * (role × own/other project × route, with the original module's cases) and hostile input.
 */
import mongoose, { type Connection } from 'mongoose';
import { registerModels, type Models } from '@ptw/db';
import type { Role } from '@ptw/common';
import { startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(180_000);

let stack: Stack;
let conn: Connection;
let m: Models;
const api = (p: string) => `${stack.gatewayUrl}/api/v1/ptw${p}`;

async function call(method: string, path: string, tok: string, body?: unknown, raw?: string) {
  const res = await fetch(api(path), {
    method,
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const hour = 3600_000;
const permitBody = (extra: object = {}) => ({
  permit_type_id: 'electrical-isolation',
  title: 'Swap motor bearing',
  planned_start_time: new Date(Date.now() + hour).toISOString(),
  planned_end_time: new Date(Date.now() + 4 * hour).toISOString(),
  ...extra,
});

/** A p1 permit created by u-worker through the API, then placed in `status` directly in the store. */
async function permitIn(status: string, withPoint = false) {
  const w = await token('u-worker', 'worker', ['p1']);
  const created = await call('POST', '/permits/', w, permitBody({ permit_type_id: withPoint ? 'electrical-isolation' : 'hot-work' }));
  expect(created.status).toBe(201);
  let pointId: string | undefined;
  if (withPoint) {
    const iso = await call('POST', `/permits/${created.body.id}/assign_isolation/`, w, { name: 'Breaker 7', energy_type: 'electrical' });
    pointId = iso.body.points[0].id;
  }
  await m.Permit.updateOne({ _id: created.body.id }, { $set: { status } });
  return { id: created.body.id as string, pointId };
}

beforeAll(async () => {
  stack = await startTestStack('permits');
  conn = await mongoose.createConnection(stack.mongoUrl).asPromise();
  m = registerModels(conn);
});

afterAll(async () => {
  await conn?.close();
  await stack?.stop();
});

type Cell = { route: string; run: (tok: string) => Promise<{ status: number }> };

const routes: Cell[] = [
  { route: 'GET permit', run: async (t) => call('GET', `/permits/${(await permitIn('draft')).id}/`, t) },
  { route: 'PATCH permit (draft)', run: async (t) => call('PATCH', `/permits/${(await permitIn('draft')).id}/`, t, { version: 1, location: 'Bay 9' }) },
  { route: 'approve (under_review)', run: async (t) => call('POST', `/permits/${(await permitIn('under_review')).id}/transition/`, t, { status: 'approved' }) },
  { route: 'verify (submitted)', run: async (t) => call('POST', `/permits/${(await permitIn('submitted')).id}/transition/`, t, { status: 'under_review' }) },
  { route: 'GET isolation', run: async (t) => call('GET', `/permits/${(await permitIn('active', true)).id}/isolation/`, t) },
  {
    route: 'update_isolation',
    run: async (t) => {
      const p = await permitIn('active', true);
      return call('POST', `/permits/${p.id}/update_isolation/`, t, { point_id: p.pointId, action: 'isolate', lock_ids: ['L-1'] });
    },
  },
  { route: 'GET closeout', run: async (t) => call('GET', `/permits/${(await permitIn('active')).id}/closeout/`, t) },
  { route: 'update_closeout', run: async (t) => call('POST', `/permits/${(await permitIn('active')).id}/update_closeout/`, t, { checklist: { area_cleaned: { done: true } } }) },
];

/** Expected status per route for [worker, supervisor, manager] on their own project. */
const own: Record<string, [number, number, number]> = {
  'GET permit': [200, 200, 200],
  'PATCH permit (draft)': [200, 200, 200],
  'approve (under_review)': [403, 403, 200],
  'verify (submitted)': [403, 200, 200],
  'GET isolation': [200, 200, 200],
  update_isolation: [403, 200, 200],
  'GET closeout': [200, 200, 200],
  update_closeout: [403, 200, 200],
};
const roles: Role[] = ['worker', 'supervisor', 'manager'];

describe('permission regression matrix', () => {
  const cells = routes.flatMap((r) => roles.flatMap((role, i) => [[r.route, role, 'own', own[r.route][i]] as const, [r.route, role, 'other', 404] as const]));

  it.each(cells)('when %s is called by a %s of the %s project, then %i', async (routeName, role, project, expected) => {
    const route = routes.find((r) => r.route === routeName)!;
    // The own-project worker is the permits' creator (workers edit their own drafts).
    const user = role === 'worker' && project === 'own' ? 'u-worker' : `u-${role}-${project}`;
    const tok = await token(user, role, [project === 'own' ? 'p1' : 'p2']);
    const res = await route.run(tok);
    expect(res.status).toBe(expected);
  });
});

describe('bad input never loses data nor answers 500', () => {
  let w: string;
  beforeAll(async () => {
    w = await token('u-worker', 'worker', ['p1']);
  });

  it.each([
    ['malformed JSON', undefined, '{"title": ', 400, 'invalid_json'],
    ['unknown field', { ...permitBody(), colour: 'red' }, undefined, 400, 'colour'],
    ['wrong type', { ...permitBody(), severity: 'very' }, undefined, 400, 'severity'],
    ['end before start', permitBody({ planned_end_time: new Date(Date.now() - hour).toISOString() }), undefined, 400, 'planned_end_time'],
    ['unknown permit type', permitBody({ permit_type_id: 'no-such-type' }), undefined, 400, 'permit_type_id'],
    ['array body', undefined, '[1,2]', 400, 'invalid_body'],
    ['operator injection', { ...permitBody(), title: { $gt: '' } }, undefined, 400, 'title'],
  ])('when a create has %s, then it is refused naming the problem and nothing is stored', async (_name, body, raw, status, mention) => {
    const before = await m.Permit.countDocuments();
    const res = await call('POST', '/permits/', w, body, raw);
    expect(res.status).toBe(status);
    expect(JSON.stringify(res.body.error)).toContain(mention);
    expect(await m.Permit.countDocuments()).toBe(before);
  });

  it('when the body is larger than the limit, then 413', async () => {
    const res = await call('POST', '/permits/', w, undefined, JSON.stringify({ title: 'x'.repeat(2 * 1024 * 1024) }));
    expect(res.status).toBe(413);
  });

  it.each(['abc', '000000000000000000000000', '%7B%22%24gt%22%3A%22%22%7D'])('when the permit id is %s, then 404', async (id) => {
    expect((await call('GET', `/permits/${id}/`, w)).status).toBe(404);
    expect((await call('POST', `/permits/${id}/transition/`, w, { status: 'submitted' })).status).toBe(404);
  });

  it('when PATCH has no version or a non-integer one, then 400 naming version', async () => {
    const p = await permitIn('draft');
    for (const b of [{ title: 'x' }, { version: '1', title: 'x' }, { version: 1.5 }]) {
      const res = await call('PATCH', `/permits/${p.id}/`, w, b);
      expect([res.status, res.body.error.details?.field]).toEqual([400, 'version']);
    }
  });

  it('when a transition names an unknown status or has extra fields, then 400', async () => {
    const p = await permitIn('draft');
    expect((await call('POST', `/permits/${p.id}/transition/`, w, { status: 'done' })).status).toBe(400);
    expect((await call('POST', `/permits/${p.id}/transition/`, w, { status: 'submitted', force: true })).status).toBe(400);
    expect((await call('POST', `/permits/${p.id}/transition/`, w, { status: 5 })).status).toBe(400);
  });

  it('when a list filter is malformed, then 400 naming it', async () => {
    expect((await call('GET', '/permits/?created_from=yesterday', w)).body.error.details.field).toBe('created_from');
    expect((await call('GET', '/permits/?status=open', w)).status).toBe(400);
    expect((await call('GET', '/permits/?page_size=1000', w)).status).toBe(400);
    expect((await call('GET', '/permits/?page=-1', w)).status).toBe(400);
  });
});

describe('list and notifications', () => {
  it('when a worker lists with filters, then only matching permits of their projects come back, paginated', async () => {
    const w = await token('u-worker', 'worker', ['p1']);
    const res = await call('GET', '/permits/?status=draft,active&page=1&page_size=5', w);
    expect(res.status).toBe(200);
    expect(res.body.results.length).toBeLessThanOrEqual(5);
    expect(res.body.count).toBeGreaterThanOrEqual(res.body.results.length);
    expect(res.body.results.every((p: { project_id: string; status: string }) => p.project_id === 'p1' && ['draft', 'active'].includes(p.status))).toBe(true);
    const foreign = await call('GET', '/permits/?project=p2', w);
    expect(foreign.body).toEqual({ count: 0, results: [] });
  });

  it("when a user marks someone else's notification read, then 404; their own works and the count drops", async () => {
    const [mine, theirs] = await m.Notification.insertMany([
      { user_id: 'u-worker', type: 'ptw_expiring', title: 't', message: 'm', dedupe_key: `k-${Date.now()}`, created_at: new Date() },
      { user_id: 'u-other', type: 'ptw_expiring', title: 't', message: 'm', dedupe_key: `k-${Date.now()}`, created_at: new Date() },
    ]);
    const w = await token('u-worker', 'worker', ['p1']);
    const before = (await call('GET', '/notifications/unread-count/', w)).body.count;
    expect((await call('POST', `/notifications/${theirs._id}/read/`, w)).status).toBe(404);
    expect((await call('POST', `/notifications/${mine._id}/read/`, w)).body).toMatchObject({ read: true });
    expect((await call('GET', '/notifications/unread-count/', w)).body.count).toBe(before - 1);
  });
});

describe('isolation summary', () => {
  it('when a permit has one required point not isolated yet, then the summary over HTTP says pending_verification: 1', async () => {
    const { id, pointId } = await permitIn('draft', true);
    const s = await token('u-supervisor', 'supervisor', ['p1']);
    const before = await call('GET', `/permits/${id}/isolation/`, s);
    expect(before.status).toBe(200);
    expect(before.body.summary).toEqual({ total: 1, required: 1, verified: 0, deisolated: 0, pending_verification: 1 });
    await call('POST', `/permits/${id}/update_isolation/`, s, { point_id: pointId, action: 'isolate' });
    expect((await call('GET', `/permits/${id}/isolation/`, s)).body.summary).toMatchObject({ verified: 0, pending_verification: 1 });
    await call('POST', `/permits/${id}/update_isolation/`, s, { point_id: pointId, action: 'verify' });
    expect((await call('GET', `/permits/${id}/isolation/`, s)).body.summary).toEqual({ total: 1, required: 1, verified: 1, deisolated: 0, pending_verification: 0 });
  });
});
