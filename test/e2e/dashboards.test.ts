/**
 * The Grafana dashboards are code (deploy/grafana/src, @grafana/grafana-foundation-sdk): the JSON
 * committed under deploy/grafana/dashboards must be what that code generates (as CI checks the
 * generated protos), and the overview must cover what issue 25 asks of it.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../libs/devstore/src/stack';

jest.setTimeout(60_000);

const GRAFANA = path.join(REPO_ROOT, 'deploy', 'grafana');
const COMMITTED = path.join(GRAFANA, 'dashboards');

interface Panel {
  type: string;
  title: string;
  targets?: { expr: string }[];
}

let generated: string;

beforeAll(() => {
  // The generator type-checks as it compiles: a wrong field or panel option fails here.
  const tsc = spawnSync(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', GRAFANA], { encoding: 'utf8' });
  if (tsc.status !== 0) throw new Error(`tsc -p deploy/grafana failed:\n${tsc.stdout}${tsc.stderr}`);
  generated = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-dashboards-'));
  const gen = spawnSync(process.execPath, [path.join(GRAFANA, 'dist', 'generate.js'), generated], { encoding: 'utf8' });
  if (gen.status !== 0) throw new Error(`generate.js failed:\n${gen.stdout}${gen.stderr}`);
});

afterAll(() => {
  if (generated) fs.rmSync(generated, { recursive: true, force: true });
});

const read = (dir: string) =>
  Object.fromEntries(
    fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => [f, fs.readFileSync(path.join(dir, f), 'utf8')]),
  );

it('when the dashboards are generated again, then the committed JSON is the same (else: npm run dashboards, and commit)', () => {
  const fresh = read(generated);
  const committed = read(COMMITTED);
  expect(Object.keys(committed)).toEqual(Object.keys(fresh));
  for (const file of Object.keys(fresh)) expect({ file, json: committed[file] }).toEqual({ file, json: fresh[file] });
});

it('when the dashboards are read, then there is an overview and one per process, each with its own uid', () => {
  const all = Object.values(read(COMMITTED)).map((j) => JSON.parse(j) as { uid: string; title: string });
  expect(all.map((d) => d.uid).sort()).toEqual(['ptw-export', 'ptw-gateway', 'ptw-health', 'ptw-overview', 'ptw-sync', 'ptw-workflow']);
});

it('when the overview is read, then it shows requests, errors and latency per route and per service, throttling, sync, exports, jobs and overdue work', () => {
  const overview = JSON.parse(fs.readFileSync(path.join(COMMITTED, 'ptw-overview.json'), 'utf8')) as { panels: Panel[] };
  const exprs = overview.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
  for (const wanted of [
    /sum by \(method, route\) \(rate\(ptw_http_requests_total/,
    /status=~"5\.\."/,
    /histogram_quantile\(0\.99, sum by \(method, route, le\) \(rate\(ptw_http_request_duration_seconds_bucket/,
    /sum by \(job\) \(rate\(ptw_grpc_server_handled_total/,
    /histogram_quantile\(0\.99, sum by \(job, le\) \(rate\(ptw_grpc_server_handling_seconds_bucket/,
    /sum by \(scope, decision\) \(rate\(ptw_throttle_decisions_total/,
    /ptw_sync_outcomes_total/,
    /ptw_exports_total/,
    /ptw_job_runs_total/,
    /ptw_permits_overdue/,
  ]) {
    expect(exprs).toMatch(wanted);
  }
});
