/**
 * Component tests of sync in bulk: the real sync service in-process on a real store, called over
 * gRPC. A 500-change batch replayed concurrently lands exactly once, and the number of store
 * commands a batch of creates costs does not grow with the batch, an empty batch costs none (driver
 * command monitoring on the service's own connection).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createClient, createLogger, DEV_JWT_SECRET, mintToken, type StartedService } from '@ptw/common';
import { connectMongo, countStoreCommands, ensureIndexes, registerModels, type CommandCounter, type Models } from '@ptw/db';
import { testStore } from '@ptw/devstore';
import { FILLED_READS_MAX, LIST_BLOCK } from '@ptw/domain';
import { syncPb } from '@ptw/proto';
import { Types, type Connection } from 'mongoose';
import { start } from './main';

jest.setTimeout(300_000);

const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
let store: { url: string; stop(): Promise<void> };
let svc: StartedService;
let conn: Connection;
let m: Models;
let sync: ReturnType<typeof createClient<syncPb.SyncServiceClient>>['call'];
let who: { token: string };
let counter: CommandCounter;

const creates = (prefix: string, n: number): syncPb.Change[] =>
  Array.from({ length: n }, (_, i) => ({
    entity: 'permit',
    op: 'create',
    offline_id: `${prefix}-${i}`,
    data: { permit_type_id: 'hot-work', title: `${prefix} ${i}`, location: `Bay ${i % 7}`, probability: 1 + (i % 5), severity: 2 },
    invalid_reason: '',
  }));

beforeAll(async () => {
  store = await testStore('sync_bulk');
  conn = await connectMongo(store.url, createLogger('test', { stdout: false }), { appName: 'test' });
  m = registerModels(conn);
  await ensureIndexes(conn);
  await m.PermitType.create({ _id: 'hot-work', name: 'Hot Work', category: 'hot_work', risk_level: 'high', closeout_items: [] });
  // Before the service connects: its connection turns command monitoring on only while a counter listens.
  counter = countStoreCommands('ptw-sync');
  svc = await start({
    ...process.env,
    ...auth,
    NODE_ENV: 'test',
    MONGO_URL: store.url,
    PTW_SYNC_ADDR: '127.0.0.1:0',
    PTW_METRICS_LISTEN: '127.0.0.1:0',
    LOG_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-sync-bulk-')),
  });
  sync = createClient(syncPb.SyncServiceClient, `127.0.0.1:${svc.port}`, { defaultDeadlineMs: 120_000 }).call;
  who = { token: await mintToken(auth, { user: 'u-worker', role: 'worker', projects: ['p1'], ttlSeconds: 3600 }) };
});

afterAll(async () => {
  counter?.close();
  await svc?.stop();
  await conn?.close();
  await store?.stop();
});

/** Blocks whose last place (24, 49, 74, …) `n` permits written after place `before` take. */
function blocksFilled(before: number, n: number): number {
  let k = 0;
  for (let place = before + 1; place <= before + n; place++) if (place % LIST_BLOCK === LIST_BLOCK - 1) k++;
  return k;
}

/** The store commands one sync request costs. */
async function commandsOf(changes: syncPb.Change[], device: string) {
  counter.reset();
  const r = await sync.syncOfflineData({ device_id: device, changes }, who);
  return { r, commands: counter.names() };
}

describe('command budget', () => {
  it('when batches of 1, 100 and 500 creates are synced, then each costs the same 8 store commands plus 3 per block it fills (at most 2); a replay of 500 costs 5', async () => {
    const budgets: Record<number, string[]> = {};
    const filled: Record<number, number> = {};
    // The service's first create reads the store's registration mark (once per process) and finds the
    // permit type active (remembered for a few seconds, permit-types.ts in @ptw/domain): not part of a batch's cost.
    await commandsOf(creates('budget-warm-up', 1), 'tablet-warm-up');
    for (const n of [1, 100, 500]) {
      const before = await m.Permit.countDocuments({ project_id: 'p1' });
      const { r, commands: used } = await commandsOf(creates(`budget-${n}`, n), 'tablet-budget');
      expect(r.summary).toEqual({ total: n, applied: n, conflicts: 0, rejected: 0 });
      budgets[n] = used;
      // Each block the batch fills is read by the create (status-blocks.ts), the newest FILLED_READS_MAX.
      filled[n] = Math.min(blocksFilled(before, n), FILLED_READS_MAX);
    }
    expect(filled).toEqual({ 1: 0, 100: 2, 500: 2 });
    // Receipts claimed; numbers reserved; the writer's last place confirmed (1 probe); permits; then
    // together: the project's place hint published (registration.ts: before the creates are
    // answered), each filled block read and its reading saved (older ones deleted); audit events;
    // sync events and the batch's tally.
    const head = ['insert', 'findAndModify', 'find', 'insert'];
    const tail = (k: number) => ['update', 'insert', 'insert', 'insert', ...Array.from({ length: k }, () => ['find', 'insert', 'delete']).flat()].sort().join('+');
    const steps = (used: string[]) => [used[0], used[1], used[2], used[3], used.slice(4).sort().join('+')];
    expect({ 1: steps(budgets[1]), 100: steps(budgets[100]), 500: steps(budgets[500]) }).toEqual({ 1: [...head, tail(0)], 100: [...head, tail(2)], 500: [...head, tail(2)] });
    expect(budgets[500]).toHaveLength(8 + 3 * FILLED_READS_MAX);

    // Receipts refused, the batch's receipts read, its permits checked (one equality each), sync events and tally.
    const { r, commands: replay } = await commandsOf(creates('budget-500', 500), 'tablet-budget');
    expect(r.summary).toEqual({ total: 500, applied: 500, conflicts: 0, rejected: 0 });
    expect(r.applied.every((a) => a.status === 'already_applied')).toBe(true);
    expect(replay).toEqual(['insert', 'find', 'find', 'insert', 'insert']);
  });

  it('when a batch holds 8 creates and 2 edits (the shift-start mix), then one command claims all 10 and the batch costs 17 (+3 per block it fills)', async () => {
    const first = await sync.syncOfflineData({ device_id: 'tablet-mix', changes: creates('mix-0', 8) }, who);
    const edits = first.applied.slice(0, 2).map((a, k) => ({
      entity: 'permit',
      op: 'update',
      offline_id: `mix-e${k}`,
      server_id: a.server_id,
      client_version: a.new_version,
      data: { title: `mix edited ${k}`, location: 'Bay 9' },
      invalid_reason: '',
    }));
    const before = await m.Permit.countDocuments({ project_id: 'p1' });
    counter.reset();
    const r = await sync.syncOfflineData({ device_id: 'tablet-mix', changes: [...creates('mix-1', 8), ...edits] }, who);
    expect(r.summary).toEqual({ total: 10, applied: 10, conflicts: 0, rejected: 0 });
    expect(r.applied.slice(8).map((a) => a.new_version)).toEqual([2, 2]);
    const filled = blocksFilled(before, 8);
    const byName = counter.byName();
    expect(byName['insert sync_receipts']).toBe(1);
    // The edits' titles are searched fields: their block's mark (text-blocks.ts) is sent once per process and 10-s slot.
    const marks = (byName['insert block_marks'] ?? 0) + (byName['delete block_marks'] ?? 0);
    expect({ total: counter.total - marks, marks: marks <= 3 }).toEqual({ total: 17 + 3 * filled, marks: true });
  });

  it('when a batch has no changes, then it costs no store command and records no sync event', async () => {
    const events = await m.SyncEvent.countDocuments({ device_id: 'tablet-empty' });
    const { r, commands: used } = await commandsOf([], 'tablet-empty');
    expect(r.summary).toEqual({ total: 0, applied: 0, conflicts: 0, rejected: 0 });
    // Nothing to apply, so nothing to persist (SPEC §5 records outcomes, and there are none).
    expect(used).toEqual([]);
    expect(await m.SyncEvent.countDocuments({ device_id: 'tablet-empty' })).toBe(events);
  });
});

describe('concurrent replay', () => {
  it('when the same 500-change batch is sent 5 times at once, then every change is applied exactly once and the others answer already_applied', async () => {
    const batch = { device_id: 'tablet-storm', changes: creates('storm', 500) };
    const results = await Promise.all(Array.from({ length: 5 }, () => sync.syncOfflineData(batch, who)));
    for (const r of results) {
      expect(r.summary).toEqual({ total: 500, applied: 500, conflicts: 0, rejected: 0 });
      expect(r.applied.map((a) => a.offline_id)).toEqual(batch.changes.map((c) => c.offline_id));
    }
    for (let i = 0; i < 500; i++) {
      const answers = results.map((r) => r.applied[i]);
      expect(answers.filter((a) => a.status === 'applied')).toHaveLength(1);
      expect(new Set(answers.map((a) => a.server_id)).size).toBe(1);
      expect(answers.every((a) => a.new_version === 1)).toBe(true);
    }
    const permits = await m.Permit.find({ title: /^storm / }, { permit_number: 1, title: 1 }).lean();
    expect(permits).toHaveLength(500);
    expect(new Set(permits.map((p) => p.title)).size).toBe(500);
    expect(new Set(permits.map((p) => p.permit_number)).size).toBe(500);
    expect(new Set(permits.map((p) => String(p._id)))).toEqual(new Set(results[0].applied.map((a) => a.server_id)));
    expect(await m.AuditEvent.countDocuments({ permit_id: { $in: permits.map((p) => String(p._id)) }, action: 'create' })).toBe(500);
  });
});

describe('updates', () => {
  it('when a batch changes 20 permits twice each, interleaved, then each permit gets its changes in batch order', async () => {
    const created = await sync.syncOfflineData({ device_id: 'tablet-edit', changes: creates('edit', 20) }, who);
    const ids = created.applied.map((a) => a.server_id);
    const changes: syncPb.Change[] = [];
    for (const round of [1, 2]) {
      for (const [k, id] of ids.entries()) {
        changes.push({ entity: 'permit', op: 'update', offline_id: `edit-${k}-v${round}`, server_id: id, client_version: round, data: { location: `round ${round}` }, invalid_reason: '' });
      }
    }
    const r = await sync.syncOfflineData({ device_id: 'tablet-edit', changes }, who);
    expect(r.summary).toEqual({ total: 40, applied: 40, conflicts: 0, rejected: 0 });
    expect(r.applied.map((a) => a.new_version)).toEqual([...Array(20).fill(2), ...Array(20).fill(3)]);
    const stored = await m.Permit.find({ _id: { $in: ids } }, { version: 1, location: 1 }).lean();
    expect(stored.map((p) => [p.version, p.location])).toEqual(Array(20).fill([3, 'round 2']));
  });
});

describe('edit budget', () => {
  it('when a batch edits 5 permits, then each permit is read once (the read that classifies the change is the one edited) and written once, and their receipts are claimed with one insert and recorded with one update', async () => {
    const created = await sync.syncOfflineData({ device_id: 'tablet-edit-budget', changes: creates('edit-budget', 5) }, who);
    const changes: syncPb.Change[] = created.applied.map((a, k) => ({
      entity: 'permit',
      op: 'update',
      offline_id: `edit-budget-${k}-v1`,
      server_id: a.server_id,
      client_version: 1,
      data: { title: `edited ${k}` },
      invalid_reason: '',
    }));
    const r = await counter.measure(() => sync.syncOfflineData({ device_id: 'tablet-edit-budget', changes }, who));
    expect(r.result.summary).toEqual({ total: 5, applied: 5, conflicts: 0, rejected: 0 });
    expect(r.byName).toMatchObject({ 'find permits': 5, 'findAndModify permits': 5, 'insert sync_receipts': 1, 'update sync_receipts': 1 });
    // Sent again as after a lost answer: one claim command refused for all, then each receipt read.
    const again = await counter.measure(() => sync.syncOfflineData({ device_id: 'tablet-edit-budget', changes }, who));
    expect(again.result.applied.map((a) => [a.status, a.new_version])).toEqual(Array(5).fill(['already_applied', 2]));
    expect(again.byName).toMatchObject({ 'insert sync_receipts': 1, 'find sync_receipts': 5 });
    expect(again.byName['find permits'] ?? 0).toBe(0);
    const stored = await m.Permit.find({ _id: { $in: created.applied.map((a) => a.server_id) } }, { title: 1, version: 1 }).lean();
    expect(stored.map((p) => [p.version, p.title]).sort()).toEqual([0, 1, 2, 3, 4].map((k) => [2, `edited ${k}`]));
  });
});

describe('crash recovery', () => {
  it('when a process died after claiming creates, then a retry takes over a stale claim with its permit id, answers one whose permit was written at once, and waits for a fresh one', async () => {
    const [lost, written, fresh] = creates('crash', 3);
    const ids = [new Types.ObjectId(), new Types.ObjectId(), new Types.ObjectId()];
    const claim = (c: syncPb.Change, id: Types.ObjectId, ageMs: number) => ({
      device_id: 'tablet-crash',
      offline_id: c.offline_id,
      entity: 'permit',
      status: 'reserved',
      server_id: String(id),
      new_version: 1,
      user_id: 'u-worker',
      at: new Date(Date.now() - ageMs),
    });
    await m.SyncReceipt.insertMany([claim(lost, ids[0], 30_000), claim(written, ids[1], 1_000), claim(fresh, ids[2], 0)]);
    await m.Permit.create({
      _id: ids[1],
      permit_number: 'PTW-CRASH-1',
      project_id: 'p1',
      permit_type_id: 'hot-work',
      title: 'crash 1',
      status: 'draft',
      created_by: 'u-worker',
      version: 1,
      created_at: new Date(),
      updated_at: new Date(),
    });

    const first = await sync.syncOfflineData({ device_id: 'tablet-crash', changes: [lost, written] }, who);
    expect(first.applied.map((a) => [a.offline_id, a.server_id, a.status])).toEqual([
      [lost.offline_id, String(ids[0]), 'applied'],
      [written.offline_id, String(ids[1]), 'already_applied'],
    ]);
    expect(await m.Permit.countDocuments({ title: /^crash / })).toBe(2);

    const started = Date.now();
    const busy = await sync.syncOfflineData({ device_id: 'tablet-crash', changes: [fresh] }, who);
    expect(Date.now() - started).toBeGreaterThanOrEqual(9_000);
    expect(busy.conflicts[0]).toMatchObject({ offline_id: fresh.offline_id, reason: 'stale_version' });
    expect(JSON.stringify(busy.conflicts[0].fields)).toContain('being applied by another request');
    expect(await m.Permit.countDocuments({ _id: ids[2] })).toBe(0);
  });
});
