import { Counter, Histogram, Registry } from 'prom-client';
import { CounterSeries, HistogramSeries, Metrics } from './metrics';

/** The same observations through prom-client's own metric and ours render the same /metrics text. */
function twoRegistries() {
  const theirs = new Registry();
  const ours = new Registry();
  for (const r of [theirs, ours]) r.setDefaultLabels({ service: 'gateway' });
  return { theirs, ours };
}

/**
 * /metrics text with each sample's labels in one order (Prometheus gives label order no meaning;
 * prom-client writes them in the order it first saw them).
 */
function normalized(text: string): string[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      if (line.startsWith('#')) return line;
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m) throw new Error(`not a sample line: ${line}`);
      const labels = [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => `${l[1]}="${l[2]}"`).sort();
      return `${m[1]}{${labels.join(',')}} ${m[3]}`;
    });
}

const bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

describe('metric series', () => {
  it('when a counter is incremented, then /metrics shows what prom-client would', async () => {
    const { theirs, ours } = twoRegistries();
    const labelNames = ['method', 'route', 'status'] as const;
    const a = new Counter({ name: 'ptw_http_requests_total', help: 'HTTP requests by route and status', labelNames, registers: [theirs] });
    const b = new CounterSeries('ptw_http_requests_total', 'HTTP requests by route and status', labelNames, ours);
    const calls: [Record<string, string>, number?][] = [
      [{ method: 'GET', route: '/permits/', status: '200' }],
      [{ method: 'GET', route: '/permits/', status: '200' }],
      [{ route: '/permits/', method: 'GET', status: '404' }, 3],
      [{ method: 'POST', route: 'a "quoted"\\route\nx', status: '400' }],
      [{ method: 'GET', route: 'unmatched' }],
    ];
    for (const [labels, n] of calls) {
      a.inc(labels, n);
      b.inc(labels, n);
    }
    expect(normalized(await ours.metrics())).toEqual(normalized(await theirs.metrics()));
  });

  it('when a histogram observes values on and between bounds, then /metrics shows what prom-client would', async () => {
    const { theirs, ours } = twoRegistries();
    const a = new Histogram({ name: 'ptw_http_request_duration_seconds', help: 'HTTP request duration by route', labelNames: ['method', 'route'], buckets: bounds, registers: [theirs] });
    const b = new HistogramSeries('ptw_http_request_duration_seconds', 'HTTP request duration by route', ['method', 'route'], bounds, ours);
    const values = [0, 0.005, 0.0051, 0.3, 1, 29.9, 30, 31, 1e6, 0.000001];
    values.forEach((v, i) => {
      const labels = { method: i % 2 ? 'GET' : 'POST', route: i % 3 ? '/permits/' : '/permits/kpis/' };
      a.observe(labels, v);
      b.observe(labels, v);
    });
    expect(normalized(await ours.metrics())).toEqual(normalized(await theirs.metrics()));
  });

  it('when a label is not declared, or a value is not a number, then recording throws like prom-client', () => {
    const r = new Registry();
    const c = new CounterSeries('c_total', 'h', ['scope'], r);
    const h = new HistogramSeries('h_seconds', 'h', ['scope'], [1], r);
    expect(() => c.inc({ other: 'x' } as never)).toThrow(/label "other"/);
    expect(() => c.inc({ scope: 'a' }, -1)).toThrow(/finite amount/);
    expect(() => h.observe({ scope: 'a' }, Number.NaN)).toThrow(/cannot observe/);
    expect(() => new CounterSeries('c_total', 'h', ['scope'], r)).toThrow(/already been registered/);
  });

  it('when the registry is reset, then the series start again from nothing', async () => {
    const m = new Metrics('test');
    const c = m.counter('t_total', 'h', ['k']);
    c.inc({ k: 'a' }, 2);
    expect(m.existing<CounterSeries<'k'>>('t_total')).toBe(c);
    m.registry.resetMetrics();
    expect((await c.get()).values).toEqual([]);
    c.inc({ k: 'a' });
    expect((await c.get()).values).toEqual([{ labels: { k: 'a' }, value: 1 }]);
  });
});
