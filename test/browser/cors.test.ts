/**
 * CORS in a real browser (Debian's Chromium; issue 23 item 9): a page served on one loopback origin
 * calls the gateway, on another port, with a bearer token (which makes the browser send a preflight
 * first). From an origin in PTW_CORS_ORIGINS the call succeeds and the page can read the request id
 * and the rate headers, a 429's Retry-After included; from any other origin the browser refuses the
 * answer. The gateway app runs in-process with its backends replaced (nothing else is needed for
 * what the browser checks) and the local Redis for its throttle.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Redis from 'ioredis';
import puppeteer, { type Browser } from 'puppeteer-core';
import { createLogger, createTokenVerifier, DEV_JWT_SECRET, loadConfig, memorySink, Metrics, mintToken } from '@ptw/common';
import { createApp } from '../../gateway/src/app';
import { closeClients, createClients, type Clients } from '../../gateway/src/clients';
import { gatewayConfigSchema } from '../../gateway/src/config';

jest.setTimeout(120_000);

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const KEY_PREFIX = `test:browser-cors:${process.pid}:${Date.now()}`;

/** The page: its script calls the gateway and reports what it could read (or how it failed). */
const PAGE = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>another origin</title></head>
<body><script>
window.callGateway = async function (url, token, init) {
  try {
    const res = await fetch(url, Object.assign({ headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json', 'X-Request-Id': 'from-the-page' } }, init));
    const h = (n) => res.headers.get(n);
    return { status: res.status, request_id: h('X-Request-Id'), limit: h('X-RateLimit-Limit'), remaining: h('X-RateLimit-Remaining'), reset: h('X-RateLimit-Reset'), retry_after: h('Retry-After'), body: await res.json() };
  } catch (e) {
    return { error: String(e) };
  }
};
</script></body></html>`;

function pageServer(): Promise<{ server: http.Server; origin: string }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })));
}

let allowedPage: { server: http.Server; origin: string };
let otherPage: { server: http.Server; origin: string };
let gateway: http.Server;
let gatewayUrl: string;
let clients: Clients;
let redis: Redis;
let browser: Browser;
let token: string;

beforeAll(async () => {
  allowedPage = await pageServer();
  otherPage = await pageServer();
  const closed = '127.0.0.1:1';
  const config = loadConfig(gatewayConfigSchema, {
    PTW_JWT_SECRET: DEV_JWT_SECRET,
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    PTW_THROTTLE_KEY_PREFIX: KEY_PREFIX,
    PTW_THROTTLE_KPI: '2/min',
    PTW_CORS_ORIGINS: allowedPage.origin,
    PTW_SYNC_ADDR: closed,
    PTW_WORKFLOW_ADDR: closed,
    PTW_EXPORT_ADDR: closed,
    PTW_HEALTH_ADDR: closed,
  });
  const metrics = new Metrics('gateway-cors-browser-test');
  clients = createClients(config, metrics);
  Object.assign(clients.export.call, { getKpis: async () => ({ as_of: new Date().toISOString() }) });
  Object.assign(clients.workflow.call, { createPermit: async (req: { data: Record<string, unknown> }) => ({ id: 'a'.repeat(24), title: req.data.title, version: 1 }) });
  redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
  await new Promise((r) => redis.once('ready', r));
  const app = createApp({ config, log: createLogger('gateway', { stdout: false, sink: memorySink().sink }), metrics, verify: createTokenVerifier(config), clients, redis });
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Koa's callback handles its own errors (ctx.onerror): its promise never rejects
  gateway = http.createServer(app.callback());
  await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', r));
  gatewayUrl = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}/api/v1/ptw`;
  token = await mintToken(
    { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' },
    { user: `u-cors-${process.pid}`, role: 'manager', projects: ['p1'], ttlSeconds: 600 },
  );
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
});

afterAll(async () => {
  await browser?.close();
  closeClients(clients);
  const keys = await redis.keys(`${KEY_PREFIX}:*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
  for (const s of [gateway, allowedPage.server, otherPage.server]) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

type Answer = { status?: number; request_id?: string; limit?: string; remaining?: string; reset?: string; retry_after?: string; body?: unknown; error?: string };

async function fromPage(origin: string, path: string, init?: { method: string; body: string }): Promise<Answer> {
  const page = await browser.newPage();
  try {
    await page.goto(`${origin}/`);
    return await page.evaluate(
      (url, tok, i) => (window as unknown as { callGateway: (u: string, t: string, i?: unknown) => Promise<Answer> }).callGateway(url, tok, i),
      `${gatewayUrl}${path}`,
      token,
      init,
    );
  } finally {
    await page.close();
  }
}

describe('CORS from a page on another origin', () => {
  it("when the page's origin is allowed, then its token-bearing calls succeed and it reads the request id, the rate headers and a 429's Retry-After", async () => {
    const first = await fromPage(allowedPage.origin, '/permits/kpis/');
    // The preflight the browser sent first was not counted: this is the window's first request.
    expect(first).toEqual({
      status: 200,
      request_id: 'from-the-page',
      limit: '2',
      remaining: '1',
      reset: expect.stringMatching(/^\d+$/),
      retry_after: null,
      body: { as_of: expect.any(String) },
    });
    const second = await fromPage(allowedPage.origin, '/permits/kpis/');
    expect([second.status, second.remaining]).toEqual([200, '0']);
    const throttled = await fromPage(allowedPage.origin, '/permits/kpis/');
    expect(throttled).toMatchObject({ status: 429, remaining: '0', retry_after: expect.stringMatching(/^[1-9]\d*$/) });
    // A JSON POST (Content-Type and Authorization both need the preflight's consent).
    const created = await fromPage(allowedPage.origin, '/permits/', { method: 'POST', body: JSON.stringify({ title: 'From another origin' }) });
    expect(created).toMatchObject({ status: 201, request_id: 'from-the-page', body: { title: 'From another origin' } });
  });

  it("when the page's origin is not in the list, then the browser refuses the answer", async () => {
    const answer = await fromPage(otherPage.origin, '/permits/kpis/');
    expect(answer).toEqual({ error: expect.stringMatching(/TypeError: Failed to fetch/) });
  });
});
