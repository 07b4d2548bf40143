import http from 'node:http';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

/** One Prometheus registry per process, with the gRPC series every service exposes (SPEC §9). */
export class Metrics {
  readonly registry = new Registry();
  readonly grpcServerHandled: Counter<'method' | 'code'>;
  readonly grpcServerDuration: Histogram<'method'>;
  readonly grpcClientCalls: Counter<'method' | 'code'>;

  constructor(service: string) {
    this.registry.setDefaultLabels({ service });
    collectDefaultMetrics({ register: this.registry });
    this.grpcServerHandled = new Counter({
      name: 'ptw_grpc_server_handled_total',
      help: 'gRPC calls handled, by method and status code',
      labelNames: ['method', 'code'],
      registers: [this.registry],
    });
    this.grpcServerDuration = new Histogram({
      name: 'ptw_grpc_server_handling_seconds',
      help: 'gRPC call duration by method',
      labelNames: ['method'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [this.registry],
    });
    this.grpcClientCalls = new Counter({
      name: 'ptw_grpc_client_calls_total',
      help: 'gRPC calls made to other services, by method and status code',
      labelNames: ['method', 'code'],
      registers: [this.registry],
    });
  }

  counter<L extends string>(name: string, help: string, labelNames: L[]): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  histogram<L extends string>(name: string, help: string, labelNames: L[], buckets?: number[]): Histogram<L> {
    return new Histogram({ name, help, labelNames, buckets, registers: [this.registry] });
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
