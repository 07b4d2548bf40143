import net, { type AddressInfo } from 'node:net';
import Redis from 'ioredis';
import { defineLimiterScript, throttleRedisOptions } from './redis';

/*
 * The throttle's use of ioredis against real Redis (127.0.0.1:6379 or REDIS_URL): the driver's
 * command runs the fixed script, and `commandTimeout` is the deadline of a Redis that stops answering.
 */

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `ptw:test:throttle-redis:${process.pid}:${Date.now().toString(36)}`;
const Driver = require('koa-ratelimit/limiter/redis') as new (opts: { db: unknown; id: string; max: number; duration: number; namespace: string }) => {
  get(): Promise<{ remaining: number; reset: number; total: number }>;
};

const clients: Redis[] = [];
const client = (url: string, timeoutMs = 1000) => {
  const r = new Redis(url, { ...throttleRedisOptions({ PTW_THROTTLE_REDIS_TIMEOUT_MS: timeoutMs }), lazyConnect: true });
  r.on('error', () => undefined);
  clients.push(r);
  return r;
};
afterAll(async () => {
  const r = client(REDIS_URL);
  await r.connect();
  const keys = await r.keys(`${PREFIX}:*`);
  if (keys.length) await r.del(...keys);
  for (const c of clients) c.disconnect();
});

/** A TCP relay to Redis that can hold what the client sends (Redis then seems hung) and let it go. */
async function relay(): Promise<{ url: string; hold(): void; release(): void; close(): void }> {
  const target = new URL(REDIS_URL);
  let held: Buffer[] | undefined;
  const upstreams: net.Socket[] = [];
  const server = net.createServer((down) => {
    const up = net.connect(Number(target.port || 6379), target.hostname);
    upstreams.push(up);
    down.on('data', (chunk) => (held ? held.push(chunk) : up.write(chunk)));
    up.pipe(down);
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `redis://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hold: () => (held = []),
    release: () => {
      const chunks = held ?? [];
      held = undefined;
      for (const up of upstreams) for (const c of chunks) up.write(c);
    },
    close: () => {
      for (const up of upstreams) up.destroy();
      server.close();
    },
  };
}

describe('the throttle on ioredis', () => {
  it('when the limiter script is defined, then the driver counts with it: two requests at one timestamp count twice', async () => {
    const redis = client(REDIS_URL);
    await redis.connect();
    defineLimiterScript(redis);
    const run = (redis as unknown as { ratelimiter(...a: unknown[]): Promise<number[]> }).ratelimiter.bind(redis);
    const key = `${PREFIX}:same-ts`;
    const now = Date.now() + 0.25;
    expect([(await run(key, now, 60_000, 5, '0'))[0], (await run(key, now, 60_000, 5, '0'))[0]]).toEqual([5, 4]);
    expect(await redis.zcard(key)).toBe(2);
    // The driver finds the command and uses it (stock would count the two above as one).
    const limit = await new Driver({ db: redis, id: 'u1', max: 5, duration: 60_000, namespace: `${PREFIX}:driver` }).get();
    expect(limit).toMatchObject({ remaining: 5, total: 5 });
    expect(await redis.zcard(`${PREFIX}:driver:u1`)).toBe(1);
  });

  it('when Redis has lost the script (SCRIPT FLUSH), then the command still runs', async () => {
    const redis = client(REDIS_URL);
    await redis.connect();
    defineLimiterScript(redis);
    const run = (redis as unknown as { ratelimiter(...a: unknown[]): Promise<number[]> }).ratelimiter.bind(redis);
    await run(`${PREFIX}:flush`, Date.now(), 60_000, 5, '0');
    await redis.script('FLUSH');
    expect((await run(`${PREFIX}:flush`, Date.now(), 60_000, 5, '0'))[0]).toBe(4);
  });

  it('when Redis stops answering, then a command fails after the deadline (commandTimeout), and answers again once Redis does', async () => {
    const r = await relay();
    try {
      const redis = client(r.url, 100);
      await redis.connect();
      defineLimiterScript(redis);
      expect(await redis.ping()).toBe('PONG');
      r.hold();
      const started = performance.now();
      await expect(redis.ping()).rejects.toThrow('Command timed out');
      const waited = performance.now() - started;
      expect(waited).toBeGreaterThanOrEqual(95);
      expect(waited).toBeLessThan(1000);
      r.release();
      expect(await redis.ping()).toBe('PONG');
    } finally {
      r.close();
    }
  });
});
