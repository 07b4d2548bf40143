#!/usr/bin/env node
/**
 * What the gRPC hop costs the gateway: the real gateway app (createApp, its middleware, router, throttle and
 * clients) answering `POST /sync-offline-data/` with 0 changes, twice:
 *   - "in-process": the sync client's method replaced by a function returning the same answer;
 *   - "gRPC": the real client calling a server-kit process (the sync service definition, `implement` with
 *     token verification and metrics, a handler returning the same empty answer: no store);
 *   - "canned": the real client calling a process that answers every call with the same pre-encoded
 *     response over Node's http2 server (no gRPC library, no work): what the called side costs.
 * The gateways run at once and are loaded alternately in short slices (autocannon, 20 connections), so
 * that a shared machine's load drifts over both alike. Prints, per case, the gateway's CPU µs and context
 * switches per response, the backend's CPU µs per response, and what the hop adds; then the bytes each
 * process allocates per response (V8's sampling heap profiler, collected objects included, over a fixed
 * number of requests): unlike CPU time, that figure does not move with the other load on the machine.
 * Run after `npx tsc -b`:  node test/bench/grpc-hop.js [slices per case, default 6] [seconds per slice, default 4]
 */
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const { fork } = require('node:child_process');
const { cpuSeconds, forgetSyncWindow, median } = require('./proc');

const root = path.resolve(__dirname, '..', '..');
const common = () => require(path.join(root, 'libs/common/dist'));
const AUTH = { PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };
const CONNECTIONS = 20;
/** Requests per case while allocations are sampled. */
const ALLOC_REQUESTS = 3000;
const EMPTY = { applied: [], conflicts: [], rejected: [], summary: { total: 0, applied: 0, conflicts: 0, rejected: 0 } };

// ---------------------------------------------------------------------------------------------
// Children: `--serve backend`, `--serve canned` or `--serve gateway <inproc|grpc> <backend port>`; each reports its port.
// ---------------------------------------------------------------------------------------------

async function backend(env) {
  const { createLogger, createTokenVerifier, implement, startGrpcServer, Metrics, DEV_JWT_SECRET } = common();
  const { syncPb, PROTO_FILES } = require(path.join(root, 'libs/proto/dist'));
  const log = createLogger('sync', { dir: env.BENCH_LOG_DIR, level: 'warn', stdout: false });
  const kit = { log, metrics: new Metrics('sync'), verify: createTokenVerifier({ PTW_JWT_ALG: 'HS256', PTW_JWT_SECRET: DEV_JWT_SECRET, ...AUTH }) };
  const implementation = implement(syncPb.SyncServiceService, { syncOfflineData: async () => EMPTY }, kit);
  const server = await startGrpcServer({
    listen: '127.0.0.1:0',
    services: [{ name: 'ptw.sync.v1.SyncService', definition: syncPb.SyncServiceService, implementation }],
    protoFiles: [PROTO_FILES.sync],
  });
  return server.port;
}

async function gateway(env, mode, backendPort) {
  const Redis = require('ioredis');
  const { createLogger, createTokenVerifier, loadConfig, Metrics, DEV_JWT_SECRET } = common();
  const { gatewayConfigSchema } = require(path.join(root, 'gateway/dist/config.js'));
  const { createApp } = require(path.join(root, 'gateway/dist/app.js'));
  const { createClients } = require(path.join(root, 'gateway/dist/clients.js'));
  const config = loadConfig(gatewayConfigSchema, {
    PTW_JWT_SECRET: DEV_JWT_SECRET,
    ...AUTH,
    REDIS_URL: env.REDIS_URL,
    LOG_DIR: env.BENCH_LOG_DIR,
    LOG_LEVEL: 'warn',
    PTW_THROTTLE_SYNC: '9999999/hour',
    PTW_SYNC_ADDR: `127.0.0.1:${backendPort}`,
  });
  const log = createLogger('gateway', { dir: config.LOG_DIR, level: config.LOG_LEVEL, stdout: false });
  const metrics = new Metrics('gateway');
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
  await new Promise((resolve, reject) => {
    redis.once('ready', resolve);
    redis.once('error', reject);
  });
  const clients = createClients(config, metrics);
  if (mode === 'inproc') clients.sync.call.syncOfflineData = async () => EMPTY;
  const app = createApp({ config, log, metrics, verify: createTokenVerifier(config), clients, redis });
  const server = require('node:http').createServer(app.callback());
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server.address().port;
}

/** Allocation sampling, started and stopped by the parent (`{ alloc: 'start' | 'stop' }`); answers with the bytes sampled. */
function allocationSampler() {
  const session = new (require('node:inspector').Session)();
  session.connect();
  const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, r) => (err ? reject(err) : resolve(r))));
  process.on('message', async (m) => {
    if (m?.alloc === 'start') {
      await post('HeapProfiler.enable');
      // Every 512 bytes on average; objects a scavenge or a full GC collected count too.
      await post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
      process.send({ alloc: 'started' });
    } else if (m?.alloc === 'stop') {
      const { profile } = await post('HeapProfiler.stopSampling');
      let bytes = 0;
      const walk = (node) => {
        bytes += node.selfSize;
        node.children.forEach(walk);
      };
      walk(profile.head);
      process.send({ alloc: 'stopped', bytes });
    }
  });
}

if (process.argv[2] === '--serve') {
  const [kind, mode, backendPort] = process.argv.slice(3);
  (kind === 'backend' ? backend(process.env) : kind === 'canned' ? require('./canned-grpc').startCannedSync() : gateway(process.env, mode, backendPort))
    .then((port) => {
      allocationSampler();
      process.send({ port });
      process.on('disconnect', () => process.exit(0));
    })
    .catch((err) => {
      console.error(err);
      process.exit(1);
    });
  return;
}

// ---------------------------------------------------------------------------------------------
// Parent.
// ---------------------------------------------------------------------------------------------

/** Times the main thread was switched out (it waited for I/O or was preempted): its wake-ups, roughly. */
function contextSwitches(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)[1]) + Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)[1]);
}

/** Sends `{ alloc: what }` to a child and resolves with its answer. */
function alloc(child, what) {
  return new Promise((resolve) => {
    const onMessage = (m) => {
      if (m?.alloc && m.alloc !== what) {
        child.off('message', onMessage);
        resolve(m);
      }
    };
    child.on('message', onMessage);
    child.send({ alloc: what });
  });
}

function start(args, env) {
  const child = fork(__filename, ['--serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve({ child, port: m.port }));
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with code ${code} during start-up`)));
  });
}

const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '–');

async function main() {
  const slices = Number(process.argv[2] || 6);
  const seconds = Number(process.argv[3] || 4);
  if (!Number.isInteger(slices) || slices < 1 || !(seconds > 0)) throw new Error('usage: node test/bench/grpc-hop.js [slices per case, default 6] [seconds per slice, default 4]');
  if (!fs.existsSync(path.join(root, 'gateway/dist/app.js'))) throw new Error('gateway/dist is missing: run `npx tsc -b` first');
  const autocannon = require('autocannon');
  const { DEV_JWT_SECRET, mintToken } = common();
  const { ensureRedis } = require(path.join(root, 'libs/devstore/dist'));
  const redisUrl = process.env.REDIS_URL || (await ensureRedis());
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-bench-hop-'));
  const user = `u-bench-hop-${process.pid}-${Date.now()}`;
  const token = await mintToken({ PTW_JWT_SECRET: DEV_JWT_SECRET, ...AUTH }, { user, role: 'worker', projects: ['p1'], ttlSeconds: 3600 });
  const env = { REDIS_URL: redisUrl, BENCH_LOG_DIR: tmp };
  const children = [];
  try {
    const back = await start(['backend'], env);
    children.push(back.child);
    const canned = await start(['canned'], env);
    children.push(canned.child);
    const cases = [];
    for (const [id, name, be] of [
      ['inproc', 'in-process backend (no gRPC)', back],
      ['grpc', 'gRPC hop to a server-kit process', back],
      ['canned', 'gRPC hop to a canned HTTP/2 answer (no gRPC library, no work)', canned],
    ]) {
      const gw = await start(['gateway', id === 'inproc' ? 'inproc' : 'grpc', String(be.port)], env);
      children.push(gw.child);
      cases.push({ id, name, gw, back: id === 'inproc' ? undefined : be, cpu: 0, backendCpu: 0, switches: 0, responses: 0, rps: [], bad: 0 });
    }
    const request = (c) => ({
      url: `http://127.0.0.1:${c.gw.port}/api/v1/ptw/sync-offline-data/`,
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ device_id: 'bench-device', changes: [] }),
      connections: CONNECTIONS,
    });
    for (const c of cases) await autocannon({ ...request(c), duration: 2 });
    for (let i = 0; i < slices; i++) {
      // Alternate the order too: a slice right after another one's may see its leftovers.
      for (const c of i % 2 ? [...cases].reverse() : cases) {
        process.stderr.write(`[bench grpc-hop] slice ${i + 1}/${slices}: ${c.name}\n`);
        const before = { cpu: cpuSeconds(c.gw.child.pid), backend: c.back ? cpuSeconds(c.back.child.pid) : 0, switches: contextSwitches(c.gw.child.pid) };
        const r = await autocannon({ ...request(c), duration: seconds });
        c.cpu += cpuSeconds(c.gw.child.pid) - before.cpu;
        c.backendCpu += c.back ? cpuSeconds(c.back.child.pid) - before.backend : 0;
        c.switches += contextSwitches(c.gw.child.pid) - before.switches;
        c.responses += r.requests.total;
        c.rps.push(r.requests.total / r.duration);
        c.bad += r.non2xx + r.errors + r.timeouts;
      }
    }
    console.log(`## The gRPC hop (gateway → sync, full sync with 0 changes)\n`);
    console.log(
      `${os.cpus().length} cores, node ${process.version}, load average ${os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}; autocannon ${CONNECTIONS} connections, ${slices} slices of ${seconds} s per case, alternating.\n`,
    );
    console.log('| case | responses | req/s (median slice) | gateway CPU µs/response | gateway context switches/response | backend CPU µs/response | non-2xx/errors |');
    console.log('|---|---:|---:|---:|---:|---:|---:|');
    for (const c of cases) {
      const rps = median(c.rps);
      const per = (x) => (x * 1e6) / c.responses;
      console.log(`| ${c.name} | ${c.responses} | ${fmt(rps)} | ${fmt(per(c.cpu))} | ${fmt(c.switches / c.responses, 2)} | ${c.back ? fmt(per(c.backendCpu)) : '–'} | ${c.bad} |`);
    }
    const [inproc, grpc, cannedCase] = cases;
    const perResponse = (c) => (c.cpu * 1e6) / c.responses;
    console.log(`\nThe hop adds ${fmt(perResponse(grpc) - perResponse(inproc))} µs of gateway CPU per response.`);
    console.log(
      `With a canned answer instead of the server kit, the same gateway serves ${fmt(median(cannedCase.rps) / median(grpc.rps), 2)}× the req/s ` +
        `at ${fmt(perResponse(cannedCase))} µs per response: what the called process costs the gateway's throughput.`,
    );
    console.log(`\nBytes allocated per response (sampled over ${ALLOC_REQUESTS} requests per case, collected objects included):\n`);
    console.log('| case | gateway KB/response | backend KB/response |');
    console.log('|---|---:|---:|');
    for (const c of cases) {
      const watched = c.back ? [c.gw.child, c.back.child] : [c.gw.child];
      await Promise.all(watched.map((child) => alloc(child, 'start')));
      const r = await autocannon({ ...request(c), amount: ALLOC_REQUESTS });
      const [gw, be] = await Promise.all(watched.map((child) => alloc(child, 'stop')));
      c.bad += r.non2xx + r.errors + r.timeouts;
      const kb = (m) => (m ? fmt(m.bytes / r.requests.total / 1024, 1) : '–');
      console.log(`| ${c.name} | ${kb(gw)} | ${kb(be)} |`);
    }
    if (cases.some((c) => c.bad)) {
      console.log('\nINVALID RUN: some responses were not 2xx.');
      process.exitCode = 1;
    }
  } finally {
    for (const child of children) child.kill();
    await forgetSyncWindow(redisUrl, user);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
