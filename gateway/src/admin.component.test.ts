/**
 * The admin console's gateway side against a grpc-mock health service: the static page and its
 * security headers, the two manage-only routes, and the per-minute ring of 429s.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import Redis from 'ioredis';
import type { Context } from 'koa';
import { createLogger, createTokenVerifier, DEV_JWT_SECRET, loadConfig, memorySink, Metrics, mintToken } from '@ptw/common';
import { freePort } from '@ptw/devstore';
import { PROTO_ROOT } from '@ptw/proto';
import { ADMIN_DIR, createRejectionRing, recordRejections, storeState } from './admin';
import { createApp } from './app';
import { closeClients, createClients } from './clients';
import { gatewayConfigSchema } from './config';
import { throttledError } from './throttle';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- grpc-mock ships no types
const { createMockServer } = require('grpc-mock');

jest.setTimeout(60_000);

const history = {
  as_of: '2026-03-01T12:00:00.000Z',
  hours: [
    { start: '2026-03-01T10:00:00.000Z', applied: 2, conflicts: 1, rejected: 0, bulk_exports: 0 },
    { start: '2026-03-01T11:00:00.000Z', applied: 0, conflicts: 0, rejected: 3, bulk_exports: 1 },
  ],
  degraded: false,
};

let mock: { listen(a: string): unknown; close(force: boolean): unknown; getInteractionsOn(m: string): unknown[]; clearInteractions(): void };
let server: http.Server;
let origin: string;
let redis: Redis;
let clients: ReturnType<typeof createClients>;
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
    // Nothing listens there: the services read as unavailable, and a KPI call fails fast.
    PTW_SYNC_ADDR: '127.0.0.1:1',
    PTW_WORKFLOW_ADDR: '127.0.0.1:1',
    PTW_EXPORT_ADDR: '127.0.0.1:1',
    PTW_THROTTLE_KPI: '1/min',
    PTW_GRPC_DEADLINE_MS: '3000',
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  });
  const metrics = new Metrics('gateway-admin-test');
  redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
  clients = createClients(config, metrics);
  const app = createApp({ config, log: createLogger('gateway-admin-test', { stdout: false, sink: memorySink().sink }), metrics, verify: createTokenVerifier(config), clients, redis });
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Koa's callback handles its own errors (ctx.onerror): its promise never rejects
  server = http.createServer(app.callback());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  origin = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
  manager = await mintToken(auth, { user: `u-admin-m-${RUN}`, role: 'manager', projects: ['p1'], ttlSeconds: 600 });
  worker = await mintToken(auth, { user: `u-admin-w-${RUN}`, role: 'worker', projects: ['p1'], ttlSeconds: 600 });
});

afterAll(async () => {
  closeClients(clients);
  redis.disconnect();
  await new Promise((r) => server.close(r));
  mock.close(true);
});

/** A GET sent with its path exactly as given (fetch would resolve `..` before sending). */
function rawGet(p: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(origin);
    http
      .get({ hostname, port, path: p }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

const api = (p: string, tok: string) => fetch(`${origin}/api/v1/ptw${p}`, { headers: { authorization: `Bearer ${tok}` } });

describe('the static page', () => {
  it('when /admin/ is asked for without a token, then the shell is served with a strict CSP, nosniff, a referrer policy and no framing', async () => {
    const res = await fetch(`${origin}/admin/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(await res.text()).toContain('<script src="admin.js" defer></script>');
  });

  it.each([
    ['/admin/admin.js', 'text/javascript; charset=utf-8'],
    ['/admin/admin.css', 'text/css; charset=utf-8'],
    ['/admin/favicon.svg', 'image/svg+xml'],
  ])('when %s is asked for, then it is served as %s with the same headers', async (p, type) => {
    const res = await fetch(`${origin}${p}`);
    expect([res.status, res.headers.get('content-type'), res.headers.get('x-content-type-options')]).toEqual([200, type, 'nosniff']);
    expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
  });

  it('when /admin is asked for, then it redirects to /admin/ (the page uses relative URLs)', async () => {
    const res = await fetch(`${origin}/admin`, { redirect: 'manual' });
    expect([res.status, res.headers.get('location')]).toEqual([301, '/admin/']);
  });

  it('when another path under /admin/ is asked for, even one climbing out, then 404 JSON with the headers, and no file is read', async () => {
    for (const p of ['/admin/index.html', '/admin/../package.json', '/admin/%2e%2e/package.json', '/admin/..%2fsrc%2fadmin.ts', '/admin/screenshot.png']) {
      const res = await rawGet(p);
      expect([p, res.status]).toEqual([p, 404]);
      expect(res.headers['content-security-policy']).toContain("default-src 'self'");
      expect(JSON.parse(res.body).error.code).toBe('not_found');
    }
  });

  it('when /admin/ is posted to, then 405', async () => {
    expect((await fetch(`${origin}/admin/`, { method: 'POST' })).status).toBe(405);
  });

  it('when the shipped files are read, then no script is inline, no markup sink is used and no style attribute needs unsafe-inline', () => {
    const html = fs.readFileSync(path.join(ADMIN_DIR, 'index.html'), 'utf8');
    const js = fs.readFileSync(path.join(ADMIN_DIR, 'admin.js'), 'utf8');
    for (const tag of html.match(/<script\b[^>]*>/g) ?? []) expect(tag).toMatch(/\bsrc="/);
    expect(html).not.toMatch(/<script\b[^>]*>[^<\s]/);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    expect(html).not.toMatch(/\sstyle=/i);
    expect(html).not.toMatch(/https?:\/\//);
    expect(js).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function/);
    expect(js).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
  });
});

describe('GET /permits/health/history/', () => {
  it('when a manager asks for 2 hours, then the health service is asked for 2 and its buckets are returned', async () => {
    const res = await api('/permits/health/history/?hours=2', manager);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(history);
    expect(mock.getInteractionsOn('GetHealthHistory')).toHaveLength(1);
  });

  it('when hours is not 1-24, then 400 naming the field and the service is not called', async () => {
    mock.clearInteractions();
    for (const h of ['0', '25', 'x', '-1', '2.5']) {
      const res = await api(`/permits/health/history/?hours=${h}`, manager);
      expect([h, res.status, ((await res.json()) as { error: { details: unknown } }).error.details]).toEqual([h, 400, { field: 'hours' }]);
    }
    expect(mock.getInteractionsOn('GetHealthHistory')).toHaveLength(0);
  });

  it('when a worker asks, then 403 and the service is not called', async () => {
    mock.clearInteractions();
    expect((await api('/permits/health/history/', worker)).status).toBe(403);
    expect(mock.getInteractionsOn('GetHealthHistory')).toHaveLength(0);
  });
});

describe('GET /admin/gateway/', () => {
  it('when a worker asks, or nobody, then 403 / 401', async () => {
    expect((await api('/admin/gateway/', worker)).status).toBe(403);
    expect((await fetch(`${origin}/api/v1/ptw/admin/gateway/`)).status).toBe(401);
  });

  it('when a KPI call is throttled, then the manager sees that 429 in its scope this minute, with Redis reachable and the dead services unavailable', async () => {
    const statuses = [(await api('/permits/kpis/', manager)).status, (await api('/permits/kpis/', manager)).status];
    expect(statuses[1]).toBe(429);
    const res = await api('/admin/gateway/', manager);
    expect(res.status).toBe(200);
    type Scope = { last_hour: number; per_minute: number[] };
    const body = (await res.json()) as {
      redis: string;
      services: Record<string, string>;
      store: string;
      replica: unknown;
      throttle_rejections: { window_minutes: number; scopes: Record<string, Scope> };
    };
    expect(body.redis).toBe('reachable');
    expect(body.services).toEqual({ sync: 'UNAVAILABLE', workflow: 'UNAVAILABLE', export: 'UNAVAILABLE', health: expect.any(String) });
    expect(body.store).toBe('unknown');
    expect(typeof body.replica).toBe('string');
    expect(body.throttle_rejections.window_minutes).toBe(60);
    expect(Object.keys(body.throttle_rejections.scopes).sort()).toEqual(['ptw_bulk_export', 'ptw_kpi', 'ptw_notifications', 'ptw_sync']);
    const kpi = body.throttle_rejections.scopes.ptw_kpi;
    expect([kpi.last_hour, kpi.per_minute.length, kpi.per_minute[59]]).toEqual([1, 60, 1]);
    expect(body.throttle_rejections.scopes.ptw_sync.last_hour).toBe(0);
  });

  it('when POST is used, then 405', async () => {
    const res = await fetch(`${origin}/api/v1/ptw/admin/gateway/`, { method: 'POST', headers: { authorization: `Bearer ${manager}` } });
    expect(res.status).toBe(405);
  });
});

describe('the 429 ring', () => {
  const t0 = Date.parse('2026-03-01T12:00:00.000Z');
  const M = 60_000;

  it('when 429s land over 90 minutes, then only those of the last 60 minutes count, in their minute', () => {
    const ring = createRejectionRing();
    ring.record('ptw_sync', t0);
    ring.record('ptw_sync', t0 + 30 * M);
    ring.record('ptw_sync', t0 + 30 * M + 5_000);
    ring.record('ptw_kpi', t0 + 89 * M);
    const snap = ring.snapshot(t0 + 89 * M + 1_000);
    expect(snap.ptw_sync.last_hour).toBe(2);
    expect(snap.ptw_sync.per_minute[59 - 59]).toBe(2);
    expect(snap.ptw_kpi.per_minute[59]).toBe(1);
    expect(snap.ptw_bulk_export).toEqual({ last_hour: 0, per_minute: new Array(60).fill(0) });
  });

  it('when a slot is reused an hour later, then it restarts from 0 instead of adding to the old minute', () => {
    const ring = createRejectionRing();
    ring.record('ptw_sync', t0);
    ring.record('ptw_sync', t0 + 60 * M);
    expect(ring.snapshot(t0 + 60 * M).ptw_sync.last_hour).toBe(1);
  });

  it('when a 429 of a scope passes through the middleware, then it is counted and rethrown; other errors are not counted', async () => {
    const ring = createRejectionRing();
    const mw = recordRejections(ring);
    const err = throttledError('ptw_notifications', 3, {});
    await expect(mw({} as Context, async () => Promise.reject(err))).rejects.toBe(err);
    await expect(mw({} as Context, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    const snap = ring.snapshot();
    expect(Object.values(snap).map((s) => s.last_hour)).toEqual([0, 0, 0, 1]);
  });
});

it('when the services answer SERVING, NOT_SERVING or nothing, then the store reads reachable, unreachable or unknown', () => {
  expect(storeState(['SERVING', 'NOT_SERVING', 'UNAVAILABLE'])).toBe('reachable');
  expect(storeState(['NOT_SERVING', 'UNAVAILABLE', 'UNAVAILABLE'])).toBe('unreachable');
  expect(storeState(['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE'])).toBe('unknown');
});
