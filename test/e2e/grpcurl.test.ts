/**
 * gRPC tools against the real services (issue 25 item 6): grpcurl — an independent reflection
 * client, not our code — lists, describes and calls every service through server reflection alone
 * (no .proto files given), with a service token minted by `npm run token` as docs/grpc.md shows, and
 * checks grpc.health.v1.Health.
 */
import { execFileSync } from 'node:child_process';
import { SERVICE_NAMES } from '@ptw/proto';
import { REPO_ROOT, type Stack } from '../../libs/devstore/src/stack';
import { ensureGrpcurl, grpcurl } from '../support/grpcurl';
import { startTestStack } from '../support/stack';

jest.setTimeout(300_000);

let stack: Stack;
let bearer: string;

const STANDARD = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

/** One service: where it listens, a request message that uses an imported type, and one call. */
const SERVICES = [
  {
    name: 'workflow',
    addr: () => stack.env.PTW_WORKFLOW_ADDR,
    service: SERVICE_NAMES.workflow,
    // PermitFilter comes from ptw/common/v1: the type grpcurl could not resolve (issue 25).
    describes: ['ptw.workflow.v1.ListPermitsRequest', /\.ptw\.common\.v1\.PermitFilter filter = 1;/],
    call: {
      method: 'ListPermits',
      data: { filter: { project: 'p1', status: ['draft', 'submitted', 'under_review', 'approved', 'active'] }, page: 1, page_size: 5 },
      check: (r: { count?: number; results?: { projectId: string }[] }) => {
        expect(r.count).toBeGreaterThan(0);
        expect(r.results?.length).toBeGreaterThan(0);
        for (const p of r.results ?? []) expect(p.projectId).toBe('p1');
      },
    },
  },
  {
    name: 'sync',
    addr: () => stack.env.PTW_SYNC_ADDR,
    service: SERVICE_NAMES.sync,
    describes: ['ptw.sync.v1.Change', /\.google\.protobuf\.Struct data = 6;/],
    // A change's data is a google.protobuf.Struct (an import grpcurl must resolve to write it); an
    // unknown entity is rejected alone and nothing is written.
    call: {
      method: 'SyncOfflineData',
      data: { device_id: 'grpcurl-test', changes: [{ entity: 'gizmo', op: 'create', offline_id: 'o1', data: { title: 'x', nested: { n: 1 } } }] },
      check: (r: { rejected?: { reason: string; offlineId: string }[]; summary?: { total: number; rejected: number } }) => {
        expect(r.rejected).toEqual([expect.objectContaining({ offlineId: 'o1', reason: 'unsupported_entity' })]);
        expect(r.summary).toMatchObject({ total: 1, rejected: 1 });
      },
    },
  },
  {
    name: 'export',
    addr: () => stack.env.PTW_EXPORT_ADDR,
    service: SERVICE_NAMES.export,
    describes: ['ptw.export.v1.ExportService', /rpc GetExportStats \( \.ptw\.common\.v1\.StatsRequest \)/],
    call: {
      method: 'GetKpis',
      data: { project: 'p1' },
      check: (r: { asOf?: string; counts?: Record<string, number> }) => {
        expect(Date.parse(r.asOf ?? '')).not.toBeNaN();
        expect(r.counts).toEqual(expect.any(Object));
      },
    },
  },
  {
    name: 'health',
    addr: () => stack.env.PTW_HEALTH_ADDR,
    service: SERVICE_NAMES.health,
    describes: ['ptw.health.v1.HealthReport', /repeated \.ptw\.common\.v1\.JobState jobs = 5;/],
    call: {
      method: 'GetHealth',
      data: {},
      check: (r: { services?: Record<string, string> }) => {
        expect(r.services).toEqual({ sync: 'SERVING', workflow: 'SERVING', export: 'SERVING' });
      },
    },
  },
] as const;

beforeAll(async () => {
  ensureGrpcurl();
  stack = await startTestStack('grpcurl');
  // The documented way to get a service token (docs/grpc.md): its last line is the token.
  const out = execFileSync('npm', ['run', '-s', 'token', '--', '--user', 'svc-grpcurl', '--role', 'service'], { cwd: REPO_ROOT, env: { ...process.env, ...stack.env }, encoding: 'utf8' });
  bearer = `authorization: Bearer ${out.trim().split('\n').pop()}`;
});

afterAll(async () => {
  await stack?.stop();
});

describe.each(SERVICES)('$name service through grpcurl', (s) => {
  it('when grpcurl lists the services, then it sees the service, grpc.health.v1.Health and reflection, and no other service', async () => {
    const r = await grpcurl(['-plaintext', s.addr(), 'list']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout.trim().split('\n').sort()).toEqual([...STANDARD, s.service].sort());
  });

  it("when grpcurl describes the service and a message using an imported type, then both resolve (with the protos' comments)", async () => {
    const methods = await grpcurl(['-plaintext', s.addr(), 'list', s.service]);
    expect(methods.code).toBe(0);
    const names = methods.stdout.trim().split('\n');
    expect(names).toContain(`${s.service}.${s.call.method}`);
    const service = await grpcurl(['-plaintext', s.addr(), 'describe', s.service]);
    expect(service).toMatchObject({ code: 0, stderr: '' });
    for (const m of names) expect(service.stdout).toContain(`rpc ${m.slice(s.service.length + 1)} (`);
    expect(service.stdout).toMatch(/^\/\/ /m);
    const [symbol, shape] = s.describes;
    const message = await grpcurl(['-plaintext', s.addr(), 'describe', symbol]);
    expect(message).toMatchObject({ code: 0, stderr: '' });
    expect(message.stdout).toMatch(shape);
  });

  it('when grpcurl calls a method with a service token, then it answers; without a token, then UNAUTHENTICATED', async () => {
    const args = ['-plaintext', '-d', JSON.stringify(s.call.data), s.addr(), `${s.service}/${s.call.method}`];
    const r = await grpcurl(['-H', bearer, ...args]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    (s.call.check as (v: unknown) => void)(JSON.parse(r.stdout));
    const anonymous = await grpcurl(args);
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toMatch(/Code: Unauthenticated/);
  });

  it('when grpcurl checks grpc.health.v1.Health (the server and the service by name), then SERVING', async () => {
    for (const data of ['{}', JSON.stringify({ service: s.service })]) {
      const r = await grpcurl(['-plaintext', '-d', data, s.addr(), 'grpc.health.v1.Health/Check']);
      expect(r).toMatchObject({ code: 0, stderr: '' });
      expect(JSON.parse(r.stdout)).toEqual({ status: 'SERVING' });
    }
  });
});
