import { OTLPTraceExporter as OTLPJsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { registerInstrumentations, type Instrumentation } from '@opentelemetry/instrumentation';
import { BunyanInstrumentation } from '@opentelemetry/instrumentation-bunyan';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { KoaInstrumentation, KoaLayerType } from '@opentelemetry/instrumentation-koa';
import { MongoDBInstrumentation } from '@opentelemetry/instrumentation-mongodb';
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOffSampler, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { SafeSpanProcessor, setTraceFlusher, setTraceMode } from './tracing';

export interface Tracing {
  provider: NodeTracerProvider;
  /** True when spans are recorded and exported (an OTLP endpoint is set). */
  exporting: boolean;
  shutdown(): Promise<void>;
}

/**
 * The OTLP/HTTP encoding the standard variables ask for (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
 * `OTEL_EXPORTER_OTLP_PROTOCOL`): `http/protobuf`, the specification's default and the cheaper one
 * (test/bench/tracing.js), or `http/json`. Anything else (`grpc`) stops the process at start.
 */
export function otlpProtocol(env: NodeJS.ProcessEnv): 'http/protobuf' | 'http/json' {
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL?.trim() || env.OTEL_EXPORTER_OTLP_PROTOCOL?.trim() || 'http/protobuf').toLowerCase();
  if (protocol === 'http/protobuf' || protocol === 'http/json') return protocol;
  throw new Error(`OTEL_EXPORTER_OTLP_PROTOCOL / OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "${protocol}" is not supported (http/protobuf or http/json)`);
}

/**
 * Installs the tracer provider (W3C trace context, async-local context) and instrumentations. Must
 * run before the instrumented modules are loaded (the instrumentations patch them as they are
 * required).
 *
 * With an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT`): outgoing http,
 * Koa, gRPC, the store driver, ioredis and bunyan are instrumented and {@link incomingTraceContext}
 * starts the gateway's HTTP server spans; spans are sampled by `OTEL_TRACES_SAMPLER` (default:
 * parent-based, always on), scrubbed of personal data and exported over OTLP/HTTP in the encoding of
 * {@link otlpProtocol}.
 *
 * Without one nothing is recorded and no instrumentation is installed (the `ids` mode of TraceMode):
 * a caller's `traceparent` (taken in by {@link incomingTraceContext}) is carried by hand over gRPC
 * metadata (HopTrace, CallCredentials.trace) and every log line of the request carries its
 * `trace_id` and `span_id`. The instrumentations cost every request their wrappers and, through the
 * async-local context they enter, async hooks on every promise: spent for nothing without an endpoint
 * (test/bench/tracing.js and gateway.js measure both modes).
 * `OTEL_SDK_DISABLED=true` installs nothing.
 */
export function startTracing(serviceName: string, env: NodeJS.ProcessEnv = process.env): Tracing | undefined {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return undefined;
  const exporting = Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT) && env.OTEL_TRACES_EXPORTER?.trim() !== 'none';
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the process's own name.
  const resource = resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }).merge(detectResources({ detectors: [envDetector] }));
  const provider = new NodeTracerProvider({
    resource,
    // Without an endpoint no instrumentation starts spans (ids mode); anything else that would records nothing.
    ...(exporting ? {} : { sampler: new AlwaysOffSampler() }),
    spanProcessors: exporting ? [new SafeSpanProcessor(), new BatchSpanProcessor(otlpProtocol(env) === 'http/json' ? new OTLPJsonTraceExporter() : new OTLPProtoTraceExporter())] : [],
  });
  provider.register();
  // An instrumentation patches its modules as soon as it is constructed: make only those in use.
  const instrumentations: Instrumentation[] = [];
  if (exporting) {
    instrumentations.push(
      new GrpcInstrumentation(),
      new BunyanInstrumentation({ disableLogSending: true }),
      new HttpInstrumentation({
        // The gateway's server span is started by incomingTraceContext (its first Koa middleware): the
        // incoming side of this instrumentation cost ~40 µs more CPU per request on the bench's stack
        // (URL and header parsing, request and response emitters bound to the context).
        disableIncomingRequestInstrumentation: true,
        // The services' only outgoing HTTP is the OTLP export itself and the alert webhook.
        requireParentforOutgoingSpans: true,
      }),
      // Router layers only: a span per middleware would cost more than the middleware.
      new KoaInstrumentation({ ignoreLayersType: [KoaLayerType.MIDDLEWARE] }),
      // Background work (Agenda's polling, pings) has no parent and makes no trace.
      new MongoDBInstrumentation({ requireParentSpan: true, enhancedDatabaseReporting: false }),
      // The command name only: arguments are keys (user ids) and values.
      new IORedisInstrumentation({ requireParentSpan: true, dbStatementSerializer: (cmdName) => cmdName }),
    );
  }
  if (instrumentations.length) registerInstrumentations({ tracerProvider: provider, instrumentations });
  setTraceFlusher(exporting ? () => provider.forceFlush() : undefined);
  setTraceMode(exporting ? 'export' : 'ids');
  return { provider, exporting, shutdown: () => provider.shutdown() };
}
