/**
 * Security regression suite against the real system: every kind of bad token over HTTP and over
 * direct gRPC, worker tokens on manage routes, and foreign-project tokens on direct gRPC calls.
 */
import { createSecretKey } from 'node:crypto';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { SignJWT } from 'jose';
import { DEV_JWT_SECRET } from '@ptw/common';
import { exportPb, healthPb, syncPb, workflowPb } from '@ptw/proto';
import { startTestStack, token } from '../support/stack';
import type { Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(120_000);

let stack: Stack;
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

function sign(claims: Record<string, unknown>, opts: { secret?: string; iat?: number; nbf?: number; exp?: number; aud?: string; iss?: string } = {}) {
  const jwt = new SignJWT({ role: 'manager', project_ids: ['p1'], ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('u-sec')
    .setIssuer(opts.iss ?? 'ptw-dev')
    .setAudience(opts.aud ?? 'ptw-api')
    .setIssuedAt(opts.iat ?? now())
    .setExpirationTime(opts.exp ?? now() + 600);
  if (opts.nbf) jwt.setNotBefore(opts.nbf);
  return jwt.sign(createSecretKey(Buffer.from(opts.secret ?? DEV_JWT_SECRET)));
}

const badTokens: [string, () => Promise<string>][] = [
  ['expired', () => sign({}, { iat: now() - 7200, exp: now() - 3600 })],
  ['future-dated (nbf)', () => sign({}, { nbf: now() + 3600 })],
  ['future-dated (iat)', () => sign({}, { iat: now() + 3600, exp: now() + 7200 })],
  ['wrong audience', () => sign({}, { aud: 'another-api' })],
  ['wrong issuer', () => sign({}, { iss: 'evil' })],
  ['wrong key', () => sign({}, { secret: 'not-the-real-secret-123456' })],
  ['alg none', async () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'u-sec', role: 'manager', project_ids: ['p1'], iss: 'ptw-dev', aud: 'ptw-api', exp: now() + 600 })}.`],
  ['truncated', async () => (await sign({})).slice(0, -12)],
  ['unknown role', () => sign({ role: 'root' })],
  ['garbage', async () => 'not.a.jwt'],
];

beforeAll(async () => {
  stack = await startTestStack('security');
});
afterAll(async () => stack?.stop());

describe('HTTP', () => {
  it.each(badTokens)('when the token is %s, then every route answers 401', async (_name, make) => {
    const t = await make();
    for (const [method, p] of [
      ['GET', '/permits/'],
      ['POST', '/sync-offline-data/'],
      ['GET', '/permits/health/'],
      ['POST', '/permits/bulk_export_pdf/'],
    ]) {
      const res = await fetch(`${stack.gatewayUrl}/api/v1/ptw${p}`, {
        method,
        headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' },
        body: method === 'POST' ? '{}' : undefined,
      });
      expect([p, res.status]).toEqual([p, 401]);
    }
  });

  it.each([
    ['GET', '/permits/health/'],
    ['GET', '/jobs/'],
    ['POST', '/jobs/auto_expire_permits/run/'],
    ['GET', '/throttle-status/?user=u-worker'],
  ])('when a worker calls the manage route %s %s, then 403', async (method, p) => {
    const t = await token('u-worker', 'worker', ['p1']);
    const res = await fetch(`${stack.gatewayUrl}/api/v1/ptw${p}`, { method, headers: { authorization: `Bearer ${t}` } });
    expect(res.status).toBe(403);
  });
});

describe('direct gRPC', () => {
  const addr = (n: string) => stack.env[`PTW_${n.toUpperCase()}_ADDR`];
  type Unary = (req: object, md: Metadata, o: object, cb: (e: ServiceError | null, r?: unknown) => void) => void;
  const calls: [string, () => [unknown, string, object]][] = [
    ['workflow.ListPermits', () => [new workflowPb.WorkflowServiceClient(addr('workflow'), credentials.createInsecure()), 'listPermits', { page: 1, page_size: 5 }]],
    ['sync.SyncOfflineData', () => [new syncPb.SyncServiceClient(addr('sync'), credentials.createInsecure()), 'syncOfflineData', { device_id: 'd', changes: [] }]],
    ['export.GetKpis', () => [new exportPb.ExportServiceClient(addr('export'), credentials.createInsecure()), 'getKpis', { project: '' }]],
    ['health.GetHealth', () => [new healthPb.HealthServiceClient(addr('health'), credentials.createInsecure()), 'getHealth', {}]],
  ];

  async function invoke(make: () => [unknown, string, object], auth?: string) {
    const [client, method, req] = make();
    const md = new Metadata();
    if (auth) md.set('authorization', auth);
    return new Promise<ServiceError | null>((resolve) =>
      (client as Record<string, Unary>)[method].call(client, req, md, { deadline: new Date(Date.now() + 5000) }, (e) => {
        (client as { close(): void }).close();
        resolve(e);
      }),
    );
  }

  it.each(calls)('when %s is called without a token or with each bad token, then UNAUTHENTICATED', async (_n, make) => {
    expect((await invoke(make))?.code).toBe(16);
    for (const [name, t] of badTokens) expect([name, (await invoke(make, `Bearer ${await t()}`))?.code]).toEqual([name, 16]);
  });

  it("when a valid token of another project asks for a permit directly, then NOT_FOUND; a worker's GetHealth is PERMISSION_DENIED", async () => {
    const owner = await token('u-worker', 'worker', ['p1']);
    const created = await fetch(`${stack.gatewayUrl}/api/v1/ptw/permits/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${owner}`, 'content-type': 'application/json' },
      body: JSON.stringify({ permit_type_id: 'hot-work', title: 'Secret job' }),
    }).then((r) => r.json() as Promise<{ id: string }>);
    const foreign = await token('u-intruder', 'manager', ['p2']);
    const err = await invoke(() => [new workflowPb.WorkflowServiceClient(addr('workflow'), credentials.createInsecure()), 'getPermit', { id: created.id }], `Bearer ${foreign}`);
    expect([err?.code, err?.details]).toEqual([5, 'Permit not found']);
    const w = await token('u-worker', 'worker', ['p1']);
    expect((await invoke(calls[3][1], `Bearer ${w}`))?.code).toBe(7);
  });
});
