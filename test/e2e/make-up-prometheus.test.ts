/**
 * `PTW_PROMETHEUS=1 make up` (libs/devstore/dist/up.js) as docs/operations.md describes it: Prometheus
 * answers, every process is an `up` target, the documented PromQL query returns the gateway's request
 * rate, and Ctrl-C stops Prometheus with the rest.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { canConnect, freePort } from '@ptw/devstore';
import { prometheusBinary } from '../../libs/devstore/src/prometheus';
import { DEFAULT_PORTS, REPO_ROOT } from '../../libs/devstore/src/stack';
import { spawnMakeUp, TEST_AUTH, token } from '../support/stack';

jest.setTimeout(150_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ports = Object.values(DEFAULT_PORTS).flatMap((p) => [p.grpc, p.metrics, p.http].filter((x): x is number => x !== undefined));

/** The query of docs/operations.md ("The gateway's request rate, per route"). */
function documentedQuery(): string {
  const doc = fs.readFileSync(path.join(REPO_ROOT, 'docs/operations.md'), 'utf8');
  const m = /--data-urlencode 'query=([^']+)'/.exec(doc);
  if (!m) throw new Error('docs/operations.md has no query example');
  return m[1];
}

let logDir: string;
beforeAll(() => {
  logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-make-up-prom-'));
});
afterAll(() => fs.rmSync(logDir, { recursive: true, force: true }));

it('when make up runs with PTW_PROMETHEUS=1, then every process is scraped, the documented query gives the request rate, and Ctrl-C stops Prometheus too', async () => {
  if (!prometheusBinary()) {
    process.stdout.write('make-up-prometheus: skipped, prometheus is not installed (`make testdeps` installs it)\n');
    return;
  }
  const taken = (await Promise.all(ports.map(async (p) => ((await canConnect('127.0.0.1', p, 300)) ? p : 0)))).filter(Boolean);
  if (taken.length > 0) {
    process.stdout.write(`make-up-prometheus: skipped, the default ports ${taken.join(', ')} are in use (a developer's \`make up\`?)\n`);
    return;
  }
  const promPort = await freePort();
  const mongoUrl = process.env.MONGO_URL ? `${process.env.MONGO_URL.replace(/\/[^/]*$/, '')}/ptw_make_up_prom_${Date.now()}` : undefined;
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    ...TEST_AUTH,
    LOG_DIR: logDir,
    PTW_PROMETHEUS: '1',
    PTW_PROMETHEUS_PORT: String(promPort),
    PTW_PROMETHEUS_INTERVAL: '1s',
    ...(mongoUrl ? { MONGO_URL: mongoUrl } : {}),
  };
  const up = spawnMakeUp(env);
  const prom = `http://127.0.0.1:${promPort}`;
  try {
    const until = Date.now() + 120_000;
    while (!up.output().includes('Ctrl-C stops everything')) {
      if (Date.now() > until || up.child.exitCode !== null) throw new Error(`make up did not come up:\n${up.output()}`);
      await sleep(100);
    }
    expect(up.output()).toContain(`Prometheus: ${prom}`);

    const jobs = async () => {
      const body = (await (await fetch(`${prom}/api/v1/targets`)).json()) as { data: { activeTargets: { labels: { job: string }; health: string }[] } };
      return body.data.activeTargets
        .filter((t) => t.health === 'up')
        .map((t) => t.labels.job)
        .sort();
    };
    let up5: string[] = [];
    for (const stop = Date.now() + 20_000; Date.now() < stop && up5.length < 5; await sleep(250)) up5 = await jobs();
    expect(up5).toEqual(['export', 'gateway', 'health', 'sync', 'workflow']);

    const auth = { authorization: `Bearer ${await token('u-manager', 'manager', ['p1', 'p2'])}` };
    const query = documentedQuery();
    let rate = 0;
    for (const stop = Date.now() + 20_000; Date.now() < stop && !(rate > 0); await sleep(500)) {
      for (let i = 0; i < 5; i++) await (await fetch(`http://127.0.0.1:${DEFAULT_PORTS.gateway.http}/api/v1/ptw/permit-types/`, { headers: auth })).arrayBuffer();
      const body = (await (await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(query)}`)).json()) as { data: { result: { metric: { route: string }; value: [number, string] }[] } };
      rate = Number(body.data.result.find((r) => r.metric.route === '/api/v1/ptw/permit-types/')?.value[1] ?? 0);
    }
    expect(rate).toBeGreaterThan(0);

    up.child.kill('SIGINT');
    expect(await up.exited).toBe(0);
    await sleep(1000);
    expect(await canConnect('127.0.0.1', promPort, 300)).toBe(false);
  } finally {
    up.killAll();
  }
});
