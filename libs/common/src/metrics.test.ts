import { Metrics, type CounterSeries, type HistogramSeries } from './metrics';

/** The sample lines of `name` (its `_bucket`, `_sum`, `_count` too) in the registry's /metrics text. */
async function samples(m: Metrics, name: string): Promise<string[]> {
  const text = await m.registry.metrics();
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name}_`) || l.startsWith(`${name} `));
}

describe('metrics', () => {
  it('when a counter is incremented, then /metrics shows one series per label values, with the service label', async () => {
    const m = new Metrics('gateway');
    const c = m.counter('ptw_http_requests_total', 'HTTP requests by route and status', ['method', 'route', 'status']);
    c.inc({ method: 'GET', route: '/permits/', status: '200' });
    c.inc({ route: '/permits/', method: 'GET', status: '200' });
    c.inc({ method: 'GET', route: '/permits/', status: 404 }, 3);
    c.inc({ method: 'POST', route: 'a "quoted"\\route\nx', status: '400' });
    const text = await m.registry.metrics();
    expect(text).toContain('# HELP ptw_http_requests_total HTTP requests by route and status\n# TYPE ptw_http_requests_total counter\n');
    expect(await samples(m, 'ptw_http_requests_total')).toEqual([
      'ptw_http_requests_total{method="GET",route="/permits/",status="200",service="gateway"} 2',
      'ptw_http_requests_total{method="GET",route="/permits/",status="404",service="gateway"} 3',
      'ptw_http_requests_total{method="POST",route="a \\"quoted\\"\\\\route\\nx",status="400",service="gateway"} 1',
    ]);
  });

  it('when a histogram observes values on and between its bounds, then /metrics shows cumulative buckets, sum and count', async () => {
    const m = new Metrics('gateway');
    const h = m.histogram('ptw_http_request_duration_seconds', 'HTTP request duration by route', ['method'], [0.1, 1, 30]);
    for (const v of [0, 0.1, 0.3, 1, 29.9, 31]) h.observe({ method: 'GET' }, v);
    expect(await samples(m, 'ptw_http_request_duration_seconds')).toEqual([
      'ptw_http_request_duration_seconds_bucket{le="0.1",service="gateway",method="GET"} 2',
      'ptw_http_request_duration_seconds_bucket{le="1",service="gateway",method="GET"} 4',
      'ptw_http_request_duration_seconds_bucket{le="30",service="gateway",method="GET"} 5',
      'ptw_http_request_duration_seconds_bucket{le="+Inf",service="gateway",method="GET"} 6',
      'ptw_http_request_duration_seconds_sum{service="gateway",method="GET"} 62.3',
      'ptw_http_request_duration_seconds_count{service="gateway",method="GET"} 6',
    ]);
  });

  it('when a process starts, then the gRPC series every service exposes are registered with the default bounds', async () => {
    const m = new Metrics('sync');
    m.grpcServerHandled.inc({ method: 'SyncOfflineData', code: 'OK' });
    m.grpcServerDuration.observe({ method: 'SyncOfflineData' }, 0.002);
    m.grpcClientCalls.inc({ method: 'GetPermit', code: 'NOT_FOUND' });
    expect(await samples(m, 'ptw_grpc_server_handled_total')).toEqual(['ptw_grpc_server_handled_total{method="SyncOfflineData",code="OK",service="sync"} 1']);
    expect(await samples(m, 'ptw_grpc_client_calls_total')).toEqual(['ptw_grpc_client_calls_total{method="GetPermit",code="NOT_FOUND",service="sync"} 1']);
    const bounds = (await samples(m, 'ptw_grpc_server_handling_seconds')).flatMap((l) => /le="([^"]+)"/.exec(l)?.[1] ?? []);
    expect(bounds).toEqual(['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '+Inf']);
  });

  it('when a label is not declared, a value is not a number, or a name is registered twice, then it throws', () => {
    const m = new Metrics('test');
    const c = m.counter('c_total', 'h', ['scope']);
    const h = m.histogram('h_seconds', 'h', ['scope'], [1]);
    expect(() => c.inc({ other: 'x' } as never)).toThrow(/other/);
    expect(() => c.inc({ scope: 'a' }, -1)).toThrow(/decrease/);
    expect(() => h.observe({ scope: 'a' }, Number.NaN)).toThrow(/not a valid number/);
    expect(() => m.counter('c_total', 'h', ['scope'])).toThrow(/already been registered/);
  });

  it('when a series is looked up by name, then it is the one registered; after a reset it starts again from nothing', async () => {
    const m = new Metrics('test');
    const c = m.counter('t_total', 'h', ['k']);
    const h = m.histogram('t_seconds', 'h', ['k'], [1]);
    c.inc({ k: 'a' }, 2);
    expect(m.existing<CounterSeries<'k'>>('t_total')).toBe(c);
    expect(m.existing<HistogramSeries<'k'>>('t_seconds')).toBe(h);
    expect(m.existing('absent_total')).toBeUndefined();
    m.registry.resetMetrics();
    expect((await c.get()).values).toEqual([]);
    c.inc({ k: 'a' });
    expect((await c.get()).values).toEqual([{ labels: { k: 'a' }, value: 1 }]);
  });
});
