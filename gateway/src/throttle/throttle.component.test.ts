import fc from 'fast-check';
import Koa from 'koa';
import type Redis from 'ioredis';
import { loadConfig } from '@ptw/common';
import { HttpError, toHttpError } from '../errors';
import { throttleConfigSchema } from './config';
import { errorOf, seriesValue, startThrottleApp, type ThrottleApp } from './testing';
import { retryAfterSeconds, throttledError } from './throttle';

/** Stand-in for the ioredis client: the sliding-window script command and the 429 path's read. */
interface FakeRedis {
  script: jest.Mock;
  zrange: jest.Mock;
}

interface Harness extends ThrottleApp {
  redis: FakeRedis;
}

const servers: Harness[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((h) => h.close()));
});

async function harness(env: Record<string, string> = {}, route: Koa.Middleware = (ctx) => void (ctx.body = { ok: true })): Promise<Harness> {
  const redis: FakeRedis = { script: jest.fn(), zrange: jest.fn() };
  const client = { defineCommand: jest.fn(), ratelimiter: redis.script, zrange: redis.zrange };
  const config = loadConfig(throttleConfigSchema, { PTW_THROTTLE_SYNC: '2/min', PTW_THROTTLE_KPI_FAIL: 'closed', PTW_THROTTLE_REDIS_TIMEOUT_MS: '50', ...env });
  const app = await startThrottleApp({
    redis: client as unknown as Redis,
    config,
    keyPrefix: 'test',
    routes: (throttle) => {
      const [kpi, sync] = [throttle.middleware('ptw_kpi'), throttle.middleware('ptw_sync')];
      return (ctx, next) => (ctx.path === '/kpi' ? kpi : sync)(ctx, () => route(ctx, next));
    },
  });
  const h: Harness = { ...app, redis };
  servers.push(h);
  return h;
}

describe('retryAfterSeconds', () => {
  it.each([
    [60_000, 60],
    [59_000.5, 60],
    [1001, 2],
    [1000, 1],
    [1, 1],
    [0, 1],
    [-5000, 1],
  ])('when the next admission is %p ms away, then Retry-After is %p', (delta, expected) => {
    expect(retryAfterSeconds(1_700_000_000_000 + delta, 1_700_000_000_000)).toBe(expected);
  });

  it('when any wait is rounded, then it is a whole number of seconds, never 0, never shorter than the wait', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4e12 }), fc.double({ min: -1e7, max: 1e8, noNaN: true }), (now, delta) => {
        const s = retryAfterSeconds(now + delta, now);
        return Number.isInteger(s) && s >= 1 && s * 1000 >= delta && (delta <= 0 || s * 1000 - delta < 1000 + 1e-3);
      }),
    );
  });
});

describe('throttledError', () => {
  it('when mapped by the gateway, then it is the 429 JSON of SPEC §4 with Retry-After', () => {
    const m = toHttpError(throttledError('ptw_sync', 42, { 'X-RateLimit-Limit': '60' }));
    expect(m.status).toBe(429);
    expect(m.body).toEqual({
      error: { code: 'throttled', message: 'Request was throttled. Expected available in 42 seconds.', details: { scope: 'ptw_sync', retry_after: 42 } },
    });
    expect(m.headers).toEqual({ 'X-RateLimit-Limit': '60', 'Retry-After': '42' });
  });
});

describe('throttle middleware (fake Redis)', () => {
  it('when the script admits, then the route answers with the limit headers and an allowed decision is counted', async () => {
    const h = await harness();
    const reset = Math.floor(Date.now() / 1000) + 60;
    h.redis.script.mockResolvedValue([2, reset, 2]);
    const res = await fetch(`${h.url}/sync`, { headers: { 'x-test-user': 'u1' } });
    expect(res.status).toBe(200);
    expect([res.headers.get('x-ratelimit-limit'), res.headers.get('x-ratelimit-remaining'), res.headers.get('x-ratelimit-reset')]).toEqual(['2', '1', String(reset)]);
    expect(h.redis.script.mock.calls[0][0]).toBe('test:ptw_sync:user:u1');
    expect(h.redis.script.mock.calls[0].slice(2, 4)).toEqual([60_000, 2]);
    expect(await seriesValue(h.metrics, 'ptw_throttle_decisions_total', { scope: 'ptw_sync', decision: 'allowed' })).toBe(1);
  });

  it('when nobody is authenticated, then the counter is keyed by the client address', async () => {
    const h = await harness();
    h.redis.script.mockResolvedValue([2, 0, 2]);
    await fetch(`${h.url}/sync`);
    expect(h.redis.script.mock.calls[0][0]).toMatch(/^test:ptw_sync:ip:(::ffff:)?127\.0\.0\.1$/);
  });

  it('when the script refuses, then 429 JSON whose Retry-After is the exact wait read from the window, rounded up', async () => {
    const h = await harness();
    // The script's own reset (floored seconds) says 30 s; the window's entries say 59.2 s.
    h.redis.script.mockResolvedValue([0, Math.floor(Date.now() / 1000) + 30, 2]);
    h.redis.zrange.mockImplementation(async () => ['m', String(Date.now() - 800)]);
    const res = await fetch(`${h.url}/sync`, { headers: { 'x-test-user': 'u1' } });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('60');
    expect(res.headers.get('x-ratelimit-remaining')).toBe('0');
    expect(res.headers.get('x-ratelimit-limit')).toBe('2');
    expect(await res.json()).toEqual({
      error: { code: 'throttled', message: 'Request was throttled. Expected available in 60 seconds.', details: { scope: 'ptw_sync', retry_after: 60 } },
    });
    expect(h.redis.zrange.mock.calls[0]).toEqual(['test:ptw_sync:user:u1', -2, -2, 'WITHSCORES']);
    expect(await seriesValue(h.metrics, 'ptw_throttle_decisions_total', { scope: 'ptw_sync', decision: 'throttled' })).toBe(1);
  });

  it('when the blocking request has just left the window, then Retry-After is 1, not 0', async () => {
    const h = await harness();
    h.redis.script.mockResolvedValue([0, Math.floor(Date.now() / 1000), 2]);
    h.redis.zrange.mockImplementation(async () => ['m', String(Date.now() - 60_500)]);
    const res = await fetch(`${h.url}/sync`, { headers: { 'x-test-user': 'u1' } });
    expect([res.status, res.headers.get('retry-after')]).toEqual([429, '1']);
    expect((await errorOf(res)).details?.retry_after).toBe(1);
  });

  it('when the follow-up read fails, then Retry-After is the script reset rounded up to the next second', async () => {
    const h = await harness();
    const reset = Math.floor(Date.now() / 1000) + 30;
    h.redis.script.mockResolvedValue([0, reset, 2]);
    h.redis.zrange.mockRejectedValue(new Error('Connection is closed.'));
    const res = await fetch(`${h.url}/sync`, { headers: { 'x-test-user': 'u1' } });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(30);
    expect(Number(res.headers.get('retry-after'))).toBeLessThanOrEqual(31);
  });

  it('when the script fails on a fail-open scope, then the route is served, a warning is logged and the fallback counted', async () => {
    const h = await harness();
    h.redis.script.mockRejectedValue(new Error("Stream isn't writeable and enableOfflineQueue options is false"));
    const res = await fetch(`${h.url}/sync`, { headers: { 'x-test-user': 'u1' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-ratelimit-limit')).toBeNull();
    expect(await seriesValue(h.metrics, 'ptw_throttle_fallback_total', { scope: 'ptw_sync', mode: 'open' })).toBe(1);
    const line = h.logs().find((l) => l.event === 'throttle_fallback');
    expect(line).toMatchObject({ level: 40, outcome: 'open', user_id: 'u1', error_type: 'Error', msg: 'throttle ptw_sync: Redis unavailable, failing open' });
    expect(typeof line?.req_id).toBe('string');
  });

  it('when the script fails on a fail-closed scope, then 503 throttle_unavailable with Retry-After', async () => {
    const h = await harness();
    h.redis.script.mockRejectedValue(new Error('Connection is closed.'));
    const res = await fetch(`${h.url}/kpi`, { headers: { 'x-test-user': 'u1' } });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(await errorOf(res)).toEqual({ code: 'throttle_unavailable', message: 'Rate limiting is temporarily unavailable, try again shortly', details: { scope: 'ptw_kpi' } });
    expect(await seriesValue(h.metrics, 'ptw_throttle_fallback_total', { scope: 'ptw_kpi', mode: 'closed' })).toBe(1);
    expect(h.logs().find((l) => l.event === 'throttle_fallback')).toMatchObject({ outcome: 'closed' });
  });

  it("when the admitted route fails, then the route's error is answered and no fallback is counted", async () => {
    const h = await harness({}, () => {
      throw new HttpError(409, 'conflict', 'stale version');
    });
    h.redis.script.mockResolvedValue([2, 0, 2]);
    const res = await fetch(`${h.url}/sync`, { headers: { 'x-test-user': 'u1' } });
    expect(res.status).toBe(409);
    expect((await errorOf(res)).code).toBe('conflict');
    expect(await seriesValue(h.metrics, 'ptw_throttle_fallback_total', { scope: 'ptw_sync', mode: 'open' })).toBe(0);
    expect(h.logs().some((l) => l.event === 'throttle_fallback')).toBe(false);
  });

  it('when status is asked without a user id, then 400 naming the user parameter', async () => {
    const h = await harness();
    await expect(h.throttle.status('')).rejects.toMatchObject({ status: 400, details: { field: 'user' } });
  });
});
