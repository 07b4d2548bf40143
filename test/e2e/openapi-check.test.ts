/**
 * The OpenAPI check of every end-to-end response (test/support/openapi-check.ts) against a fake
 * gateway: each way a response can break the document is caught, and a conforming one passes.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { takeFailures } from '../support/openapi-check';

type Reply = { status: number; headers?: Record<string, string>; body?: unknown; raw?: string };
let reply: Reply;
let server: http.Server;
let base: string;

const permitType = { id: 'hot-work', name: 'Hot Work', category: 'hot', risk_level: 'high', validity_hours: 8, escalation_hours: 4, requires_isolation: false, closeout_items: [] };
const ok = (r: Partial<Reply>): Reply => ({ status: 200, headers: { 'X-Request-Id': 'r1', 'Content-Type': 'application/json' }, ...r });

beforeAll(async () => {
  server = http.createServer((_req, res) => {
    res.writeHead(reply.status, reply.headers);
    res.end(reply.raw ?? JSON.stringify(reply.body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/ptw`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));
afterEach(() => takeFailures());

async function failureOf(path: string, r: Reply, init?: RequestInit): Promise<string> {
  reply = r;
  const err = await fetch(`${base}${path}`, init).then(
    () => undefined,
    (e: Error) => e.message,
  );
  return err ?? 'no failure';
}

describe('OpenAPI check of e2e responses', () => {
  it('when a response matches the document, then fetch returns it untouched', async () => {
    reply = ok({ body: [permitType] });
    const res = await fetch(`${base}/permit-types/`);
    expect(await res.json()).toEqual([permitType]);
    expect(takeFailures()).toEqual([]);
  });

  it('when the path has one more trailing slash, then it is checked as its route (the router matches it too)', async () => {
    reply = ok({ body: [permitType] });
    expect((await fetch(`${base}/permit-types//`)).status).toBe(200);
    expect(await failureOf('/permit-types//', ok({ body: {} }))).toMatch(/must be array/);
  });

  it('when the body has an undocumented field or a wrong type, then the call fails naming it', async () => {
    expect(await failureOf('/permit-types/', ok({ body: [{ ...permitType, secret: 1 }] }))).toMatch(/additional properties \(secret\)/);
    expect(await failureOf('/permit-types/', ok({ body: [{ ...permitType, validity_hours: '8' }] }))).toMatch(/\/0\/validity_hours must be integer/);
  });

  it('when the status is not documented for the route, then the call fails', async () => {
    expect(await failureOf('/permit-types/', ok({ status: 409, body: { error: { code: 'x', message: 'y' } } }))).toMatch(/status 409 is not documented for listPermitTypes/);
  });

  it('when X-Request-Id is missing, then the call fails', async () => {
    expect(await failureOf('/permit-types/', { status: 200, headers: { 'Content-Type': 'application/json' }, body: [] })).toMatch(/X-Request-Id/);
  });

  it('when a 429 lacks Retry-After, then the call fails', async () => {
    const headers = { 'X-Request-Id': 'r', 'Content-Type': 'application/json', 'X-RateLimit-Limit': '5', 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': '1' };
    const body = { error: { code: 'throttled', message: 'm' } };
    expect(await failureOf('/permits/kpis/', { status: 429, headers, body })).toMatch(/required header Retry-After is missing/);
  });

  it('when an error body is not the error shape, then the call fails', async () => {
    expect(await failureOf('/permits/abc/', ok({ status: 404, body: { detail: 'Not found' } }))).toMatch(/must have required property 'error'/);
  });

  it('when an export lacks X-Permit-Count or has another media type, then the call fails', async () => {
    const zip = { 'X-Request-Id': 'r', 'Content-Type': 'application/zip', 'Content-Disposition': 'attachment; filename="a.zip"' };
    expect(await failureOf('/permits/bulk_export_pdf/', { status: 200, headers: zip, raw: 'PK' }, { method: 'POST' })).toMatch(/X-Permit-Count is missing/);
    expect(await failureOf('/permits/bulk_export_pdf/', { status: 200, headers: { ...zip, 'X-Permit-Count': '1', 'Content-Type': 'text/html' }, raw: '' }, { method: 'POST' })).toMatch(
      /content type "text\/html" is not documented/,
    );
  });

  it('when an undocumented route answers anything but a JSON 404 / 405, then the call fails', async () => {
    expect(await failureOf('/no-such-route/', ok({ body: {} }))).toMatch(/undocumented path answered 200/);
    expect(await failureOf('/permit-types/', ok({ body: {} }), { method: 'DELETE' })).toMatch(/undocumented method answered 200/);
  });

  it('when a CORS preflight is answered 204 for an allowed origin, then it passes; a 204 to OPTIONS without the CORS answer still fails', async () => {
    const preflight = { 'X-Request-Id': 'r', 'Access-Control-Allow-Origin': 'https://app.example.com', 'Access-Control-Allow-Methods': 'GET' };
    expect(await failureOf('/permits/', { status: 204, headers: preflight, raw: '' }, { method: 'OPTIONS' })).toBe('no failure');
    expect(await failureOf('/permits/', { status: 204, headers: { 'X-Request-Id': 'r' }, raw: '' }, { method: 'OPTIONS' })).toMatch(/undocumented method answered 204/);
  });
});
