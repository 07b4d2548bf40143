import { credentials, Metadata, status as Status, type CallOptions, type Client, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { context, propagation, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { traceMode } from '../tracing';
import { Http2UnaryChannel, parseTarget, serviceError, type UnaryDefinition } from './http2-unary';
import type { Metrics } from '../metrics';
import { AUTHORIZATION_KEY, REQUEST_ID_KEY, TRACEPARENT_KEY, TRACESTATE_KEY } from './context';

/**
 * Registers `cancel` to run when the caller goes away and returns what unregisters it (called once
 * the call is over). The cheap form of an AbortSignal for one call: an AbortController and an
 * EventTarget listener allocate about a tenth of what a whole unary call does (docs/benchmarks.md "The gRPC hop").
 */
export type CancelHook = (cancel: () => void) => () => void;

/** Who the call is made for: the bearer token to forward and the request id to carry. */
export interface CallCredentials {
  token: string;
  reqId?: string;
  deadlineMs?: number;
  /** Cancels the call when aborted (the HTTP client went away). */
  signal?: AbortSignal;
  /** Cancels the call when it fires (see CancelHook); used instead of `signal` when both are given. */
  onCancel?: CancelHook;
  /** The caller's trace, passed on as W3C metadata (`ids` trace mode; when exporting, the client span's context is passed on instead). */
  trace?: { traceparent: string; tracestate?: string };
}

type UnaryMethod<Req, Res> = (request: Req, metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: Res) => void) => ClientUnaryCall;

/** A ts-proto client's unary methods as `(request, credentials) => Promise<response>`. */
export type PromiseClient<C> = {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- matches any unary method's request and callback (unknown would not: parameters are contravariant)
  [K in keyof C as C[K] extends (req: any, md: Metadata, o: Partial<CallOptions>, cb: (...a: any[]) => void) => ClientUnaryCall ? K : never]: C[K] extends UnaryMethod<infer Req, infer Res>
    ? (request: Req, creds: CallCredentials) => Promise<Res>
    : never;
};

/** The outgoing metadata as header names and values: bearer token, request id and (when given) the caller's trace. */
export function callHeaders(creds: CallCredentials): Record<string, string> {
  const h: Record<string, string> = { [AUTHORIZATION_KEY]: `Bearer ${creds.token}` };
  if (creds.reqId) h[REQUEST_ID_KEY] = creds.reqId;
  if (creds.trace) {
    h[TRACEPARENT_KEY] = creds.trace.traceparent;
    if (creds.trace.tracestate) h[TRACESTATE_KEY] = creds.trace.tracestate;
  }
  return h;
}

/** {@link callHeaders} as grpc-js metadata. */
export function callMetadata(creds: CallCredentials): Metadata {
  const md = new Metadata();
  for (const [key, value] of Object.entries(callHeaders(creds))) md.set(key, value);
  return md;
}

export type ClientCtor<C> = new (address: string, creds: ReturnType<typeof credentials.createInsecure>, options?: object) => C;

/** The largest response a client accepts (both transports). */
const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;

/** Options of every channel the services and the gateway open. */
const CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 30_000,
  // A restarted peer is found again within seconds (the default backoff grows to 2 minutes).
  'grpc.initial_reconnect_backoff_ms': 250,
  'grpc.max_reconnect_backoff_ms': 3000,
  // Spread calls over every address the name resolves to (several replicas behind one DNS name).
  'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
  'grpc.max_receive_message_length': MAX_RESPONSE_BYTES,
  // No 'grpc.max_metadata_size': grpc-js 1.14 does not read it. Node's HTTP/2 header list limit
  // applies to both transports; the kit's error details stay far below it (capDetails, 16 KiB).
  // Channelz (call and message counters with timestamps, per channel, subchannel and socket) is
  // read by nobody here: the calls are counted by our own metrics.
  'grpc.enable_channelz': 0,
};

/**
 * Creates a ts-proto client for `address` and a promise view of its unary methods that always sets
 * a deadline, forwards the caller's token, request id and trace, cancels the call when the caller's
 * signal aborts (or its cancel hook fires), and counts calls by method and code.
 *
 * The unary calls go over {@link Http2UnaryChannel} (Node's HTTP/2 client, a third of grpc-js's CPU
 * per call: docs/decisions/grpc-transport.md) whether spans are exported or not (then this makes the
 * client span grpc-js's instrumentation would), unless the address is one only grpc-js understands
 * (`unix:`). `raw`, the grpc-js client, serves the streaming calls; `close()` closes both.
 */
export function createClient<C extends Client>(
  Ctor: ClientCtor<C>,
  address: string,
  opts: { defaultDeadlineMs: number; metrics?: Metrics },
): { raw: C; call: PromiseClient<C>; close(): void } {
  const raw = new Ctor(address, credentials.createInsecure(), CHANNEL_OPTIONS);
  const methods = raw as unknown as Record<string, UnaryMethod<unknown, unknown>>;
  const count = (method: string, err: ServiceError | null | undefined) => opts.metrics?.grpcClientCalls.inc({ method, code: Status[err?.code ?? Status.OK] });
  const target = parseTarget(address);
  const channel = target ? new Http2UnaryChannel(target, MAX_RESPONSE_BYTES) : undefined;

  const viaHttp2 = (method: string, def: UnaryDefinition) => (request: unknown, creds: CallCredentials) => {
    const signal = creds.signal;
    if (!creds.onCancel && signal?.aborted) {
      const err = serviceError(Status.CANCELLED, 'Cancelled on client');
      count(method, err);
      return Promise.reject(err);
    }
    const onCancel: CancelHook | undefined =
      creds.onCancel ??
      (signal
        ? (cancel) => {
            signal.addEventListener('abort', cancel, { once: true });
            return () => signal.removeEventListener('abort', cancel);
          }
        : undefined);
    const headers = callHeaders(creds);
    const span = traceMode() === 'export' ? clientSpan(def.path, headers) : undefined;
    return channel!.call(def, request, headers, creds.deadlineMs ?? opts.defaultDeadlineMs, onCancel).then(
      (res) => {
        count(method, null);
        if (span) endSpan(span, null);
        return res;
      },
      (err: ServiceError) => {
        count(method, err);
        if (span) endSpan(span, err);
        throw err;
      },
    );
  };

  const viaGrpcJs = (method: string) => (request: unknown, creds: CallCredentials) =>
    new Promise((resolve, reject) => {
      const signal = creds.signal;
      let onAbort: (() => void) | undefined;
      let unhook: (() => void) | undefined;
      // Looked up on every call, not kept: instrumentation may wrap the client's methods later.
      const call = methods[method](request, callMetadata(creds), { deadline: Date.now() + (creds.deadlineMs ?? opts.defaultDeadlineMs) }, (err, res) => {
        if (unhook) unhook();
        else if (onAbort) signal!.removeEventListener('abort', onAbort);
        count(method, err);
        if (err) reject(err);
        else resolve(res);
      });
      if (creds.onCancel) unhook = creds.onCancel(() => call.cancel());
      else if (!signal) return;
      else if (signal.aborted) call.cancel();
      else signal.addEventListener('abort', (onAbort = () => call.cancel()), { once: true });
    });

  // One function per unary method of the service, made once (not per property read).
  const call: Record<string, ReturnType<typeof viaGrpcJs>> = {};
  const service = (Ctor as unknown as { service: Record<string, UnaryDefinition & { requestStream: boolean; responseStream: boolean }> }).service;
  for (const [method, def] of Object.entries(service)) {
    if (!def.requestStream && !def.responseStream) call[method] = channel ? viaHttp2(method, def) : viaGrpcJs(method);
  }
  return {
    raw,
    call: call as unknown as PromiseClient<C>,
    close: () => {
      channel?.close();
      raw.close();
    },
  };
}

const tracer = trace.getTracer('@ptw/common/grpc');

/**
 * The client span of a unary call while spans are exported, as @opentelemetry/instrumentation-grpc
 * makes them for grpc-js's client (name `grpc.<service>/<method>`, `rpc.*` attributes), its context
 * put in `headers` (W3C traceparent) for the server's span to continue.
 */
function clientSpan(path: string, headers: Record<string, string>): Span {
  const [service, method] = path.slice(1).split('/');
  const span = tracer.startSpan(`grpc.${service}/${method}`, { kind: SpanKind.CLIENT, attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method } });
  propagation.inject(trace.setSpan(context.active(), span), headers);
  return span;
}

function endSpan(span: Span, err: ServiceError | null): void {
  span.setAttribute('rpc.grpc.status_code', err ? err.code : Status.OK);
  if (err) span.setStatus({ code: SpanStatusCode.ERROR, message: err.details });
  span.end();
}

/** True when `err` is a gRPC status error. */
export function isServiceError(err: unknown): err is ServiceError {
  return typeof err === 'object' && err !== null && typeof (err as ServiceError).code === 'number' && 'metadata' in err;
}
