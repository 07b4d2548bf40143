/**
 * The alert rules of deploy/prometheus (issue 25 item 2) checked by Prometheus's own tool: syntax
 * (`promtool check rules`), behaviour (`promtool test rules`: input series, firing and not firing),
 * the annotations every alert must carry, and both Prometheus configurations (`make up`'s generated
 * one and docker-compose's).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { defaultRuleFiles, prometheusConfig } from '../../libs/devstore/src/prometheus';
import { REPO_ROOT } from '../../libs/devstore/src/stack';

const PROM_DIR = path.join(REPO_ROOT, 'deploy', 'prometheus');
const TESTS_DIR = path.join(PROM_DIR, 'tests');
const hasPromtool = spawnSync('promtool', ['--version']).status === 0;
if (!hasPromtool) process.stderr.write('prometheus-rules: skipped, promtool is not installed (Debian package `prometheus`; `make testdeps` installs it)\n');

interface AlertRule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleTest {
  alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[];
}

const alerts = (): AlertRule[] =>
  defaultRuleFiles().flatMap((f) =>
    (YAML.parse(fs.readFileSync(f, 'utf8')) as { groups: { rules: (AlertRule | { record: string })[] }[] }).groups.flatMap((g) => g.rules.filter((r): r is AlertRule => 'alert' in r)),
  );
const testFiles = () =>
  fs
    .readdirSync(TESTS_DIR)
    .filter((f) => f.endsWith('.test.yml'))
    .map((f) => path.join(TESTS_DIR, f));

function promtool(...args: string[]) {
  const r = spawnSync('promtool', args, { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

(hasPromtool ? describe : describe.skip)('Prometheus alert rules', () => {
  it('when promtool checks the rule files, then they are valid', () => {
    const r = promtool('check', 'rules', ...defaultRuleFiles());
    expect(r.out).toContain('SUCCESS');
    expect(r.status).toBe(0);
  });

  it('when promtool runs the rule unit tests, then every case passes', () => {
    const r = promtool('test', 'rules', ...testFiles());
    expect(r.out).not.toContain('FAILED');
    expect(r.status).toBe(0);
  });

  it('when an alert is defined, then it has a severity, a summary and a description saying what to check first', () => {
    const all = alerts();
    expect(all.length).toBeGreaterThanOrEqual(12);
    const problems = all.flatMap((a) =>
      [
        !/^(critical|warning)$/.test(a.labels?.severity ?? '') && `${a.alert}: severity must be critical or warning`,
        !a.annotations?.summary?.trim() && `${a.alert}: no summary`,
        !/First check/.test(a.annotations?.description ?? '') && `${a.alert}: the description does not say what to check first`,
      ].filter(Boolean),
    );
    expect(problems).toEqual([]);
  });

  it('when the unit tests are read, then every alert has a firing case and a not-firing case', () => {
    const cases = testFiles().flatMap((f) => ((YAML.parse(fs.readFileSync(f, 'utf8')) as { tests: RuleTest[] }).tests ?? []).flatMap((t) => t.alert_rule_test ?? []));
    const coverage = alerts().map((a) => {
      const mine = cases.filter((c) => c.alertname === a.alert);
      return { alert: a.alert, firing: mine.some((c) => (c.exp_alerts ?? []).length > 0), notFiring: mine.some((c) => (c.exp_alerts ?? []).length === 0) };
    });
    expect(coverage).toEqual(coverage.map((c) => ({ alert: c.alert, firing: true, notFiring: true })));
  });

  it("when make up's config is generated for a stack, then promtool accepts it with the rule files it names", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-promcfg-'));
    const file = path.join(dir, 'prometheus.yml');
    const targets = { gateway: '127.0.0.1:8080', sync: '127.0.0.1:9101', workflow: '127.0.0.1:9102', export: '127.0.0.1:9103', health: '127.0.0.1:9104' };
    fs.writeFileSync(file, JSON.stringify(prometheusConfig({ targets, scrapeInterval: '1s', evaluationInterval: '1s' })));
    const r = promtool('check', 'config', file);
    fs.rmSync(dir, { recursive: true, force: true });
    expect(r.out).toContain('SUCCESS');
    expect(r.out).toMatch(/SUCCESS: \d+ rules found/);
    expect(r.status).toBe(0);
  });

  it("when docker-compose's Prometheus config is checked, then it is valid and scrapes every process", () => {
    const r = promtool('check', 'config', '--syntax-only', path.join(PROM_DIR, 'prometheus.yml'));
    expect(r.status).toBe(0);
    const cfg = YAML.parse(fs.readFileSync(path.join(PROM_DIR, 'prometheus.yml'), 'utf8')) as { scrape_configs: { job_name: string }[]; rule_files: string[] };
    expect(cfg.scrape_configs.map((s) => s.job_name).sort()).toEqual(['export', 'gateway', 'health', 'sync', 'workflow']);
    expect(cfg.rule_files).toEqual(['/etc/prometheus/rules/*.yml']);
  });
});
