#!/usr/bin/env node
/**
 * A/B of the whole system's full sync (POST /sync-offline-data/ with 0 changes, as in gateway.js): the
 * stack's own gateway (A) against a second gateway process (B) started with other options on the same
 * services, store and Redis, loaded alternately in short slices (autocannon, 20 connections; the order
 * flips every slice). A drift of this shared machine's speed then hits both alike, and the per-slice
 * ratios B/A are what to read: an A/A run (no option given) gives ~1.0 (0.95–1.07 per slice here).
With AB_OWN_SYNC=1, B also gets a sync service of its own (same store and Redis), started from B's tree
with B's options, so that a change on both sides of the gateway → sync hop is what is compared.
 *
 * What B is (any combination):
 *   AB_NODE_ARGS  node options for B only, e.g. "--max-semi-space-size=64" or "--require ./patch.js"
 *   AB_ENV        JSON of environment variables for B only, e.g. '{"LOG_LEVEL":"info"}'
 *   AB_MAIN       B's entry point, e.g. a build of another commit: "../old/gateway/dist/main.js"
 *   AB_OWN_SYNC   "1": B calls a sync service of its own, `services/sync/dist/main.js` of B's tree
 *                 (the tree AB_MAIN is in), started with AB_NODE_ARGS and AB_ENV
 *   AB_STOCK_CLIENT "1": B's processes make their unary calls with grpc-js's client instead of the kit's
 *                 HTTP/2 unary channel (a preload makes the channel refuse every address, and createClient
 *                 falls back to grpc-js): what docs/decisions/grpc-transport.md measures
 *
 * Prints each slice's req/s, the medians, the gateway's CPU µs per response (process CPU, all threads)
 * and the sync service's, and the medians of the slice ratios.
 * Run after `make build store`:  node test/bench/gateway-ab.js [slice pairs, default 6] [seconds per slice, default 3]
 */
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const { spawn } = require('node:child_process');
const { cpuSeconds, forgetSyncWindow, median } = require('./proc');

const root = path.resolve(__dirname, '..', '..');
const CONNECTIONS = 20;
const HUGE_RATE = '9999999/hour';
const AUTH = { PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };

async function main() {
  const pairs = Number(process.argv[2] || 6);
  const seconds = Number(process.argv[3] || 3);
  if (!Number.isInteger(pairs) || pairs < 1 || !(seconds > 0)) throw new Error('usage: node test/bench/gateway-ab.js [slice pairs, default 6] [seconds per slice, default 3]');
  const autocannon = require('autocannon');
  const { DEV_JWT_SECRET, mintToken } = require(path.join(root, 'libs/common/dist'));
  const { canConnect, ensureRedis, freePort } = require(path.join(root, 'libs/devstore/dist'));
  const { answersAsGateway, startStack } = require(path.join(root, 'libs/devstore/dist/stack.js'));
  const nodeArgs = (process.env.AB_NODE_ARGS || '').split(' ').filter(Boolean);
  const extraEnv = JSON.parse(process.env.AB_ENV || '{}');
  const mainB = path.resolve(root, process.env.AB_MAIN || 'gateway/dist/main.js');
  const rootB = path.resolve(path.dirname(mainB), '..', '..');
  const ownSync = process.env.AB_OWN_SYNC === '1';
  const syncMainB = path.join(rootB, 'services', 'sync', 'dist', 'main.js');
  if (ownSync && !fs.existsSync(syncMainB)) throw new Error(`AB_OWN_SYNC: ${syncMainB} is not built`);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-bench-ab-'));
  const stockClient = process.env.AB_STOCK_CLIENT === '1';
  if (stockClient) {
    const channel = path.join(rootB, 'libs', 'common', 'dist', 'grpc', 'http2-unary.js');
    if (!fs.existsSync(channel)) throw new Error(`AB_STOCK_CLIENT: ${channel} is not built`);
    const preload = path.join(tmp, 'stock-client.js');
    fs.writeFileSync(preload, `require(${JSON.stringify(channel)}).parseTarget = () => undefined;\n`);
    nodeArgs.push('--require', preload);
  }
  const redisUrl = process.env.REDIS_URL || (await ensureRedis());
  const user = `u-bench-ab-${process.pid}-${Date.now()}`;
  let stack;
  let b;
  let syncB;
  try {
    stack = await startStack({ ports: 'free', logDir: path.join(tmp, 'stack'), redisUrl, env: { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_THROTTLE_SYNC: HUGE_RATE, LOG_LEVEL: 'warn' } });
    const envB = { ...stack.env };
    if (ownSync) {
      const grpcPort = await freePort();
      const metricsPort = await freePort();
      envB.PTW_SYNC_ADDR = `127.0.0.1:${grpcPort}`;
      syncB = spawn(process.execPath, [...nodeArgs, syncMainB], { env: { ...envB, PTW_METRICS_LISTEN: `127.0.0.1:${metricsPort}`, ...extraEnv }, stdio: ['ignore', 'ignore', 'inherit'] });
      const until = Date.now() + 60_000;
      while (!(await canConnect('127.0.0.1', grpcPort, 300))) {
        if (syncB.exitCode !== null || Date.now() > until) throw new Error(`sync service B did not listen on ${grpcPort} (exit code ${syncB.exitCode})`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const portB = await freePort();
    b = spawn(process.execPath, [...nodeArgs, mainB], { env: { ...envB, GATEWAY_PORT: String(portB), ...extraEnv }, stdio: ['ignore', 'ignore', 'inherit'] });
    const urlB = `http://127.0.0.1:${portB}`;
    if (!(await answersAsGateway(urlB, b, 30_000))) throw new Error(`gateway B did not answer on ${urlB} within 30 s (exit code ${b.exitCode})`);
    const token = await mintToken({ PTW_JWT_SECRET: DEV_JWT_SECRET, ...AUTH }, { user, role: 'manager', projects: ['p1'], ttlSeconds: 3600 });
    const request = (base) => ({
      url: `${base}/api/v1/ptw/sync-offline-data/`,
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ device_id: 'bench-device', changes: [] }),
      connections: CONNECTIONS,
    });
    const gateways = {
      A: { url: stack.gatewayUrl, pid: stack.procs.gateway.pid, syncPid: stack.procs.sync.pid },
      B: { url: urlB, pid: b.pid, syncPid: syncB ? syncB.pid : stack.procs.sync.pid },
    };
    console.log(`## Gateway A/B, full sync with 0 changes\n`);
    console.log(
      `A: the stack's gateway. B: ${[nodeArgs.length ? `node ${nodeArgs.join(' ')}` : '', Object.keys(extraEnv).length ? `env ${JSON.stringify(extraEnv)}` : '', process.env.AB_MAIN ? `main ${process.env.AB_MAIN}` : '', ownSync ? 'its own sync service' : '', stockClient ? "grpc-js's client for unary calls" : ''].filter(Boolean).join(', ') || 'the same (an A/A run)'}.`,
    );
    console.log(`${pairs} slice pairs of ${seconds} s, ${CONNECTIONS} connections, the order flipped every pair; ${os.cpus().length} cores, node ${process.version}.\n`);
    for (const g of Object.values(gateways)) await autocannon({ ...request(g.url), duration: 2 });
    const runs = { A: [], B: [] };
    for (let i = 0; i < pairs; i++) {
      for (const k of i % 2 ? ['B', 'A'] : ['A', 'B']) {
        const g = gateways[k];
        const before = { gw: cpuSeconds(g.pid), sync: cpuSeconds(g.syncPid) };
        const r = await autocannon({ ...request(g.url), duration: seconds });
        if (r.non2xx || r.errors || r.timeouts) throw new Error(`${k}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts: the figures would not measure the sync`);
        runs[k].push({
          rps: r.requests.total / r.duration,
          gwUs: ((cpuSeconds(g.pid) - before.gw) * 1e6) / r.requests.total,
          syncUs: ((cpuSeconds(g.syncPid) - before.sync) * 1e6) / r.requests.total,
        });
      }
    }
    const fmt = (x, d = 0) => x.toFixed(d);
    console.log(`| slice | A req/s | B req/s | B/A req/s | A gateway µs | B gateway µs | B/A gateway µs |`);
    console.log(`|---:|---:|---:|---:|---:|---:|---:|`);
    runs.A.forEach((a, i) => {
      const bb = runs.B[i];
      console.log(`| ${i + 1} | ${fmt(a.rps)} | ${fmt(bb.rps)} | ${fmt(bb.rps / a.rps, 2)} | ${fmt(a.gwUs)} | ${fmt(bb.gwUs)} | ${fmt(bb.gwUs / a.gwUs, 2)} |`);
    });
    const rpsRatio = median(runs.A.map((a, i) => runs.B[i].rps / a.rps));
    const usRatio = median(runs.A.map((a, i) => runs.B[i].gwUs / a.gwUs));
    const syncRatio = median(runs.A.map((a, i) => runs.B[i].syncUs / a.syncUs));
    const med = (k, f) => median(runs[k].map((x) => x[f]));
    console.log(
      `\nMedians: A ${fmt(med('A', 'rps'))} req/s, gateway ${fmt(med('A', 'gwUs'))} µs, sync ${fmt(med('A', 'syncUs'))} µs per response; ` +
        `B ${fmt(med('B', 'rps'))} req/s, gateway ${fmt(med('B', 'gwUs'))} µs, sync ${fmt(med('B', 'syncUs'))} µs.`,
    );
    console.log(`B/A (median of the slice pairs): req/s ${fmt(rpsRatio, 3)}×, gateway CPU per response ${fmt(usRatio, 3)}×, sync CPU per response ${fmt(syncRatio, 3)}×.`);
  } finally {
    for (const p of [b, syncB]) {
      if (p && p.exitCode === null) {
        p.kill('SIGTERM');
        await new Promise((resolve) => p.once('exit', resolve));
      }
    }
    if (stack) await stack.stop();
    await forgetSyncWindow(redisUrl, user);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
