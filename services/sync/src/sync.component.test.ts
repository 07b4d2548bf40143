/**
 * Component tests: the real sync service in-process on a real store, called over gRPC with the
 * generated client: every reason code and merge hint, scoping, idempotent replays, a property
 * test over random batches, and the outcome counts the health history asks for.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import fc from 'fast-check';
import { createClient, createLogger, DEV_JWT_SECRET, mintToken, type Role, type StartedService } from '@ptw/common';
import { connectMongo, ensureIndexes, recordTally, registerModels, type Models } from '@ptw/db';
import { testStore } from '@ptw/devstore';
import { syncPb } from '@ptw/proto';
import type { Connection } from 'mongoose';
import { start } from './main';

jest.setTimeout(300_000);

const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
let store: { url: string; stop(): Promise<void> };
let svc: StartedService;
let conn: Connection;
let m: Models;
let sync: ReturnType<typeof createClient<syncPb.SyncServiceClient>>['call'];
const hour = 3600_000;

const tok = async (user: string, role: Role, projects: string[]) => ({ token: await mintToken(auth, { user, role, projects, ttlSeconds: 3600 }) });
const worker = () => tok('u-worker', 'worker', ['p1']);
const supervisor = () => tok('u-supervisor', 'supervisor', ['p1']);

let seq = 0;
const oid = (p = 'o') => `${p}-${Date.now()}-${++seq}`;
const permitData = (extra: object = {}) => ({
  permit_type_id: 'hot-work',
  title: 'Grind weld seam',
  location: 'Bay 1',
  ppe_requirements: ['gloves'],
  safety_checklist: { gas_test: false },
  planned_start_time: new Date(Date.now() + hour).toISOString(),
  planned_end_time: new Date(Date.now() + 3 * hour).toISOString(),
  ...extra,
});

async function run(changes: Partial<syncPb.Change>[], who: { token: string }, device = 'tablet-1') {
  return sync.syncOfflineData({ device_id: device, changes: changes.map((c) => ({ entity: '', op: '', offline_id: oid(), data: {}, invalid_reason: '', ...c })) }, who);
}

async function createOne(extra: object = {}, who?: { token: string }) {
  const r = await run([{ entity: 'permit', op: 'create', data: permitData(extra) }], who ?? (await worker()));
  expect(r.applied).toHaveLength(1);
  return r.applied[0].server_id;
}

beforeAll(async () => {
  store = await testStore('sync_component');
  conn = await connectMongo(store.url, createLogger('test', { stdout: false }), { appName: 'test' });
  m = registerModels(conn);
  await ensureIndexes(conn);
  await m.PermitType.create([
    {
      _id: 'hot-work',
      name: 'Hot Work',
      category: 'hot_work',
      risk_level: 'high',
      closeout_items: [
        { key: 'area_cleaned', label: 'Area cleaned', required: true },
        { key: 'photos', label: 'Photos', required: false },
      ],
    },
    { _id: 'electrical', name: 'Electrical', category: 'electrical', risk_level: 'high', requires_isolation: true, closeout_items: [] },
  ]);
  svc = await start({
    ...process.env,
    ...auth,
    NODE_ENV: 'test',
    MONGO_URL: store.url,
    PTW_SYNC_ADDR: '127.0.0.1:0',
    PTW_METRICS_LISTEN: '127.0.0.1:0',
    LOG_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-sync-')),
  });
  sync = createClient(syncPb.SyncServiceClient, `127.0.0.1:${svc.port}`, { defaultDeadlineMs: 120_000 }).call;
});

afterAll(async () => {
  await svc?.stop();
  await conn?.close();
  await store?.stop();
});

describe('outcomes', () => {
  it('when a permit is created offline, then it is applied with its server id and version 1', async () => {
    const r = await run([{ entity: 'permit', op: 'create', offline_id: 'c-1', data: permitData() }], await worker());
    expect(r.summary).toEqual({ total: 1, applied: 1, conflicts: 0, rejected: 0 });
    expect(r.applied[0]).toMatchObject({ entity: 'permit', offline_id: 'c-1', new_version: 1, status: 'applied' });
    expect(await m.Permit.countDocuments({ _id: r.applied[0].server_id, title: 'Grind weld seam' })).toBe(1);
  });

  it('when an update carries the current version, then it is applied and the version moves on', async () => {
    const id = await createOne();
    const r = await run([{ entity: 'permit', op: 'update', server_id: id, client_version: 1, data: { title: 'New title' } }], await worker());
    expect(r.applied[0]).toMatchObject({ server_id: id, new_version: 2 });
  });

  it('when an update is stale, then conflict stale_version with per-field merge hints and the server state; nothing written', async () => {
    const id = await createOne();
    await run([{ entity: 'permit', op: 'update', server_id: id, client_version: 1, data: { title: 'Server title', ppe_requirements: ['gloves', 'visor'] } }], await worker());
    const r = await run(
      [
        {
          entity: 'permit',
          op: 'update',
          server_id: id,
          client_version: 1,
          data: { title: 'Tablet title', ppe_requirements: ['boots'], safety_checklist: { gas_test: true }, location: 'Bay 1', priority: 'high' },
        },
      ],
      await worker(),
    );
    expect(r.conflicts[0]).toMatchObject({ reason: 'stale_version', client_version: 1, server_version: 2, server_state: { id, title: 'Server title', version: 2 } });
    expect(r.conflicts[0].fields).toEqual({
      title: { client: 'Tablet title', server: 'Server title', merge_hint: 'last_write_wins' },
      ppe_requirements: { client: ['boots'], server: ['gloves', 'visor'], merge_hint: 'set_merge' },
      safety_checklist: { client: { gas_test: true }, server: { gas_test: false }, merge_hint: 'true_wins' },
      priority: { client: 'high', server: 'medium', merge_hint: 'manual' },
    });
    expect((await m.Permit.findById(id).lean())?.title).toBe('Server title');
  });

  it('when a stale update sends what the server already has, then it is applied without a write', async () => {
    const id = await createOne();
    await run([{ entity: 'permit', op: 'update', server_id: id, client_version: 1, data: { title: 'Same' } }], await worker());
    const r = await run([{ entity: 'permit', op: 'update', server_id: id, client_version: 1, data: { title: 'Same' } }], await worker());
    expect(r.applied[0]).toMatchObject({ server_id: id, new_version: 2 });
  });

  it('when client_version is missing, then conflict missing_client_version', async () => {
    const id = await createOne();
    const r = await run([{ entity: 'permit', op: 'update', server_id: id, data: { title: 'x' } }], await worker());
    expect(r.conflicts[0]).toMatchObject({ reason: 'missing_client_version', server_version: 1 });
  });

  it('when a status change is refused by the workflow, then conflict workflow_error', async () => {
    const id = await createOne();
    const r = await run([{ entity: 'permit', op: 'update_status', server_id: id, client_version: 1, data: { status: 'approved' } }], await worker());
    expect(r.conflicts[0]).toMatchObject({ reason: 'workflow_error', server_version: 1 });
    expect(JSON.stringify(r.conflicts[0].fields)).toContain('Invalid status transition from draft to approved');
  });

  it('when a status change is allowed, then it is applied', async () => {
    const id = await createOne();
    const r = await run([{ entity: 'permit', op: 'update_status', server_id: id, client_version: 1, data: { status: 'submitted' } }], await worker());
    expect(r.applied[0]).toMatchObject({ new_version: 2 });
    expect((await m.Permit.findById(id).lean())?.status).toBe('submitted');
  });

  it.each([
    [{ entity: 'permit', op: 'update', data: { title: 'x' }, client_version: 1 }, 'missing_server_id'],
    [{ entity: 'permit', op: 'update', server_id: 'ffffffffffffffffffffffff', client_version: 1, data: { title: 'x' } }, 'permit_not_found'],
    [{ entity: 'permit', op: 'update', server_id: 'not-an-id', client_version: 1, data: { title: 'x' } }, 'permit_not_found'],
    [{ entity: 'isolation_point', op: 'update', server_id: 'ffffffffffffffffffffffff', client_version: 1, data: { status: 'isolated' } }, 'isolation_point_not_found'],
    [{ entity: 'permit', op: 'create', data: { ...permitData(), project_id: 'p2' } }, 'project_scope_violation'],
    [{ entity: 'permit', op: 'create', data: { ...permitData(), probability: 'often' } }, 'validation_error'],
    [{ entity: 'permit', op: 'create', data: { ...permitData(), signature: 'data:image/png;base64,AAAA' } }, 'validation_error'],
    [{ entity: 'attachment', op: 'create', data: {} }, 'unsupported_entity'],
    [{ entity: 'permit', op: 'delete', data: {} }, 'unsupported_entity'],
    [{ entity: 'permit', op: 'create', data: permitData(), invalid_reason: 'client_version: expected an integer' }, 'validation_error'],
  ])('when the change is %j, then it is rejected with %s', async (change, reason) => {
    const r = await run([change], await worker());
    expect(r.rejected[0]).toMatchObject({ reason });
    expect(r.summary).toEqual({ total: 1, applied: 0, conflicts: 0, rejected: 1 });
  });

  it("when another project's permit or isolation point is targeted, then it is rejected exactly like an unknown id", async () => {
    const foreign = await createOne({}, await tok('u-w2', 'worker', ['p2']));
    await m.IsolationPoint.create({ permit_id: foreign, project_id: 'p2', name: 'Valve 9', energy_type: 'hydraulic', status: 'assigned', version: 1 });
    const point = await m.IsolationPoint.findOne({ permit_id: foreign }).lean();
    const r = await run(
      [
        { entity: 'permit', op: 'update', server_id: foreign, client_version: 1, data: { title: 'hijack' } },
        { entity: 'isolation_point', op: 'update', server_id: String(point!._id), client_version: 1, data: { status: 'isolated' } },
        { entity: 'closeout', op: 'update', server_id: foreign, client_version: 1, data: { remarks: 'x' } },
      ],
      await worker(),
    );
    expect(r.rejected.map((x) => [x.reason, x.detail])).toEqual([
      ['permit_not_found', 'Permit not found'],
      ['isolation_point_not_found', 'Isolation point not found'],
      ['permit_not_found', 'Permit not found'],
    ]);
    expect(JSON.stringify(r)).not.toContain('hydraulic');
    expect((await m.Permit.findById(foreign).lean())?.title).toBe('Grind weld seam');
  });

  it('when an isolation point would move backwards, then conflict stale_version saying where the server is; set_merge on locks', async () => {
    const id = await createOne();
    const [p] = await m.IsolationPoint.create([{ permit_id: id, project_id: 'p1', name: 'Breaker', energy_type: 'electrical', status: 'assigned', lock_ids: ['L1'], version: 1 }]);
    const sup = await supervisor();
    const ok = await run([{ entity: 'isolation_point', op: 'update', server_id: String(p._id), client_version: 1, data: { status: 'isolated', lock_ids: ['L2'] } }], sup);
    expect(ok.applied[0]).toMatchObject({ new_version: 2 });
    expect((await m.IsolationPoint.findById(p._id).lean())?.lock_ids).toEqual(['L1', 'L2']);
    await run([{ entity: 'isolation_point', op: 'update', server_id: String(p._id), client_version: 2, data: { status: 'verified' } }], sup);
    const back = await run([{ entity: 'isolation_point', op: 'update', server_id: String(p._id), client_version: 1, data: { status: 'isolated' } }], sup);
    expect(back.conflicts[0]).toMatchObject({
      reason: 'stale_version',
      server_version: 3,
      fields: { status: { client: 'isolated', server: 'verified', detail: 'server already at verified' } },
    });
    expect((await m.IsolationPoint.findById(p._id).lean())?.status).toBe('verified');
  });

  it('when a closeout is updated offline, then done true wins and a stale version conflicts with true_wins hints', async () => {
    const id = await createOne();
    await m.Permit.updateOne({ _id: id }, { $set: { status: 'active' } });
    const sup = await supervisor();
    const first = await run([{ entity: 'closeout', op: 'update', server_id: id, client_version: 1, data: { checklist: { area_cleaned: { done: true } } } }], sup);
    expect(first.applied[0]).toMatchObject({ new_version: 2 });
    const undo = await run([{ entity: 'closeout', op: 'update', server_id: id, client_version: 2, data: { checklist: { area_cleaned: { done: false, comments: 'redo' } } } }], sup);
    expect(undo.applied[0]).toMatchObject({ new_version: 3 });
    const doc = await m.Closeout.findOne({ permit_id: id }).lean();
    expect((doc!.checklist as Record<string, { done: boolean; comments: string }>).area_cleaned).toMatchObject({ done: true, comments: 'redo' });
    const stale = await run([{ entity: 'closeout', op: 'update', server_id: id, client_version: 1, data: { checklist: { photos: { done: true } } } }], sup);
    expect(stale.conflicts[0]).toMatchObject({ reason: 'stale_version', fields: { 'checklist.photos.done': { client: true, server: false, merge_hint: 'true_wins' } } });
  });

  it('when a worker may not do the change, then it is rejected permission_denied', async () => {
    const id = await createOne();
    await m.Permit.updateOne({ _id: id }, { $set: { status: 'active' } });
    const r = await run([{ entity: 'closeout', op: 'update', server_id: id, client_version: 1, data: { remarks: 'x' } }], await worker());
    expect(r.rejected[0]).toMatchObject({ reason: 'permission_denied' });
  });

  it('when a batch mixes outcomes, then every change lands in exactly one list and events are persisted', async () => {
    const before = await m.SyncEvent.countDocuments();
    const id = await createOne();
    const r = await run(
      [
        { entity: 'permit', op: 'create', data: permitData() },
        { entity: 'permit', op: 'update', server_id: id, data: { title: 'x' } },
        { entity: 'nope', op: 'x' },
      ],
      await worker(),
    );
    expect(r.summary).toEqual({ total: 3, applied: 1, conflicts: 1, rejected: 1 });
    expect(await m.SyncEvent.countDocuments()).toBe(before + 4);
  });
});

describe('idempotency', () => {
  it('when the same batch is sent 10 times sequentially and 10 times concurrently, then each change is applied once', async () => {
    const who = await worker();
    const id = await createOne();
    const batch = {
      device_id: 'tablet-replay',
      changes: [
        { entity: 'permit', op: 'create', offline_id: 'r-create-1', data: permitData({ title: 'Replay A' }), invalid_reason: '' },
        { entity: 'permit', op: 'create', offline_id: 'r-create-2', data: permitData({ title: 'Replay B' }), invalid_reason: '' },
        { entity: 'permit', op: 'update', offline_id: 'r-update-1', server_id: id, client_version: 1, data: { location: 'Replayed' }, invalid_reason: '' },
      ],
    };
    const first = await sync.syncOfflineData(batch, who);
    expect(first.applied.map((a) => a.status)).toEqual(['applied', 'applied', 'applied']);
    for (let i = 0; i < 9; i++) {
      const again = await sync.syncOfflineData(batch, who);
      expect(again.applied.map((a) => [a.status, a.server_id])).toEqual(first.applied.map((a) => ['already_applied', a.server_id]));
    }
    const concurrent = await Promise.all(Array.from({ length: 10 }, () => sync.syncOfflineData(batch, who)));
    for (const r of concurrent) expect(r.applied.map((a) => a.status)).toEqual(['already_applied', 'already_applied', 'already_applied']);
    expect(await m.Permit.countDocuments({ title: { $in: ['Replay A', 'Replay B'] } })).toBe(2);
    expect((await m.Permit.findById(id).lean())?.version).toBe(2);
  });

  it('when a fresh batch is first sent 10 times concurrently, then each change is still applied once', async () => {
    const who = await worker();
    const batch = { device_id: 'tablet-race', changes: [{ entity: 'permit', op: 'create', offline_id: 'race-1', data: permitData({ title: 'Race once' }), invalid_reason: '' }] };
    const results = await Promise.all(Array.from({ length: 10 }, () => sync.syncOfflineData(batch, who)));
    expect(results.flatMap((r) => r.applied.map((a) => a.status)).sort()).toEqual([...Array(9).fill('already_applied'), 'applied'].sort());
    expect(await m.Permit.countDocuments({ title: 'Race once' })).toBe(1);
  });
});

describe('property: random batches', () => {
  it('when random batches of valid, invalid, duplicated and foreign changes are sent, then totals add up, nothing fails and the store equals applying the accepted changes once', async () => {
    const who = await worker();
    const foreign = await createOne({}, await tok('u-w2', 'worker', ['p2']));
    const own = await createOne({ title: 'base of the property test' });
    const titles = fc.string({ minLength: 1, maxLength: 30 });
    const change = fc.oneof(
      fc.record({
        entity: fc.constant('permit'),
        op: fc.constant('create'),
        offline_id: fc.constantFrom('a', 'b', 'c', 'd', 'e'),
        data: titles.map((t) => permitData({ title: `prop ${t}` })),
      }),
      fc.record({ entity: fc.constant('permit'), op: fc.constant('create'), offline_id: fc.constantFrom('x1', 'x2'), data: fc.constant({ title: 5 }) }),
      fc.record({
        entity: fc.constant('permit'),
        op: fc.constant('update'),
        offline_id: fc.constantFrom('u1', 'u2'),
        server_id: fc.constant(foreign),
        client_version: fc.constant(1),
        data: fc.constant({ title: 'hijack' }),
      }),
      fc.record({
        entity: fc.constant('permit'),
        op: fc.constant('update'),
        offline_id: fc.constantFrom('u3', 'u4'),
        server_id: fc.constant(own),
        client_version: fc.integer({ min: 0, max: 5 }),
        data: titles.map((t) => ({ location: t })),
      }),
      fc.record({ entity: fc.string({ maxLength: 10 }), op: fc.string({ maxLength: 10 }), offline_id: fc.string({ maxLength: 10 }), data: fc.constant({}) }),
    );
    let run = 0;
    const createdOnce = new Map<string, string>();
    await fc.assert(
      fc.asyncProperty(fc.array(change, { maxLength: 12 }), async (changes) => {
        run++;
        const device = `prop-${run % 3}`;
        const r = await sync.syncOfflineData({ device_id: device, changes: changes.map((c) => ({ invalid_reason: '', ...c })) }, who);
        expect(r.summary!.total).toBe(changes.length);
        expect(r.summary!.applied + r.summary!.conflicts + r.summary!.rejected).toBe(changes.length);
        expect(r.applied.length + r.conflicts.length + r.rejected.length).toBe(changes.length);
        for (const a of r.applied.filter((x) => x.entity === 'permit' && x.offline_id.length === 1)) {
          const key = `${device}/${a.offline_id}`;
          if (a.status === 'applied') {
            expect(createdOnce.has(key)).toBe(false);
            createdOnce.set(key, a.server_id);
          } else expect(createdOnce.get(key)).toBe(a.server_id);
        }
      }),
      { numRuns: 40 },
    );
    expect((await m.Permit.findById(foreign).lean())?.title).toBe('Grind weld seam');
    expect(await m.Permit.countDocuments({ title: /^prop / })).toBe(createdOnce.size);
  });
});

describe('stats for the health history', () => {
  const manager = () => tok('u-manager', 'manager', ['p1']);

  it('when the counts since 24 hourly starts are asked at once, then each equals GetSyncStats since it, and the hours hold the tallies placed in them', async () => {
    const at = Date.now();
    // Outcomes placed at known ages (the tests above synced only in the last minutes).
    await recordTally(m, 'sync', { applied: 7, conflicts: 2 }, new Date(at - 5 * hour - 2 * 60_000));
    await recordTally(m, 'sync', { rejected: 3 }, new Date(at - 3 * hour - 20 * 60_000));
    // A tally is never written into a closed hour: the rollups the service saved (at its start, empty) go.
    await m.TallyRollup.deleteMany({ series: 'sync' });
    const since_each = Array.from({ length: 24 }, (_, k) => new Date(at - (k + 1) * hour).toISOString());
    const { each } = await sync.getSyncStatsEach({ since_each }, await manager());
    expect(each).toHaveLength(24);
    for (const [k, since] of since_each.entries()) expect({ since, ...each[k] }).toEqual({ since, ...(await sync.getSyncStats({ since }, await manager())) });
    const hourOf = (k: number) => ({
      applied: each[k].applied - each[k - 1].applied,
      conflicts: each[k].conflicts - each[k - 1].conflicts,
      rejected: each[k].rejected - each[k - 1].rejected,
    });
    expect(hourOf(5)).toEqual({ applied: 7, conflicts: 2, rejected: 0 });
    expect(hourOf(3)).toEqual({ applied: 0, conflicts: 0, rejected: 3 });
    expect(hourOf(4)).toEqual({ applied: 0, conflicts: 0, rejected: 0 });
  });

  it('when a worker asks, or the starts are missing, not dates or too far back, then PERMISSION_DENIED or INVALID_ARGUMENT', async () => {
    const since_each = [new Date().toISOString()];
    await expect(sync.getSyncStatsEach({ since_each }, await worker())).rejects.toMatchObject({ code: GrpcStatus.PERMISSION_DENIED });
    for (const bad of [[], ['not a date'], [new Date(Date.now() - 49 * hour).toISOString()]]) {
      await expect(sync.getSyncStatsEach({ since_each: bad }, await manager())).rejects.toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT });
    }
  });
});
