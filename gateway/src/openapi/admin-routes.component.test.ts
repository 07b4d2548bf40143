/**
 * The admin console's two routes answer what the document says. The end-to-end suites never call
 * them from Node (the browser test's page calls them from Chromium, past the e2e check), so this file
 * runs the e2e checker itself: every fetch below is validated against the document (status, headers,
 * JSON body) and the file fails on any mismatch. Health is a grpc-mock speaking the real proto.
 */
import '../../../test/support/openapi-check';
import http from 'node:http';
import net from 'node:net';
import Redis from 'ioredis';
import { createLogger, createTokenVerifier, DEV_JWT_SECRET, loadConfig, memorySink, Metrics, mintToken } from '@ptw/common';
import { freePort } from '@ptw/devstore';
import { PROTO_ROOT } from '@ptw/proto';
import { createApp } from '../app';
import { closeClients, createClients, type Clients } from '../clients';
import { gatewayConfigSchema } from '../config';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- grpc-mock ships no types
const { createMockServer } = require('grpc-mock');

jest.setTimeout(60_000);

// Zero figures included: proto3 leaves them off the wire, and the document requires every field.
const history = {
  as_of: '2026-03-01T12:00:00.000Z',
  hours: [
    { start: '2026-03-01T10:00:00.000Z', applied: 0, conflicts: 0, rejected: 0, bulk_exports: 0 },
    { start: '2026-03-01T11:00:00.000Z', applied: 4, conflicts: 1, rejected: 2, bulk_exports: 1 },
  ],
  degraded: false,
};

let mock: { listen(a: string): unknown; close(force: boolean): unknown };
let server: http.Server;
let origin: string;
let redis: Redis;
let clients: Clients;
let manager: string;
let worker: string;
const RUN = Date.now().toString(36);

beforeAll(async () => {
  const port = await freePort();
  mock = createMockServer({
    protoPath: 'ptw/health/v1/health.proto',
    packageName: 'ptw.health.v1',
    serviceName: 'HealthService',
    options: { keepCase: true, includeDirs: [PROTO_ROOT], defaults: false },
    rules: [
      { method: 'GetHealthHistory', input: { hours: 2 }, output: history },
      { method: 'GetHealth', input: {}, output: { as_of: history.as_of, services: {}, jobs: [], degraded: false } },
    ],
  });
  mock.listen(`127.0.0.1:${port}`);
  const config = loadConfig(gatewayConfigSchema, {
    PTW_JWT_SECRET: DEV_JWT_SECRET,
    PTW_HEALTH_ADDR: `127.0.0.1:${port}`,
    // Nothing listens there: those services read as unavailable.
    PTW_SYNC_ADDR: '127.0.0.1:1',
    PTW_WORKFLOW_ADDR: '127.0.0.1:1',
    PTW_EXPORT_ADDR: '127.0.0.1:1',
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  });
  const metrics = new Metrics('gateway-openapi-admin-test');
  redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
  clients = createClients(config, metrics);
  const log = createLogger('gateway', { stdout: false, sink: memorySink().sink });
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Koa's callback handles its own errors (ctx.onerror): its promise never rejects
  server = http.createServer(createApp({ config, log, metrics, verify: createTokenVerifier(config), clients, redis }).callback());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  origin = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
  manager = await mintToken(auth, { user: `u-apidoc-m-${RUN}`, role: 'manager', projects: ['p1'], ttlSeconds: 600 });
  worker = await mintToken(auth, { user: `u-apidoc-w-${RUN}`, role: 'worker', projects: ['p1'], ttlSeconds: 600 });
});

afterAll(async () => {
  closeClients(clients);
  redis.disconnect();
  await new Promise((r) => server.close(r));
  mock.close(true);
});

const api = (p: string, tok?: string) => fetch(`${origin}/api/v1/ptw${p}`, { headers: tok ? { authorization: `Bearer ${tok}` } : {} });

describe('GET /permits/health/history/ against the document', () => {
  it('when a manager asks for 2 hours, then the buckets (zero figures included) match the HealthHistory schema', async () => {
    const res = await api('/permits/health/history/?hours=2', manager);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(history);
  });

  it('when hours is out of range, the caller a worker, or no token is sent, then 400, 403 and 401 as documented', async () => {
    expect((await api('/permits/health/history/?hours=25', manager)).status).toBe(400);
    expect((await api('/permits/health/history/', worker)).status).toBe(403);
    expect((await api('/permits/health/history/')).status).toBe(401);
  });
});

describe('GET /admin/gateway/ against the document', () => {
  it('when a manager asks, then the replica view (Redis, services, store, 429s per scope and minute) matches the GatewayView schema', async () => {
    const res = await api('/admin/gateway/', manager);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { redis: string; services: Record<string, string>; store: string };
    expect(body).toMatchObject({ redis: 'reachable', store: 'unknown', services: { sync: 'UNAVAILABLE', workflow: 'UNAVAILABLE', export: 'UNAVAILABLE' } });
  });

  it('when a worker asks, or no token is sent, then 403 and 401 as documented', async () => {
    expect((await api('/admin/gateway/', worker)).status).toBe(403);
    expect((await api('/admin/gateway/')).status).toBe(401);
  });
});
