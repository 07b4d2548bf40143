/**
 * A stack on free ports whose probed metrics port is taken before the service binds it (CI once saw
 * another process's ephemeral port land there: the suite failed at start-up) starts that service
 * again on a fresh port.
 */
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DEV_JWT_SECRET } from '@ptw/common';
import { freePort } from '../../libs/devstore/src/index';
import { startStack, type Stack } from '../../libs/devstore/src/stack';

jest.setTimeout(120_000);

let stack: Stack | undefined;
let holder: http.Server;

afterAll(async () => {
  await stack?.stop();
  await new Promise((r) => holder?.close(r));
});

it("when a service's metrics port is taken between its probe and its bind, then the service starts on another one and serves its metrics there", async () => {
  holder = http.createServer((_req, res) => res.writeHead(418).end());
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
  const takenPort = (holder.address() as net.AddressInfo).port;
  // Probes in order: workflow's gRPC port, then its metrics port — hand that one the taken port.
  let probes = 0;
  const pickPort = async () => (++probes === 2 ? takenPort : freePort());
  stack = await startStack({
    ports: 'free',
    logDir: fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-stack-ports-')),
    redisUrl: process.env.REDIS_URL,
    pickPort,
    env: { NODE_ENV: 'test', PTW_JWT_SECRET: DEV_JWT_SECRET },
  });
  expect(probes).toBeGreaterThan(2 * 4 + 1);
  expect(stack.metricsPorts.workflow).not.toBe(takenPort);
  const metrics = await fetch(`http://127.0.0.1:${stack.metricsPorts.workflow}/metrics`);
  expect(metrics.status).toBe(200);
  expect(await metrics.text()).toContain('service="workflow"');
  const health = await fetch(`${stack.gatewayUrl}/healthz`);
  expect(health.status).toBe(200);
});
