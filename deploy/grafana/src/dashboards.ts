/**
 * The PTW dashboards (issue 25 item 3): an overview of the whole system and one per process, on the
 * metrics the processes expose (libs/common/src/metrics.ts, the gateway's request and throttle
 * series, sync outcomes, exports, jobs) and the alert rules' recording rule. Labels as Prometheus
 * stores them: `job` = the process, `exported_job` = a background job's name (see
 * deploy/prometheus/rules/ptw.yml).
 */
import type { Builder } from '@grafana/grafana-foundation-sdk/cog';
import { RowBuilder, type Dashboard, type DashboardBuilder, type Panel } from '@grafana/grafana-foundation-sdk/dashboard';
import { finish, ptwDashboard, q, stat, timeseries } from './panels';

export const PROCESSES = ['gateway', 'sync', 'workflow', 'export', 'health'] as const;
type Process = (typeof PROCESSES)[number];

const RATE = '$__rate_interval';

/** Requests, errors and latency of the gateway's routes (`sel`: extra label matchers). */
function httpPanels(sel = '') {
  const m = sel ? `, ${sel}` : '';
  return [
    timeseries('Requests per route', 'HTTP requests per second, by method and route (ptw_http_requests_total).', 'reqps', [
      q(`sum by (method, route) (rate(ptw_http_requests_total{job="gateway"${m}}[${RATE}]))`, '{{method}} {{route}}'),
    ]),
    timeseries('5xx ratio per route', 'Share of answers that are server errors (alert PtwHttp5xxRatioHigh above 5 %).', 'percentunit', [
      q(
        `sum by (method, route) (rate(ptw_http_requests_total{job="gateway", status=~"5.."${m}}[${RATE}])) / sum by (method, route) (rate(ptw_http_requests_total{job="gateway"${m}}[${RATE}]))`,
        '{{method}} {{route}}',
      ),
    ]),
    timeseries(
      'Answers by status',
      "HTTP answers per second by status code: 4xx are the clients', 5xx ours.",
      'reqps',
      [q(`sum by (status) (rate(ptw_http_requests_total{job="gateway"${m}}[${RATE}]))`, '{{status}}')],
      { stacked: true },
    ),
    timeseries('p99 latency per route', "The slowest 1 % of each route's requests (alert PtwHttpLatencyP99High above 1 s, exports 20 s).", 's', [
      q(`histogram_quantile(0.99, sum by (method, route, le) (rate(ptw_http_request_duration_seconds_bucket{job="gateway"${m}}[${RATE}])))`, '{{method}} {{route}}'),
    ]),
  ];
}

/** gRPC server calls, errors and latency (`by`: per service or per method). */
function grpcServerPanels(sel: string, by: 'job' | 'method') {
  const legend = by === 'job' ? '{{job}}' : '{{method}}';
  return [
    timeseries(`gRPC calls per ${by === 'job' ? 'service' : 'method'}`, 'Calls handled per second (ptw_grpc_server_handled_total).', 'reqps', [
      q(`sum by (${by}) (rate(ptw_grpc_server_handled_total{${sel}}[${RATE}]))`, legend),
    ]),
    timeseries('gRPC errors by code', 'Calls per second that did not end OK, by status code (UNAVAILABLE: a store or a peer down; INTERNAL: a bug, see the log).', 'reqps', [
      q(`sum by (${by}, code) (rate(ptw_grpc_server_handled_total{${sel ? `${sel}, ` : ''}code!="OK"}[${RATE}]))`, `${legend} {{code}}`),
    ]),
    timeseries(
      `gRPC p99 latency per ${by === 'job' ? 'service' : 'method'}`,
      'The slowest 1 % of calls (ptw_grpc_server_handling_seconds).',
      's',
      [q(`histogram_quantile(0.99, sum by (${by}, le) (rate(ptw_grpc_server_handling_seconds_bucket{${sel}}[${RATE}])))`, legend)],
      { w: 24 },
    ),
  ];
}

function throttlePanels() {
  return [
    timeseries('Throttle decisions per scope', 'Requests admitted and refused (429) per scope (ptw_throttle_decisions_total; alert PtwThrottleBurst).', 'reqps', [
      q(`sum by (scope, decision) (rate(ptw_throttle_decisions_total[${RATE}]))`, '{{scope}} {{decision}}'),
    ]),
    timeseries(
      'Decided without Redis',
      'Requests throttled without Redis, by scope and fail mode (open: admitted unlimited; closed: 503). Anything here means Redis is unreachable.',
      'reqps',
      [q(`sum by (scope, mode) (rate(ptw_throttle_fallback_total[${RATE}]))`, '{{scope}} fail {{mode}}')],
    ),
  ];
}

function syncPanels() {
  return [
    timeseries('Sync outcomes', 'Offline changes per second by outcome (ptw_sync_outcomes_total).', 'ops', [q(`sum by (outcome) (rate(ptw_sync_outcomes_total[${RATE}]))`, '{{outcome}}')], {
      stacked: true,
    }),
    timeseries(
      'Sync outcome share (last hour)',
      "Each outcome's share of the last hour's changes (recording rule ptw:sync_outcome_share:rate1h; alerts fire at twice the usual share).",
      'percentunit',
      [q('ptw:sync_outcome_share:rate1h', '{{outcome}}')],
    ),
  ];
}

function exportPanels() {
  return [
    timeseries('Bulk exports per hour', 'Exports by type and outcome (ptw_exports_total).', 'short', [
      q('sum by (export_type, outcome) (increase(ptw_exports_total[1h]))', '{{export_type}} {{outcome}}'),
    ]),
    timeseries('Permits exported', 'Permits written into exports per second (ptw_exported_permits_total).', 'ops', [
      q(`sum by (export_type) (rate(ptw_exported_permits_total[${RATE}]))`, '{{export_type}}'),
    ]),
  ];
}

function jobPanels() {
  return [
    timeseries('Job attempts', 'Attempts per hour by job and outcome (skipped: another worker owned the slot).', 'short', [
      q('sum by (exported_job, outcome) (increase(ptw_job_runs_total[1h]))', '{{exported_job}} {{outcome}}'),
    ]),
    timeseries('Since last run, in periods', 'Time since each job last started, in periods of its schedule (alert PtwJobNotRunning above 2).', 'short', [
      q('(time() - max by (exported_job) (ptw_job_last_run_timestamp_seconds)) / max by (exported_job) (ptw_job_period_seconds)', '{{exported_job}}'),
    ]),
    timeseries('Failed slots', "Slots that failed on every attempt, per hour (ptw_job_failures_total), and whether each job's last attempt failed.", 'short', [
      q('sum by (exported_job) (increase(ptw_job_failures_total[1h]))', '{{exported_job}} failed slots'),
      q('max by (exported_job) (ptw_job_last_run_failed)', '{{exported_job}} last attempt failed'),
    ]),
    timeseries('Job attempt p99 duration', 'The slowest 1 % of attempts (ptw_job_duration_seconds).', 's', [
      q(`histogram_quantile(0.99, sum by (exported_job, le) (rate(ptw_job_duration_seconds_bucket[${RATE}])))`, '{{exported_job}}'),
    ]),
  ];
}

function overduePanels() {
  return [
    timeseries('Permits overdue', 'Permits waiting past their verification or approval SLA (ptw_permits_overdue, read from the store; alert PtwPermitsOverdue above 10).', 'short', [
      q('max by (stage) (ptw_permits_overdue)', '{{stage}}'),
    ]),
    timeseries('Overdue-threshold webhooks', "The workflow service's own overdue alert deliveries per hour, by outcome (ptw_alerts_total).", 'short', [
      q('sum by (outcome) (increase(ptw_alerts_total[1h]))', '{{outcome}}'),
    ]),
  ];
}

/** Process health of one job's instances: up, serving (services), CPU, memory, event loop. */
function processPanels(job: Process): Builder<Panel>[] {
  const sel = `job="${job}", instance=~"$instance"`;
  const service = job !== 'gateway';
  return [
    stat('Up', 'Instances answering their scrape (alert PtwProcessDown).', 'short', [q(`sum(up{${sel}})`, 'up')], { w: 4 }),
    ...(service ? [stat('Serving', 'Instances answering grpc.health.v1 SERVING (alert PtwServiceNotServing).', 'short', [q(`sum(ptw_grpc_serving{${sel}})`, 'serving')], { w: 4 })] : []),
    timeseries('CPU', 'CPU seconds per second, per instance.', 'percentunit', [q(`rate(process_cpu_seconds_total{${sel}}[${RATE}])`, '{{instance}}')], { w: service ? 5 : 7, h: 4 }),
    timeseries('Resident memory', 'Resident set size, per instance.', 'bytes', [q(`process_resident_memory_bytes{${sel}}`, '{{instance}}')], { w: service ? 5 : 7, h: 4 }),
    timeseries(
      'Event loop lag p99',
      'Node.js event loop delay, per instance: a busy or blocked loop delays every request.',
      's',
      [q(`nodejs_eventloop_lag_p99_seconds{${sel}}`, '{{instance}}')],
      {
        w: 6,
        h: 4,
      },
    ),
  ];
}

/** An expanded row and its panels (Grafana keeps an open row's panels after it, not inside it). */
function section(d: DashboardBuilder, title: string, panels: Builder<Panel>[]): void {
  d.withRow(new RowBuilder(title));
  for (const p of panels) d.withPanel(p);
}

/** The whole system on one page. */
export function overview(): Dashboard {
  const d = ptwDashboard('ptw-overview', 'PTW overview', 'The PTW platform at a glance: processes, HTTP and gRPC traffic, throttling, sync, exports, jobs and overdue work.');
  section(d, 'Health', [
    stat('Processes up', 'Processes answering their metrics scrape, of all targets.', 'short', [q('sum(up{job=~"gateway|sync|workflow|export|health"})', 'up')]),
    stat('Services serving', 'gRPC services answering grpc.health.v1 SERVING.', 'short', [q('sum(ptw_grpc_serving)', 'serving')]),
    stat('Alerts firing', 'PTW alerts firing now (Prometheus /alerts lists them).', 'short', [q('count(ALERTS{alertstate="firing", alertname=~"Ptw.*"}) or vector(0)', 'firing')], {
      warnAt: 1,
    }),
    stat('Permits overdue', 'Permits past their verification or approval SLA.', 'short', [q('sum(max by (stage) (ptw_permits_overdue))', 'overdue')], { warnAt: 11 }),
  ]);
  section(d, 'HTTP (gateway)', httpPanels());
  section(d, 'gRPC services', grpcServerPanels('job=~"sync|workflow|export|health"', 'job'));
  section(d, 'Throttling', throttlePanels());
  section(d, 'Sync', syncPanels());
  section(d, 'Exports', exportPanels());
  section(d, 'Jobs', jobPanels());
  section(d, 'Overdue work', overduePanels());
  return finish(d);
}

const SERVICE_TITLES: Record<Process, string> = {
  gateway: 'HTTP API, authentication, throttling',
  sync: 'offline sync',
  workflow: 'permit lifecycle, notifications, jobs',
  export: 'bulk PDF / Excel exports, KPIs',
  health: 'the health report',
};

/** One process in detail. */
export function processDashboard(job: Process): Dashboard {
  const d = ptwDashboard(`ptw-${job}`, `PTW ${job}`, `The ${job} process (${SERVICE_TITLES[job]}).`, { instancesOf: job });
  const sel = `job="${job}", instance=~"$instance"`;
  section(d, 'Process', processPanels(job));
  if (job === 'gateway') {
    section(d, 'HTTP', httpPanels('instance=~"$instance"'));
    section(d, 'Throttling', throttlePanels());
  } else {
    section(d, 'gRPC server', grpcServerPanels(sel, 'method'));
  }
  if (job === 'gateway' || job === 'health') {
    section(d, 'gRPC client', [
      timeseries(
        'Calls to services',
        'Calls this process made to the services, by method and status code (ptw_grpc_client_calls_total).',
        'reqps',
        [q(`sum by (method, code) (rate(ptw_grpc_client_calls_total{${sel}}[${RATE}]))`, '{{method}} {{code}}')],
        { w: 24 },
      ),
    ]);
  }
  if (job === 'sync') section(d, 'Sync', syncPanels());
  if (job === 'export') section(d, 'Exports', exportPanels());
  if (job === 'workflow') {
    section(d, 'Jobs', jobPanels());
    section(d, 'Overdue work', overduePanels());
  }
  return finish(d);
}

/** Every dashboard by its file name under deploy/grafana/dashboards. */
export function allDashboards(): Record<string, Dashboard> {
  const all: Record<string, Dashboard> = { 'ptw-overview.json': overview() };
  for (const job of PROCESSES) all[`ptw-${job}.json`] = processDashboard(job);
  return all;
}
