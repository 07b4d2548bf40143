/**
 * GetHealthHistory: the real health service in-process, called with the generated client, against
 * stand-in sync and export peers (real gRPC servers answering the counts since each of the asked
 * times from a list of event times): hour buckets, the manage check, bad hours, the one-minute
 * cache, a peer failing or down.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Server, ServerCredentials, status as GrpcStatus, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { createClient, DEV_JWT_SECRET, mintToken, type Role, type StartedService } from '@ptw/common';
import { exportPb, healthPb, syncPb } from '@ptw/proto';
import { start } from './main';

jest.setTimeout(60_000);

const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
const MIN = 60_000;
const now = Date.now();
const syncEvents: { at: number; outcome: 'applied' | 'conflict' | 'rejected' }[] = [
  { at: now - 30 * MIN, outcome: 'applied' },
  { at: now - 90 * MIN, outcome: 'conflict' },
  { at: now - 100 * MIN, outcome: 'conflict' },
  { at: now - 150 * MIN, outcome: 'rejected' },
  { at: now - 300 * MIN, outcome: 'applied' },
];
const exportEvents = [now - 20 * MIN, now - 40 * MIN];

type SinceEach = ServerUnaryCall<{ since_each: string[] }, unknown>;
/** How the stand-in sync peer answers GetSyncStatsEach: the counts, an error, or one window short. */
let syncAnswer: 'counts' | 'error' | 'short' = 'counts';
/** The `since_each` of every GetSyncStatsEach the sync peer was asked. */
const syncAsked: string[][] = [];

function peer(add: (server: Server) => void): Promise<{ server: Server; addr: string }> {
  const server = new Server();
  add(server);
  return new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve({ server, addr: `127.0.0.1:${port}` }))),
  );
}

let svc: StartedService;
let syncPeer: { server: Server; addr: string };
let exportPeer: { server: Server; addr: string };
let health: ReturnType<typeof createClient<healthPb.HealthServiceClient>>;

const as = async (role: Role) => ({ token: await mintToken(auth, { user: `u-${role}`, role, projects: ['p1'], ttlSeconds: 600 }) });

beforeAll(async () => {
  syncPeer = await peer((s) =>
    s.addService(syncPb.SyncServiceService, {
      getSyncStatsEach: (call: SinceEach, cb: sendUnaryData<syncPb.GetSyncStatsEachResponse>) => {
        syncAsked.push(call.request.since_each);
        if (syncAnswer === 'error') return cb({ code: GrpcStatus.INTERNAL, details: 'store down' });
        const each = call.request.since_each.map((since) => {
          const within = syncEvents.filter((e) => e.at >= Date.parse(since));
          const count = (o: string) => within.filter((e) => e.outcome === o).length;
          return { applied: count('applied'), conflicts: count('conflict'), rejected: count('rejected') };
        });
        cb(null, { each: syncAnswer === 'short' ? each.slice(1) : each });
      },
      // GetHealth's 24-hour figure (an empty `since`: 0 here).
      getSyncStats: (_call: unknown, cb: sendUnaryData<syncPb.GetSyncStatsResponse>) => cb(null, { applied: 0, conflicts: 0, rejected: 0 }),
    }),
  );
  exportPeer = await peer((s) =>
    s.addService(exportPb.ExportServiceService, {
      getExportStatsEach: (call: SinceEach, cb: sendUnaryData<exportPb.GetExportStatsEachResponse>) =>
        cb(null, { each: call.request.since_each.map((since) => ({ bulk_exports: exportEvents.filter((at) => at >= Date.parse(since)).length })) }),
    }),
  );
  svc = await start({
    ...process.env,
    ...auth,
    NODE_ENV: 'test',
    PTW_HEALTH_ADDR: '127.0.0.1:0',
    PTW_SYNC_ADDR: syncPeer.addr,
    PTW_EXPORT_ADDR: exportPeer.addr,
    PTW_WORKFLOW_ADDR: '127.0.0.1:1',
    PTW_HEALTH_PEER_DEADLINE_MS: '500',
    PTW_METRICS_LISTEN: '127.0.0.1:0',
    LOG_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-health-')),
  });
  health = createClient(healthPb.HealthServiceClient, `127.0.0.1:${svc.port}`, { defaultDeadlineMs: 10_000 });
});

afterAll(async () => {
  health?.close();
  await svc?.stop();
  syncPeer?.server.forceShutdown();
  exportPeer?.server.forceShutdown();
});

it('when a manager asks for 3 hours, then each hour holds the events of that hour, oldest first', async () => {
  syncAsked.length = 0;
  const h = await health.call.getHealthHistory({ hours: 3 }, await as('manager'));
  // One call for the three windows, since 1, 2 and 3 hours before as_of.
  expect(syncAsked).toEqual([[1, 2, 3].map((k) => new Date(Date.parse(h.as_of) - k * 60 * MIN).toISOString())]);
  expect(h.degraded).toBe(false);
  expect(h.hours.map((b) => [b.applied, b.conflicts, b.rejected, b.bulk_exports])).toEqual([
    [0, 0, 1, 0],
    [0, 2, 0, 0],
    [1, 0, 0, 2],
  ]);
  expect(Date.parse(h.hours[2].start)).toBe(Date.parse(h.as_of) - 60 * MIN);
});

it('when the same hours are asked again within a minute, then the first answer is returned without asking the peers', async () => {
  const first = await health.call.getHealthHistory({ hours: 3 }, await as('service'));
  syncEvents.push({ at: Date.now(), outcome: 'applied' });
  const again = await health.call.getHealthHistory({ hours: 3 }, await as('manager'));
  expect(again).toEqual(first);
});

it('when no hours are given, then 12 are returned', async () => {
  expect((await health.call.getHealthHistory({ hours: 0 }, await as('manager'))).hours).toHaveLength(12);
});

it.each([25, -1])('when hours is %i, then INVALID_ARGUMENT', async (hours) => {
  await expect(health.call.getHealthHistory({ hours }, await as('manager'))).rejects.toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT });
});

it('when a worker or supervisor asks, then PERMISSION_DENIED', async () => {
  for (const role of ['worker', 'supervisor'] as const) {
    await expect(health.call.getHealthHistory({ hours: 2 }, await as(role))).rejects.toMatchObject({ code: GrpcStatus.PERMISSION_DENIED });
  }
});

// Hours not asked by the other tests: their answers are not in the cache.
it.each([
  ['fails', 'error', 4],
  ['answers fewer windows than asked', 'short', 6],
] as const)(
  'when the sync peer %s, then the history is degraded with every sync figure at 0 (none half counted), not cached, and the export figures still there',
  async (_what, answer, hours) => {
    const zeros = (n: number) => Array<number>(n).fill(0);
    syncAnswer = answer;
    try {
      const h = await health.call.getHealthHistory({ hours }, await as('manager'));
      expect(h.degraded).toBe(true);
      expect(h.hours.map((b) => [b.applied, b.conflicts, b.rejected])).toEqual(zeros(hours).map(() => [0, 0, 0]));
      expect(h.hours.map((b) => b.bulk_exports)).toEqual([...zeros(hours - 1), 2]);
    } finally {
      syncAnswer = 'counts';
    }
    // A degraded answer is not kept: the next request asks again and gets the figures.
    const again = await health.call.getHealthHistory({ hours }, await as('manager'));
    expect(again.degraded).toBe(false);
    expect(again.hours.map((b) => b.conflicts)).toEqual([...zeros(hours - 2), 2, 0]);
  },
);

it('when the export peer is down, then the history is degraded with exports at 0 and the sync figures still there', async () => {
  exportPeer.server.forceShutdown();
  const h = await health.call.getHealthHistory({ hours: 2 }, await as('manager'));
  expect(h.degraded).toBe(true);
  expect(h.hours.map((b) => b.bulk_exports)).toEqual([0, 0]);
  expect(h.hours.map((b) => b.conflicts)).toEqual([2, 0]);
});

it('when a peer does not answer GetHealth, then its figures are unset with the reason (never 0) and the answered ones are there', async () => {
  const r = await health.call.getHealth({}, await as('manager'));
  expect(r.degraded).toBe(true);
  // The workflow peer's address (port 1) answers nothing.
  expect(r.workflow).toEqual({ unavailable_reason: expect.stringMatching(/^workflow /) });
  expect(r.workflow?.overdue_verification).toBeUndefined();
  // The stand-in sync peer answers (its count for an empty `since` is 0): a figure, not unknown.
  expect(typeof r.sync?.conflicts_last_24h).toBe('number');
  expect(r.sync?.unavailable_reason).toBeUndefined();
});
