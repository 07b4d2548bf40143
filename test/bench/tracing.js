#!/usr/bin/env node
/**
 * What OpenTelemetry tracing costs the gateway: req/s, latency p50/p99 and server CPU per response
 * (autocannon, same settings for every case) of
 *   - Koa + koa-ratelimit's redis driver alone (the baseline B of test/bench/gateway.js);
 *   - the gateway's middleware stack (trace context, request id + access log, JWT auth, the ptw_kpi
 *     throttle, bunyan to a file; as in gateway.js) with tracing not installed (OTEL_SDK_DISABLED=true);
 *   - the same with tracing installed and no OTLP endpoint (the default: trace context and log ids only);
 *   - the same exporting every span (OTEL_TRACES_SAMPLER=always_on) over OTLP/HTTP (protobuf, the
 *     default) to a local sink (a process of its own that counts the spans it receives; a request makes
 *     2 spans here, the HTTP server span and the throttle's Redis command: fewer exported per response
 *     means the exporter's queue, OTEL_BSP_MAX_QUEUE_SIZE, overflowed and spans were dropped);
 *   - B itself with the same tracing start and server span, every span exported: the least any stack traced
 *     this way can cost (the SDK, its context and the exporter, nothing of the gateway);
 *   - for comparison: every span exported as OTLP JSON (OTEL_EXPORTER_OTLP_PROTOCOL=http/json), and
 *     10 % of the traces sampled (parentbased_traceidratio 0.1, protobuf).
 * The sink's CPU per exported span is reported too: on this machine it competes with the gateway and
 * the load generator for the same cores, where a collector would run elsewhere.
 * Each server runs in a child process of its own; the cases run in rounds (each case once per round)
 * and are reported by their median round. Every response must be 2xx (exit 1 otherwise).
 * BENCH_CASES=off,export,… (case ids: off, noep, export, B-export, json, ratio) runs only those, with B.
 * Run after `npx tsc -b`:  node test/bench/tracing.js [measured seconds per case, default 6] [rounds, default 3]
 */
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const http = require('node:http');
const { fork } = require('node:child_process');
const { cpuSeconds, median } = require('./proc');

const root = path.resolve(__dirname, '..', '..');
const CONNECTIONS = 20;
const WARMUP_S = 2;
const HUGE_RATE = '9999999/hour';
const HUGE_LIMIT = 9_999_999;
const HOUR_MS = 3_600_000;
const AUTH = { PTW_JWT_ISSUER: 'ptw-dev', PTW_JWT_AUDIENCE: 'ptw-api' };

// ---------------------------------------------------------------------------------------------
// Child side: `--serve <kind>` (a server) or `--sink` (the OTLP receiver); the port goes over IPC.
// ---------------------------------------------------------------------------------------------

const okHandler = (ctx) => {
  ctx.body = { ok: true };
};

function readyRedis(redis) {
  return new Promise((resolve, reject) => {
    redis.once('ready', () => resolve(redis));
    redis.once('error', reject);
  });
}

const SERVERS = {
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
   * B with every span exported: the same tracing start and server span as the gateway (startTracing,
   * incomingTraceContext), in front of koa-ratelimit alone. The least any stack traced this way can cost.
   */
  async 'koa-ratelimit-traced'(env) {
    const tracing = require(path.join(root, 'libs/common/dist/tracing-sdk.js')).startTracing('koa-ratelimit-bench', env);
    const Koa = require('koa');
    const ratelimit = require('koa-ratelimit');
    const Redis = require('ioredis');
    const { incomingTraceContext } = require(path.join(root, 'libs/common/dist'));
    const redis = await readyRedis(new Redis(env.REDIS_URL));
    const app = new Koa();
    app.use(incomingTraceContext());
    app.use(ratelimit({ driver: 'redis', db: redis, duration: HOUR_MS, max: HUGE_LIMIT, namespace: `${env.BENCH_KEY_PREFIX}:koa-ratelimit-traced` }));
    app.use(okHandler);
    return { listener: app.callback(), close: [() => redis.quit(), () => tracing?.shutdown()] };
  },

  async gateway(env) {
    // Tracing first, as the gateway's main.js does: the instrumentations patch what loads after it.
    const tracing = require(path.join(root, 'libs/common/dist/tracing-sdk.js')).startTracing('gateway-bench', env);
    const Koa = require('koa');
    const Redis = require('ioredis');
    const { createLogger, closeLogFiles, createTokenVerifier, incomingTraceContext, loadConfig, Metrics, DEV_JWT_SECRET } = require(path.join(root, 'libs/common/dist'));
    const { gatewayConfigSchema } = require(path.join(root, 'gateway/dist/config.js'));
    const { requestMiddleware } = require(path.join(root, 'gateway/dist/middleware/request.js'));
    const { authMiddleware } = require(path.join(root, 'gateway/dist/middleware/auth.js'));
    const { createThrottle, throttleRedisOptions } = require(path.join(root, 'gateway/dist/throttle/index.js'));
    const config = loadConfig(gatewayConfigSchema, {
      PTW_JWT_SECRET: DEV_JWT_SECRET,
      ...AUTH,
      REDIS_URL: env.REDIS_URL,
      LOG_DIR: env.BENCH_LOG_DIR,
      LOG_LEVEL: 'info',
      PTW_THROTTLE_KPI: HUGE_RATE,
    });
    const log = createLogger('gateway', { dir: config.LOG_DIR, level: config.LOG_LEVEL, stdout: false });
    const metrics = new Metrics('gateway');
    const redis = await readyRedis(new Redis(config.REDIS_URL, throttleRedisOptions(config)));
    const throttle = createThrottle({ redis, config, log, metrics, keyPrefix: `${env.BENCH_KEY_PREFIX}:gateway` });
    const app = new Koa({ proxy: config.PTW_TRUST_PROXY });
    app.silent = true;
    app.use(incomingTraceContext());
    app.use(requestMiddleware(log, metrics));
    app.use(authMiddleware(createTokenVerifier(config)));
    app.use(throttle.middleware('ptw_kpi'));
    app.use(okHandler);
    return { listener: app.callback(), close: [() => redis.quit(), () => tracing?.shutdown(), () => closeLogFiles()] };
  },
};

async function serve(kind) {
  const built = await SERVERS[kind](process.env);
  const server = http.createServer(built.listener);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.on('message', async (m) => {
    if (m !== 'stop') return;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    for (const close of built.close) await close();
    process.exit(0);
  });
  process.on('disconnect', () => process.exit(0));
  process.send({ port: server.address().port });
}

/** Reads a protobuf varint at `pos`: [value, next position]. */
function varint(buf, pos) {
  let value = 0;
  for (let shift = 0; ; shift += 7) {
    const byte = buf[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, pos];
  }
}

/**
 * Calls `onField(fieldNumber, start, end)` for each length-delimited field of the protobuf message in
 * buf[start, end) and skips every other field without decoding it.
 */
function eachLengthDelimited(buf, start, end, onField) {
  for (let pos = start; pos < end;) {
    let tag;
    [tag, pos] = varint(buf, pos);
    const wire = tag & 7;
    if (wire === 0) [, pos] = varint(buf, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let len;
      [len, pos] = varint(buf, pos);
      onField(tag >>> 3, pos, pos + len);
      pos += len;
    } else throw new Error(`unexpected protobuf wire type ${wire}`);
  }
}

/**
 * Spans in one OTLP export request, counted exactly without decoding them: protobuf
 * (ExportTraceServiceRequest.resource_spans = 1 → ResourceSpans.scope_spans = 2 → ScopeSpans.spans = 2:
 * only tags and lengths are read), or JSON (occurrences of `"spanId":`, a key only a span or a link
 * has; the bench's spans have no links).
 */
function countSpans(body, contentType) {
  let spans = 0;
  if (contentType.includes('protobuf')) {
    eachLengthDelimited(body, 0, body.length, (f1, s1, e1) => {
      if (f1 === 1)
        eachLengthDelimited(body, s1, e1, (f2, s2, e2) => {
          if (f2 === 2) eachLengthDelimited(body, s2, e2, (f3) => f3 === 2 && spans++);
        });
    });
    return spans;
  }
  for (let at = body.indexOf('"spanId":'); at >= 0; at = body.indexOf('"spanId":', at + 9)) spans++;
  return spans;
}

/**
 * OTLP/HTTP receiver that counts spans and answers as a collector does. It costs the machine about what
 * a collector elsewhere would cost the gateway — nothing but the bytes on the wire — as far as a process
 * on the same 2 cores can: no decoding beyond what counting needs (its CPU per span is reported).
 */
async function sink() {
  let spans = 0;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      spans += countSpans(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks), String(req.headers['content-type']));
      // An empty ExportTraceServiceResponse: a zero-length protobuf message, `{}` in JSON.
      if (String(req.headers['content-type']).includes('protobuf')) res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.on('message', (m) => m === 'count' && process.send({ spans }));
  process.on('disconnect', () => process.exit(0));
  process.send({ port: server.address().port });
}

// ---------------------------------------------------------------------------------------------
// Parent side.
// ---------------------------------------------------------------------------------------------

const progress = (msg) => process.stderr.write(`[bench tracing] ${msg}\n`);

/** Forks this file with `args`; resolves with its first IPC message, the child and a stop(). */
function startChild(args, env) {
  const child = fork(__filename, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
    if (child.connected) child.send('stop');
    else child.kill('SIGTERM');
    if (args[0] === '--sink') child.kill('SIGTERM');
    await exited;
    clearTimeout(kill);
  };
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve({ ...m, child, stop }));
    exited.then((code) => reject(new Error(`${args.join(' ')} exited with code ${code} during start-up`)));
  });
}

function sinkCount(sinkProc) {
  return new Promise((resolve) => {
    sinkProc.child.once('message', (m) => resolve(m.spans));
    sinkProc.child.send('count');
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The sink's count once it has not changed for 1.5 s (the exporter's delay is 500 ms here), at most 15 s. */
async function settledCount(sinkProc) {
  let last = await sinkCount(sinkProc);
  for (let stable = 0, until = Date.now() + 15_000; stable < 3 && Date.now() < until;) {
    await sleep(500);
    const now = await sinkCount(sinkProc);
    stable = now === last ? stable + 1 : 0;
    last = now;
  }
  return last;
}

async function measure(name, url, headers, duration, pid, sinkProc) {
  const autocannon = require('autocannon');
  const opts = { url, headers, connections: CONNECTIONS, timeout: 30 };
  for (let i = 0; i < 3; i++) {
    const res = await fetch(url, { headers });
    if (!res.ok) throw new Error(`${name}: ${url} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
    await res.arrayBuffer();
  }
  progress(`${name}: ${WARMUP_S} s warm-up, ${duration} s measured`);
  await autocannon({ ...opts, duration: WARMUP_S });
  // The spans of the warm-up reach the sink before the measured run starts.
  const spansBefore = sinkProc ? await settledCount(sinkProc) : 0;
  const cpuBefore = cpuSeconds(pid);
  const sinkCpuBefore = sinkProc ? cpuSeconds(sinkProc.child.pid) : 0;
  const r = await autocannon({ ...opts, duration });
  const cpu = cpuSeconds(pid) - cpuBefore;
  const spans = sinkProc ? (await settledCount(sinkProc)) - spansBefore : undefined;
  // Read once the count settled: the sink has received (and counted) every span of the run.
  const sinkCpu = sinkProc ? cpuSeconds(sinkProc.child.pid) - sinkCpuBefore : undefined;
  return {
    name,
    rps: r.requests.total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    total: r.requests.total,
    bad: r.non2xx + r.errors + r.timeouts,
    cpuUs: (cpu * 1e6) / r.requests.total,
    spansPerResponse: spans === undefined ? undefined : spans / r.requests.total,
    sinkUsPerSpan: spans ? (sinkCpu * 1e6) / spans : undefined,
  };
}

const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '–');

async function main() {
  const duration = Number(process.argv[2] || 6);
  const rounds = Number(process.argv[3] || 3);
  if (!(duration > 0) || !Number.isInteger(rounds) || rounds < 1) throw new Error('usage: node test/bench/tracing.js [seconds per case] [rounds]');
  for (const dist of ['libs/common/dist/tracing-sdk.js', 'gateway/dist/middleware/request.js']) {
    if (!fs.existsSync(path.join(root, dist))) throw new Error(`${dist} is missing: run \`npx tsc -b\` first`);
  }
  const { DEV_JWT_SECRET, mintToken } = require(path.join(root, 'libs/common/dist'));
  const { ensureRedis } = require(path.join(root, 'libs/devstore/dist'));
  const redisUrl = process.env.REDIS_URL || (await ensureRedis());
  const runId = `${process.pid}-${Date.now()}`;
  const keyPrefix = `bench:${runId}`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ptw-bench-tracing-'));
  const token = await mintToken({ PTW_JWT_SECRET: DEV_JWT_SECRET, ...AUTH }, { user: `u-bench-${runId}`, role: 'manager', projects: ['p1'], ttlSeconds: 3600 });
  const headers = { authorization: `Bearer ${token}` };
  const sinkProc = await startChild(['--sink'], {});
  const base = {
    REDIS_URL: redisUrl,
    BENCH_KEY_PREFIX: keyPrefix,
    BENCH_LOG_DIR: path.join(tmp, 'logs'),
    OTEL_EXPORTER_OTLP_ENDPOINT: '',
    OTEL_EXPORTER_OTLP_PROTOCOL: '',
    OTEL_SDK_DISABLED: '',
  };
  // A batch leaves at 512 spans anyway under load; the short delay only makes the tail arrive sooner for counting.
  const exportEnv = { ...base, OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sinkProc.port}`, OTEL_TRACES_SAMPLER: 'always_on', OTEL_BSP_SCHEDULE_DELAY: '500' };
  const cases = [
    { id: 'B', name: 'B. Koa + koa-ratelimit (redis)', kind: 'koa-ratelimit', env: base, path: '/' },
    { id: 'off', name: 'gateway stack, tracing not installed (OTEL_SDK_DISABLED=true)', kind: 'gateway', env: { ...base, OTEL_SDK_DISABLED: 'true' } },
    { id: 'noep', name: 'gateway stack, tracing installed, no endpoint (default)', kind: 'gateway', env: base },
    {
      id: 'export',
      name: 'gateway stack, every span exported (always_on, OTLP/HTTP protobuf to a local sink)',
      kind: 'gateway',
      env: exportEnv,
      sink: true,
    },
    {
      id: 'B-export',
      name: 'B with every span exported (the same tracing start and server span, koa-ratelimit alone behind it)',
      kind: 'koa-ratelimit-traced',
      env: exportEnv,
      path: '/',
      sink: true,
    },
    {
      id: 'json',
      name: 'the same as OTLP JSON (OTEL_EXPORTER_OTLP_PROTOCOL=http/json), for comparison',
      kind: 'gateway',
      env: { ...exportEnv, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' },
      sink: true,
    },
    {
      id: 'ratio',
      name: '10 % of the traces exported (parentbased_traceidratio 0.1), for comparison',
      kind: 'gateway',
      env: { ...exportEnv, OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' },
      sink: true,
    },
  ];
  // BENCH_CASES=off,export (ids of the cases above) runs only those, and B.
  const only = process.env.BENCH_CASES ? new Set(process.env.BENCH_CASES.split(',').map((id) => id.trim())) : undefined;
  if (only) cases.splice(0, cases.length, ...cases.filter((c) => c.id === 'B' || only.has(c.id)));
  const perRound = {};
  try {
    for (let round = 1; round <= rounds; round++) {
      progress(`round ${round} of ${rounds}`);
      for (const c of cases) {
        const server = await startChild(['--serve', c.kind], c.env);
        try {
          const url = `http://127.0.0.1:${server.port}${c.path ?? '/api/v1/ptw/permits/kpis/'}`;
          (perRound[c.id] ??= []).push(await measure(c.name, url, headers, duration, server.child.pid, c.sink ? sinkProc : undefined));
        } finally {
          await server.stop();
        }
      }
    }
  } finally {
    await sinkProc.stop();
    const Redis = require('ioredis');
    const redis = new Redis(redisUrl);
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${keyPrefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
    await redis.quit();
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  const cpus = os.cpus();
  console.log('## Tracing cost (gateway middleware stack)\n');
  console.log(
    `Machine: ${cpus.length} cores, node ${process.version}; autocannon ${CONNECTIONS} connections, ${WARMUP_S} s warm-up + ${duration} s per case, ` +
      `${rounds} rounds (each case once per round), each case shown by its median round; ratios are the median of the per-round ratios to B.\n`,
  );
  console.log('| case | req/s | p50 ms | p99 ms | vs Koa+ratelimit (req/s) | server CPU µs/response | spans exported/response | sink CPU µs/span |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  const ratio = (id) => median(perRound[id].map((r, i) => r.rps / perRound.B[i].rps));
  for (const c of cases) {
    const runs = perRound[c.id];
    const m = [...runs].sort((x, y) => x.rps - y.rps)[Math.floor((runs.length - 1) / 2)];
    const sinkUs = c.sink ? median(runs.map((r) => r.sinkUsPerSpan ?? NaN)) : NaN;
    console.log(
      `| ${c.name} | ${fmt(m.rps)} | ${m.p50} | ${m.p99} | ${fmt(ratio(c.id), 2)} | ${fmt(median(runs.map((r) => r.cpuUs)))} | ${m.spansPerResponse === undefined ? '–' : fmt(m.spansPerResponse, 2)} | ${fmt(sinkUs, 1)} |`,
    );
  }
  console.log('\nEvery round (req/s):\n');
  console.log(`| round | ${cases.map((c) => c.id).join(' | ')} |`);
  console.log(`|---:|${cases.map(() => '---:|').join('')}`);
  for (let i = 0; i < rounds; i++) console.log(`| ${i + 1} | ${cases.map((c) => fmt(perRound[c.id][i].rps)).join(' | ')} |`);
  const r = (id) => (perRound[id] ? `${ratio(id).toFixed(2)}×` : 'not run');
  if (perRound.export) {
    console.log(`\nTarget "tracing on, 100 % sampling ≥ 0.7× Koa + koa-ratelimit": ${ratio('export') >= 0.7 ? 'MET' : 'NOT MET'} at ${r('export')}.`);
  }
  console.log(
    `No endpoint: ${r('noep')} (tracing not installed: ${r('off')}). For comparison: B itself with every span exported ${r('B-export')}, ` +
      `OTLP JSON ${r('json')}, 10 % sampled ${r('ratio')}.`,
  );
  const bad = Object.values(perRound)
    .flat()
    .filter((r) => r.bad);
  if (bad.length) {
    console.log(`\nINVALID RUN: ${[...new Set(bad.map((r) => r.name))].join('; ')} answered non-2xx or failed.`);
    process.exitCode = 1;
  }
}

const fail = (err) => {
  console.error(err);
  process.exit(1);
};
if (process.argv[2] === '--serve') serve(process.argv[3]).catch(fail);
else if (process.argv[2] === '--sink') sink().catch(fail);
else main().catch(fail);
