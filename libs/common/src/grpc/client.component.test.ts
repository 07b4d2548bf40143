import { connectivityState, status } from '@grpc/grpc-js';
import { context, propagation, SpanKind, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-node';
import { syncPb, PROTO_FILES } from '@ptw/proto';
import { createClient } from './client';
import { implement, startGrpcServer, type GrpcServerHandle } from './server';
import { createLogger } from '../logger';
import { Metrics } from '../metrics';
import { DEV_JWT_SECRET } from '../auth/dev';
import { createTokenVerifier, mintToken } from '../auth/tokens';
import { setTraceMode } from '../tracing';

const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ALG: 'HS256' as const, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };

/** A sync "replica" whose stats answer tells which one served the call. */
async function replica(listen: string, marker: number): Promise<GrpcServerHandle> {
  const kit = { log: createLogger('t', { stdout: false }), metrics: new Metrics(`t${marker}`), verify: createTokenVerifier(auth) };
  const implementation = implement(syncPb.SyncServiceService, { getSyncStats: async () => ({ applied: marker, conflicts: 0, rejected: 0 }) }, kit);
  return startGrpcServer({ listen, services: [{ name: 'ptw.sync.v1.SyncService', definition: syncPb.SyncServiceService, implementation }], protoFiles: [PROTO_FILES.sync] });
}

it('when the target resolves to two replicas, then the client spreads calls over both (round robin)', async () => {
  const a = await replica('127.0.0.1:0', 1);
  const b = await replica('127.0.0.1:0', 2);
  // Several addresses for one target, as DNS gives for a scaled compose service.
  const client = createClient(syncPb.SyncServiceClient, `ipv4:127.0.0.1:${a.port},127.0.0.1:${b.port}`, { defaultDeadlineMs: 5000 });
  const token = await mintToken(auth, { user: 'svc', role: 'service', projects: [], ttlSeconds: 60 });
  const seen = new Set<number>();
  for (let i = 0; i < 20; i++) seen.add((await client.call.getSyncStats({ since: '' }, { token })).applied);
  client.close();
  await Promise.all([a.stop(100), b.stop(100)]);
  expect([...seen].sort()).toEqual([1, 2]);
});

describe('cancel hook', () => {
  let server: GrpcServerHandle;
  let release: () => void = () => undefined;
  beforeAll(async () => {
    const kit = { log: createLogger('t', { stdout: false }), metrics: new Metrics('tcancel'), verify: createTokenVerifier(auth) };
    const implementation = implement(
      syncPb.SyncServiceService,
      {
        // Answers when released, or when the call is cancelled.
        getSyncStats: (_req, ctx) =>
          new Promise((resolve) => {
            release = () => resolve({ applied: 1, conflicts: 0, rejected: 0 });
            ctx.signal.addEventListener('abort', () => resolve({ applied: 0, conflicts: 0, rejected: 0 }));
          }),
      },
      kit,
    );
    server = await startGrpcServer({
      listen: '127.0.0.1:0',
      services: [{ name: 'ptw.sync.v1.SyncService', definition: syncPb.SyncServiceService, implementation }],
      protoFiles: [PROTO_FILES.sync],
    });
  });
  afterAll(() => server.stop(100));

  it('when the hook fires during the call, then the call ends CANCELLED; when the call ends, then the hook is unregistered', async () => {
    const client = createClient(syncPb.SyncServiceClient, `127.0.0.1:${server.port}`, { defaultDeadlineMs: 5000 });
    const token = await mintToken(auth, { user: 'svc', role: 'service', projects: [], ttlSeconds: 60 });
    try {
      let fire: () => void = () => undefined;
      let unhooked = 0;
      const cancelled = client.call.getSyncStats({ since: '' }, { token, onCancel: (cancel) => ((fire = cancel), () => unhooked++) });
      await new Promise((resolve) => setTimeout(resolve, 100));
      fire();
      await expect(cancelled).rejects.toMatchObject({ code: status.CANCELLED });
      expect(unhooked).toBe(1);

      unhooked = 0;
      const answered = client.call.getSyncStats({ since: '' }, { token, onCancel: () => () => unhooked++ });
      await new Promise((resolve) => setTimeout(resolve, 100));
      release();
      expect((await answered).applied).toBe(1);
      expect(unhooked).toBe(1);
    } finally {
      client.close();
    }
    // A loaded machine starts the channel slowly.
  }, 20_000);
});

describe('when spans are exported', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  let server: GrpcServerHandle;
  let seen: string | undefined;
  beforeAll(async () => {
    provider.register();
    setTraceMode('export');
    const kit = { log: createLogger('t', { stdout: false }), metrics: new Metrics('texport'), verify: createTokenVerifier(auth) };
    const implementation = implement(
      syncPb.SyncServiceService,
      {
        getSyncStats: async (_req, ctx) => {
          seen = String(ctx.metadata.get('traceparent')[0] ?? '');
          return { applied: 1, conflicts: 0, rejected: 0 };
        },
      },
      kit,
    );
    server = await startGrpcServer({
      listen: '127.0.0.1:0',
      services: [{ name: 'ptw.sync.v1.SyncService', definition: syncPb.SyncServiceService, implementation }],
      protoFiles: [PROTO_FILES.sync],
    });
  });
  afterAll(async () => {
    setTraceMode('off');
    await server.stop(100);
    await provider.shutdown();
    trace.disable();
    propagation.disable();
    context.disable();
  });

  it("when a unary call is made, then it takes the same transport as without tracing (grpc-js's channel stays idle), and its client span is the parent the server is given", async () => {
    const client = createClient(syncPb.SyncServiceClient, `127.0.0.1:${server.port}`, { defaultDeadlineMs: 5000 });
    const token = await mintToken(auth, { user: 'svc', role: 'service', projects: [], ttlSeconds: 60 });
    try {
      const parent = trace.getTracer('t').startSpan('request');
      await context.with(trace.setSpan(context.active(), parent), () => client.call.getSyncStats({ since: '' }, { token }));
      parent.end();
      expect(client.raw.getChannel().getConnectivityState(false)).toBe(connectivityState.IDLE);
      const span = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.CLIENT);
      expect(span).toMatchObject({
        name: 'grpc.ptw.sync.v1.SyncService/GetSyncStats',
        attributes: { 'rpc.system': 'grpc', 'rpc.method': 'GetSyncStats', 'rpc.grpc.status_code': status.OK },
      });
      expect(span!.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
      expect(seen).toBe(`00-${span!.spanContext().traceId}-${span!.spanContext().spanId}-01`);
    } finally {
      client.close();
    }
  });
});
