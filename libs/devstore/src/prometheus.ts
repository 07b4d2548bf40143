/**
 * A Prometheus (Debian's `prometheus` package) for a running stack: a config generated from the
 * stack's actual ports, one scrape job per process (job = the process name, as in docker-compose's
 * deploy/prometheus/prometheus.yml), the alert rules of deploy/prometheus/rules, its own data folder.
 * Started by `make up` when PTW_PROMETHEUS=1, and by the alert end-to-end test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { canConnect, stopChild } from './index';
import { REPO_ROOT, type ProcessName, type Stack } from './stack';

/** `make up`'s Prometheus port: its usual one, below the ephemeral range (see DEFAULT_PORTS). */
export const PROMETHEUS_PORT = 9090;
export const RULES_DIR = path.join(REPO_ROOT, 'deploy', 'prometheus', 'rules');

export interface PrometheusOptions {
  /** `host:port` of each process's /metrics (the gateway's is its HTTP port). */
  targets: Partial<Record<ProcessName, string>>;
  port: number;
  /** Its TSDB, config and log go here. */
  dataDir: string;
  /** Rule files (absolute); default every `*.yml` of deploy/prometheus/rules. */
  ruleFiles?: string[];
  scrapeInterval?: string;
  evaluationInterval?: string;
  /** How long samples are kept (`--storage.tsdb.retention.time`). */
  retention?: string;
}

export interface RunningPrometheus {
  url: string;
  process: ChildProcess;
  configFile: string;
  logFile: string;
  stop(): Promise<void>;
}

/** The rule files of deploy/prometheus/rules. */
export function defaultRuleFiles(): string[] {
  return fs
    .readdirSync(RULES_DIR)
    .filter((f) => f.endsWith('.yml'))
    .sort()
    .map((f) => path.join(RULES_DIR, f));
}

/**
 * The configuration as an object (written as JSON, which YAML reads as is). Each process is a job of
 * its own, so `up{job="export"}` names the process that is down.
 */
export function prometheusConfig(opts: Pick<PrometheusOptions, 'targets' | 'ruleFiles' | 'scrapeInterval' | 'evaluationInterval'>): Record<string, unknown> {
  const scrape = opts.scrapeInterval ?? '15s';
  return {
    global: {
      scrape_interval: scrape,
      // A scrape may take at most its interval (Prometheus refuses a longer timeout).
      scrape_timeout: shorter(scrape, '10s'),
      evaluation_interval: opts.evaluationInterval ?? '15s',
    },
    rule_files: opts.ruleFiles ?? defaultRuleFiles(),
    scrape_configs: Object.entries(opts.targets).map(([job, target]) => ({
      job_name: job,
      metrics_path: '/metrics',
      static_configs: [{ targets: [target] }],
    })),
  };
}

/** The shorter of two Prometheus durations of one unit each (`1s`, `15s`, `1m`…). */
function shorter(a: string, b: string): string {
  const ms = (d: string) => {
    const m = /^(\d+)(ms|s|m|h)$/.exec(d);
    if (!m) throw new Error(`unsupported duration "${d}" (expected e.g. 500ms, 15s, 1m)`);
    return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  };
  return ms(a) <= ms(b) ? a : b;
}

/** Where each process of `stack` serves /metrics. */
export function stackTargets(stack: Pick<Stack, 'gatewayUrl' | 'metricsPorts'>): Record<ProcessName, string> {
  const targets = { gateway: new URL(stack.gatewayUrl).host } as Record<ProcessName, string>;
  for (const [name, port] of Object.entries(stack.metricsPorts)) targets[name as ProcessName] = `127.0.0.1:${port}`;
  return targets;
}

/** The `prometheus` binary on the PATH (Debian installs it in /usr/bin), else undefined. */
export function prometheusBinary(): string | undefined {
  const r = spawnSync('prometheus', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? 'prometheus' : undefined;
}

/** Starts Prometheus and resolves once it answers `/-/ready`. */
export async function startPrometheus(opts: PrometheusOptions): Promise<RunningPrometheus> {
  const bin = prometheusBinary();
  if (!bin) throw new Error('prometheus is not installed (Debian package `prometheus`: make sysdeps installs it)');
  // Another Prometheus on the port would answer the readiness probe below while ours exits.
  if (await canConnect('127.0.0.1', opts.port)) throw new Error(`port ${opts.port} is taken (another Prometheus?); Prometheus needs it free`);
  fs.mkdirSync(opts.dataDir, { recursive: true });
  const configFile = path.join(opts.dataDir, 'prometheus.yml');
  fs.writeFileSync(configFile, `# Generated for this run (libs/devstore/src/prometheus.ts); rewritten at every start.\n${JSON.stringify(prometheusConfig(opts), null, 2)}\n`);
  const logFile = path.join(opts.dataDir, 'prometheus.log');
  const log = fs.openSync(logFile, 'a');
  const child = spawn(
    bin,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(opts.dataDir, 'data')}`,
      `--storage.tsdb.retention.time=${opts.retention ?? '7d'}`,
      `--web.listen-address=127.0.0.1:${opts.port}`,
    ],
    { stdio: ['ignore', log, log] },
  );
  fs.closeSync(log);
  const url = `http://127.0.0.1:${opts.port}`;
  const until = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prometheus exited with code ${child.exitCode} during start-up; see ${logFile}`);
    try {
      const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > until) {
      await stopChild(child);
      throw new Error(`prometheus did not become ready on ${url} within 30 s; see ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, process: child, configFile, logFile, stop: () => stopChild(child, 10_000) };
}
