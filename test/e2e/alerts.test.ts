/**
 * The alert rules against the real system (issue 25 item 4): Prometheus (Debian's) scrapes a test
 * stack every second with deploy/prometheus/rules evaluated every second (each `for:` cut to 3 s),
 * every target comes up, then the export process is killed: PtwProcessDown{job="export"} goes
 * pending, then firing, through Prometheus's HTTP API, and resolves once export runs again. The
 * dashboards' queries (deploy/grafana) are checked against the same Prometheus.
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { freePort } from '@ptw/devstore';
import { defaultRuleFiles, prometheusBinary, stackTargets, startPrometheus, type RunningPrometheus } from '../../libs/devstore/src/prometheus';
import { REPO_ROOT } from '../../libs/devstore/src/stack';
import { startTestStack } from '../support/stack';

jest.setTimeout(90_000);

const hasPrometheus = !!prometheusBinary();
if (!hasPrometheus) process.stderr.write('alerts: skipped, prometheus is not installed (Debian package `prometheus`; `make testdeps` installs it)\n');

type Stack = Awaited<ReturnType<typeof startTestStack>>;
let stack: Stack | undefined;
let prom: RunningPrometheus | undefined;

interface Alert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
}

async function api<T>(p: string): Promise<T> {
  const res = await fetch(`${prom!.url}${p}`, { signal: AbortSignal.timeout(2000) });
  const body = (await res.json()) as { status: string; data: T };
  if (body.status !== 'success') throw new Error(`${p}: ${JSON.stringify(body)}`);
  return body.data;
}

/** Polls `fn` every 100 ms until it returns a value (not undefined) or `ms` passes. */
async function waitFor<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The alert rules with every `for:` cut to `forDuration` (the expressions as they are). */
function shortRules(dir: string, forDuration: string): string[] {
  return defaultRuleFiles().map((file) => {
    const doc = YAML.parse(fs.readFileSync(file, 'utf8')) as { groups: { rules: { for?: string }[] }[] };
    for (const g of doc.groups) for (const r of g.rules) if (r.for) r.for = forDuration;
    const out = path.join(dir, `short-${path.basename(file)}`);
    fs.writeFileSync(out, YAML.stringify(doc));
    return out;
  });
}

const processDown = async (job: string) => (await api<{ alerts: Alert[] }>('/api/v1/alerts')).alerts.find((a) => a.labels.alertname === 'PtwProcessDown' && a.labels.job === job);

beforeAll(async () => {
  if (!hasPrometheus) return;
  stack = await startTestStack('alerts');
  const dataDir = path.join(stack.logDir, 'prometheus');
  fs.mkdirSync(dataDir, { recursive: true });
  prom = await startPrometheus({
    targets: stackTargets(stack),
    port: await freePort(),
    dataDir,
    ruleFiles: shortRules(dataDir, '3s'),
    scrapeInterval: '1s',
    evaluationInterval: '1s',
  });
});

afterAll(async () => {
  await prom?.stop();
  await stack?.stop();
});

(hasPrometheus ? it : it.skip)('when the dashboards query this Prometheus, then every query is valid PromQL', async () => {
  const dir = path.join(REPO_ROOT, 'deploy', 'grafana', 'dashboards');
  const exprs = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .flatMap((f) => (JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { panels: { targets?: { expr: string }[] }[] }).panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)));
  expect(exprs.length).toBeGreaterThan(30);
  const refused: string[] = [];
  for (const expr of new Set(exprs)) {
    // Grafana's own variables, as Grafana would fill them in.
    const query = expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*');
    const res = await fetch(`${prom!.url}/api/v1/query?query=${encodeURIComponent(query)}`);
    const body = (await res.json()) as { status: string; error?: string };
    if (body.status !== 'success') refused.push(`${expr}: ${body.error}`);
  }
  expect(refused).toEqual([]);
});

(hasPrometheus ? it : it.skip)('when a service process dies, then PtwProcessDown goes pending, then firing, and resolves when it runs again', async () => {
  const t0 = Date.now();
  const targets = await waitFor('every target up', 20_000, async () => {
    const t = await api<{ activeTargets: { labels: { job: string }; health: string }[] }>('/api/v1/targets');
    const up = t.activeTargets.filter((a) => a.health === 'up').map((a) => a.labels.job);
    return up.length === 5 ? up.sort() : undefined;
  });
  expect(targets).toEqual(['export', 'gateway', 'health', 'sync', 'workflow']);
  // The series the other alerts read are there, from the real processes.
  const serving = await waitFor('ptw_grpc_serving of every service', 5000, async () => {
    const r = await api<{ result: { metric: { job: string }; value: [number, string] }[] }>(`/api/v1/query?query=${encodeURIComponent('ptw_grpc_serving')}`);
    return r.result.length === 4 ? r.result.map((s) => `${s.metric.job}=${s.value[1]}`).sort() : undefined;
  });
  expect(serving).toEqual(['export=1', 'health=1', 'sync=1', 'workflow=1']);
  const jobPeriods = await api<{ result: unknown[] }>(`/api/v1/query?query=${encodeURIComponent('ptw_job_period_seconds')}`);
  expect(jobPeriods.result).toHaveLength(3);
  // Before the first scrape every `up` is absent (and PtwProcessDown's absent() branch active): it clears.
  await waitFor('no PtwProcessDown once every target is up', 10_000, async () => ((await processDown('export')) ? undefined : true));

  stack!.procs.export.kill('SIGKILL');
  const pending = await waitFor('PtwProcessDown pending', 15_000, async () => ((await processDown('export'))?.state === 'pending' ? Date.now() : undefined));
  const firing = await waitFor('PtwProcessDown firing', 15_000, async () => ((await processDown('export'))?.state === 'firing' ? Date.now() : undefined));
  // Pending for its `for:` (3 s) before firing, give or take an evaluation.
  expect(firing - pending).toBeGreaterThanOrEqual(1500);
  expect(await processDown('sync')).toBeUndefined();

  await stack!.start('export');
  await waitFor('PtwProcessDown resolved', 20_000, async () => ((await processDown('export')) ? undefined : true));
  process.stdout.write(`alerts: targets up, pending, firing and resolved in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
});
