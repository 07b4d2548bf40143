#!/usr/bin/env node
/**
 * Gateway HTTP throughput: req/s and latency p50/p99 (autocannon, same settings for every case) of
 *   - a bare Koa route (baseline A) and Koa + koa-ratelimit's redis driver alone (baseline B);
 *   - the gateway's own middleware stack (request id + access log, JWT auth, the ptw_kpi throttle,
 *     bunyan to a file) in front of a trivial handler, at LOG_LEVEL info and warn;
 *   - Express + express-rate-limit + rate-limit-redis, the usual Express choice, on the same Redis;
 *   - the floor of any proxied request here: bare Koa making one unary call over Node's http2 client to a
 *     server (a process of its own) that answers every call with the same pre-encoded gRPC response; the
 *     same with koa-ratelimit's redis driver in front (the throttled floor); and Koa + koa-ratelimit + the
 *     same raw call to the real sync service of the stack (the libraries SPEC names, without the gateway's code);
 *   - the real system (startStack): GET /permits/kpis/ (gateway → export → store),
 *     POST /sync-offline-data/ with no changes (gateway → sync, throttled scope), GET /permit-types/
 *     (a simple proxied GET: gateway → workflow → store) and GET /permits/?page_size=20 (gateway → workflow → store).
 * The in-process HTTP cases (A, B, the gateway stack, Express) all get the same request, the gateway's
 * (its route and bearer token; the others ignore both), so that the ratios compare servers, not requests.
 * Each in-process server runs in a child process of its own on 127.0.0.1, so that the load
 * generator (this process) does not share its event loop. Throttle limits are set so high that no
 * request is refused; every case must answer 2xx only (the program exits 1 otherwise: the figures
 * would not measure what they claim). Prints Markdown; progress goes to stderr.
 * Run after `make build store`:  node test/bench/gateway.js [measured seconds per case, default 8] [rounds, default 3]
 * BENCH_CASES=koa,gateway-info,sync (case ids: koa, koa-rl, gateway-info, gateway-warn, gateway-before, express, koa-h2, koa-rl-h2, koa-rl-sync, kpis, sync, types, list;
 * comma-separated) runs only those cases; bare Koa (A),
 * the baseline of every ratio, always runs. BENCH_GATEWAY_BEFORE=<another checkout, built> adds the case
 * `gateway-before`: the same middleware stack built from that checkout, measured in the same rounds (the
 * issue-24 criterion "same run, before and after").
 * Every case runs in rounds (each case once per round, same order; the real stack is started once, before
 * the first round) and is reported by its median round; the ratios to bare Koa printed at the end are the
 * median of the rounds' ratios: this machine is shared and its speed drifts over minutes.
 */
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const http = require('node:http');
const { fork } = require('node:child_process');
const { cpuSeconds, median } = require('./proc');

const root = path.resolve(__dirname, '..', '..');
const common = () => require(path.join(root, 'libs/common/dist'));

const CONNECTIONS = 20;
const PIPELINING = 1;
const WARMUP_S = 2;
/** Seconds before autocannon gives a request up: store-backed cases take seconds under 20 connections. */
const TIMEOUT_S = 30;
/** The largest rate the gateway accepts (throttle/config.ts: at most 9 999 999 per window). */
const HUGE_RATE = '9999999/hour';
const HUGE_LIMIT = 9_999_999;
const HOUR_MS = 3_600_000;
const SEEDED_PERMITS = 300;
const PROJECT = 'p1';
const AUTH = { PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };

// ---------------------------------------------------------------------------------------------
// Child side: one server per process, told which by `--serve <kind>`; reports its port over IPC.
// ---------------------------------------------------------------------------------------------

const okHandler = (ctx) => {
  ctx.body = { ok: true };
};

/** Child `--canned-grpc`: the canned sync answer of canned-grpc.js, its port sent over IPC. */
async function cannedGrpc() {
  const port = await require('./canned-grpc').startCannedSync();
  process.send({ port });
  process.on('disconnect', () => process.exit(0));
}

/**
 * Bare Koa (with koa-ratelimit's redis driver in front when `throttled`) making one unary call over
 * Node's http2 client — gRPC framing, a pre-encoded empty sync request, no gRPC library — to `target`,
 * or to the canned server (a process of its own) when no target is given.
 */
async function koaH2(env, { throttled, target, token }) {
  const Koa = require('koa');
  const http2 = require('node:http2');
  const { syncPb } = require(path.join(root, 'libs/proto/dist'));
  const close = [];
  let servicePid;
  if (!target) {
    const canned = fork(__filename, ['--canned-grpc'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const port = await new Promise((resolve, reject) => {
      canned.once('message', (m) => resolve(m.port));
      canned.once('exit', (code) => reject(new Error(`canned gRPC server exited with code ${code}`)));
    });
    target = `127.0.0.1:${port}`;
    servicePid = canned.pid;
    close.push(() => canned.kill());
  }
  const session = http2.connect(`http://${target}`);
  close.unshift(() => session.close());
  const frame = require('./canned-grpc').grpcFrame(syncPb.SyncOfflineDataRequest.encode({ device_id: 'bench-device', changes: [] }).finish());
  const headers = {
    ':method': 'POST',
    ':path': '/ptw.sync.v1.SyncService/SyncOfflineData',
    'content-type': 'application/grpc',
    te: 'trailers',
    ...(token ? { authorization: `Bearer ${token}` } : {}),
  };
  const call = () =>
    new Promise((resolve, reject) => {
      const stream = session.request(headers);
      let status;
      stream.on('data', () => undefined);
      stream.on('response', (h) => h['grpc-status'] !== undefined && (status = h['grpc-status']));
      stream.on('trailers', (t) => (status = t['grpc-status']));
      stream.on('error', reject);
      stream.on('close', () => (status === '0' ? resolve() : reject(new Error(`grpc-status ${status}`))));
      stream.end(frame);
    });
  const app = new Koa();
  if (throttled) {
    const ratelimit = require('koa-ratelimit');
    const Redis = require('ioredis');
    const redis = await readyRedis(new Redis(env.REDIS_URL));
    close.push(() => redis.quit());
    app.use(ratelimit({ driver: 'redis', db: redis, duration: HOUR_MS, max: HUGE_LIMIT, namespace: `${env.BENCH_KEY_PREFIX}:koa-rl-h2` }));
  }
  app.use(async (ctx) => {
    await call();
    ctx.body = { ok: true };
  });
  return { listener: app.callback(), close, servicePid: servicePid ?? (env.BENCH_SYNC_PID ? Number(env.BENCH_SYNC_PID) : undefined) };
}

/** Each builder returns the request listener and what to close when told to stop. */
const SERVERS = {
  /**
   * The floor of any proxied request on this machine: bare Koa making one unary call over Node's http2
   * client (gRPC framing, a pre-encoded request) to the canned server in a process of its own — no
   * auth, throttle, log, validation, message conversion or gRPC library on either side.
   */
  async 'koa-h2'(env) {
    return koaH2(env, { throttled: false });
  },

  /** The same floor with koa-ratelimit's redis driver (as B) in front of the call: the throttled floor. */
  async 'koa-rl-h2'(env) {
    return koaH2(env, { throttled: true });
  },

  /**
   * Koa + koa-ratelimit + the same raw HTTP/2 call, to the real sync service of the stack (its address
   * and the bench token in BENCH_SYNC_ADDR / BENCH_TOKEN): what the libraries SPEC names and the service
   * cost without any of the gateway's own code (no auth, body parsing, validation, conversion, logs).
   */
  async 'koa-rl-sync'(env) {
    return koaH2(env, { throttled: true, target: env.BENCH_SYNC_ADDR, token: env.BENCH_TOKEN });
  },

  async koa() {
    const Koa = require('koa');
    const app = new Koa();
    app.use(okHandler);
    return { listener: app.callback(), close: [] };
  },

  async 'koa-ratelimit'(env) {
    const Koa = require('koa');
    const ratelimit = require('koa-ratelimit');
    const Redis = require('ioredis');
    const redis = await readyRedis(new Redis(env.REDIS_URL));
    const app = new Koa();
    app.use(ratelimit({ driver: 'redis', db: redis, duration: HOUR_MS, max: HUGE_LIMIT, namespace: `${env.BENCH_KEY_PREFIX}:koa-ratelimit` }));
    app.use(okHandler);
    return { listener: app.callback(), close: [() => redis.quit()] };
  },

  /**
   * The gateway's middleware stack from this checkout, or from the build of another one when
   * BENCH_GATEWAY_ROOT names it (the `gateway-before` case: same run, before and after).
   */
  async gateway(env) {
    const Koa = require('koa');
    const Redis = require('ioredis');
    const code = env.BENCH_GATEWAY_ROOT || root;
    const { createLogger, closeLogFiles, createTokenVerifier, loadConfig, Metrics, DEV_JWT_SECRET } = require(path.join(code, 'libs/common/dist'));
    const { gatewayConfigSchema } = require(path.join(code, 'gateway/dist/config.js'));
    const { requestMiddleware } = require(path.join(code, 'gateway/dist/middleware/request.js'));
    const { authMiddleware } = require(path.join(code, 'gateway/dist/middleware/auth.js'));
    const { createThrottle, throttleRedisOptions } = require(path.join(code, 'gateway/dist/throttle/index.js'));
    const config = loadConfig(gatewayConfigSchema, {
      PTW_JWT_SECRET: DEV_JWT_SECRET,
      ...AUTH,
      REDIS_URL: env.REDIS_URL,
      LOG_DIR: env.BENCH_LOG_DIR,
      LOG_LEVEL: env.BENCH_LOG_LEVEL,
      PTW_THROTTLE_KPI: HUGE_RATE,
    });
    const log = createLogger('gateway', { dir: config.LOG_DIR, level: config.LOG_LEVEL, stdout: false });
    const metrics = new Metrics('gateway');
    // The gateway's own client options (main.ts: throttleRedisOptions, with its commandTimeout): fail fast, no offline queue, so wait for ready.
    // (A build from before throttleRedisOptions existed: the options its main.ts gave.)
    const options = throttleRedisOptions ? throttleRedisOptions(config) : { maxRetriesPerRequest: 1, enableOfflineQueue: false };
    const redis = await readyRedis(new Redis(config.REDIS_URL, options));
    const throttle = createThrottle({ redis, config, log, metrics, keyPrefix: `${env.BENCH_KEY_PREFIX}:gateway-${env.BENCH_GATEWAY_ROOT ? 'before' : env.BENCH_LOG_LEVEL}` });
    const app = new Koa({ proxy: config.PTW_TRUST_PROXY });
    app.silent = true;
    app.use(requestMiddleware(log, metrics));
    app.use(authMiddleware(createTokenVerifier(config)));
    app.use(throttle.middleware('ptw_kpi'));
    app.use(okHandler);
    return { listener: app.callback(), close: [() => redis.quit(), () => closeLogFiles()] };
  },

  async express(env) {
    const express = require('express');
    const { rateLimit } = require('express-rate-limit');
    const { RedisStore } = require('rate-limit-redis');
    const Redis = require('ioredis');
    const redis = await readyRedis(new Redis(env.REDIS_URL));
    const app = express();
    // Koa sends neither an ETag nor X-Powered-By: compare like with like.
    app.set('etag', false);
    app.disable('x-powered-by');
    app.use(
      rateLimit({
        windowMs: HOUR_MS,
        limit: HUGE_LIMIT,
        standardHeaders: 'draft-7',
        legacyHeaders: false,
        store: new RedisStore({ sendCommand: (command, ...args) => redis.call(command, ...args), prefix: `${env.BENCH_KEY_PREFIX}:express:` }),
      }),
    );
    app.get('/', (_req, res) => res.json({ ok: true }));
    return { listener: app, close: [() => redis.quit()] };
  },
};

function readyRedis(redis) {
  return new Promise((resolve, reject) => {
    redis.once('ready', () => resolve(redis));
    redis.once('error', reject);
  });
}

async function serve(kind) {
  const built = await SERVERS[kind](process.env);
  const server = http.createServer(built.listener);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const stop = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    for (const close of built.close) await close();
    process.exit(0);
  };
  process.on('message', (m) => m === 'stop' && stop());
  process.on('disconnect', () => process.exit(0));
  process.send({ port: server.address().port, servicePid: built.servicePid });
}

// ---------------------------------------------------------------------------------------------
// Parent side: load generator, the real stack, the report.
// ---------------------------------------------------------------------------------------------

const progress = (msg) => process.stderr.write(`[bench gateway] ${msg}\n`);

/** Forks `--serve kind` and resolves with its URL and a stop(). */
function startServer(kind, env) {
  const child = fork(__filename, ['--serve', kind], { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
      if (child.connected) child.send('stop');
      else child.kill('SIGTERM');
      await exited;
      clearTimeout(kill);
    }
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${kind} server did not start within 30 s`));
    }, 30_000);
    child.once('message', (m) => {
      clearTimeout(timer);
      resolve({ url: `http://127.0.0.1:${m.port}`, pid: child.pid, servicePid: m.servicePid, stop });
    });
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${kind} server exited with code ${code} during start-up`));
    });
  });
}

/**
 * Requests before the run: the case must answer 2xx with what it should, else the setup is wrong.
 * Resolves with the median latency (ms) of three requests sent one at a time, i.e. without load.
 */
async function check(name, req, expect) {
  const ms = [];
  for (let i = 0; i < 4; i++) {
    const t0 = process.hrtime.bigint();
    const res = await fetch(req.url, { method: req.method ?? 'GET', headers: req.headers, body: req.body });
    const text = await res.text();
    if (i > 0) ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (!res.ok) throw new Error(`${name}: ${req.method ?? 'GET'} ${req.url} answered ${res.status}: ${text.slice(0, 300)}`);
    const problem = expect?.(res, text);
    if (problem) throw new Error(`${name}: ${problem} (status ${res.status}, body ${text.slice(0, 300)})`);
  }
  return ms.sort((x, y) => x - y)[1];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const totalCpu = (pids) => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);

/**
 * Waits (at most 30 s) until `pids` together use under 10 % of a core. Requests autocannon abandons
 * at the end of a run are not cancelled downstream: on a slow store their backlog would otherwise
 * be served during, and counted against, the next run.
 */
async function settle(pids) {
  let last = totalCpu(pids);
  if (!Number.isFinite(last)) return sleep(5000);
  for (const until = Date.now() + 30_000; Date.now() < until;) {
    await sleep(250);
    const now = totalCpu(pids);
    if (now - last < 0.025) return;
    last = now;
  }
  progress('the stack did not go idle within 30 s; the next run may see leftover work');
}

/**
 * Runs autocannon on `req`. `cpu.server` is the server process whose CPU time is counted, `cpu.redis`
 * the local redis-server's, `cpu.service` (full-stack cases) the service the gateway calls;
 * `settlePids` (store-backed cases) are waited idle after each run.
 */
async function measure(name, req, duration, cpu, settlePids = []) {
  const autocannon = require('autocannon');
  const opts = { url: req.url, method: req.method ?? 'GET', headers: req.headers ?? {}, body: req.body, connections: CONNECTIONS, pipelining: PIPELINING, timeout: TIMEOUT_S };
  progress(`${name}: ${WARMUP_S} s warm-up, ${duration} s measured`);
  await autocannon({ ...opts, duration: WARMUP_S });
  if (settlePids.length) await settle(settlePids);
  const before = { server: cpuSeconds(cpu.server), redis: cpuSeconds(cpu.redis), service: cpuSeconds(cpu.service), self: process.cpuUsage() };
  const r = await autocannon({ ...opts, duration });
  const perResponse = (seconds) => (seconds * 1e6) / r.requests.total;
  const self = process.cpuUsage(before.self);
  const used = {
    server: cpuSeconds(cpu.server) - before.server,
    redis: cpuSeconds(cpu.redis) - before.redis,
    service: cpuSeconds(cpu.service) - before.service,
    self: (self.user + self.system) / 1e6,
  };
  if (settlePids.length) await settle(settlePids);
  return {
    name,
    rps: r.requests.total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    total: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    cpuUsPerResponse: perResponse(used.server),
    redisUsPerResponse: perResponse(used.redis),
    serviceUsPerResponse: perResponse(used.service),
    loadUsPerResponse: perResponse(used.self),
    codes: Object.entries(r.statusCodeStats)
      .map(([code, s]) => `${code}×${s.count}`)
      .join(' '),
  };
}

/** Runs one in-process server case: start it, check it, measure it, stop it. */
async function serverCase(name, kind, env, req, duration, redisPid, expect) {
  const server = await startServer(kind, env);
  try {
    const full = { ...req, url: server.url + (req.path ?? '/') };
    const aloneMs = await check(name, full, expect);
    return { ...(await measure(name, full, duration, { server: server.pid, redis: redisPid, service: server.servicePid })), aloneMs };
  } finally {
    await server.stop();
  }
}

const hasHeader = (header) => (res) => (res.headers.get(header) === null ? `no ${header} header: the limiter did not count this request` : undefined);

function permitDoc(i, now) {
  const statuses = ['draft', 'submitted', 'under_review', 'approved', 'active', 'suspended', 'completed', 'cancelled'];
  const status = statuses[i % statuses.length];
  const created = new Date(now - (i + 1) * 3_600_000);
  const doc = {
    permit_number: `BENCH-${String(i).padStart(6, '0')}`,
    project_id: PROJECT,
    permit_type_id: i % 2 ? 'hot-work' : 'confined-space',
    title: `Bench permit ${i}`,
    description: '',
    location: `Area ${i % 17}`,
    priority: 'medium',
    probability: 1 + (i % 5),
    severity: 1 + (i % 3),
    risk_score: (1 + (i % 5)) * (1 + (i % 3)),
    risk_level: 'medium',
    control_measures: '',
    ppe_requirements: ['helmet', 'gloves'],
    safety_checklist: {},
    planned_start_time: new Date(created.getTime() + 3_600_000),
    planned_end_time: new Date(now + ((i % 48) - 12) * 3_600_000),
    status,
    created_by: `u-${i % 7}`,
    version: 1,
    created_at: created,
    // As the services write it (the default list counts the open days' permits by it): without it the
    // permits of today and yesterday's last hour were missing from the list's count.
    updated_at: created,
  };
  if (status !== 'draft') doc.submitted_at = new Date(created.getTime() + 600_000);
  if (status === 'under_review') doc.verified_at = new Date(created.getTime() + 1_200_000);
  return doc;
}

async function seed(mongoUrl) {
  const { MongoClient } = require('mongodb');
  const client = await MongoClient.connect(mongoUrl);
  try {
    const now = Date.now();
    await client
      .db()
      .collection('permits')
      .insertMany(Array.from({ length: SEEDED_PERMITS }, (_, i) => permitDoc(i, now)));
  } finally {
    await client.close();
  }
}

/** Deletes what this run left in Redis: its own prefix and the bench user's counters of the real gateway. */
async function cleanRedis(redisUrl, keyPrefix, user) {
  const Redis = require('ioredis');
  const redis = new Redis(redisUrl);
  try {
    const keys = [`ptw:throttle:ptw_kpi:user:${user}`, `ptw:throttle:ptw_sync:user:${user}`];
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', `${keyPrefix}:*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
    await redis.del(...keys);
  } finally {
    await redis.quit();
  }
}

/** The pid of redis-server when it runs on this machine (its CPU time is then reported), else undefined. */
async function localRedisPid(redisUrl) {
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(new URL(redisUrl).hostname)) return undefined;
  const Redis = require('ioredis');
  const redis = new Redis(redisUrl);
  try {
    const pid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1]);
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('redis-server') ? pid : undefined;
  } catch {
    return undefined;
  } finally {
    await redis.quit();
  }
}

/** The middle value (the lower of the two middle ones for an even count). */
/** The run whose req/s is the median of `runs`. */
function medianRun(runs) {
  const sorted = [...runs].sort((x, y) => x.rps - y.rps);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '–');

function report(rows, base, duration) {
  const missing = { rps: NaN, cpuUsPerResponse: NaN };
  const [a, b] = [rows.find((r) => r.id === base.a), rows.find((r) => r.id === base.b) ?? missing];
  // No response within the window: every request took longer than it, so only bounds are known.
  const bound = CONNECTIONS / duration;
  console.log('| case | req/s | p50 ms | p99 ms | vs bare Koa | vs Koa+ratelimit |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    if (r.total === 0) {
      const slow = `> ${duration * 1000}`;
      console.log(`| ${r.name} | < ${fmt(bound, 1)} | ${slow} | ${slow} | < ${fmt(bound / a.rps, 4)} | < ${fmt(bound / b.rps, 4)} |`);
    } else {
      console.log(`| ${r.name} | ${fmt(r.rps)} | ${r.p50} | ${r.p99} | ${fmt(r.rps / a.rps, 2)} | ${fmt(r.rps / b.rps, 2)} |`);
    }
  }
  console.log(
    '\nResponses (every case must be 2xx only); latency of a request sent alone (median of three, before the run); CPU time the ' +
      'server process (the gateway process in the full-stack cases, services excluded), the service a full-stack case calls, Redis ' +
      'and the load generator spent per response during the measured run (server CPU is what the other load on a shared machine disturbs least):\n',
  );
  console.log(
    '| case | responses | non-2xx | errors | timeouts | status codes | 1 request alone ms | server CPU µs/response | vs Koa+ratelimit | service CPU µs/response | Redis CPU µs/response | load generator CPU µs/response |',
  );
  console.log('|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.total} | ${r.non2xx} | ${r.errors} | ${r.timeouts} | ${r.codes} | ${fmt(r.aloneMs, 1)} | ${fmt(r.cpuUsPerResponse)} | ${fmt(r.cpuUsPerResponse / b.cpuUsPerResponse, 2)} ` +
        `| ${fmt(r.serviceUsPerResponse)} | ${fmt(r.redisUsPerResponse)} | ${fmt(r.loadUsPerResponse)} |`,
    );
  }
}

async function main() {
  const duration = Number(process.argv[2] || 8);
  const rounds = Number(process.argv[3] || 3);
  if (!(duration > 0) || !Number.isInteger(rounds) || rounds < 1) {
    throw new Error(`usage: node test/bench/gateway.js [measured seconds per case, default 8] [rounds of the in-process cases, default 3]`);
  }
  for (const dist of ['gateway/dist/middleware/request.js', 'libs/devstore/dist/stack.js', 'services/export/dist/main.js']) {
    if (!fs.existsSync(path.join(root, dist))) throw new Error(`${dist} is missing: run \`npx tsc -b\` (or make build) first`);
  }
  const { DEV_JWT_SECRET, mintToken } = common();
  const { ensureRedis } = require(path.join(root, 'libs/devstore/dist'));
  const { startStack } = require(path.join(root, 'libs/devstore/dist/stack.js'));

  const redisUrl = process.env.REDIS_URL || (await ensureRedis());
  const runId = `${process.pid}-${Date.now()}`;
  const keyPrefix = `bench:${runId}`;
  const user = `u-bench-${runId}`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-bench-gateway-'));
  const token = await mintToken({ PTW_JWT_SECRET: DEV_JWT_SECRET, ...AUTH }, { user, role: 'manager', projects: [PROJECT], ttlSeconds: 3600 });
  const bearer = { authorization: `Bearer ${token}` };
  // The request every in-process server case gets (the gateway needs its token and a route): the same
  // bytes for all, so that the load generator's and the HTTP parser's share is alike and the ratios
  // compare the servers alone (the baselines ignore the header).
  const sameRequest = { headers: bearer, path: '/api/v1/ptw/permits/kpis/' };
  const cpus = os.cpus();
  const only = process.env.BENCH_CASES ? new Set(process.env.BENCH_CASES.split(',').map((id) => id.trim())) : undefined;

  console.log('## Gateway throughput\n');
  console.log(`Machine: ${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), ${os.platform()} ${os.release()}, node ${process.version}.`);
  console.log(
    `autocannon: ${CONNECTIONS} connections, pipelining ${PIPELINING}, timeout ${TIMEOUT_S} s, ${WARMUP_S} s warm-up then ${duration} s measured per case ` +
      `(in-process cases: ${rounds} rounds, each case once per round); ` +
      `load generator and servers share this machine's cores, so compare ratios, not absolutes.`,
  );
  console.log(
    `Redis ${redisUrl}; store ${process.env.MONGO_URL ? 'MONGO_URL' : `FerretDB (local, ${process.env.PTW_STORE_BACKEND || 'postgresql'} backend)`}: the store-backed cases measure the whole chain on a development store, ` +
      `so their figures are ratios against the baselines of this run, not production absolutes.`,
  );
  console.log(
    `Throttles: koa-ratelimit (and the gateway's throttle, which uses it) keeps a sliding log (one sorted-set entry per request, Lua script); ` +
      `express-rate-limit + rate-limit-redis keeps a fixed-window counter (INCR script). Limits are ${HUGE_LIMIT}/hour: nothing is refused.\n`,
  );

  const redisPid = await localRedisPid(redisUrl);
  const rows = [];
  const add = (id, r) => rows.push({ id, ...r });
  /** Every round's result of each in-process case, by case id. */
  const perRound = {};
  const childEnv = { REDIS_URL: redisUrl, BENCH_KEY_PREFIX: keyPrefix, BENCH_LOG_DIR: path.join(tmp, 'gateway-stack-logs') };
  let stack;
  try {
    // The in-process cases run in ROUNDS rounds, each case once per round in the same order, so
    // that a slow spell of this shared machine hits every case of a round alike. Each case is
    // reported by its median round (by req/s); the target uses the median of the per-round ratios.
    /** A case of the gateway's middleware stack; `env` says its log level and, for `gateway-before`, its build. */
    const gatewayCase = (id, name, env) => ({ id, name, kind: 'gateway', env: { ...childEnv, ...env }, req: sameRequest, expect: hasHeader('x-ratelimit-remaining') });
    const serverCases = [
      { id: 'koa', name: 'A. bare Koa', kind: 'koa', env: childEnv, req: sameRequest },
      { id: 'koa-rl', name: 'B. Koa + koa-ratelimit (redis)', kind: 'koa-ratelimit', env: childEnv, req: sameRequest, expect: hasHeader('x-ratelimit-remaining') },
      ...['info', 'warn'].map((level) => gatewayCase(`gateway-${level}`, `gateway middleware stack (request+auth+ptw_kpi throttle, LOG_LEVEL=${level})`, { BENCH_LOG_LEVEL: level })),
      ...(process.env.BENCH_GATEWAY_BEFORE
        ? [
            gatewayCase('gateway-before', `the same stack built from ${process.env.BENCH_GATEWAY_BEFORE} (LOG_LEVEL=info)`, {
              BENCH_LOG_LEVEL: 'info',
              BENCH_GATEWAY_ROOT: path.resolve(process.env.BENCH_GATEWAY_BEFORE),
            }),
          ]
        : []),
      { id: 'express', name: 'Express + express-rate-limit + rate-limit-redis', kind: 'express', env: childEnv, req: sameRequest, expect: hasHeader('ratelimit') },
      { id: 'koa-h2', name: 'floor of a proxied request: bare Koa + one raw HTTP/2 unary call to a canned answer', kind: 'koa-h2', env: childEnv, req: {} },
      {
        id: 'koa-rl-h2',
        name: 'floor of a throttled proxied request: Koa + koa-ratelimit (redis) + one raw HTTP/2 unary call to a canned answer',
        kind: 'koa-rl-h2',
        env: childEnv,
        req: {},
      },
    ];
    const selected = (c) => !only || c.id === 'koa' || only.has(c.id);
    // The real stack starts first and runs through every round, so that its cases are measured in the
    // rounds too (against the bare Koa run of the same round) and its idle background is there for all.
    const fullCases = ['kpis', 'sync', 'types', 'list'].filter((id) => selected({ id }));
    let cases = [];
    let stackPids = [];
    const rawSync = selected({ id: 'koa-rl-sync' });
    if (fullCases.length || rawSync) {
      progress('starting the real stack (store, services, gateway)');
      const mongoUrl = process.env.MONGO_URL ? `${process.env.MONGO_URL.replace(/\/[^/]*$/, '')}/ptw_bench_gateway_${Date.now()}` : undefined;
      stack = await startStack({
        ports: 'free',
        logDir: path.join(tmp, 'stack'),
        mongoUrl,
        redisUrl,
        env: { PTW_JWT_SECRET: DEV_JWT_SECRET, PTW_THROTTLE_KPI: HUGE_RATE, PTW_THROTTLE_SYNC: HUGE_RATE, LOG_LEVEL: 'warn' },
      });
      await seed(stack.mongoUrl);
      const api = `${stack.gatewayUrl}/api/v1/ptw`;
      stackPids = [...Object.values(stack.procs).map((p) => p.pid), ...(stack.store ? [stack.store.process.pid] : [])];
      const json = (fn) => (_res, text) => fn(JSON.parse(text));
      cases = [
        {
          id: 'kpis',
          service: 'export',
          name: 'full KPIs: gateway → export → store',
          req: { url: `${api}/permits/kpis/`, headers: bearer },
          expect: json((b) => (b.counts?.total_open > 0 ? undefined : 'no open permit counted: the seed is not seen')),
        },
        {
          id: 'sync',
          service: 'sync',
          name: 'full sync, 0 changes: gateway → sync (ptw_sync throttle)',
          req: {
            url: `${api}/sync-offline-data/`,
            method: 'POST',
            headers: { ...bearer, 'content-type': 'application/json' },
            body: JSON.stringify({ device_id: 'bench-device', changes: [] }),
          },
          expect: json((b) => (b.summary?.total === 0 ? undefined : 'unexpected sync summary')),
        },
        {
          id: 'types',
          name: 'full permit types (a simple proxied GET): gateway → workflow → store',
          service: 'workflow',
          req: { url: `${api}/permit-types/`, headers: bearer },
          expect: json((b) => (Array.isArray(b) ? undefined : 'not a list of permit types')),
        },
        {
          id: 'list',
          service: 'workflow',
          name: 'full permit list, page_size=20: gateway → workflow → store',
          req: { url: `${api}/permits/?page_size=20`, headers: bearer },
          expect: json((b) => (b.count === SEEDED_PERMITS && b.results?.length === 20 ? undefined : `expected ${SEEDED_PERMITS} permits, 20 on the page`)),
        },
      ];
      for (const c of cases.filter(selected)) c.aloneMs = await check(c.name, c.req, c.expect);
      if (rawSync) {
        serverCases.push({
          id: 'koa-rl-sync',
          name: 'Koa + koa-ratelimit (redis) + one raw HTTP/2 call to the real sync service (no gateway code)',
          kind: 'koa-rl-sync',
          env: { ...childEnv, BENCH_SYNC_ADDR: stack.env.PTW_SYNC_ADDR, BENCH_TOKEN: token, BENCH_SYNC_PID: String(stack.procs.sync.pid) },
          // The full sync case's request (Koa leaves its body unread: Node drains it).
          req: { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ device_id: 'bench-device', changes: [] }) },
        });
      }
    }
    for (let round = 1; round <= rounds; round++) {
      progress(`round ${round} of ${rounds}`);
      for (const c of serverCases.filter(selected)) {
        const r = await serverCase(c.name, c.kind, c.env, c.req, duration, redisPid, c.expect);
        (perRound[c.id] ??= []).push(r);
      }
      for (const c of cases.filter(selected)) {
        const r = await measure(c.name, c.req, duration, { server: stack.procs.gateway.pid, redis: redisPid, service: stack.procs[c.service].pid }, stackPids);
        (perRound[c.id] ??= []).push({ ...r, aloneMs: c.aloneMs });
      }
    }
    for (const c of [...serverCases, ...cases].filter(selected)) add(c.id, medianRun(perRound[c.id]));
  } finally {
    progress('stopping');
    if (stack) {
      if (process.env.MONGO_URL) {
        const { MongoClient } = require('mongodb');
        const client = await MongoClient.connect(stack.mongoUrl);
        await client.db().dropDatabase();
        await client.close();
      }
      await stack.stop();
    }
    await cleanRedis(redisUrl, keyPrefix, user);
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  report(rows, { a: 'koa', b: 'koa-rl' }, duration);
  const ids = Object.keys(perRound);
  const names = { koa: 'A', 'koa-rl': 'B', 'gateway-info': 'gateway (info)', 'gateway-warn': 'gateway (warn)', 'gateway-before': 'gateway (before)', express: 'Express' };
  if (perRound['gateway-info'] && perRound['koa-rl']) {
    const ratios = perRound['gateway-info'].map((g, i) => g.rps / perRound['koa-rl'][i].rps);
    console.log(`\nEvery round of the in-process cases (req/s; the tables above show each case's median round):\n`);
    console.log(`| round | ${ids.map((id) => names[id] ?? id).join(' | ')} | gateway (info) / B |`);
    console.log(`|---:|${ids.map(() => '---:|').join('')}---:|`);
    ratios.forEach((ratio, i) => console.log(`| ${i + 1} | ${ids.map((id) => fmt(perRound[id][i].rps)).join(' | ')} | ${fmt(ratio, 2)} |`));
    const ratio = median(ratios);
    const gw = rows.find((r) => r.id === 'gateway-info');
    const b = rows.find((r) => r.id === 'koa-rl');
    console.log(
      `\nTarget "gateway stack ≥ 0.8× Koa + koa-ratelimit alone" (req/s, LOG_LEVEL=info as deployed; median of the ${rounds} rounds' ratios, ` +
        `range ${fmt(Math.min(...ratios), 2)}–${fmt(Math.max(...ratios), 2)}): ${ratio >= 0.8 ? 'MET' : 'NOT MET'} at ${ratio.toFixed(2)}×; ` +
        `server CPU per response (median rounds) ${fmt(gw.cpuUsPerResponse / b.cpuUsPerResponse, 2)}× that of Koa + koa-ratelimit.`,
    );
    if (perRound['gateway-before']) {
      const before = perRound['gateway-before'].map((g, i) => g.rps / perRound['koa-rl'][i].rps);
      const kept = perRound['gateway-info'].map((g, i) => g.rps / perRound['gateway-before'][i].rps);
      const old = rows.find((r) => r.id === 'gateway-before');
      console.log(
        `Before (${process.env.BENCH_GATEWAY_BEFORE}), same rounds: ${fmt(median(before), 2)}× Koa + koa-ratelimit (range ${fmt(Math.min(...before), 2)}–${fmt(Math.max(...before), 2)}), ` +
          `server CPU ${fmt(old.cpuUsPerResponse / b.cpuUsPerResponse, 2)}×; after/before req/s ${fmt(median(kept), 2)}× (median of the rounds' ratios, range ${fmt(Math.min(...kept), 2)}–${fmt(Math.max(...kept), 2)}).`,
      );
    }
  }
  const sync = rows.find((r) => r.id === 'sync');
  const stackRow = rows.find((r) => r.id === 'gateway-info');
  const roundRatios = (id) => perRound[id].map((r, i) => r.rps / perRound.koa[i].rps);
  const ratioText = (id) => {
    const ratios = roundRatios(id);
    return `${fmt(median(ratios), 3)}× bare Koa (req/s; median of the ${ratios.length} rounds' ratios, range ${fmt(Math.min(...ratios), 3)}–${fmt(Math.max(...ratios), 3)})`;
  };
  if (sync && sync.total > 0) {
    console.log(
      `\nFull sync (0 changes), the gRPC hop: ${ratioText('sync')}; gateway CPU ${fmt(sync.cpuUsPerResponse)} µs per response, sync service ${fmt(sync.serviceUsPerResponse)} µs` +
        (stackRow ? ` (the middleware stack alone: ${fmt(stackRow.cpuUsPerResponse)} µs; the hop adds ${fmt(sync.cpuUsPerResponse - stackRow.cpuUsPerResponse)} µs).` : '.'),
    );
  }
  const floor = rows.find((r) => r.id === 'koa-h2');
  if (floor) {
    const koa = rows.find((r) => r.id === 'koa');
    console.log(
      `\nFloor of a proxied request (bare Koa + one raw HTTP/2 unary call, canned answer): ${ratioText('koa-h2')}; ` +
        `Koa CPU ${fmt(floor.cpuUsPerResponse)} µs per response (bare Koa ${fmt(koa.cpuUsPerResponse)} µs), the canned server ${fmt(floor.serviceUsPerResponse)} µs.`,
    );
  }
  const throttledFloor = rows.find((r) => r.id === 'koa-rl-h2');
  if (throttledFloor) {
    console.log(
      `\nFloor of a throttled proxied request (Koa + koa-ratelimit's redis driver + the same raw call, canned answer): ${ratioText('koa-rl-h2')}; ` +
        `Koa CPU ${fmt(throttledFloor.cpuUsPerResponse)} µs per response, Redis ${fmt(throttledFloor.redisUsPerResponse)} µs, the canned server ${fmt(throttledFloor.serviceUsPerResponse)} µs.`,
    );
  }
  const rawSync = rows.find((r) => r.id === 'koa-rl-sync');
  if (rawSync) {
    console.log(
      `\nThe libraries alone in front of the real sync service (Koa + koa-ratelimit + the raw call, no gateway code): ${ratioText('koa-rl-sync')}; ` +
        `Koa CPU ${fmt(rawSync.cpuUsPerResponse)} µs per response, sync service ${fmt(rawSync.serviceUsPerResponse)} µs, Redis ${fmt(rawSync.redisUsPerResponse)} µs.`,
    );
    if (sync && sync.total > 0) {
      const kept = perRound.sync.map((r, i) => r.rps / perRound['koa-rl-sync'][i].rps);
      console.log(
        `The gateway's own code (auth, body, validation, request ids, metrics, the kit's client and conversions) keeps ${fmt(median(kept), 2)}× of that throughput ` +
          `(median of the rounds, range ${fmt(Math.min(...kept), 2)}–${fmt(Math.max(...kept), 2)}); gateway CPU ${fmt(sync.cpuUsPerResponse)} vs ${fmt(rawSync.cpuUsPerResponse)} µs per response.`,
      );
    }
  }
  for (const r of rows.filter((x) => x.total === 0)) {
    console.log(
      `\n${r.name}: no response completed within the ${duration} s window (each answered 2xx before the run, ${fmt(r.aloneMs)} ms alone; ` +
        `${CONNECTIONS} at once queue in the store), so only bounds are shown; a longer window (first argument) measures it.`,
    );
  }
  const bad = [...rows, ...Object.values(perRound).flat()].filter((r) => r.non2xx || r.errors || r.timeouts);
  if (bad.length) {
    console.log(`\nINVALID RUN: ${[...new Set(bad.map((r) => r.name))].join('; ')} answered non-2xx or failed: these figures do not measure what they claim.`);
    process.exitCode = 1;
  }
}

if (process.argv[2] === '--canned-grpc') {
  cannedGrpc().catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else if (process.argv[2] === '--serve') {
  serve(process.argv[3]).catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
