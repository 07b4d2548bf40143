import { context, isSpanContextValid, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type AttributeValue, type Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';

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

/** Set by startTracing: whether {@link incomingTraceContext} starts the HTTP server spans. */
let serverSpans = false;

export function setServerSpans(on: boolean): void {
  serverSpans = on;
}

/** What {@link incomingTraceContext} reads of a Koa context. */
interface HttpContext {
  method: string;
  path: string;
  protocol?: string;
  headers: Record<string, string | string[] | undefined>;
  req?: { httpVersion?: string };
  res?: { statusCode: number; once(event: 'close', listener: () => void): unknown };
  state?: unknown;
}

/** Paths scraped or probed every few seconds: a trace each would bury the requests. */
const UNTRACED_PATHS = new Set(['/metrics', '/healthz']);

/**
 * A Koa middleware (first in the chain) that takes a caller's W3C `traceparent` in and, when spans are
 * exported, starts the request's HTTP server span (kind SERVER, named `METHOD route`, with the stable
 * HTTP semantic-convention attributes). It ends when the response is closed, with the status code
 * and the route pattern `route(ctx)` gives (never the raw path of the route: ids live there).
 * Without an export it only continues the caller's trace, for the log lines and the gRPC calls.
 * When a span is already active (an HTTP instrumentation took the request in), it only calls next.
 */
export function incomingTraceContext(route: (ctx: HttpContext) => string | undefined = () => undefined) {
  const tracer = trace.getTracer('@ptw/common');
  return (ctx: HttpContext, next: () => Promise<unknown>): Promise<unknown> => {
    if (trace.getSpan(context.active())) return next();
    const parent = ctx.headers.traceparent === undefined ? ROOT_CONTEXT : propagation.extract(ROOT_CONTEXT, ctx.headers);
    if (!serverSpans || !ctx.res || UNTRACED_PATHS.has(ctx.path)) return parent === ROOT_CONTEXT ? next() : context.with(parent, next);
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
