/**
 * The whole system as real processes (gateway + four services + store + Redis): authentication,
 * request-id propagation, grpc.health.v1, gRPC credentials and graceful shutdown.
 */
import { credentials, Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { checkHealth } from '@ptw/common';
import { SERVICE_NAMES, workflowPb } from '@ptw/proto';
import { readLog, eventually, startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(120_000);

let stack: Stack & { logDir: string };
const api = (p: string) => `${stack.gatewayUrl}/api/v1/ptw${p}`;
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

beforeAll(async () => {
  stack = await startTestStack('foundation');
});

afterAll(async () => {
  await stack?.stop();
});

describe('HTTP authentication', () => {
  it('when no token is sent, then 401 with a JSON error and a request id', async () => {
    const res = await fetch(api('/permit-types/'));
    expect(res.status).toBe(401);
    expect(res.headers.get('x-request-id')).toBeTruthy();
    expect(((await res.json()) as { error: { code: string; message: string } }).error.code).toBe('unauthenticated');
  });

  it('when the token has expired, then 401', async () => {
    const t = await token('u-manager', 'manager', ['p1'], -600);
    const res = await fetch(api('/permit-types/'), { headers: { authorization: `Bearer ${t}` } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string; message: string } }).error.message).toMatch(/expired/);
  });

  it('when the token says alg none, then 401', async () => {
    const exp = Math.floor(Date.now() / 1000) + 600;
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'u-manager', role: 'manager', project_ids: ['p1'], iss: 'ptw-dev', aud: 'ptw-api', exp })}.`;
    const res = await fetch(api('/permit-types/'), { headers: { authorization: `Bearer ${none}` } });
    expect(res.status).toBe(401);
  });

  it('when the token is valid, then a service answers over gRPC with JSON', async () => {
    const t = await token('u-worker', 'worker', ['p1']);
    const res = await fetch(api('/permit-types/'), { headers: { authorization: `Bearer ${t}` } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { id: string; closeout_items: unknown[] }[];
    expect(body.map((t) => t.id).sort()).toEqual(['confined-space', 'electrical-isolation', 'hot-work']);
    expect(body.find((t) => t.id === 'hot-work')?.closeout_items).toHaveLength(3);
  });

  it('when probes are called without a token, then /healthz and /readyz answer 200', async () => {
    expect((await fetch(`${stack.gatewayUrl}/healthz`)).status).toBe(200);
    const ready = await fetch(`${stack.gatewayUrl}/readyz`);
    const body = (await ready.json()) as { checks: Record<string, string> };
    expect([ready.status, body.checks]).toEqual([200, { redis: 'ok', sync: 'SERVING', workflow: 'SERVING', export: 'SERVING', health: 'SERVING' }]);
  });

  it('when /metrics is scraped, then the request counter is there', async () => {
    const text = await (await fetch(`${stack.gatewayUrl}/metrics`)).text();
    expect(text).toMatch(/ptw_http_requests_total\{/);
  });
});

describe('request id', () => {
  it("when the client sends X-Request-Id, then it comes back and appears in the service's log line", async () => {
    const reqId = `e2e-${Date.now()}`;
    const t = await token('u-worker', 'worker', ['p1']);
    const res = await fetch(api('/permit-types/'), { headers: { authorization: `Bearer ${t}`, 'x-request-id': reqId } });
    expect(res.headers.get('x-request-id')).toBe(reqId);
    const line = await eventually(() => readLog(stack.logDir, 'workflow').find((l) => l.req_id === reqId));
    expect(line).toMatchObject({ event: 'grpc_call', endpoint: '/ptw.workflow.v1.WorkflowService/ListPermitTypes', status_code: 'OK' });
    const access = await eventually(() => readLog(stack.logDir, 'gateway').find((l) => l.req_id === reqId && l.event === 'http_access'));
    expect(typeof access?.duration_ms).toBe('number');
  });
});

describe('gRPC', () => {
  const addr = (name: 'sync' | 'workflow' | 'export' | 'health') => stack.env[`PTW_${name.toUpperCase()}_ADDR`];

  it.each(['sync', 'workflow', 'export', 'health'] as const)('when grpc.health.v1 is asked about %s, then it is SERVING', async (name) => {
    expect(await checkHealth(addr(name), '')).toBe('SERVING');
    expect(await checkHealth(addr(name), SERVICE_NAMES[name])).toBe('SERVING');
  });

  function listTypes(md: Metadata): Promise<ServiceError | null> {
    const client = new workflowPb.WorkflowServiceClient(addr('workflow'), credentials.createInsecure());
    return new Promise((resolve) =>
      client.listPermitTypes({}, md, { deadline: new Date(Date.now() + 5000) }, (err) => {
        client.close();
        resolve(err);
      }),
    );
  }

  it('when a call carries no credentials, then UNAUTHENTICATED', async () => {
    expect((await listTypes(new Metadata()))?.code).toBe(Status.UNAUTHENTICATED);
  });

  it('when a call carries a token signed with another key, then UNAUTHENTICATED', async () => {
    const md = new Metadata();
    const forged = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'x', role: 'service', project_ids: [], exp: 9999999999 })}.c2lnbmF0dXJl`;
    md.set('authorization', `Bearer ${forged}`);
    expect((await listTypes(md))?.code).toBe(Status.UNAUTHENTICATED);
  });

  it('when a call carries a service token, then it succeeds', async () => {
    const md = new Metadata();
    md.set('authorization', `Bearer ${await token('svc-test', 'service', [])}`);
    expect(await listTypes(md)).toBeNull();
  });
});

describe('shutdown', () => {
  it('when each process gets SIGTERM, then it exits 0 and logs that it stopped', async () => {
    for (const [name, child] of Object.entries(stack.procs)) {
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect([name, await exited]).toEqual([name, 0]);
      const stopped = readLog(stack.logDir, name).some((l) => l.event === 'shutdown' && l.outcome === 'stopped');
      expect([name, stopped]).toEqual([name, true]);
    }
  });
});
