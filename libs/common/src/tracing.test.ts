import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { createLogger, lineWriter, memorySink } from './logger';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { EventEmitter } from 'node:events';
import { hopTrace, incomingTraceContext, inRootSpan, keepTraceContext, REDACTED_VALUE, safeAttribute, SafeSpanProcessor, setTraceMode } from './tracing';
import { otlpProtocol } from './tracing-export';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SafeSpanProcessor(), new SimpleSpanProcessor(exporter)] });
const contextManager = new AsyncLocalStorageContextManager();

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
});

afterAll(async () => {
  await provider.shutdown();
  trace.disable();
  context.disable();
  propagation.disable();
});

beforeEach(() => exporter.reset());

const tracer = () => trace.getTracer('test');

describe('safeAttribute', () => {
  it('when a path carries a query string, then only the path is kept', () => {
    expect(safeAttribute('url.path', '/api/v1/ptw/permits/')).toBe('/api/v1/ptw/permits/');
    expect(safeAttribute('http.target', '/api/v1/ptw/permits/?q=Ada%20Lovelace&page=1')).toBe('/api/v1/ptw/permits/');
  });

  it('when an attribute is not on the allow-list, then it is dropped', () => {
    for (const key of [
      'user_agent.original',
      'http.user_agent',
      'url.query',
      'url.full',
      'http.url',
      'client.address',
      'net.peer.ip',
      'db.connection_string',
      'http.request.header.authorization',
    ])
      expect(safeAttribute(key, 'anything')).toBeUndefined();
  });

  it('when an allowed attribute holds something that is not identifier-like, then it is redacted', () => {
    expect(safeAttribute('rpc.method', 'SyncOfflineData')).toBe('SyncOfflineData');
    expect(safeAttribute('db.collection.name', '$cmd')).toBe('$cmd');
    expect(safeAttribute('server.address', 'ada.lovelace@example.org')).toBe(REDACTED_VALUE);
    expect(safeAttribute('url.path', '/api/v1/ptw/permits/Ada <ada@example.org>/')).toBe(REDACTED_VALUE);
    expect(safeAttribute('http.response.status_code', 200)).toBe(200);
  });
});

describe('SafeSpanProcessor', () => {
  it('when a span ends, then what is exported has no personal data: attributes, exception messages, status message', () => {
    const span = tracer().startSpan('POST /api/v1/ptw/permits/', {
      attributes: {
        'http.request.method': 'POST',
        'http.route': '/api/v1/ptw(?:\\/|$)',
        'url.path': '/api/v1/ptw/permits/?q=ada',
        'user_agent.original': 'Ada-laptop',
        'db.query.text': '{"find":"?","filter":{"_id":"?"}}',
      },
    });
    span.recordException(Object.assign(new Error('title "Ada Lovelace" is too long'), { name: 'ValidationError' }));
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'title "Ada Lovelace" is too long' });
    span.end();
    const [out] = exporter.getFinishedSpans();
    expect(out.attributes).toEqual({
      'http.request.method': 'POST',
      'http.route': '/api/v1/ptw(?:\\/|$)',
      'url.path': '/api/v1/ptw/permits/',
      'db.query.text': '{"find":"?","filter":{"_id":"?"}}',
    });
    expect(out.events.map((e) => e.attributes)).toEqual([{ 'exception.type': 'ValidationError' }]);
    expect(out.status).toEqual({ code: SpanStatusCode.ERROR });
    expect(JSON.stringify(out.attributes) + JSON.stringify(out.events) + JSON.stringify(out.status)).not.toMatch(/Ada|Lovelace/);
  });
});

describe('inRootSpan', () => {
  beforeAll(() => setTraceMode('export'));
  afterAll(() => setTraceMode('off'));

  it('when called inside a request span, then it starts a new trace linked to the request and fail() marks it by type', async () => {
    const request = tracer().startSpan('request');
    const result = await context.with(trace.setSpan(context.active(), request), () =>
      inRootSpan('job auto_expire_permits', { job: 'auto_expire_permits', attempt: 2 }, async (fail) => {
        await tracer().startActiveSpan('child', async (child) => child.end());
        fail('JobError');
        return 7;
      }),
    );
    request.end();
    expect(result).toBe(7);
    const job = exporter.getFinishedSpans().find((s) => s.name === 'job auto_expire_permits')!;
    const child = exporter.getFinishedSpans().find((s) => s.name === 'child')!;
    expect(job.parentSpanContext).toBeUndefined();
    expect(job.spanContext().traceId).not.toBe(request.spanContext().traceId);
    expect(job.links.map((l) => l.context.spanId)).toEqual([request.spanContext().spanId]);
    expect(job.attributes).toEqual({ job: 'auto_expire_permits', attempt: 2, error_type: 'JobError' });
    expect(job.status.code).toBe(SpanStatusCode.ERROR);
    expect(child.parentSpanContext?.spanId).toBe(job.spanContext().spanId);
  });

  it('when spans are not exported, then the work runs without a span or a context of its own', async () => {
    setTraceMode('ids');
    try {
      let inside: unknown = 'not run';
      expect(await inRootSpan('job x', {}, async (fail) => (fail('JobError'), (inside = trace.getSpan(context.active())), 3))).toBe(3);
      expect(inside).toBeUndefined();
      expect(exporter.getFinishedSpans()).toHaveLength(0);
    } finally {
      setTraceMode('export');
    }
  });

  it('when the work throws, then the span is failed with the error type and the error is rethrown', async () => {
    await expect(inRootSpan('job x', {}, async () => Promise.reject(new TypeError('secret input')))).rejects.toThrow('secret input');
    const [span] = exporter.getFinishedSpans();
    expect([span.status, span.attributes.error_type]).toEqual([{ code: SpanStatusCode.ERROR }, 'TypeError']);
  });
});

describe('keepTraceContext', () => {
  afterEach(() => setTraceMode('off'));

  it('when spans are exported, then the function runs later in the span active when it was kept, whatever is active then', async () => {
    setTraceMode('export');
    const request = tracer().startSpan('request');
    const other = tracer().startSpan('other');
    const kept = context.with(trace.setSpan(context.active(), request), () => keepTraceContext(() => trace.getSpan(context.active())));
    // Run from another request's turn, as a batch's sends are.
    const seen = await context.with(trace.setSpan(context.active(), other), () => new Promise((resolve) => setImmediate(() => resolve(kept()))));
    expect(seen).toBe(request);
    request.end();
    other.end();
  });

  it('when spans are not exported, then the function is returned as it is (no context to carry)', () => {
    const fn = () => 1;
    for (const mode of ['ids', 'off'] as const) {
      setTraceMode(mode);
      expect(keepTraceContext(fn)).toBe(fn);
    }
  });
});

describe('lineWriter', () => {
  it('when a line is written inside a span, then it carries the trace and span ids; outside, neither', () => {
    const mem = memorySink();
    const log = createLogger('tracing-test', { stdout: false, sink: mem.sink });
    const write = lineWriter(log, 'request');
    const span = tracer().startSpan('request');
    context.with(trace.setSpan(context.active(), span), () => write({ req_id: 'r1', event: 'http_access' }));
    write({ req_id: 'r2', event: 'http_access' });
    span.end();
    const [inside, outside] = mem.lines();
    expect(inside).toMatchObject({ req_id: 'r1', trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId });
    expect(outside.req_id).toBe('r2');
    expect(outside).not.toHaveProperty('trace_id');
  });

  it('when bunyan is given trace fields, then the safe-field filter keeps them', () => {
    const mem = memorySink();
    const log = createLogger('tracing-test2', { stdout: false, sink: mem.sink });
    log.info({ trace_id: '0af7651916cd43dd8448eb211c80319c', span_id: 'b7ad6b7169203331', trace_flags: '01' }, 'x');
    expect(mem.lines()[0]).toMatchObject({ trace_id: '0af7651916cd43dd8448eb211c80319c', span_id: 'b7ad6b7169203331' });
  });
});

describe('incomingTraceContext', () => {
  const TRACE = '0af7651916cd43dd8448eb211c80319c';
  const CALLER_SPAN = 'b7ad6b7169203331';
  const seen = () => trace.getSpan(context.active())?.spanContext();
  let afterThis: (() => void) | undefined;
  afterEach(() => {
    afterThis?.();
    afterThis = undefined;
  });

  it("when a request carries a traceparent and no span is active, then (spans exported) the rest of the chain runs in the caller's trace", async () => {
    setTraceMode('export');
    afterThis = () => setTraceMode('off');
    let inside: unknown;
    await incomingTraceContext()({ method: 'GET', path: '/api/v1/ptw/permits/', headers: { traceparent: `00-${TRACE}-${CALLER_SPAN}-01` } }, async () => {
      await Promise.resolve();
      inside = seen();
    });
    expect(inside).toMatchObject({ traceId: TRACE, spanId: CALLER_SPAN, isRemote: true });
    expect(seen()).toBeUndefined();
  });

  /** A Koa-like context whose response closes with `status` when `close()` is called. */
  function request(path: string, headers: Record<string, string> = {}) {
    const res = Object.assign(new EventEmitter(), { statusCode: 200 });
    return {
      ctx: { method: 'GET', path, protocol: 'http', headers, req: { httpVersion: '1.1' }, res, state: { endpoint: '/api/v1/ptw/permits/:id/' } },
      close(status: number) {
        res.statusCode = status;
        res.emit('close');
      },
    };
  }
  const endpoint = (ctx: { state?: unknown }) => (ctx.state as { endpoint?: string }).endpoint;

  describe('when spans are exported', () => {
    beforeAll(() => setTraceMode('export'));
    afterAll(() => setTraceMode('off'));

    it("when a request comes in with a traceparent, then a server span continues the caller's trace, is active below and ends with the route and status", async () => {
      const r = request('/api/v1/ptw/permits/p-42/', { traceparent: `00-${TRACE}-${CALLER_SPAN}-01` });
      let inside: ReturnType<typeof seen>;
      await incomingTraceContext(endpoint)(r.ctx, async () => {
        await Promise.resolve();
        inside = seen();
      });
      expect(exporter.getFinishedSpans()).toHaveLength(0);
      r.close(201);
      const [span] = exporter.getFinishedSpans();
      expect(span.kind).toBe(SpanKind.SERVER);
      expect(span.name).toBe('GET /api/v1/ptw/permits/:id/');
      expect(span.spanContext().traceId).toBe(TRACE);
      expect(span.parentSpanContext?.spanId).toBe(CALLER_SPAN);
      expect(inside!).toEqual(span.spanContext());
      expect(span.attributes).toEqual({
        'http.request.method': 'GET',
        'url.scheme': 'http',
        'url.path': '/api/v1/ptw/permits/p-42/',
        'network.protocol.version': '1.1',
        'http.route': '/api/v1/ptw/permits/:id/',
        'http.response.status_code': 201,
      });
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
    });

    it('when the response is a 5xx or no route matched, then the span says so: error status, method-only name', async () => {
      const r = request('/nowhere');
      await incomingTraceContext(() => undefined)(r.ctx, async () => undefined);
      r.close(503);
      const [span] = exporter.getFinishedSpans();
      expect(span.spanContext().traceId).not.toBe(TRACE);
      expect(span.parentSpanContext).toBeUndefined();
      expect(span.name).toBe('GET');
      expect(span.attributes).toMatchObject({ 'http.response.status_code': 503, 'error.type': '503' });
      expect(span.attributes).not.toHaveProperty('http.route');
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
    });

    it('when the path is a probe or the metrics scrape, then no span is made', async () => {
      for (const path of ['/metrics', '/healthz']) {
        const r = request(path);
        await incomingTraceContext(endpoint)(r.ctx, async () => void expect(seen()).toBeUndefined());
        r.close(200);
      }
      expect(exporter.getFinishedSpans()).toHaveLength(0);
    });
  });

  describe('when tracing runs without an endpoint (ids mode)', () => {
    beforeAll(() => setTraceMode('ids'));
    afterAll(() => setTraceMode('off'));

    it('when a request carries a traceparent, then ctx.state.trace has its trace id, a span id of this hop and the headers to pass on; no span, no context', async () => {
      const r = request('/api/v1/ptw/permits/', { traceparent: `00-${TRACE}-${CALLER_SPAN}-01`, tracestate: 'vendor=a1' });
      let inside: unknown = 'not run';
      await incomingTraceContext(endpoint)(r.ctx, async () => void (inside = seen()));
      r.close(200);
      expect(inside).toBeUndefined();
      expect(exporter.getFinishedSpans()).toHaveLength(0);
      const hop = (r.ctx.state as { trace?: { fields: { span_id: string } } }).trace;
      expect(hop).toEqual({
        fields: { trace_id: TRACE, span_id: expect.stringMatching(/^[0-9a-f]{16}$/) },
        traceparent: `00-${TRACE}-${hop?.fields.span_id}-00`,
        tracestate: 'vendor=a1',
      });
      expect(hop?.fields.span_id).not.toBe(CALLER_SPAN);
    });

    it('when the traceparent is missing or not valid W3C, then there is no trace to carry', async () => {
      for (const traceparent of [undefined, 'garbage', `00-${'0'.repeat(32)}-${CALLER_SPAN}-01`, `00-${TRACE}-${'0'.repeat(16)}-01`, `ff-${TRACE}-${CALLER_SPAN}-01`]) {
        const r = request('/api/v1/ptw/permits/', traceparent === undefined ? {} : { traceparent });
        await incomingTraceContext(endpoint)(r.ctx, async () => undefined);
        expect([traceparent, (r.ctx.state as { trace?: unknown }).trace]).toEqual([traceparent, undefined]);
      }
    });

    it('when two hops read the same traceparent, then each has its own span id', () => {
      const a = hopTrace(`00-${TRACE}-${CALLER_SPAN}-01`);
      const b = hopTrace(`00-${TRACE}-${CALLER_SPAN}-01`);
      expect([a?.fields.trace_id, b?.fields.trace_id]).toEqual([TRACE, TRACE]);
      expect(a?.fields.span_id).not.toBe(b?.fields.span_id);
    });
  });

  it('when tracing is not installed, then nothing is read or entered', async () => {
    const r = request('/api/v1/ptw/permits/', { traceparent: `00-${TRACE}-${CALLER_SPAN}-01` });
    let inside: unknown = 'not run';
    await incomingTraceContext(endpoint)(r.ctx, async () => void (inside = seen()));
    expect(inside).toBeUndefined();
    expect(r.ctx.state).not.toHaveProperty('trace');
    expect(hopTrace(`00-${TRACE}-${CALLER_SPAN}-01`)).toBeUndefined();
  });

  it('when an HTTP span is already active or there is no header, then (spans exported) the context is left as it is', async () => {
    setTraceMode('export');
    afterThis = () => setTraceMode('off');
    const span = tracer().startSpan('http');
    let inside: unknown;
    await context.with(trace.setSpan(context.active(), span), () =>
      incomingTraceContext()({ method: 'GET', path: '/api/v1/ptw/permits/', headers: { traceparent: `00-${TRACE}-${CALLER_SPAN}-01` } }, async () => void (inside = seen())),
    );
    span.end();
    expect(inside).toEqual(span.spanContext());
    await incomingTraceContext()({ method: 'GET', path: '/api/v1/ptw/permits/', headers: {} }, async () => void (inside = seen()));
    expect(inside).toBeUndefined();
  });
});

describe('otlpProtocol', () => {
  it("when no protocol is set, then protobuf (the specification's default); the traces variable wins over the general one", () => {
    expect(otlpProtocol({})).toBe('http/protobuf');
    expect(otlpProtocol({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' })).toBe('http/json');
    expect(otlpProtocol({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' })).toBe('http/protobuf');
  });

  it('when a protocol this build cannot send is asked for, then it says so at start', () => {
    expect(() => otlpProtocol({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL.*grpc/);
  });
});
