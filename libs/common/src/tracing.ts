import { context, isSpanContextValid, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type AttributeValue, type Context } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { RandomIdGenerator, type ReadableSpan, type Span, type SpanProcessor } from '@opentelemetry/sdk-trace-base';

/**
 * Span attributes the instrumentations set that carry no personal data (SPEC §9 applies to spans as
 * to logs), plus those of {@link inRootSpan}. Every other attribute is dropped before a span leaves
 * the process: user agents, client addresses, query strings, headers, connection strings.
 * (No import of the logger's list: this module loads before bunyan must be instrumented.)
 */
const SAFE_ATTRIBUTES = new Set<string>([
  // HTTP (old and stable semantic conventions; the http instrumentation emits either)
  'http.method',
  'http.request.method',
  'http.status_code',
  'http.response.status_code',
  'http.scheme',
  'url.scheme',
  'http.flavor',
  'network.protocol.version',
  'http.request_content_length',
  'http.request_content_length_uncompressed',
  'http.response_content_length',
  'http.response_content_length_uncompressed',
  'net.host.port',
  'net.peer.port',
  'net.peer.name',
  'net.transport',
  'server.address',
  'server.port',
  'network.transport',
  'network.type',
  'error.type',
  // koa
  'koa.type',
  // gRPC
  'rpc.system',
  'rpc.service',
  'rpc.method',
  'rpc.grpc.status_code',
  'rpc.system.name',
  'rpc.response.status_code',
  // store and Redis
  'db.system',
  'db.system.name',
  'db.name',
  'db.namespace',
  'db.operation',
  'db.operation.name',
  'db.mongodb.collection',
  'db.collection.name',
  'db.redis.database_index',
  'db.response.status_code',
  // exception events: the type, never the message (it can quote input)
  'exception.type',
  // inRootSpan
  'job',
  'attempt',
  'error_type',
]);

/** Route patterns written in the code (not request input): kept as they are, regex characters and all. */
const ROUTE_ATTRIBUTES = new Set(['http.route', 'koa.name']);

/** Attributes whose value is a path: kept without its query string (e.g. `?q=` search text). */
const PATH_ATTRIBUTES = new Set(['http.target', 'url.path']);

/**
 * Statements written by the serializers configured in tracing-sdk.ts: the store's command shape with
 * every value replaced by `?`, and the Redis command name alone.
 */
const STATEMENT_ATTRIBUTES = new Set(['db.statement', 'db.query.text']);

/** Identifier-like values only, as in the logs: an e-mail address or a sentence is redacted. */
const SAFE_VALUE = /^[A-Za-z0-9_.:\-/ $]{0,200}$/;

export const REDACTED_VALUE = '[redacted]';

function safeString(value: string): string {
  return SAFE_VALUE.test(value) ? value : REDACTED_VALUE;
}

/** What a span may keep of one attribute: the value, a redacted value, or undefined (drop it). */
export function safeAttribute(key: string, value: AttributeValue | undefined): AttributeValue | undefined {
  if (value === undefined) return undefined;
  if (STATEMENT_ATTRIBUTES.has(key) || ROUTE_ATTRIBUTES.has(key)) return value;
  if (PATH_ATTRIBUTES.has(key)) {
    if (typeof value !== 'string') return undefined;
    const q = value.indexOf('?');
    return safeString(q < 0 ? value : value.slice(0, q));
  }
  if (!SAFE_ATTRIBUTES.has(key)) return undefined;
  if (typeof value === 'string') return safeString(value);
  if (Array.isArray(value)) return value.map((v) => (typeof v === 'string' ? safeString(v) : v)) as AttributeValue;
  return value;
}

/** Rewrites `attrs` in place to what {@link safeAttribute} keeps. */
export function scrubAttributes(attrs: Attributes): void {
  for (const key of Object.keys(attrs)) {
    const value = attrs[key];
    const safe = safeAttribute(key, value);
    if (safe === undefined) delete attrs[key];
    else if (safe !== value) attrs[key] = safe;
  }
}

/**
 * Makes every span safe to export just before it ends (while it is still writable): attributes and
 * event attributes through the allow-list, and no status message (a gRPC error's message can quote
 * the request). Runs before the exporting processor sees the span.
 */
export class SafeSpanProcessor implements SpanProcessor {
  onStart(_span: Span, _parentContext: Context): void {}

  onEnding(span: Span): void {
    scrubAttributes(span.attributes);
    for (const event of span.events) if (event.attributes) scrubAttributes(event.attributes);
    if (span.status.message !== undefined) span.setStatus({ code: span.status.code });
  }

  onEnd(_span: ReadableSpan): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

let flushHook: (() => Promise<void>) | undefined;

const noFail = () => undefined;

/** Set by startTracing: how to hand the spans still buffered to the exporter. */
export function setTraceFlusher(flush: (() => Promise<void>) | undefined): void {
  flushHook = flush;
}

/** Exports the spans still buffered (at shutdown); resolves at once when tracing is off. */
export async function flushTraces(): Promise<void> {
  await flushHook?.().catch(() => undefined);
}

/**
 * Runs `fn` in a new root span, a trace of its own, for work that no instrumentation starts (a job
 * attempt). A span active at the call (a job run by hand through the API) is linked, not the parent.
 * `fail(type)` marks the span failed with an error type only; a throw from `fn` does so too.
 */
export async function inRootSpan<T>(name: string, attributes: Attributes, fn: (fail: (errorType: string) => void) => Promise<T>): Promise<T> {
  // Nothing would record it, and entering a context turns on async hooks (see TraceMode).
  if (mode !== 'export') return fn(noFail);
  const caller = trace.getSpan(context.active())?.spanContext();
  const links = caller && isSpanContextValid(caller) ? [{ context: caller }] : [];
  return trace.getTracer('@ptw/common').startActiveSpan(name, { root: true, kind: SpanKind.INTERNAL, attributes, links }, async (span) => {
    const fail = (errorType: string) => {
      span.setStatus({ code: SpanStatusCode.ERROR });
      span.setAttribute('error_type', errorType);
    };
    try {
      return await fn(fail);
    } catch (err) {
      fail(err instanceof Error ? err.name : 'Error');
      throw err;
    } finally {
      span.end();
    }
  });
}

/**
 * How this process traces, set by startTracing:
 * - `export`: spans are recorded by the instrumentations and exported; the context travels in
 *   async-local storage (the instrumentations need it);
 * - `ids`: installed without an endpoint. Nothing is recorded and no async-local context is entered
 *   (on Node 20 that alone turns on async hooks for every promise: about a quarter of a proxied
 *   request's CPU, docs/benchmarks.md "The gRPC hop"): a caller's trace id is carried by hand, see {@link HopTrace};
 * - `off`: not installed (`OTEL_SDK_DISABLED=true`, unit tests): no trace ids at all.
 */
export type TraceMode = 'off' | 'ids' | 'export';

let mode: TraceMode = 'off';

export function setTraceMode(m: TraceMode): void {
  mode = m;
}

export function traceMode(): TraceMode {
  return mode;
}

/**
 * `fn` bound to the context active now, when spans are exported: work deferred to a later turn
 * (a batch sent at the end of the turn) then runs in the trace of the request that asked for it,
 * not of whichever request opened the batch. `fn` itself in the other modes (nothing to carry).
 */
export function keepTraceContext<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
  return mode === 'export' ? context.bind(context.active(), fn) : fn;
}

/**
 * One hop of a caller's trace in `ids` mode (the gateway's request, a service's call): the ids its
 * log lines carry and the W3C headers it passes on, with a span id of its own as the parent — what
 * a non-recording span would give, without the context machinery.
 */
export interface HopTrace {
  fields: { trace_id: string; span_id: string };
  traceparent: string;
  tracestate?: string;
}

const hopIds = new RandomIdGenerator();
/** W3C whatever OTEL_PROPAGATORS says: these are the headers the hops send each other. */
const w3c = new W3CTraceContextPropagator();
const headerGetter = { keys: (c: Record<string, string>) => Object.keys(c), get: (c: Record<string, string>, key: string) => c[key] };

/**
 * The {@link HopTrace} of a request that came with `traceparent` (and `tracestate`) in `ids` mode;
 * undefined in the other modes, without a header, or for a header W3C Trace Context rejects.
 */
export function hopTrace(traceparent: unknown, tracestate?: unknown): HopTrace | undefined {
  if (mode !== 'ids' || typeof traceparent !== 'string') return undefined;
  const carrier = typeof tracestate === 'string' ? { traceparent, tracestate } : { traceparent };
  const parent = trace.getSpanContext(w3c.extract(ROOT_CONTEXT, carrier, headerGetter));
  if (!parent || !isSpanContextValid(parent)) return undefined;
  const spanId = hopIds.generateSpanId();
  const state = parent.traceState?.serialize();
  // Flags 00: this hop records nothing (as a span of the always-off sampler would say).
  return { fields: { trace_id: parent.traceId, span_id: spanId }, traceparent: `00-${parent.traceId}-${spanId}-00`, ...(state ? { tracestate: state } : {}) };
}

/** What {@link incomingTraceContext} reads of a Koa context. */
interface HttpContext {
  method: string;
  path: string;
  protocol?: string;
  headers: Record<string, string | string[] | undefined>;
  req?: { httpVersion?: string };
  res?: { statusCode: number; once(event: 'close', listener: () => void): unknown };
  state?: Record<string, unknown>;
}

/** Paths scraped or probed every few seconds: a trace each would bury the requests. */
const UNTRACED_PATHS = new Set(['/metrics', '/healthz']);

/**
 * A Koa middleware (first in the chain) that takes a caller's W3C `traceparent` in. When spans are
 * exported it starts the request's HTTP server span (kind SERVER, named `METHOD route`, with the
 * stable HTTP semantic-convention attributes), ending when the response is closed, with the status
 * code and the route pattern `route(ctx)` gives (never the raw path of the route: ids live there);
 * when a span is already active (an HTTP instrumentation took the request in), it only calls next.
 * In `ids` mode it puts the request's {@link HopTrace} on `ctx.state.trace` for the log lines and
 * the gRPC calls. Otherwise it does nothing.
 */
export function incomingTraceContext(route: (ctx: HttpContext) => string | undefined = () => undefined) {
  const tracer = trace.getTracer('@ptw/common');
  return (ctx: HttpContext, next: () => Promise<unknown>): Promise<unknown> => {
    if (mode === 'ids') {
      const hop = hopTrace(ctx.headers.traceparent, ctx.headers.tracestate);
      if (hop && ctx.state) ctx.state.trace = hop;
      return next();
    }
    if (mode !== 'export' || trace.getSpan(context.active())) return next();
    const parent = ctx.headers.traceparent === undefined ? ROOT_CONTEXT : propagation.extract(ROOT_CONTEXT, ctx.headers);
    if (!ctx.res || UNTRACED_PATHS.has(ctx.path)) return parent === ROOT_CONTEXT ? next() : context.with(parent, next);
    const method = ctx.method;
    const span = tracer.startSpan(
      method,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': method,
          'url.scheme': ctx.protocol ?? 'http',
          'url.path': ctx.path,
          'network.protocol.version': ctx.req?.httpVersion,
        },
      },
      parent,
    );
    const res = ctx.res;
    res.once('close', () => {
      const status = res.statusCode;
      const pattern = route(ctx);
      if (pattern !== undefined) {
        span.setAttribute('http.route', pattern);
        span.updateName(`${method} ${pattern}`);
      }
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) {
        span.setAttribute('error.type', String(status));
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.end();
    });
    return context.with(trace.setSpan(parent, span), next);
  };
}
