/**
 * What tracing needs only when spans are exported (tracing-sdk.ts loads it then): the OTLP/HTTP
 * exporters and the instrumentations.
 */
import { OTLPTraceExporter as OTLPJsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { BunyanInstrumentation } from '@opentelemetry/instrumentation-bunyan';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { KoaInstrumentation, KoaLayerType } from '@opentelemetry/instrumentation-koa';
import { MongoDBInstrumentation } from '@opentelemetry/instrumentation-mongodb';
import { BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { SafeSpanProcessor } from './tracing';

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

/** Spans scrubbed of personal data, then batched to the OTLP endpoint in the encoding of otlpProtocol. */
export function spanProcessors(env: NodeJS.ProcessEnv): SpanProcessor[] {
  return [new SafeSpanProcessor(), new BatchSpanProcessor(otlpProtocol(env) === 'http/json' ? new OTLPJsonTraceExporter() : new OTLPProtoTraceExporter())];
}

/** Instruments outgoing http, Koa's routers, gRPC, the store driver, ioredis and bunyan (each patches its module as it is constructed). */
export function instrument(provider: NodeTracerProvider): void {
  registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
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
    ],
  });
}
