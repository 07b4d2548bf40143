import { context, propagation, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { createLogger, lineWriter, memorySink } from './logger';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { incomingTraceContext, inRootSpan, REDACTED_VALUE, safeAttribute, SafeSpanProcessor } from './tracing';

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
    for (const key of ['user_agent.original', 'http.user_agent', 'url.query', 'url.full', 'http.url', 'client.address', 'net.peer.ip', 'db.connection_string', 'http.request.header.authorization'])
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

  it('when the work throws, then the span is failed with the error type and the error is rethrown', async () => {
    await expect(inRootSpan('job x', {}, async () => Promise.reject(new TypeError('secret input')))).rejects.toThrow('secret input');
    const [span] = exporter.getFinishedSpans();
    expect([span.status, span.attributes.error_type]).toEqual([{ code: SpanStatusCode.ERROR }, 'TypeError']);
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

  it('when a request carries a traceparent and no span is active, then the rest of the chain runs in the caller\'s trace', async () => {
    let inside: unknown;
    await incomingTraceContext()({ headers: { traceparent: `00-${TRACE}-${CALLER_SPAN}-01` } }, async () => {
      await Promise.resolve();
      inside = seen();
    });
    expect(inside).toMatchObject({ traceId: TRACE, spanId: CALLER_SPAN, isRemote: true });
    expect(seen()).toBeUndefined();
  });

  it('when an HTTP span is already active or there is no header, then the context is left as it is', async () => {
    const span = tracer().startSpan('http');
    let inside: unknown;
    await context.with(trace.setSpan(context.active(), span), () =>
      incomingTraceContext()({ headers: { traceparent: `00-${TRACE}-${CALLER_SPAN}-01` } }, async () => void (inside = seen())),
    );
    span.end();
    expect(inside).toEqual(span.spanContext());
    await incomingTraceContext()({ headers: {} }, async () => void (inside = seen()));
    expect(inside).toBeUndefined();
  });
});
