/**
 * The gateway against grpc-mock backends (its own tests only): routing to the right RPC, the one
 * gRPC→HTTP error table, request ids, auth and body limits that never reach a backend.
 */
import http from 'node:http';
import net from 'node:net';
import Redis from 'ioredis';
import { createLogger, createTokenVerifier, DEV_JWT_SECRET, loadConfig, memorySink, Metrics, mintToken } from '@ptw/common';
import { PROTO_ROOT } from '@ptw/proto';
import { createApp } from './app';
import { closeClients, createClients } from './clients';
import { gatewayConfigSchema } from './config';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- grpc-mock ships no types
const { createMockServer } = require('grpc-mock');

jest.setTimeout(60_000);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const permit = { id: 'a'.repeat(24), permit_number: 'PTW-2026-000001', project_id: 'p1', permit_type_id: 'hot-work', title: 'Mocked', status: 'draft', version: 1 };

const rules = [
  { method: 'ListPermitTypes', input: {}, output: { results: [{ id: 'hot-work', name: 'Hot Work', closeout_items: [] }] } },
  { method: 'GetPermit', input: { id: 'a'.repeat(24) }, output: permit },
  { method: 'GetPermit', input: { id: 'b'.repeat(24) }, error: { code: 5, message: 'Permit not found' } },
  { method: 'GetPermit', input: { id: 'c'.repeat(24) }, error: { code: 14, message: 'down' } },
  { method: 'GetPermit', input: { id: 'd'.repeat(24) }, error: { code: 4, message: 'slow' } },
  { method: 'GetPermit', input: { id: 'e'.repeat(24) }, error: { code: 7, message: 'Only the creator may do this' } },
  { method: 'GetPermit', input: { id: 'f'.repeat(24) }, error: { code: 13, message: 'Internal error' } },
  { method: 'TransitionPermit', input: { id: 'a'.repeat(24), status: 'approved' }, error: { code: 9, message: 'Invalid status transition from draft to approved' } },
  { method: 'TransitionPermit', input: { id: 'a'.repeat(24), status: 'submitted' }, error: { code: 10, message: 'Permit was changed concurrently, retry' } },
];

let mock: { listen(a: string): unknown; close(force: boolean): unknown; getInteractionsOn(m: string): unknown[]; clearInteractions(): void };
let server: http.Server;
let base: string;
let redis: Redis;
let clients: ReturnType<typeof createClients>;
let tokenValue: string;
let metrics: Metrics;
let logged: ReturnType<typeof memorySink>;
const KEY_PREFIX = `test:gateway:${process.pid}:${Date.now()}`;

beforeAll(async () => {
  const port = await freePort();
  mock = createMockServer({
    protoPath: 'ptw/workflow/v1/workflow.proto',
    packageName: 'ptw.workflow.v1',
    serviceName: 'WorkflowService',
    options: { keepCase: true, includeDirs: [PROTO_ROOT], defaults: false },
    rules,
  });
  mock.listen(`127.0.0.1:${port}`);
  const config = loadConfig(gatewayConfigSchema, {
    PTW_JWT_SECRET: DEV_JWT_SECRET,
    PTW_WORKFLOW_ADDR: `127.0.0.1:${port}`,
    PTW_GRPC_DEADLINE_MS: '3000',
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    // This run's own throttle windows: the developer's `make up` on the same Redis keeps its own.
    PTW_THROTTLE_KEY_PREFIX: KEY_PREFIX,
  });
  metrics = new Metrics('gateway-test');
  logged = memorySink();
  redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
  clients = createClients(config, metrics);
  const app = createApp({ config, log: createLogger('gateway-test', { stdout: false, sink: logged.sink }), metrics, verify: createTokenVerifier(config), clients, redis });
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Koa's callback handles its own errors (ctx.onerror): its promise never rejects
  server = http.createServer(app.callback());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/api/v1/ptw`;
  tokenValue = await mintToken(
    { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' },
    { user: 'u1', role: 'manager', projects: ['p1'], ttlSeconds: 600 },
  );
});

afterAll(async () => {
  closeClients(clients);
  const keys = await redis.keys(`${KEY_PREFIX}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  await new Promise((r) => server.close(r));
  mock.close(true);
});

beforeEach(() => mock.clearInteractions());

const get = (p: string, headers: Record<string, string> = {}) => fetch(`${base}${p}`, { headers: { authorization: `Bearer ${tokenValue}`, ...headers } });
const send = (method: string, p: string, body: string, headers: Record<string, string> = {}) =>
  fetch(`${base}${p}`, { method, headers: { authorization: `Bearer ${tokenValue}`, 'content-type': 'application/json', ...headers }, body });

it('when GET /permit-types/ is called, then the gateway calls ListPermitTypes and returns its results as JSON', async () => {
  const res = await get('/permit-types/', { 'x-request-id': 'mock-req-1' });
  expect(res.status).toBe(200);
  expect(res.headers.get('x-request-id')).toBe('mock-req-1');
  expect(await res.json()).toEqual([
    { id: 'hot-work', name: 'Hot Work', category: '', risk_level: '', validity_hours: 0, escalation_hours: 0, requires_isolation: false, closeout_items: [] },
  ]);
  expect(mock.getInteractionsOn('ListPermitTypes')).toHaveLength(1);
});

it.each([
  ['b', 404, 'not_found'],
  ['c', 503, 'service_unavailable'],
  ['d', 504, 'deadline_exceeded'],
  ['e', 403, 'permission_denied'],
  ['f', 500, 'internal_error'],
])('when the backend answers for id %s…, then HTTP %i %s', async (ch, status, code) => {
  const res = await get(`/permits/${ch.repeat(24)}/`);
  expect(res.status).toBe(status);
  expect(((await res.json()) as { error: { code: string; message: string } }).error.code).toBe(code);
  if (status === 503) expect(res.headers.get('retry-after')).toBe('5');
});

it('when a transition is refused by the service, then 400 with its message', async () => {
  const res = await send('POST', `/permits/${'a'.repeat(24)}/transition/`, '{"status":"approved"}');
  expect([res.status, ((await res.json()) as { error: { code: string; message: string } }).error.message]).toEqual([400, 'Invalid status transition from draft to approved']);
});

it('when the service says ABORTED (concurrent write), then 409', async () => {
  const res = await send('POST', `/permits/${'a'.repeat(24)}/transition/`, '{"status":"submitted"}');
  expect([res.status, ((await res.json()) as { error: { code: string; message: string } }).error.code]).toEqual([409, 'conflict']);
});

it('when the token is missing, the JSON is malformed or the body too large, then the backend is never called', async () => {
  expect((await fetch(`${base}/permits/${'a'.repeat(24)}/`)).status).toBe(401);
  expect((await send('POST', `/permits/${'a'.repeat(24)}/transition/`, '{"status":')).status).toBe(400);
  expect((await send('POST', '/permits/', JSON.stringify({ title: 'x'.repeat(2_000_000) }))).status).toBe(413);
  expect((await send('POST', `/permits/${'a'.repeat(24)}/transition/`, '{"status":"approved","sudo":true}')).status).toBe(400);
  expect(mock.getInteractionsOn('GetPermit')).toHaveLength(0);
  expect(mock.getInteractionsOn('TransitionPermit')).toHaveLength(0);
});

it('when requests hit a route, an unknown path or come unauthenticated, then logs and metrics name the route pattern or "unmatched", never the raw path', async () => {
  const before = logged.lines().length;
  expect((await get(`/permits/${'a'.repeat(24)}/`, { 'x-request-id': 'pattern-1' })).status).toBe(200);
  expect((await get('/no-such-route/jane@example.com/', { 'x-request-id': 'pattern-2' })).status).toBe(404);
  expect((await fetch(`${base}/other/jane.doe/`, { headers: { 'x-request-id': 'pattern-3' } })).status).toBe(401);
  // `/permits/kpis/` also matches the path of `/permits/:id/` (GET and PATCH): the KPI route serves it.
  await (await get('/permits/kpis/', { 'x-request-id': 'pattern-4' })).arrayBuffer();
  await (await send('POST', '/permits/bulk_export_excel/', '{"permit_ids":[]}', { 'x-request-id': 'pattern-5' })).arrayBuffer();
  const access = logged
    .lines()
    .slice(before)
    .filter((l) => l.event === 'http_access');
  expect(access.map((l) => [l.req_id, l.endpoint, l.status_code])).toEqual([
    ['pattern-1', 'GET /api/v1/ptw/permits/:id/', 200],
    ['pattern-2', 'GET unmatched', 404],
    ['pattern-3', 'GET unmatched', 401],
    ['pattern-4', 'GET /api/v1/ptw/permits/kpis/', expect.any(Number)],
    ['pattern-5', 'POST /api/v1/ptw/permits/bulk_export_excel/', expect.any(Number)],
  ]);
  const text = await metrics.registry.metrics();
  expect(text).toContain('ptw_http_requests_total{method="GET",route="/api/v1/ptw/permits/:id/",status="200",service="gateway-test"}');
  expect(text).toContain('route="unmatched",status="404"');
  expect(text).not.toMatch(/jane|no-such-route|\(\?:/);
});

it('when a throttled route is called, then its window is kept under PTW_THROTTLE_KEY_PREFIX, not the default prefix', async () => {
  const user = `u-prefix-${process.pid}-${Date.now()}`;
  const t = await mintToken({ PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' }, { user, role: 'manager', projects: ['p1'], ttlSeconds: 600 });
  // The KPI route's backend (export) is not mocked here: the request is counted before it fails.
  const res = await fetch(`${base}/permits/kpis/`, { headers: { authorization: `Bearer ${t}` } });
  await res.arrayBuffer();
  expect(res.headers.get('x-ratelimit-remaining')).toBe('119');
  expect(await redis.zcard(`${KEY_PREFIX}:ptw_kpi:user:${user}`)).toBe(1);
  expect(await redis.exists(`ptw:throttle:ptw_kpi:user:${user}`)).toBe(0);
});
