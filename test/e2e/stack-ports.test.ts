/**
 * A stack on free ports whose probed metrics port, or gateway port, is taken before the process binds
 * it (CI saw another process's ephemeral port land on each: the suite failed at start-up) starts that
 * process again on a fresh port.
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
const holders: http.Server[] = [];

afterAll(async () => {
  await stack?.stop();
  await Promise.all(holders.map((h) => new Promise((r) => h.close(r))));
});

/** A port held by a loopback server of this test (any request gets 418). */
async function heldPort(): Promise<number> {
  const holder = http.createServer((_req, res) => res.writeHead(418).end());
  holders.push(holder);
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
  return (holder.address() as net.AddressInfo).port;
}

it("when a service's metrics port and the gateway's port are taken between their probe and their bind, then each starts on another one and serves there", async () => {
  const takenPort = await heldPort();
  const takenGatewayPort = await heldPort();
  // Probes in order: each service's gRPC then metrics port (workflow first), then the gateway's port:
  // hand workflow's metrics port and the gateway's port a taken one.
  let probes = 0;
  const pickPort = async () => {
    probes++;
    return probes === 2 ? takenPort : probes === 2 * 4 + 1 ? takenGatewayPort : freePort();
  };
  stack = await startStack({
    ports: 'free',
    logDir: fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-stack-ports-')),
    redisUrl: process.env.REDIS_URL,
    pickPort,
    env: { NODE_ENV: 'test', PTW_JWT_SECRET: DEV_JWT_SECRET },
  });
  expect(probes).toBeGreaterThan(2 * 4 + 2);
  expect(stack.metricsPorts.workflow).not.toBe(takenPort);
  expect(new URL(stack.gatewayUrl).port).not.toBe(String(takenGatewayPort));
  expect(stack.env.GATEWAY_PORT).toBe(new URL(stack.gatewayUrl).port);
  const metrics = await fetch(`http://127.0.0.1:${stack.metricsPorts.workflow}/metrics`);
  expect(metrics.status).toBe(200);
  expect(await metrics.text()).toContain('service="workflow"');
  const health = await fetch(`${stack.gatewayUrl}/healthz`);
  expect(health.status).toBe(200);
});
