import http from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** A Prometheus counter: prom-client's own, under the name callers already import. */
export type CounterSeries<L extends string = string> = Counter<L>;

/** A Prometheus histogram: prom-client's own (see CounterSeries). */
export type HistogramSeries<L extends string = string> = Histogram<L>;

/** prom-client's default histogram bounds (seconds). */
const DEFAULT_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One Prometheus registry per process, with the gRPC series every service exposes (SPEC §9). */
export class Metrics {
  readonly registry = new Registry();
  readonly grpcServerHandled: CounterSeries<'method' | 'code'>;
  readonly grpcServerDuration: HistogramSeries<'method'>;
  readonly grpcClientCalls: CounterSeries<'method' | 'code'>;

  constructor(service: string) {
    this.registry.setDefaultLabels({ service });
    collectDefaultMetrics({ register: this.registry });
    this.grpcServerHandled = this.counter('ptw_grpc_server_handled_total', 'gRPC calls handled, by method and status code', ['method', 'code']);
    this.grpcServerDuration = this.histogram('ptw_grpc_server_handling_seconds', 'gRPC call duration by method', ['method'], DEFAULT_BOUNDS);
    this.grpcClientCalls = this.counter('ptw_grpc_client_calls_total', 'gRPC calls made to other services, by method and status code', ['method', 'code']);
  }

  counter<L extends string>(name: string, help: string, labelNames: L[]): CounterSeries<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  histogram<L extends string>(name: string, help: string, labelNames: L[], buckets: number[] = DEFAULT_BOUNDS): HistogramSeries<L> {
    return new Histogram({ name, help, labelNames, buckets, registers: [this.registry] });
  }

  /**
   * A gauge (prom-client's own: set rarely, or read when scraped through `collect`, which the
   * registry calls for every gauge of a scrape at once).
   */
  gauge<L extends string>(name: string, help: string, labelNames: L[], collect?: () => void | Promise<void>): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry], ...(collect ? { collect } : {}) });
  }

  /** A series registered earlier under `name` (several job runners in one process share theirs). */
  existing<T extends CounterSeries | HistogramSeries>(name: string): T | undefined {
    return this.registry.getSingleMetric(name) as T | undefined;
  }
}

/** Serves `GET /metrics` on its own port (services have no HTTP API of their own). */
export async function startMetricsServer(metrics: Metrics, listen: string): Promise<{ port: number; close(): Promise<void> }> {
  const [host, portText] = splitHostPort(listen);
  const server = http.createServer((req, res) => {
    if (req.url === '/metrics' && req.method === 'GET') {
      metrics.registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(body);
        })
        .catch(() => {
          res.writeHead(500).end();
        });
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"not_found","message":"Not found"}}');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(portText), host, () => resolve());
  });
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : Number(portText),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Splits `host:port` (the last colon separates them). */
export function splitHostPort(addr: string): [string, string] {
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i), addr.slice(i + 1)];
}
