import http2 from 'node:http2';
import { credentials, Metadata, status as Status, type ServiceError } from '@grpc/grpc-js';
import { exportPb, syncPb, PROTO_FILES } from '@ptw/proto';
import { createClient } from './client';
import { implement, startGrpcServer, type GrpcServerHandle } from './server';
import { parseGrpcTimeout } from './direct-unary';
import { grpcFrame as frame } from './http2-unary';
import { checkHealth } from './health-client';
import type { CallContext } from './context';
import { createLogger, memorySink } from '../logger';
import { Metrics } from '../metrics';
import { DEV_JWT_SECRET } from '../auth/dev';
import { createTokenVerifier, mintToken } from '../auth/tokens';
import { AppError, DETAILS_METADATA_KEY } from '../errors';

const auth = { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_JWT_ALG: 'HS256' as const, PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
const empty = { applied: [], conflicts: [], rejected: [], summary: { total: 0, applied: 0, conflicts: 0, rejected: 0 } };
const SYNC_PATH = '/ptw.sync.v1.SyncService/SyncOfflineData';

let server: GrpcServerHandle;
let address: string;
let token: string;
/** What the sync handler does; set by each test. */
let onSync: (req: syncPb.SyncOfflineDataRequest, ctx: CallContext) => Promise<syncPb.SyncOfflineDataResponse> = async () => empty;
const sink = memorySink();

async function start(directUnary?: boolean): Promise<GrpcServerHandle> {
  const kit = { log: createLogger('kit', { stdout: false, sink: sink.sink }), metrics: new Metrics('kit'), verify: createTokenVerifier(auth) };
  const sync = implement(syncPb.SyncServiceService, { syncOfflineData: (req, ctx) => onSync(req, ctx) }, kit);
  const exp = implement(
    exportPb.ExportServiceService,
    {
      bulkExportPdf: async (_req, _ctx, out) => {
        out.write({ payload: { $case: 'data', value: Buffer.from('one') } });
        out.write({ payload: { $case: 'data', value: Buffer.from('two') } });
      },
    },
    kit,
  );
  return startGrpcServer({
    listen: '127.0.0.1:0',
    services: [
      { name: 'ptw.sync.v1.SyncService', definition: syncPb.SyncServiceService, implementation: sync },
      { name: 'ptw.export.v1.ExportService', definition: exportPb.ExportServiceService, implementation: exp },
    ],
    protoFiles: [PROTO_FILES.sync, PROTO_FILES.export],
    directUnary,
  });
}

beforeAll(async () => {
  server = await start();
  address = `127.0.0.1:${server.port}`;
  token = await mintToken(auth, { user: 'u-direct', role: 'worker', projects: ['p1'], ttlSeconds: 60 });
});

afterAll(async () => {
  await server.stop(100);
});

beforeEach(() => {
  onSync = async () => empty;
});

/** grpc-js's own client, with the bearer token and a request id. */
function grpcJsCall(req: syncPb.SyncOfflineDataRequest, opts: { deadlineMs?: number; compress?: boolean; onCall?: (call: { cancel(): void }) => void } = {}) {
  const client = new syncPb.SyncServiceClient(address, credentials.createInsecure(), opts.compress ? { 'grpc.default_compression_algorithm': 2 } : {});
  const md = new Metadata();
  md.set('authorization', `Bearer ${token}`);
  md.set('x-request-id', 'req-direct-1');
  return new Promise<{ err: ServiceError | null; res?: syncPb.SyncOfflineDataResponse }>((resolve) => {
    const call = client.syncOfflineData(req, md, { deadline: opts.deadlineMs ? Date.now() + opts.deadlineMs : Infinity }, (err, res) => {
      client.close();
      resolve({ err, res });
    });
    opts.onCall?.(call);
  });
}

/** A raw HTTP/2 request: the response's headers (trailers-only answers carry the status there), trailers and body. */
function rawCall(headers: http2.OutgoingHttpHeaders, body: Buffer) {
  return new Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
    const session = http2.connect(`http://${address}`);
    session.on('error', reject);
    const stream = session.request({ ':method': 'POST', ':path': SYNC_PATH, 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${token}`, ...headers });
    let resHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (resHeaders = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => undefined);
    stream.on('close', () => {
      session.close();
      resolve({ headers: resHeaders, trailers, body: Buffer.concat(chunks) });
    });
    stream.end(body);
  });
}

const statusOf = (r: { headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders }) => Number(r.trailers['grpc-status'] ?? r.headers['grpc-status']);

it('when the server starts, then the unary methods take the direct path, and not when told otherwise', async () => {
  expect(server.directUnary).toBe(true);
  const plain = await start(false);
  try {
    expect(plain.directUnary).toBe(false);
  } finally {
    await plain.stop(100);
  }
});

it("when grpc-js's client calls, then the handler gets the request, the caller and its request id, and the answer arrives", async () => {
  let seen: { device?: string; user?: string; reqId?: string } = {};
  onSync = async (req, ctx) => {
    seen = { device: req.device_id, user: ctx.principal.user_id, reqId: ctx.reqId };
    return { ...empty, summary: { total: 0, applied: 0, conflicts: 0, rejected: 0 } };
  };
  const { err, res } = await grpcJsCall({ device_id: 'dev-1', changes: [] });
  expect(err).toBeNull();
  expect(res?.summary).toEqual(empty.summary);
  expect(seen).toEqual({ device: 'dev-1', user: 'u-direct', reqId: 'req-direct-1' });
});

it('when a handler fails, then the status, its message and the details metadata reach both clients', async () => {
  onSync = async () => {
    throw new AppError(Status.FAILED_PRECONDITION, 'version is stale: ü 100%', { field: 'version' });
  };
  const { err } = await grpcJsCall({ device_id: 'dev-1', changes: [] });
  expect(err?.code).toBe(Status.FAILED_PRECONDITION);
  expect(err?.details).toBe('version is stale: ü 100%');
  expect(JSON.parse(String(err?.metadata.get(DETAILS_METADATA_KEY)[0]))).toEqual({ field: 'version' });
  const ours = createClient(syncPb.SyncServiceClient, address, { defaultDeadlineMs: 5000 });
  try {
    await expect(ours.call.syncOfflineData({ device_id: 'dev-1', changes: [] }, { token })).rejects.toMatchObject({ code: Status.FAILED_PRECONDITION, details: 'version is stale: ü 100%' });
  } finally {
    ours.close();
  }
});

it("when the caller's deadline passes, then it gets DEADLINE_EXCEEDED and the handler's signal aborts", async () => {
  let aborted!: Promise<void>;
  onSync = (_req, ctx) => {
    aborted = new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
    return aborted.then(() => empty);
  };
  const { err } = await grpcJsCall({ device_id: 'dev-1', changes: [] }, { deadlineMs: 150 });
  expect(err?.code).toBe(Status.DEADLINE_EXCEEDED);
  await aborted;
});

it('when the deadline is further away than a timer can wait, then the call is served as one without a deadline', async () => {
  onSync = async () => {
    await new Promise((r) => setTimeout(r, 50));
    return empty;
  };
  const r = await rawCall({ 'grpc-timeout': '99999999H' }, frame(syncPb.SyncOfflineDataRequest.encode({ device_id: 'dev-1', changes: [] }).finish()));
  expect(statusOf(r)).toBe(Status.OK);
  expect(syncPb.SyncOfflineDataResponse.decode(r.body.subarray(5)).summary).toEqual(empty.summary);
});

it("when the caller cancels, then the handler's signal aborts", async () => {
  let aborted!: Promise<void>;
  let served!: () => void;
  const started = new Promise<void>((r) => (served = r));
  onSync = (_req, ctx) => {
    aborted = new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
    served();
    return aborted.then(() => empty);
  };
  const { err } = await grpcJsCall({ device_id: 'dev-1', changes: [] }, { onCall: (call) => void started.then(() => call.cancel()) });
  expect(err?.code).toBe(Status.CANCELLED);
  await aborted;
});

it('when the request message is larger than 8 MiB, then it is refused with RESOURCE_EXHAUSTED and the handler never runs', async () => {
  let ran = false;
  onSync = async () => {
    ran = true;
    return empty;
  };
  const r = await rawCall({}, frame(new Uint8Array(8 * 1024 * 1024 + 10)));
  expect(statusOf(r)).toBe(Status.RESOURCE_EXHAUSTED);
  expect(ran).toBe(false);
});

it('when the body is not exactly one well-formed message, then the call fails with a gRPC status, not a crash', async () => {
  const msg = frame(syncPb.SyncOfflineDataRequest.encode({ device_id: 'dev-1', changes: [] }).finish());
  expect(statusOf(await rawCall({}, Buffer.concat([msg, msg])))).toBe(Status.UNIMPLEMENTED);
  expect(statusOf(await rawCall({}, msg.subarray(0, 3)))).toBe(Status.UNIMPLEMENTED);
  const garbled = await rawCall({}, frame(Buffer.from([0x0a, 0xff])));
  expect([statusOf(garbled), decodeURI(String(garbled.headers['grpc-message']))]).toEqual([Status.INTERNAL, 'Error deserializing request']);
  const flagged = Buffer.from(msg);
  flagged[0] = 1;
  expect(statusOf(await rawCall({}, flagged))).toBe(Status.INTERNAL);
  // And the server still answers.
  expect((await grpcJsCall({ device_id: 'dev-1', changes: [] })).err).toBeNull();
});

it('when a request is compressed, has another content type or names an unknown method, then grpc-js answers it as before', async () => {
  let device = '';
  onSync = async (req) => {
    device = req.device_id;
    return empty;
  };
  expect((await grpcJsCall({ device_id: 'gzip-dev', changes: [] }, { compress: true })).err).toBeNull();
  expect(device).toBe('gzip-dev');
  const wrongType = await rawCall({ 'content-type': 'text/plain' }, Buffer.from('x'));
  expect(wrongType.headers[':status']).toBe(415);
  const unknown = await rawCall({ ':path': '/ptw.sync.v1.SyncService/NoSuchMethod' }, frame(new Uint8Array(0)));
  expect(statusOf(unknown)).toBe(Status.UNIMPLEMENTED);
});

it('when a server stream or the health service is called, then grpc-js serves it on the same port', async () => {
  expect(await checkHealth(address, 'ptw.sync.v1.SyncService')).toBe('SERVING');
  const client = new exportPb.ExportServiceClient(address, credentials.createInsecure());
  const md = new Metadata();
  md.set('authorization', `Bearer ${token}`);
  const chunks: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const call = client.bulkExportPdf({ permit_ids: [], use_filters: false, detailed: false, filter: undefined }, md);
    call.on('data', (c: exportPb.ExportChunk) => c.payload?.$case === 'data' && chunks.push(c.payload.value.toString()));
    call.on('error', reject);
    call.on('end', resolve);
  });
  client.close();
  expect(chunks).toEqual(['one', 'two']);
});

it('when the server stops while a direct call is in flight, then the call completes within the grace period', async () => {
  const other = await start();
  const ours = createClient(syncPb.SyncServiceClient, `127.0.0.1:${other.port}`, { defaultDeadlineMs: 5000 });
  let served!: () => void;
  const started = new Promise<void>((r) => (served = r));
  onSync = async () => {
    served();
    await new Promise((r) => setTimeout(r, 200));
    return { ...empty, summary: { total: 0, applied: 0, conflicts: 0, rejected: 0 } };
  };
  const call = ours.call.syncOfflineData({ device_id: 'dev-1', changes: [] }, { token });
  await started;
  const stopped = other.stop(3000);
  await expect(call).resolves.toMatchObject({ summary: empty.summary });
  await stopped;
  ours.close();
});

it('parses grpc-timeout as gRPC over HTTP/2 defines it', () => {
  expect(parseGrpcTimeout('250m')).toBe(250);
  expect(parseGrpcTimeout('2S')).toBe(2000);
  expect(parseGrpcTimeout('1H')).toBe(3_600_000);
  expect(parseGrpcTimeout('1500u')).toBeCloseTo(1.5);
  expect(parseGrpcTimeout('123456789m')).toBeUndefined();
  expect(parseGrpcTimeout('5x')).toBeUndefined();
  expect(parseGrpcTimeout(undefined)).toBeUndefined();
});
