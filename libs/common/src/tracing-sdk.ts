import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOffSampler } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { setTraceFlusher, setTraceMode } from './tracing';
import type * as TracingExport from './tracing-export';

export interface Tracing {
  provider: NodeTracerProvider;
  /** True when spans are recorded and exported (an OTLP endpoint is set). */
  exporting: boolean;
  shutdown(): Promise<void>;
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
 * `otlpProtocol` (tracing-export.ts).
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
  // The exporters and instrumentations (~0.1 s of CPU to load) load only when spans are exported.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- synchronous on purpose: this runs before the modules the instrumentations patch are loaded, so it cannot await an import().
  const exportMode = exporting ? (require('./tracing-export') as typeof TracingExport) : undefined;
  const provider = new NodeTracerProvider({
    resource,
    // Without an endpoint no instrumentation starts spans (ids mode); anything else that would records nothing.
    ...(exportMode ? {} : { sampler: new AlwaysOffSampler() }),
    spanProcessors: exportMode ? exportMode.spanProcessors(env) : [],
  });
  provider.register();
  // An instrumentation patches its modules as soon as it is constructed: make only those in use.
  if (exportMode) exportMode.instrument(provider);
  setTraceFlusher(exporting ? () => provider.forceFlush() : undefined);
  setTraceMode(exporting ? 'export' : 'ids');
  return { provider, exporting, shutdown: () => provider.shutdown() };
}
