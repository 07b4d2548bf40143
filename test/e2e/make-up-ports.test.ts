/**
 * `make up`'s stack on its default ports: started, stopped and started again at once, with
 * connections to the store made in between (their ephemeral source ports and TIME-WAITs must not
 * be able to take a port of ours), and one clear line naming the variable when a port is taken.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MongoClient } from 'mongodb';
import { canConnect } from '@ptw/devstore';
import { DEFAULT_PORTS, REPO_ROOT, SERVICES, startStack, type Stack } from '../../libs/devstore/src/stack';
import { TEST_AUTH } from '../support/stack';

jest.setTimeout(240_000);

const EPHEMERAL = [32768, 60999];
const ports = Object.values(DEFAULT_PORTS).flatMap((p) => [p.grpc, p.metrics, p.http].filter((x): x is number => x !== undefined));

let logDir: string;
let stack: Stack | undefined;

beforeAll(() => {
  logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-make-up-'));
});

afterAll(async () => {
  await stack?.stop();
  fs.rmSync(logDir, { recursive: true, force: true });
});

async function takenPorts(): Promise<number[]> {
  const taken = await Promise.all(ports.map(async (p) => ((await canConnect('127.0.0.1', p, 300)) ? p : 0)));
  return taken.filter(Boolean);
}

async function ready(gatewayUrl: string): Promise<number> {
  const until = Date.now() + 30_000;
  let status = 0;
  while (Date.now() < until) {
    status = await fetch(`${gatewayUrl}/readyz`).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return status;
}

/** Opens and closes `n` store connections, each doing one write: outgoing connections from ephemeral ports. */
async function churnStoreConnections(url: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const client = await MongoClient.connect(url, { serverSelectionTimeoutMS: 10_000 });
    await client.db().collection('port_churn').insertOne({ i, at: new Date() });
    await client.close();
  }
}

/** Runs a process entry point to its end; resolves with its exit code and stderr. */
function runToExit(main: string, env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, main)], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

it("when nothing is set, then make up's ports lie outside Linux's ephemeral range", () => {
  for (const p of ports) expect(p < EPHEMERAL[0] || p > EPHEMERAL[1]).toBe(true);
});

it('when make up is started, stopped and started again at once after store connections, then it is ready both times, on the same store data', async () => {
  const taken = await takenPorts();
  if (taken.length > 0) {
    process.stdout.write(`make-up-ports: skipped, the default ports ${taken.join(', ')} are in use (a developer's \`make up\`?)\n`);
    return;
  }
  const opts = {
    ports: 'default' as const,
    logDir,
    env: { ...TEST_AUTH, NODE_ENV: 'test' },
    mongoUrl: process.env.MONGO_URL ? `${process.env.MONGO_URL.replace(/\/[^/]*$/, '')}/ptw_make_up_${Date.now()}` : undefined,
    redisUrl: process.env.REDIS_URL,
  };
  stack = await startStack(opts);
  expect(await ready(stack.gatewayUrl)).toBe(200);
  await churnStoreConnections(stack.mongoUrl, 20);
  await stack.stop();
  stack = undefined;
  // Connections to the store once more while nothing listens on our ports: the moment of issue 15.
  const again = await startStack(opts);
  stack = again;
  await churnStoreConnections(again.mongoUrl, 20);
  expect(await ready(again.gatewayUrl)).toBe(200);
  const client = await MongoClient.connect(again.mongoUrl);
  try {
    expect(await client.db().collection('port_churn').countDocuments({})).toBe(40);
  } finally {
    await client.close();
  }

  // A second copy of a process on the same ports: one line naming the variable to change.
  const second = { ...again.env, PTW_METRICS_LISTEN: '127.0.0.1:0' };
  const sync = await runToExit('services/sync/dist/main.js', second);
  expect(sync.code).toBe(1);
  expect(sync.stderr.trim()).toBe(`sync: failed to start: 127.0.0.1:${DEFAULT_PORTS.sync.grpc} is in use: set PTW_SYNC_ADDR/PTW_GRPC_LISTEN to another port`);
  const metrics = await runToExit('services/health/dist/main.js', { ...again.env, PTW_HEALTH_ADDR: '127.0.0.1:0', PTW_METRICS_LISTEN: `127.0.0.1:${DEFAULT_PORTS.sync.metrics}` });
  expect(metrics.code).toBe(1);
  expect(metrics.stderr.trim()).toBe(`health: failed to start: 127.0.0.1:${DEFAULT_PORTS.sync.metrics} is in use: set PTW_METRICS_LISTEN to another port`);
  const gateway = await runToExit('gateway/dist/main.js', again.env);
  expect(gateway.code).toBe(1);
  expect(gateway.stderr.trim()).toBe(`gateway: failed to start: 127.0.0.1:${DEFAULT_PORTS.gateway.http} is in use: set GATEWAY_PORT to another port`);
  expect(SERVICES.every((s) => again.procs[s].exitCode === null)).toBe(true);
});
