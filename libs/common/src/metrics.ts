import http from 'node:http';
import { collectDefaultMetrics, Gauge, type Metric, Registry } from 'prom-client';

export type LabelValues<L extends string> = Partial<Record<L, string | number>>;

/** What `get()` returns: prom-client's exposition shape, which its Registry renders. */
export interface SeriesSnapshot {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  values: { labels: Record<string, string | number>; value: number; metricName?: string }[];
}

/** Where a series sits in the last level of its label tree. */
const LEAF = Symbol('series');

/**
 * Series kept per label-value tuple. prom-client's own Counter and Histogram validate and hash the
 * label object on every call (about 0.6 µs each, a measurable share of the gateway's cost per
 * request, see README "Gateway throughput"); here recording is one Map lookup per label value.
 * The registry reads these through the same `get()` shape as its own metrics, so `/metrics`
 * renders them the same way (metrics.test.ts compares the two).
 */
abstract class Series<L extends string, S> {
  readonly aggregator = 'sum' as const;
  /** One level per label, keyed by its value (no joined key string to build and hash per call). */
  private root = new Map<unknown, unknown>();
  protected series: { labels: LabelValues<L>; s: S }[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  protected entry(labels: LabelValues<L>): S {
    const names = this.labelNames;
    let node = this.root;
    for (let i = 0; i < names.length; i++) {
      const v = labels[names[i]];
      // 200 and '200' are one series, as in prom-client; an absent label is its own key.
      const key = typeof v === 'number' ? String(v) : v;
      let next = node.get(key) as Map<unknown, unknown> | undefined;
      if (!next) {
        next = new Map();
        node.set(key, next);
      }
      node = next;
    }
    let e = node.get(LEAF) as { labels: LabelValues<L>; s: S } | undefined;
    if (!e) {
      for (const k in labels) {
        if (!names.includes(k as L)) throw new Error(`${this.name}: label "${k}" is not one of ${names.join(', ')}`);
      }
      const kept: LabelValues<L> = {};
      for (const n of names) if (labels[n] !== undefined) kept[n] = labels[n];
      e = { labels: kept, s: this.empty() };
      node.set(LEAF, e);
      this.series.push(e);
    }
    return e.s;
  }

  protected abstract empty(): S;

  reset(): void {
    this.root = new Map();
    this.series = [];
  }
}

/** A Prometheus counter (see Series). */
export class CounterSeries<L extends string = string> extends Series<L, { value: number }> {
  readonly type = 'counter' as const;

  inc(labels: LabelValues<L> = {}, value = 1): void {
    if (!Number.isFinite(value) || value < 0) throw new Error(`${this.name}: a counter only grows by a finite amount, not ${value}`);
    this.entry(labels).value += value;
  }

  protected empty() {
    return { value: 0 };
  }

  async get(): Promise<SeriesSnapshot> {
    const values = this.series.map((e) => ({ labels: { ...e.labels } as Record<string, string | number>, value: e.s.value }));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/** A Prometheus histogram with fixed upper bounds (see Series). */
export class HistogramSeries<L extends string = string> extends Series<L, { buckets: number[]; sum: number; count: number }> {
  readonly type = 'histogram' as const;
  private readonly bounds: number[];

  constructor(name: string, help: string, labelNames: readonly L[], bounds: number[], registry: Registry) {
    super(name, help, labelNames, registry);
    this.bounds = [...bounds].sort((a, b) => a - b);
  }

  observe(labels: LabelValues<L>, value: number): void {
    if (!Number.isFinite(value)) throw new Error(`${this.name}: cannot observe ${value}`);
    const e = this.entry(labels);
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (value <= b[i]) {
        e.buckets[i]++;
        break;
      }
    }
    e.sum += value;
    e.count++;
  }

  protected empty() {
    return { buckets: this.bounds.map(() => 0), sum: 0, count: 0 };
  }

  async get(): Promise<SeriesSnapshot> {
    const values: SeriesSnapshot['values'] = [];
    for (const { labels, s } of this.series) {
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += s.buckets[i];
        values.push({ labels: { ...labels, le } as Record<string, string | number>, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { ...labels, le: '+Inf' } as Record<string, string | number>, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { ...labels } as Record<string, string | number>, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...labels } as Record<string, string | number>, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

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
    return new CounterSeries(name, help, labelNames, this.registry);
  }

  histogram<L extends string>(name: string, help: string, labelNames: L[], buckets: number[] = DEFAULT_BOUNDS): HistogramSeries<L> {
    return new HistogramSeries(name, help, labelNames, buckets, this.registry);
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
    return this.registry.getSingleMetric(name) as unknown as T | undefined;
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
