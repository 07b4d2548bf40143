/**
 * The gateway's throttling module against real Redis: a real Koa app with the real error mapping
 * and the throttle middleware on trivial routes (a stand-in auth sets the caller from
 * `x-test-user`; the whole-gateway wiring is tested with the routes). Covers the 429 contract, key
 * independence, exactness across two gateway processes sharing one Redis, Redis outages (refused,
 * hung) per failure mode, and recovery without restart.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import Redis from 'ioredis';
import { loadConfig } from '@ptw/common';
import { throttleConfigSchema, throttleRedisOptions, type ThrottleScope } from '../../gateway/src/throttle';
import { SLIDING_WINDOW_LUA } from '../../gateway/src/throttle/script';
import { errorOf, seriesValue, startThrottleApp, type ThrottleApp } from '../../gateway/src/throttle/testing';

jest.setTimeout(60_000);

const ROOT = path.resolve(__dirname, '../..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Unique per run, so runs sharing one Redis never see each other's counters. */
const ROUNDS = Number(process.env.THROTTLE_ROUNDS ?? 10);
const PREFIX = `ptw:test:throttle:${process.pid}:${Date.now().toString(36)}`;
/** The gateway's own client options (gateway/src/main.ts), with the deadline a gateway's config would give. */
const clientOptions = (timeoutMs: number) => throttleRedisOptions({ PTW_THROTTLE_REDIS_TIMEOUT_MS: timeoutMs });

type TestGateway = ThrottleApp;

const cleanups: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function client(url: string, timeoutMs = 1000): Redis {
  // A short disconnectTimeout: a client whose socket never opened would otherwise hold jest for 2 s.
  const r = new Redis(url, { ...clientOptions(timeoutMs), disconnectTimeout: 100 });
  r.on('error', () => undefined);
  cleanups.push(() => r.disconnect());
  return r;
}

async function ready(r: Redis): Promise<void> {
  if (r.status !== 'ready') await new Promise((resolve) => r.once('ready', resolve));
}

/** One gateway-like app: request mapping, stand-in auth, the throttle on `/<scope>` routes and the status. */
async function startGateway(redis: Redis, env: Record<string, string>): Promise<TestGateway> {
  const gw = await startThrottleApp({
    redis,
    config: loadConfig(throttleConfigSchema, env),
    keyPrefix: PREFIX,
    routes: (throttle) => {
      const scoped = Object.fromEntries((['ptw_sync', 'ptw_kpi', 'ptw_bulk_export'] as ThrottleScope[]).map((s) => [`/${s}`, throttle.middleware(s)]));
      return async (ctx, next) => {
        if (ctx.path === '/status') {
          ctx.body = await throttle.status(String(ctx.query.user ?? ''));
          return;
        }
        const mw = scoped[ctx.path];
        if (!mw) return next();
        await mw(ctx, async () => {
          ctx.body = { ok: true };
        });
      };
    },
  });
  cleanups.push(() => gw.close());
  return gw;
}

const call = (gw: TestGateway, scope: string, user?: string) => fetch(`${gw.url}/${scope}`, { headers: user ? { 'x-test-user': user } : {} });

async function statuses(gw: TestGateway, scope: string, user: string | undefined, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await call(gw, scope, user);
    await res.arrayBuffer();
    out.push(res.status);
  }
  return out;
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last = await fn();
  while (!ok(last) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    last = await fn();
  }
  return last;
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** A throw-away redis-server the test may stop, pause and restart. */
class LocalRedis {
  private proc?: ChildProcess;
  constructor(readonly port: number) {
    cleanups.push(() => this.stop());
  }
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined);
    const up = await until(
      async () => {
        try {
          if (probe.status !== 'ready') await probe.connect();
          return (await probe.ping()) === 'PONG';
        } catch {
          return false;
        }
      },
      Boolean,
      5000,
    );
    probe.disconnect();
    if (!up) throw new Error(`redis-server did not start on ${this.port}`);
  }
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill('SIGCONT');
    const exited = new Promise((resolve) => p.once('exit', resolve));
    p.kill('SIGKILL');
    await exited;
  }
  pause() {
    this.proc?.kill('SIGSTOP');
  }
  resume() {
    this.proc?.kill('SIGCONT');
  }
}

let shared: Redis;

beforeAll(async () => {
  shared = client(REDIS_URL);
  await ready(shared);
  cleanups.push(async () => {
    const keys = await shared.keys(`${PREFIX}:*`);
    if (keys.length) await shared.del(...keys);
  });
});

describe('throttling against real Redis', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway(shared, { PTW_THROTTLE_SYNC: '2/min', PTW_THROTTLE_KPI: '5/min' });
  });

  it('when a user sends three requests at 2/min, then 200, 200, 429 with the limit headers, Retry-After ≥ 1 and the JSON error', async () => {
    const started = Math.floor(Date.now() / 1000);
    const first = await call(gw, 'ptw_sync', 'alice');
    const second = await call(gw, 'ptw_sync', 'alice');
    const third = await call(gw, 'ptw_sync', 'alice');
    expect([first.status, second.status, third.status]).toEqual([200, 200, 429]);
    for (const [res, remaining] of [
      [first, '1'],
      [second, '0'],
      [third, '0'],
    ] as const) {
      expect(res.headers.get('x-ratelimit-limit')).toBe('2');
      expect(res.headers.get('x-ratelimit-remaining')).toBe(remaining);
      const reset = Number(res.headers.get('x-ratelimit-reset'));
      expect(reset).toBeGreaterThanOrEqual(started + 59);
      expect(reset).toBeLessThanOrEqual(started + 62);
    }
    const retryAfter = Number(third.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(await third.json()).toEqual({
      error: {
        code: 'throttled',
        message: `Request was throttled. Expected available in ${retryAfter} seconds.`,
        details: { scope: 'ptw_sync', retry_after: retryAfter },
      },
    });
    expect(await seriesValue(gw.metrics, 'ptw_throttle_decisions_total', { scope: 'ptw_sync', decision: 'throttled' })).toBe(1);
  });

  it('when one user is throttled, then another user, another scope and an anonymous caller are not', async () => {
    expect(await statuses(gw, 'ptw_sync', 'bob', 3)).toEqual([200, 200, 429]);
    expect(await statuses(gw, 'ptw_sync', 'carol', 1)).toEqual([200]);
    expect(await statuses(gw, 'ptw_kpi', 'bob', 1)).toEqual([200]);
    expect(await statuses(gw, 'ptw_sync', undefined, 3)).toEqual([200, 200, 429]);
  });

  it('when the status is read, then it reports the usage of each scope and counts nothing', async () => {
    expect(await statuses(gw, 'ptw_sync', 'dave', 3)).toEqual([200, 200, 429]);
    expect(await statuses(gw, 'ptw_kpi', 'dave', 1)).toEqual([200]);
    const read = async () => (await fetch(`${gw.url}/status?user=dave`)).json() as Promise<Record<string, unknown>[]>;
    const before = await read();
    expect(await read()).toEqual(before);
    const byScope = Object.fromEntries(before.map((s) => [s.scope, s]));
    // The refused third request was not counted.
    expect(byScope.ptw_sync).toMatchObject({ limit: 2, window_seconds: 60, used: 2, remaining: 0 });
    expect(byScope.ptw_kpi).toMatchObject({ limit: 5, window_seconds: 60, used: 1, remaining: 4 });
    expect(byScope.ptw_bulk_export).toEqual({ scope: 'ptw_bulk_export', limit: 5, window_seconds: 3600, used: 0, remaining: 5, reset_at: null });
    expect(byScope.ptw_notifications).toMatchObject({ limit: 120, used: 0, remaining: 120, reset_at: null });
    const resetIn = Date.parse(byScope.ptw_sync.reset_at as string) - Date.now();
    expect(resetIn).toBeGreaterThan(50_000);
    expect(resetIn).toBeLessThanOrEqual(60_000);
    // Reading did not consume: the kpi scope still admits its remaining four, then refuses.
    expect(await statuses(gw, 'ptw_kpi', 'dave', 5)).toEqual([200, 200, 200, 200, 429]);
  });
});

/** A gateway replica in its own process (built code: run after `npx tsc -b`), printing its port. */
function startReplica(env: Record<string, string>): Promise<{ url: string; proc: ChildProcess }> {
  const script = `
    const Koa = require('koa');
    const Redis = require('ioredis');
    const { createLogger, loadConfig, Metrics } = require('@ptw/common');
    const { createThrottle, throttleConfigSchema, throttleRedisOptions } = require('./gateway/dist/throttle');
    const { requestMiddleware } = require('./gateway/dist/middleware/request');
    const config = loadConfig(throttleConfigSchema, process.env);
    const redis = new Redis(process.env.REDIS_URL, throttleRedisOptions(config));
    redis.on('error', () => undefined);
    const log = createLogger('gateway', { stdout: false });
    const metrics = new Metrics('gateway');
    const throttle = createThrottle({ redis, config, log, metrics, keyPrefix: process.env.TEST_PREFIX });
    const app = new Koa();
    app.use(requestMiddleware(log, metrics));
    app.use(async (ctx, next) => {
      ctx.state.principal = { user_id: ctx.get('x-test-user'), role: 'worker', project_ids: [] };
      await next();
    });
    app.use(throttle.middleware('ptw_sync'));
    app.use((ctx) => { ctx.body = { ok: true }; });
    redis.once('ready', () => {
      const server = app.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
    });
    process.stdin.on('end', () => process.exit(0));
    process.stdin.resume();
  `;
  if (!fs.existsSync(path.join(ROOT, 'gateway/dist/throttle/index.js'))) throw new Error('gateway is not built: run npx tsc -b');
  const proc = spawn(process.execPath, ['-e', script], { cwd: ROOT, env: { ...process.env, ...env, NODE_ENV: 'test' }, stdio: ['pipe', 'pipe', 'inherit'] });
  cleanups.push(async () => {
    if (proc.exitCode === null) {
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.stdin.end();
      await exited;
    }
    proc.stdout.destroy();
  });
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`replica exited with ${code}`)));
    proc.stdout.once('data', (chunk) => resolve({ url: `http://127.0.0.1:${String(chunk).trim()}`, proc }));
  });
}

describe('exactness across replicas', () => {
  it("when two replicas send the same timestamp, then the fixed script counts both where the driver's own counts one", async () => {
    const stock = (require('koa-ratelimit/limiter/redis') as { defineCommand: { ratelimiter: { numberOfKeys: number; lua: string } } }).defineCommand.ratelimiter;
    const r = client(REDIS_URL);
    await ready(r);
    r.defineCommand('stockWindow', stock);
    r.defineCommand('fixedWindow', { numberOfKeys: 1, lua: SLIDING_WINDOW_LUA });
    const run = r as unknown as Record<'stockWindow' | 'fixedWindow', (...a: unknown[]) => Promise<number[]>>;
    const now = Date.now() + 0.25;
    const replies: Record<string, number[][]> = {};
    for (const cmd of ['stockWindow', 'fixedWindow'] as const) {
      const key = `${PREFIX}:collision:${cmd}`;
      replies[cmd] = [await run[cmd](key, now, 60_000, 5, '0'), await run[cmd](key, now, 60_000, 5, '0'), [await r.zcard(key)]];
    }
    // Both requests are admitted (5 then 4 remaining) either way; only the fixed script counts two.
    expect(replies.stockWindow.map((x) => x[0])).toEqual([5, 4, 1]);
    expect(replies.fixedWindow.map((x) => x[0])).toEqual([5, 4, 2]);
  });

  it(`when two gateway processes share one Redis and one user sends 200 concurrent requests at 60/min, then exactly 60 are admitted (${ROUNDS} rounds)`, async () => {
    // Fail-closed, so a fallback shows as 503 instead of hiding as an extra admission; a long
    // deadline, so a loaded test machine's event-loop lag does not cause fallbacks.
    const env = { REDIS_URL, TEST_PREFIX: PREFIX, PTW_THROTTLE_SYNC: '60/min', PTW_THROTTLE_SYNC_FAIL: 'closed', PTW_THROTTLE_REDIS_TIMEOUT_MS: '10000' };
    const replicas = await Promise.all([startReplica(env), startReplica(env)]);
    const rounds: Record<number, number>[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const user = `exact-${round}`;
      const codes = await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const res = await fetch(`${replicas[i % 2].url}/`, { headers: { 'x-test-user': user } });
          await res.arrayBuffer();
          return res.status;
        }),
      );
      const tally: Record<number, number> = {};
      for (const c of codes) tally[c] = (tally[c] ?? 0) + 1;
      rounds.push(tally);
    }
    expect(rounds).toEqual(Array.from({ length: ROUNDS }, () => ({ 200: 60, 429: 140 })));
    expect(await shared.zcard(`${PREFIX}:ptw_sync:user:exact-0`)).toBe(60);
  });
});

describe('Redis outages', () => {
  it('when Redis refuses connections, then the fail-open scope serves, the fail-closed scope answers 503, and both are logged and counted', async () => {
    const down = client(`redis://127.0.0.1:${await freePort()}`);
    const gw = await startGateway(down, { PTW_THROTTLE_SYNC: '1/min', PTW_THROTTLE_KPI: '1/min', PTW_THROTTLE_KPI_FAIL: 'closed' });
    expect(await statuses(gw, 'ptw_sync', 'erin', 3)).toEqual([200, 200, 200]);
    const closed = await call(gw, 'ptw_kpi', 'erin');
    expect(closed.status).toBe(503);
    expect(closed.headers.get('retry-after')).toBe('5');
    expect(await errorOf(closed)).toMatchObject({ code: 'throttle_unavailable', details: { scope: 'ptw_kpi' } });
    expect(await seriesValue(gw.metrics, 'ptw_throttle_fallback_total', { scope: 'ptw_sync', mode: 'open' })).toBe(3);
    expect(await seriesValue(gw.metrics, 'ptw_throttle_fallback_total', { scope: 'ptw_kpi', mode: 'closed' })).toBe(1);
    const warnings = gw.logs().filter((l) => l.event === 'throttle_fallback');
    expect(warnings.map((l) => [l.level, l.outcome, l.user_id])).toEqual([...Array(3).fill([40, 'open', 'erin']), [40, 'closed', 'erin']]);
    const status = await fetch(`${gw.url}/status?user=erin`);
    expect([status.status, (await errorOf(status)).code]).toEqual([503, 'throttle_unavailable']);
  });

  describe('with a Redis that stops and comes back', () => {
    let local: LocalRedis;
    let gw: TestGateway;
    beforeAll(async () => {
      local = new LocalRedis(await freePort());
      await local.start();
      const redis = client(local.url, 200);
      await ready(redis);
      gw = await startGateway(redis, { PTW_THROTTLE_SYNC: '2/min', PTW_THROTTLE_KPI: '2/min', PTW_THROTTLE_KPI_FAIL: 'closed', PTW_THROTTLE_REDIS_TIMEOUT_MS: '200' });
    });

    it('when Redis is stopped and started again on the same port, then limits are enforced again without a restart', async () => {
      expect(await statuses(gw, 'ptw_sync', 'frank', 3)).toEqual([200, 200, 429]);
      await local.stop();
      expect(await statuses(gw, 'ptw_sync', 'frank', 2)).toEqual([200, 200]);
      expect(await statuses(gw, 'ptw_kpi', 'frank', 1)).toEqual([503]);
      await local.start();
      // ioredis reconnects on its own; the restarted Redis lost the counters and the script cache.
      const first = await until(
        () => statuses(gw, 'ptw_kpi', 'frank', 1),
        (s) => s[0] !== 503,
        10_000,
      );
      expect(first).toEqual([200]);
      expect(await statuses(gw, 'ptw_kpi', 'frank', 2)).toEqual([200, 429]);
      expect(await statuses(gw, 'ptw_sync', 'frank', 3)).toEqual([200, 200, 429]);
    });

    it('when Redis hangs without answering, then requests fall back within the deadline, and when it resumes limits apply again', async () => {
      expect(await statuses(gw, 'ptw_sync', 'gina', 1)).toEqual([200]);
      const before = await seriesValue(gw.metrics, 'ptw_throttle_fallback_total', { scope: 'ptw_sync', mode: 'open' });
      local.pause();
      const started = Date.now();
      const [open, closed] = await Promise.all([call(gw, 'ptw_sync', 'gina'), call(gw, 'ptw_kpi', 'gina')]);
      expect([open.status, closed.status]).toEqual([200, 503]);
      expect(Date.now() - started).toBeLessThan(2000);
      expect(await seriesValue(gw.metrics, 'ptw_throttle_fallback_total', { scope: 'ptw_sync', mode: 'open' })).toBe(before + 1);
      expect(
        gw
          .logs()
          .filter((l) => l.event === 'throttle_fallback')
          .at(-1),
      ).toMatchObject({ error_type: 'Error' });
      local.resume();
      // The paused call still reaches Redis once it resumes, so a fresh user proves enforcement.
      expect(await statuses(gw, 'ptw_sync', 'hugo', 3)).toEqual([200, 200, 429]);
    });
  });
});
