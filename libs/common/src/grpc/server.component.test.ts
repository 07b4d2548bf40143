import { status as Status } from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';
import { FileDescriptorProto, type IFileDescriptorProto } from 'protobufjs/ext/descriptor';
import { syncPb, PROTO_FILES } from '@ptw/proto';
import { createClient } from './client';
import { implement, reflectionDefinition, startGrpcServer, type GrpcServerHandle } from './server';
import type { CallContext } from './context';
import { createLogger, memorySink } from '../logger';
import { Metrics } from '../metrics';
import { DEV_JWT_SECRET } from '../auth/dev';
import { setTraceMode } from '../tracing';
import { createTokenVerifier, mintToken } from '../auth/tokens';

const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ALG: 'HS256' as const, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
const empty = { applied: [], conflicts: [], rejected: [], summary: { total: 0, applied: 0, conflicts: 0, rejected: 0 } };

let server: GrpcServerHandle;
let client: ReturnType<typeof createClient<syncPb.SyncServiceClient>>;
let token: string;
const sink = memorySink();
/** What the sync handler does with its context; set by each test. */
let onSync: (ctx: CallContext) => Promise<void> = async () => {};

beforeAll(async () => {
  const kit = { log: createLogger('kit', { stdout: false, sink: sink.sink }), metrics: new Metrics('kit'), verify: createTokenVerifier(auth) };
  const implementation = implement(
    syncPb.SyncServiceService,
    {
      syncOfflineData: async (_req, ctx) => {
        await onSync(ctx);
        return empty;
      },
    },
    kit,
  );
  server = await startGrpcServer({
    listen: '127.0.0.1:0',
    services: [{ name: 'ptw.sync.v1.SyncService', definition: syncPb.SyncServiceService, implementation }],
    protoFiles: [PROTO_FILES.sync],
  });
  client = createClient(syncPb.SyncServiceClient, `127.0.0.1:${server.port}`, { defaultDeadlineMs: 5000 });
  token = await mintToken(auth, { user: 'u-kit', role: 'worker', projects: ['p1'], ttlSeconds: 60 });
});

afterAll(async () => {
  client.close();
  await server.stop(100);
});

const request = { device_id: 'd1', changes: [] };

it('when a call succeeds, then its signal is not aborted afterwards (grpc-js reports every finished call as "cancelled")', async () => {
  let signal: AbortSignal | undefined;
  onSync = async (ctx) => {
    signal = ctx.signal;
  };
  await client.call.syncOfflineData(request, { token });
  await new Promise((r) => setTimeout(r, 50));
  expect(signal?.aborted).toBe(false);
});

it('when the caller aborts its signal, then the call fails CANCELLED and the handler sees its own signal abort', async () => {
  let served!: () => void;
  const started = new Promise<void>((r) => (served = r));
  let seenAbort = false;
  onSync = async (ctx) => {
    served();
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
    seenAbort = true;
  };
  const caller = new AbortController();
  const call = client.call.syncOfflineData(request, { token, signal: caller.signal });
  await started;
  caller.abort();
  await expect(call).rejects.toMatchObject({ code: Status.CANCELLED });
  for (let i = 0; i < 50 && !seenAbort; i++) await new Promise((r) => setTimeout(r, 10));
  expect(seenAbort).toBe(true);
});

it('when a call is made, then one grpc_call line carries its request id, user and status, and the handler logs with both', async () => {
  sink.clear();
  onSync = async (ctx) => {
    ctx.log.info({ event: 'handler_line' }, 'inside');
  };
  await client.call.syncOfflineData(request, { token, reqId: 'req-kit-1' });
  const lines = sink.lines();
  const call = lines.filter((l) => l.event === 'grpc_call');
  expect(call).toHaveLength(1);
  expect(call[0]).toMatchObject({ req_id: 'req-kit-1', user_id: 'u-kit', status_code: 'OK', endpoint: '/ptw.sync.v1.SyncService/SyncOfflineData', msg: 'grpc call' });
  expect(lines.find((l) => l.event === 'handler_line')).toMatchObject({ req_id: 'req-kit-1', user_id: 'u-kit' });
});

it('when the token is missing or invalid, then the call is UNAUTHENTICATED and logged with its request id', async () => {
  sink.clear();
  await expect(client.call.syncOfflineData(request, { token: 'not.a.token', reqId: 'req-kit-2' })).rejects.toMatchObject({ code: Status.UNAUTHENTICATED });
  expect(sink.lines().filter((l) => l.event === 'grpc_call')).toEqual([expect.objectContaining({ req_id: 'req-kit-2', status_code: 'UNAUTHENTICATED' })]);
});

describe('when tracing runs without an endpoint (ids mode)', () => {
  const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
  beforeAll(() => setTraceMode('ids'));
  afterAll(() => setTraceMode('off'));

  it("when a call carries the caller's trace, then the call line and the handler's lines have its trace id and a span id of the call, passed on as the parent", async () => {
    sink.clear();
    let passedOn: string | undefined;
    onSync = async (ctx) => {
      ctx.log.info({ event: 'handler_line' }, 'inside');
      passedOn = ctx.trace?.traceparent;
    };
    const caller = `00-${TRACE}-00f067aa0ba902b7-00`;
    await client.call.syncOfflineData(request, { token, reqId: 'req-kit-3', trace: { traceparent: caller } });
    const lines = sink.lines();
    const call = lines.find((l) => l.event === 'grpc_call');
    expect(call).toMatchObject({ req_id: 'req-kit-3', trace_id: TRACE, span_id: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect(call?.span_id).not.toBe('00f067aa0ba902b7');
    expect(lines.find((l) => l.event === 'handler_line')).toMatchObject({ req_id: 'req-kit-3', trace_id: TRACE, span_id: call?.span_id });
    expect(passedOn).toBe(`00-${TRACE}-${String(call?.span_id)}-00`);
  });

  it('when a call carries no trace, then its lines have no trace fields', async () => {
    sink.clear();
    onSync = async (ctx) => ctx.log.info({ event: 'handler_line' }, 'inside');
    await client.call.syncOfflineData(request, { token, reqId: 'req-kit-4' });
    for (const line of sink.lines()) expect(Object.keys(line)).not.toContain('trace_id');
  });
});

describe('reflection', () => {
  it('when a service file is reflected, then it is served as compiled with its imports (import list, absolute type names), plus grpc.health.v1 and grpc.reflection', () => {
    const definition = reflectionDefinition([PROTO_FILES.workflow]);
    const entries = Object.values(definition) as MessageTypeDefinition[];
    expect(new Set(entries.map((e) => e.format))).toEqual(new Set(['Protocol Buffer 3 DescriptorProto']));
    // @grpc/reflection decodes every entry's files: each file is carried once, by one entry.
    const files = entries.flatMap((e) => e.fileDescriptorProtos).map((b) => FileDescriptorProto.decode(b) as IFileDescriptorProto);
    expect(files.map((f) => f.name).sort()).toEqual([
      'google/protobuf/struct.proto',
      'grpc/health/v1/health.proto',
      'grpc/reflection/v1/reflection.proto',
      'grpc/reflection/v1alpha/reflection.proto',
      'ptw/common/v1/common.proto',
      'ptw/workflow/v1/workflow.proto',
    ]);
    const workflow = files.find((f) => f.name === PROTO_FILES.workflow);
    expect(workflow?.dependency).toEqual(['google/protobuf/struct.proto', 'ptw/common/v1/common.proto']);
    const filter = workflow?.messageType?.find((m) => m.name === 'ListPermitsRequest')?.field?.find((f) => f.name === 'filter');
    expect(filter?.typeName).toBe('.ptw.common.v1.PermitFilter');
    // Comments travel too: grpcurl's describe shows them.
    expect(workflow?.sourceCodeInfo?.location?.some((l: { leadingComments?: string }) => l.leadingComments)).toBe(true);
    // Every message of every served file has an entry; other services' files are not served.
    for (const name of ['ptw.common.v1.PermitFilter', 'google.protobuf.Struct', 'grpc.health.v1.HealthCheckRequest', 'grpc.reflection.v1.ServerReflectionRequest'])
      expect(definition[name]).toBeDefined();
    expect(definition['ptw.export.v1.Kpis']).toBeUndefined();
  });

  it('when a proto file is not in the compiled descriptor set, then the server does not start, naming it', async () => {
    expect(() => reflectionDefinition(['ptw/missing/v1/missing.proto'])).toThrow(/ptw\/missing\/v1\/missing.proto is not in the compiled descriptor set/);
    await expect(startGrpcServer({ listen: '127.0.0.1:0', services: [], protoFiles: ['ptw/missing/v1/missing.proto'] })).rejects.toThrow(/not in the compiled descriptor set/);
  });
});
