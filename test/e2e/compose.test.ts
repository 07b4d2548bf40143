/**
 * docker-compose.yml as a compose tool reads it (issue 25 item 5): Debian's docker-compose parses and
 * validates it against the compose schema (no Docker engine needed for `config`), and the resolved
 * file wires Prometheus and Grafana to the repository's own files: the scrape config, the alert
 * rules `make up` uses, the provisioning and the generated dashboards.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { RULES_DIR } from '../../libs/devstore/src/prometheus';
import { REPO_ROOT } from '../../libs/devstore/src/stack';

jest.setTimeout(60_000);

const hasCompose = spawnSync('docker-compose', ['version'], { encoding: 'utf8' }).status === 0;
if (!hasCompose) process.stderr.write('compose: skipped, docker-compose is not installed (Debian package `docker-compose`; `make testdeps` installs it)\n');

function compose(args: string[], env: Record<string, string | undefined>) {
  const r = spawnSync('docker-compose', ['-f', path.join(REPO_ROOT, 'docker-compose.yml'), ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Service {
  image?: string;
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
}

const SECRET = { PTW_JWT_SECRET: 'compose-check-secret-0123456789' };

(hasCompose ? describe : describe.skip)('docker-compose.yml', () => {
  let services: Record<string, Service>;

  beforeAll(() => {
    const r = compose(['config'], SECRET);
    if (r.status !== 0) throw new Error(`docker-compose config failed:\n${r.stderr}`);
    services = (YAML.parse(r.stdout) as { services: Record<string, Service> }).services;
  });

  it('when docker-compose validates it, then it is a valid compose file', () => {
    const r = compose(['config', '-q'], SECRET);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('when no JWT secret is given, then compose refuses it, naming the variable', () => {
    const r = compose(['config', '-q'], {});
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('set PTW_JWT_SECRET');
  });

  it('when resolved, then it runs the store, Redis, the gateway, the four services, tracing, Prometheus and Grafana', () => {
    expect(Object.keys(services).sort()).toEqual(['export', 'gateway', 'grafana', 'health', 'jaeger', 'lb', 'mongo', 'prometheus', 'redis', 'sync', 'workflow']);
  });

  it("when resolved, then Prometheus reads the repository's scrape config and the same alert rules as make up", () => {
    const mounts = Object.fromEntries((services.prometheus.volumes ?? []).map((v) => v.split(':').slice(0, 2).reverse()));
    expect(mounts['/etc/prometheus/prometheus.yml']).toBe(path.join(REPO_ROOT, 'deploy/prometheus/prometheus.yml'));
    expect(mounts['/etc/prometheus/rules']).toBe(RULES_DIR);
    const scrape = YAML.parse(fs.readFileSync(path.join(REPO_ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8')) as {
      rule_files: string[];
      scrape_configs: { job_name: string; dns_sd_configs: { names: string[]; port: number }[] }[];
    };
    expect(scrape.rule_files).toEqual(['/etc/prometheus/rules/*.yml']);
    // Each scrape job names a compose service on the port where it serves /metrics.
    for (const job of scrape.scrape_configs) {
      const [sd] = job.dns_sd_configs;
      const env = services[sd.names[0]]?.environment ?? {};
      const metricsPort = sd.names[0] === 'gateway' ? env.GATEWAY_PORT : env.PTW_METRICS_LISTEN?.split(':').pop();
      expect({ job: job.job_name, port: String(sd.port) }).toEqual({ job: job.job_name, port: metricsPort });
    }
  });

  it('when resolved, then Grafana is provisioned with that Prometheus and the generated dashboards', () => {
    const mounts = Object.fromEntries((services.grafana.volumes ?? []).map((v) => v.split(':').slice(0, 2).reverse()));
    expect(mounts['/etc/grafana/provisioning']).toBe(path.join(REPO_ROOT, 'deploy/grafana/provisioning'));
    expect(mounts['/etc/grafana/dashboards/ptw']).toBe(path.join(REPO_ROOT, 'deploy/grafana/dashboards'));
    const provider = YAML.parse(fs.readFileSync(path.join(REPO_ROOT, 'deploy/grafana/provisioning/dashboards/ptw.yml'), 'utf8')) as { providers: { options: { path: string } }[] };
    expect(provider.providers[0].options.path).toBe('/etc/grafana/dashboards/ptw');
    const ds = YAML.parse(fs.readFileSync(path.join(REPO_ROOT, 'deploy/grafana/provisioning/datasources/prometheus.yml'), 'utf8')) as { datasources: { type: string; url: string }[] };
    expect(ds.datasources).toEqual([expect.objectContaining({ type: 'prometheus', url: 'http://prometheus:9090' })]);
    const home = services.grafana.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH ?? '';
    expect(fs.existsSync(path.join(REPO_ROOT, 'deploy/grafana/dashboards', path.basename(home)))).toBe(true);
  });

  it('when its comments describe load balancing, then they name the policy the gRPC clients are configured with', () => {
    const client = fs.readFileSync(path.join(REPO_ROOT, 'libs/common/src/grpc/client.ts'), 'utf8');
    const file = fs.readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8');
    const policy = /loadBalancingConfig: \[\{ (\w+): \{\} \}\]/.exec(client)?.[1];
    expect(policy).toBe('round_robin');
    expect(file).toContain(policy);
    expect(file).not.toMatch(/pick_first/);
  });
});
