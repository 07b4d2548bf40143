import { spawnSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type Router from '@koa/router';
import type Koa from 'koa';
import Redis from 'ioredis';
import { createLogger, createTokenVerifier, DEV_JWT_SECRET, loadConfig, memorySink, Metrics } from '@ptw/common';
import { createApp } from '../app';
import { closeClients, createClients, type Clients } from '../clients';
import { gatewayConfigSchema } from '../config';
import { API_PREFIX } from '../routes';
import { openApiDocument, openApiPath } from './document';
import { ROUTES } from './operations';
import { DOCS_PATH, OPENAPI_PATH } from './serve';

type Header = { required?: boolean };
type Response = { headers?: Record<string, Header> };
type Doc = {
  paths: Record<string, Record<string, { security?: unknown[]; description?: string; responses: Record<string, Response> }>>;
  components: { responses: Record<string, Response>; headers: Record<string, Header> };
};
const doc = openApiDocument() as unknown as Doc;

/** A response or header with its `#/components/…` reference followed. */
function deref<T>(o: T): T {
  const ref = (o as { $ref?: string }).$ref;
  if (!ref) return o;
  const [, kind, name] = /^#\/components\/(responses|headers)\/(.+)$/.exec(ref)!;
  return (kind === 'responses' ? doc.components.responses[name] : doc.components.headers[name]) as T;
}
const responseOf = (op: { responses: Record<string, Response> }, status: string) => deref(op.responses[status]);
const headersOf = (r: Response): Record<string, Header> => Object.fromEntries(Object.entries(r.headers ?? {}).map(([k, h]) => [k, deref(h)]));

/** The method/path pairs a router serves, as OpenAPI paths. */
function routerOperations(router: Router): string[] {
  return router.stack
    .filter((layer) => layer.methods.length > 0)
    .flatMap((layer) => layer.methods.filter((m) => m !== 'HEAD').map((m) => `${m.toLowerCase()} ${openApiPath({ path: String(layer.path), absolute: true })}`));
}

/** Every router mounted in the app (`router.routes()` carries its router), whichever file defines it. */
const mountedRouters = (app: Koa) => app.middleware.flatMap((m) => (m as { router?: Router }).router ?? []);

let app: Koa;
let server: http.Server;
let base: string;
let redis: Redis;
let clients: Clients;
beforeAll(async () => {
  // No backend is reached by these requests: the clients and Redis point nowhere and stay idle.
  const config = loadConfig(gatewayConfigSchema, { PTW_JWT_SECRET: DEV_JWT_SECRET, REDIS_URL: 'redis://127.0.0.1:1' });
  const metrics = new Metrics('gateway-openapi-test');
  redis = new Redis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
  clients = createClients(config, metrics);
  const log = createLogger('gateway', { stdout: false, sink: memorySink().sink });
  app = createApp({ config, log, metrics, verify: createTokenVerifier(config), clients, redis });
  // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Koa's callback handles its own errors (ctx.onerror): its promise never rejects
  server = http.createServer(app.callback());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  closeClients(clients);
  redis.disconnect();
  await new Promise<void>((r) => server.close(() => r()));
});

describe('OpenAPI document', () => {
  it('when checked by a standard OpenAPI validator, then it is a valid OpenAPI 3.1 document', () => {
    // The validator is an ES module: run it in a child Node rather than through jest's CommonJS loader.
    const script = `import { Validator } from '@seriousme/openapi-schema-validator';
      let text = ''; for await (const c of process.stdin) text += c;
      const r = await new Validator().validate(JSON.parse(text));
      console.log(JSON.stringify(r));`;
    const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { input: JSON.stringify(doc), encoding: 'utf8', cwd: __dirname });
    expect(out.stderr).toBe('');
    expect(JSON.parse(out.stdout)).toEqual({ valid: true });
    expect((doc as unknown as { openapi: string }).openapi).toBe('3.1.0');
  });

  it('when a route is added to any router of the gateway app without an entry in openapi/operations.ts, then this fails', () => {
    const served = mountedRouters(app).flatMap(routerOperations).sort();
    const documented = ROUTES.filter((r) => !r.public)
      .map((r) => `${r.method} ${openApiPath(r)}`)
      .sort();
    // Both the API router (routes.ts) and the admin console's (admin.ts) are enumerated.
    expect(served).toEqual(expect.arrayContaining(['get /api/v1/ptw/permits/', 'get /api/v1/ptw/admin/gateway/', 'get /api/v1/ptw/permits/health/history/']));
    expect(documented).toEqual(served);
  });

  it('when a route needs a token, then it says which roles may call it and answers 401 with WWW-Authenticate', () => {
    for (const [p, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const where = `${method} ${p}`;
        if (op.security?.length === 0) continue;
        expect([where, op.description]).toEqual([where, expect.stringContaining('**Who:**')]);
        expect([where, headersOf(responseOf(op, '401'))['WWW-Authenticate']?.required]).toEqual([where, true]);
      }
    }
  });

  it('when a route is throttled, then its 429 requires Retry-After and the X-RateLimit headers', () => {
    const throttled = ROUTES.filter((r) => r.scope);
    expect(throttled.map((r) => r.operationId)).toEqual(expect.arrayContaining(['syncOfflineData', 'bulkExportPdf', 'bulkExportExcel', 'getKpis', 'listNotifications']));
    for (const r of throttled) {
      const headers = headersOf(responseOf(doc.paths[openApiPath(r)][r.method], '429'));
      const required = Object.keys(headers).filter((h) => headers[h].required);
      expect(required.sort()).toEqual(['Retry-After', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'X-Request-Id']);
    }
  });

  it('when any response is documented, then X-Request-Id is a required header of it', () => {
    for (const ops of Object.values(doc.paths)) {
      for (const op of Object.values(ops)) {
        for (const status of Object.keys(op.responses)) expect(headersOf(responseOf(op, status))['X-Request-Id']?.required).toBe(true);
      }
    }
  });
});

describe('serving the document and the reference page (the gateway app)', () => {
  it('when an API route is called without a token, then it is still 401 (only the document and the page are public)', async () => {
    expect((await fetch(`${base}/api/v1/ptw/permit-types/`)).status).toBe(401);
  });

  it('when the document is fetched without a token, then it is the generated document', async () => {
    const res = await fetch(`${base}${OPENAPI_PATH}`);
    expect([res.status, res.headers.get('content-type')]).toEqual([200, expect.stringMatching(/^application\/json/)]);
    expect(await res.json()).toEqual(JSON.parse(JSON.stringify(doc)));
  });

  it('when the reference page is opened, then it loads swagger-ui from the gateway only, under a CSP without inline scripts', async () => {
    const page = await fetch(`${base}${DOCS_PATH}`);
    const html = await page.text();
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self';/);
    expect(html).not.toMatch(/<script>|https?:\/\//);
    for (const src of [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1])) {
      const asset = await fetch(`${base}${DOCS_PATH}${src}`);
      expect([src, asset.status]).toEqual([src, 200]);
      expect((await asset.arrayBuffer()).byteLength).toBeGreaterThan(0);
    }
    expect(await (await fetch(`${base}${DOCS_PATH}init.js`)).text()).toContain(JSON.stringify(OPENAPI_PATH));
    const redirect = await fetch(`${base}/api/docs`, { redirect: 'manual' });
    expect([redirect.status, redirect.headers.get('location')]).toEqual([302, DOCS_PATH]);
  });

  it('when a page for the browser is served (the admin console, this reference page), then it is left out of the document: only the JSON API, the probes and /metrics are in it', async () => {
    for (const p of ['/admin/', '/admin/admin.js', DOCS_PATH]) {
      const res = await fetch(`${base}${p}`);
      expect([p, res.status, res.headers.get('content-type')]).toEqual([p, 200, expect.not.stringMatching(/json/)]);
    }
    expect(Object.keys(doc.paths).filter((p) => !p.startsWith(`${API_PREFIX}/`))).toEqual(['/healthz', '/readyz', '/metrics']);
    expect((doc as unknown as { info: { description: string } }).info.description).toContain('/admin/');
  });

  it('when another file of the package or a path outside it is asked for, then 404', async () => {
    for (const p of ['index.html', 'package.json', '..%2Fpackage.json', '..%2F..%2F..%2Fgateway%2Fpackage.json', 'swagger-ui-bundle.js.map']) {
      const res = await fetch(`${base}${DOCS_PATH}${p}`);
      expect([p, res.status]).toEqual([p, 404]);
    }
  });
});
