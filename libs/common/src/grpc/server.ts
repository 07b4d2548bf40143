import {
  Metadata,
  Server,
  ServerCredentials,
  status as Status,
  type ServerErrorResponse,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import net from 'node:net';
import type { MessageTypeDefinition, PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { descriptorFiles, type DescriptorFile } from '@ptw/proto';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { AppError, DETAILS_METADATA_KEY, unauthenticated } from '../errors';
import type { TokenVerifier } from '../auth/tokens';
import { lineWriter, type Logger } from '../logger';
import type { Principal } from '../auth/principal';
import type { Metrics } from '../metrics';
import { AUTHORIZATION_KEY, callContext, normalizeRequestId, REQUEST_ID_KEY, TRACEPARENT_KEY, TRACESTATE_KEY, type CallContext } from './context';
import { hopTrace, traceMode } from '../tracing';
import { bearerToken } from '../auth/tokens';

/** The largest request message a service accepts. */
const MAX_RECEIVE_BYTES = 8 * 1024 * 1024;

/** How long a connection may carry no call before the server closes it. */
const MAX_CONNECTION_IDLE_MS = 5 * 60_000;

type MethodDef = {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestDeserialize: (b: Buffer) => unknown;
  responseSerialize: (v: never) => Buffer;
};

type ReqOf<M> = M extends { requestDeserialize: (b: Buffer) => infer R } ? R : never;
type ResOf<M> = M extends { responseSerialize: (v: infer R) => Buffer } ? R : never;

/** A unary handler: the decoded request in, the response out; throw an AppError to fail. */
export type UnaryFn<Req, Res> = (req: Req, ctx: CallContext) => Promise<Res>;
/** A server-streaming handler: write messages with `out.write`; resolve when done. */
export type StreamFn<Req, Res> = (req: Req, ctx: CallContext, out: ServerWritableStream<Req, Res>) => Promise<void>;

/** The async handlers of a ts-proto service definition, typed from the generated code. */
export type Handlers<D> = {
  [K in keyof D]: D[K] extends { responseStream: true } ? StreamFn<ReqOf<D[K]>, ResOf<D[K]>> : UnaryFn<ReqOf<D[K]>, ResOf<D[K]>>;
};

export interface ServiceKit {
  /** A root logger made by createLogger. */
  log: Logger;
  metrics: Metrics;
  verify: TokenVerifier;
}

/** Driver errors that mean "the store is not reachable right now" (retryable), by class name. */
const STORE_UNAVAILABLE = new Set([
  'MongoNetworkError',
  'MongoNetworkTimeoutError',
  'MongoServerSelectionError',
  'MongoNotConnectedError',
  'MongoTopologyClosedError',
  'MongoPoolClearedError',
  // An operation waiting for a connection when the pool was cleared because the server's monitor
  // lost it (the store died under load): "Connection to … interrupted due to server monitor timeout".
  'PoolClearedOnNetworkError',
  'MongoPoolClosedError',
  'MongoServerClosedError',
  'MongoWaitQueueTimeoutError',
  'MongoExpiredSessionError',
]);

/**
 * A connection's system error: the driver lets some through unwrapped, e.g. Node's "This socket has
 * been ended by the other party" (EPIPE) when it writes a command to a connection the store closed.
 * A handler's only connections are the store's.
 */
const CONNECTION_ERROR_CODES = new Set(['EPIPE', 'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'ENOTCONN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** True when `err` (or its cause) says the store cannot be reached. */
export function isStoreUnavailable(err: unknown): boolean {
  for (let e = err as { name?: string; cause?: unknown; message?: string; code?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++) {
    if (e.name && STORE_UNAVAILABLE.has(e.name)) return true;
    if (typeof e.code === 'string' && CONNECTION_ERROR_CODES.has(e.code)) return true;
    // A bulk write cut by a lost connection is re-wrapped with only the network error's message.
    if (e.name === 'MongoBulkWriteError' && /ECONNREFUSED|ECONNRESET|EPIPE|connection .*closed|Server selection timed out|not connected/i.test(e.message ?? '')) return true;
    // mongoose queues a model's commands while its connection is down and gives up after a while.
    if (e.name === 'MongooseError' && /buffering timed out/.test(e.message ?? '')) return true;
  }
  return false;
}

/**
 * Largest error details (UTF-8 JSON) a status carries. They cross the hop in a trailer, whose whole
 * header list an HTTP/2 peer may cap at 64 KiB (base64 adds a third): every answer must arrive.
 */
export const MAX_DETAILS_BYTES = 16 * 1024;

/**
 * Details cut to {@link MAX_DETAILS_BYTES}, with `truncated: true` when anything was left out: first
 * a conflict's server state is reduced to its id, version and status, then only the scalar fields
 * of the details are kept.
 */
export function capDetails(details: unknown): unknown {
  const size = (v: unknown) => Buffer.byteLength(JSON.stringify(v) ?? '', 'utf8');
  if (size(details) <= MAX_DETAILS_BYTES || !details || typeof details !== 'object' || Array.isArray(details)) {
    return size(details) <= MAX_DETAILS_BYTES ? details : { truncated: true };
  }
  const d = details as Record<string, unknown>;
  if (d.server_state && typeof d.server_state === 'object') {
    const st = d.server_state as Record<string, unknown>;
    const reduced = { ...d, server_state: { id: st.id, version: st.version, status: st.status }, truncated: true };
    if (size(reduced) <= MAX_DETAILS_BYTES) return reduced;
  }
  const scalars = Object.fromEntries(
    Object.entries(d)
      .filter(([, v]) => v === null || ['string', 'number', 'boolean'].includes(typeof v))
      .map(([k, v]) => [k, typeof v === 'string' ? v.slice(0, 1000) : v]),
  );
  return { ...scalars, truncated: true };
}

/** Converts anything thrown into the one status the caller sees; unexpected errors are logged with stack. */
export function toServiceError(err: unknown, log: Logger): ServerErrorResponse {
  const metadata = new Metadata();
  if (err instanceof AppError) {
    if (err.details !== undefined) metadata.set(DETAILS_METADATA_KEY, Buffer.from(JSON.stringify(capDetails(err.details)), 'utf8'));
    return Object.assign(new Error(err.message), { code: err.code, details: err.message, metadata });
  }
  if (isStoreUnavailable(err)) {
    log.warn({ err, outcome: 'store_unavailable' }, 'store unavailable');
    return Object.assign(new Error('Store unavailable, retry shortly'), { code: Status.UNAVAILABLE, details: 'Store unavailable, retry shortly', metadata });
  }
  log.error({ err, outcome: 'internal_error' }, 'unexpected error');
  return Object.assign(new Error('Internal error'), { code: Status.INTERNAL, details: 'Internal error', metadata });
}

/**
 * Turns `async (request, ctx) => response` handlers into a grpc-js implementation: verifies the
 * caller's bearer token from metadata (UNAUTHENTICATED otherwise), carries `req_id` into the
 * handler's logger, maps errors once, records metrics and one log line per call. Methods without a
 * handler answer UNIMPLEMENTED.
 */
export function implement<D extends Record<string, MethodDef>>(definition: D, handlers: Partial<Handlers<D>>, kit: ServiceKit): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  // Written on every call: built without bunyan's record building (see lineWriter).
  const callLine = lineWriter(kit.log, 'grpc call');
  for (const [name, def] of Object.entries(definition)) {
    const handler = handlers[name as keyof D] as ((req: unknown, ctx: CallContext, out?: unknown) => Promise<unknown>) | undefined;
    const method = def.path;

    const run = async (
      call: ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>,
    ): Promise<{ ok: true; value: unknown } | { ok: false; error: ServerErrorResponse }> => {
      const started = process.hrtime.bigint();
      const reqId = normalizeRequestId(call.metadata.get(REQUEST_ID_KEY)[0]);
      const hop = traceMode() === 'ids' ? hopTrace(call.metadata.get(TRACEPARENT_KEY)[0], call.metadata.get(TRACESTATE_KEY)[0]) : undefined;
      let code: Status = Status.OK;
      let principal: Principal | undefined;
      // A child logger and an AbortController cost more than the rest of a short call, and most
      // calls use neither: both are made when a handler (or an error) first asks for them.
      let log: Logger | undefined;
      const logger = () => (log ??= kit.log.child({ req_id: reqId, ...(principal && { user_id: principal.user_id }), ...hop?.fields }));
      let controller: AbortController | undefined;
      const signal = () => {
        if (!controller) {
          const c = (controller = new AbortController());
          if (call.cancelled) c.abort();
          // grpc-js also emits 'cancelled' once the status is sent: ignore it after the handler is done.
          else call.once('cancelled', () => !done && c.abort());
        }
        return controller.signal;
      };
      let done = false;
      try {
        if (!handler) throw new AppError(Status.UNIMPLEMENTED, `${method} is not implemented yet`);
        const token = bearerToken(String(call.metadata.get(AUTHORIZATION_KEY)[0] ?? ''));
        if (!token) throw unauthenticated();
        // A client sends the same token on every call: no promise to wait for once it is verified.
        principal = kit.verify.cached(token) ?? (await kit.verify(token));
        const ctx = callContext(principal, token, reqId, call.metadata, logger, signal, hop);
        const value = await handler(call.request, ctx, call);
        return { ok: true, value };
      } catch (err) {
        const error = toServiceError(err, logger());
        code = error.code ?? Status.UNKNOWN;
        return { ok: false, error };
      } finally {
        done = true;
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        kit.metrics.grpcServerHandled.inc({ method, code: Status[code] });
        kit.metrics.grpcServerDuration.observe({ method }, seconds);
        callLine({ req_id: reqId, event: 'grpc_call', endpoint: method, status_code: Status[code], duration_ms: Math.round(seconds * 1000), user_id: principal?.user_id, ...hop?.fields });
      }
    };

    impl[name] = def.responseStream
      ? (call: ServerWritableStream<unknown, unknown>) => {
          void run(call).then((r) => {
            if (r.ok) call.end();
            else call.emit('error', r.error);
          });
        }
      : (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
          void run(call).then((r) => (r.ok ? callback(null, r.value) : callback(r.error)));
        };
  }
  return impl;
}

export interface RegisteredService {
  /** Fully qualified name, e.g. `ptw.sync.v1.SyncService` (the grpc.health.v1 service name). */
  name: string;
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

export interface GrpcServerHandle {
  port: number;
  server: Server;
  health: HealthImplementation;
  setServing(serving: boolean): void;
  /** Graceful: NOT_SERVING, drain in-flight calls up to `graceMs`, then force. */
  stop(graceMs: number): Promise<void>;
}

/**
 * Fails with Node's own EADDRINUSE when a fixed `host:port` is taken. grpc-js would find it too,
 * but also writes a line of its own to stderr; the caller's one clear line should be the only one.
 */
function probeListen(listen: string): Promise<void> {
  const m = /^(?:\[([^\]]+)\]|([^\s:]+)):(\d+)$/.exec(listen);
  if (!m || Number(m[3]) === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(Number(m[3]), m[1] ?? m[2], () => probe.close(() => resolve()));
  });
}

/** The services every server offers besides its own, as reflection lists them. */
const STANDARD_SERVICES = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

/**
 * What server reflection serves: `protoFiles`, grpc.health.v1 and grpc.reflection with everything
 * they import, taken byte for byte from the descriptor set protoc (buf) compiled. Not proto-loader's
 * package definition: it rebuilds the files from protobuf.js, one per package, without their import
 * lists and with relative type names, which no reflection client can resolve (grpcurl: `cannot
 * resolve type "*.common.v1.PermitFilter"`; grpc-node issues 2595, 2958). @grpc/reflection reads
 * only the files of a definition's entries (each file once, by name), and decodes every entry's list:
 * the first entry carries all the files and the others none, so each file is decoded once per start
 * instead of once per message (68 messages: ~150 ms of CPU per server start).
 */
export function reflectionDefinition(protoFiles: string[]): PackageDefinition {
  const all = new Map(descriptorFiles().map((f) => [f.name, f]));
  const wanted = [...protoFiles, 'grpc/health/v1/health.proto', 'grpc/reflection/v1/reflection.proto', 'grpc/reflection/v1alpha/reflection.proto'];
  const files = new Set<DescriptorFile>();
  for (let name = wanted.shift(); name !== undefined; name = wanted.shift()) {
    const file = all.get(name);
    if (!file) throw new Error(`reflection: ${name} is not in the compiled descriptor set (regenerate it: npm run proto)`);
    if (files.has(file)) continue;
    files.add(file);
    wanted.push(...file.dependencies);
  }
  const bytes = [...files].map((f) => f.bytes);
  const definition: PackageDefinition = {};
  let carried = false;
  for (const f of files) {
    for (const [name, type] of f.messages) {
      definition[name] = { format: 'Protocol Buffer 3 DescriptorProto', type, fileDescriptorProtos: carried ? [] : bytes } satisfies MessageTypeDefinition;
      carried = true;
    }
  }
  return definition;
}

/**
 * Starts a gRPC server with the given services, grpc.health.v1 (the empty name and every service
 * name registered explicitly) and server reflection: `protoFiles` with their imports, listing the
 * services, grpc.health.v1.Health and grpc.reflection (see reflectionDefinition).
 */
export async function startGrpcServer(opts: {
  listen: string;
  services: RegisteredService[];
  /** The services' proto files (paths in protos/, e.g. PROTO_FILES.sync): what reflection describes. */
  protoFiles: string[];
}): Promise<GrpcServerHandle> {
  const server = new Server({
    'grpc.max_receive_message_length': MAX_RECEIVE_BYTES,
    // Per-call channelz counters and timestamps nobody reads (our metrics count the calls).
    'grpc.enable_channelz': 0,
    // A connection without a call for this long is closed (GOAWAY): a client that went away without
    // closing (a crashed gateway replica) holds nothing here; a live one connects again on its next call.
    'grpc.max_connection_idle_ms': MAX_CONNECTION_IDLE_MS,
    // A peer that stops answering pings is dropped (the clients ping every 30 s as well).
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
  });
  const names = opts.services.map((s) => s.name);
  const initial: Record<string, ServingStatus> = { '': 'NOT_SERVING' };
  for (const n of names) initial[n] = 'NOT_SERVING';
  const health = new HealthImplementation(initial);
  health.addToServer(server);
  for (const s of opts.services) server.addService(s.definition, s.implementation);
  new ReflectionService(reflectionDefinition(opts.protoFiles), { services: [...names, ...STANDARD_SERVICES] }).addToServer(server);

  await probeListen(opts.listen);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(opts.listen, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const setServing = (serving: boolean) => {
    const st: ServingStatus = serving ? 'SERVING' : 'NOT_SERVING';
    health.setStatus('', st);
    for (const n of names) health.setStatus(n, st);
  };
  setServing(true);
  return {
    port,
    server,
    health,
    setServing,
    stop: (graceMs: number) =>
      new Promise<void>((resolve) => {
        setServing(false);
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
