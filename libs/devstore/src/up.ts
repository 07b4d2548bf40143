#!/usr/bin/env node
/**
 * `make up`: the whole system in the foreground on 127.0.0.1:8080 with a local store and Redis
 * (unless MONGO_URL / REDIS_URL are given), demo data seeded, demo tokens printed; Ctrl-C stops all.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { booleanVariable, DEV_JWT_SECRET, mintToken } from '@ptw/common';
import { PROMETHEUS_PORT, prometheusBinary, stackTargets, startPrometheus, type RunningPrometheus } from './prometheus';
import { REPO_ROOT, startStack, type Stack } from './stack';

/**
 * PTW_PROMETHEUS=1: a Prometheus scraping the stack, on PTW_PROMETHEUS_PORT (9090), scraping and
 * evaluating every PTW_PROMETHEUS_INTERVAL (15s); checked before anything starts.
 */
function prometheusSettings(env: NodeJS.ProcessEnv): { port: number; interval: string } | undefined {
  const wanted = booleanVariable(false).safeParse(env.PTW_PROMETHEUS);
  if (!wanted.success) throw new Error(`PTW_PROMETHEUS: expected true or false (1 or 0), got "${env.PTW_PROMETHEUS}"`);
  if (!wanted.data) return undefined;
  const port = Number(env.PTW_PROMETHEUS_PORT ?? PROMETHEUS_PORT);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`PTW_PROMETHEUS_PORT: expected a port number, got "${env.PTW_PROMETHEUS_PORT}"`);
  const interval = env.PTW_PROMETHEUS_INTERVAL ?? '15s';
  if (!/^[1-9]\d*(s|m)$/.test(interval)) throw new Error(`PTW_PROMETHEUS_INTERVAL: expected seconds or minutes such as 5s or 1m, got "${interval}"`);
  if (!prometheusBinary()) throw new Error('PTW_PROMETHEUS=1 needs the prometheus binary (Debian package `prometheus`; `make sysdeps` installs it)');
  return { port, interval };
}

async function main(): Promise<void> {
  const logDir = path.resolve(process.env.LOG_DIR ?? path.join(REPO_ROOT, 'logs'));
  const secret = process.env.PTW_JWT_SECRET ?? DEV_JWT_SECRET;
  const env = { PTW_JWT_SECRET: secret };
  const promSettings = prometheusSettings(process.env);
  // Ctrl-C (or SIGTERM to this process alone) at any moment, start-up and seeding included, stops
  // what has been started: the processes still starting are stopped once the stack is up.
  let stack: Stack | undefined;
  let prometheus: Promise<RunningPrometheus> | undefined;
  let seeding: ChildProcess | undefined;
  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping…\n');
    seeding?.kill('SIGTERM');
    // Prometheus too, even while it is still starting.
    if (stack)
      void Promise.all([
        stack.stop(),
        prometheus?.then(
          (p) => p.stop(),
          () => undefined,
        ),
      ]).then(() => process.exit(0));
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  stack = await startStack({
    ports: 'default',
    logDir,
    mongoUrl: process.env.MONGO_URL,
    redisUrl: process.env.REDIS_URL,
    env,
  });
  if (stopping) {
    await stack.stop();
    process.exit(0);
  }
  let prom: RunningPrometheus | undefined;
  if (promSettings) {
    prometheus = startPrometheus({
      targets: stackTargets(stack),
      port: promSettings.port,
      dataDir: path.join(logDir, 'prometheus'),
      scrapeInterval: promSettings.interval,
      evaluationInterval: promSettings.interval,
    });
    prom = await prometheus.catch(async (err: Error) => {
      await stack?.stop();
      throw err;
    });
    if (stopping) return;
  }
  const seed = spawn(process.execPath, [path.join(REPO_ROOT, 'services/workflow/dist/seed.js')], { env: stack.env, stdio: 'inherit' });
  seeding = seed;
  const seedCode = await new Promise<number | null>((resolve) => seed.once('exit', (code) => resolve(code)));
  seeding = undefined;
  if (stopping) return;
  if (seedCode !== 0) process.stderr.write('seeding failed (see above); the system runs without demo data\n');

  const cfg = { PTW_JWT_SECRET: secret, PTW_JWT_ISSUER: process.env.PTW_JWT_ISSUER ?? 'ptw-dev', PTW_JWT_AUDIENCE: process.env.PTW_JWT_AUDIENCE ?? 'ptw-api' };
  const demo = [
    ['worker', 'u-worker', ['p1']],
    ['supervisor', 'u-supervisor', ['p1']],
    ['manager', 'u-manager', ['p1', 'p2']],
    ['service', 'svc-ops', []],
  ] as const;
  process.stdout.write(
    `\nPTW platform is up: gateway ${stack.gatewayUrl}  store ${stack.mongoUrl}${stack.store ? ` (FerretDB on ${stack.store.backend}, data in ${stack.store.dataDir})` : ''}  redis ${stack.redisUrl}\nlogs in ${logDir}\n\nDemo tokens (valid 12 h):\n`,
  );
  for (const [role, user, projects] of demo) {
    const token = await mintToken(cfg, { user, role, projects: [...projects], ttlSeconds: 12 * 3600 });
    process.stdout.write(`  ${role.padEnd(10)} ${token}\n`);
  }
  if (prom) {
    process.stdout.write(
      `\nPrometheus: ${prom.url}  (targets ${prom.url}/targets, alerts ${prom.url}/alerts; config and data in ${path.dirname(prom.configFile)})\n` +
        `  the gateway's request rate: curl -s ${prom.url}/api/v1/query --data-urlencode 'query=sum by (route) (rate(ptw_http_requests_total[1m]))'\n`,
    );
  }
  process.stdout.write(`\nTry:  curl -s -H "Authorization: Bearer <token>" ${stack.gatewayUrl}/api/v1/ptw/permit-types/\nCtrl-C stops everything.\n`);

  for (const [name, child] of Object.entries(stack.procs)) {
    child.on('exit', (code) => {
      if (!stopping) process.stderr.write(`${name} exited (code ${code}); see ${logDir}/${name}.log\n`);
    });
  }
  prom?.process.on('exit', (code) => {
    if (!stopping) process.stderr.write(`prometheus exited (code ${code}); see ${prom?.logFile}\n`);
  });
}

main().catch((err: Error) => {
  process.stderr.write(`up: ${err.message}\n`);
  process.exit(1);
});
