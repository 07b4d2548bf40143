import { context, createContextKey } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import Redis from 'ioredis';
import { setTraceMode } from '@ptw/common';
import { CommandBatch, limiterClient } from './redis';
import { SLIDING_WINDOW_LUA } from './script';

// The real Redis of the tests (REDIS_URL, else the machine's own): a pipeline is only worth testing
// against the server that answers it.
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const COMMAND = 'ptwThrottleWindow';
const prefix = `test:batch:${process.pid}:${Date.now()}`;

let redis: Redis;
beforeAll(async () => {
  redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true });
  await redis.connect();
  redis.defineCommand(COMMAND, { numberOfKeys: 1, lua: SLIDING_WINDOW_LUA });
});
afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
});
afterEach(() => setTraceMode('off'));

/** The script's arguments for one counted request: key, now (ms), window (ms), limit, peek. */
const args = (key: string, limit: number, now = Date.now()) => [`${prefix}:${key}`, now, 60_000, limit, '0'];

/** The script command of the client (defined in beforeAll). */
const bareScript = (a: unknown[]) => (redis as unknown as Record<string, (...a: unknown[]) => Promise<number[]>>)[COMMAND](...a);
const script = (key: string, limit: number, now?: number) => bareScript(args(key, limit, now));

/**
 * The client's socket writes while `fn` runs, as the number of buffered chunks (one per command) each
 * write carried. The spies call through to the socket's own methods.
 */
async function writesDuring<T>(fn: () => Promise<T>): Promise<{ result: T; writes: number[] }> {
  const socket = redis.stream as unknown as { _writev(chunks: unknown[], cb: unknown): void; _write(chunk: unknown, enc: unknown, cb: unknown): void };
  const writev = jest.spyOn(socket, '_writev');
  const write = jest.spyOn(socket, '_write');
  try {
    const result = await fn();
    // Order across the two spies is not kept: the tests compare sorted counts or a single write.
    return { result, writes: [...writev.mock.calls.map((c) => c[0].length), ...write.mock.calls.map(() => 1)] };
  } finally {
    writev.mockRestore();
    write.mockRestore();
  }
}

describe('CommandBatch', () => {
  it('when 30 commands are asked for in one turn, then they go out in one write and each gets its own answer', async () => {
    const batch = new CommandBatch(redis);
    // 10 callers, 3 requests each, limits 5..14: the remaining counts tell whose answer came back.
    const calls = Array.from({ length: 30 }, (_, i) => ({ key: `one-turn:${i % 10}`, limit: 5 + (i % 10) }));
    const { result: answers, writes } = await writesDuring(() => Promise.all(calls.map((c) => batch.defer(() => script(c.key, c.limit)))));
    expect(writes).toEqual([30]);
    expect(batch.batched).toBe(30);
    for (let k = 0; k < 10; k++) {
      const mine = answers.filter((_, i) => i % 10 === k);
      // In the order asked: remaining before each request is limit, limit-1, limit-2.
      expect(mine.map((a) => a[0])).toEqual([5 + k, 4 + k, 3 + k]);
      expect(mine.every((a) => a[2] === 5 + k)).toBe(true);
    }
    expect(await redis.zcard(`${prefix}:one-turn:3`)).toBe(3);
  });

  it('when one command of a batch fails in Redis, then only that command fails', async () => {
    const batch = new CommandBatch(redis);
    const results = await Promise.allSettled([
      batch.defer(() => script('fails-alone:a', 3)),
      batch.defer(() => bareScript([`${prefix}:fails-alone:b`, 'not-a-number', 60_000, 3, '0'])),
      batch.defer(() => script('fails-alone:c', 3)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(Error);
    expect((results[0] as PromiseFulfilledResult<number[]>).value[0]).toBe(3);
    expect(await redis.exists(`${prefix}:fails-alone:b`)).toBe(0);
  });

  it('when a send throws instead of returning a promise, then that command fails and the others go out', async () => {
    const batch = new CommandBatch(redis);
    const results = await Promise.allSettled([
      batch.defer(() => script('throws:a', 3)),
      batch.defer((): Promise<number[]> => {
        throw new TypeError('bad arguments');
      }),
      batch.defer(() => script('throws:c', 3)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });

  it('when Redis has lost the script (SCRIPT FLUSH), then a batch still counts every command', async () => {
    const batch = new CommandBatch(redis);
    await batch.defer(() => script('flushed:warm', 2)); // the connection has sent the script: EVALSHA from now on
    await redis.script('FLUSH');
    const answers = await Promise.all([1, 2, 3, 4].map(() => batch.defer(() => script('flushed', 10))));
    expect(answers.map((a) => a[0])).toEqual([10, 9, 8, 7]);
  });

  it('when commands are asked for in different turns, then each goes out alone', async () => {
    const batch = new CommandBatch(redis);
    const { writes } = await writesDuring(async () => {
      expect((await batch.defer(() => script('alone', 4)))[0]).toBe(4);
      expect((await batch.defer(() => script('alone', 4)))[0]).toBe(3);
    });
    expect(writes).toEqual([1, 1]);
    expect(batch.batched).toBe(0);
  });

  it('when the client is not connected, then every command of the batch fails as it would alone', async () => {
    const down = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true });
    down.defineCommand(COMMAND, { numberOfKeys: 1, lua: SLIDING_WINDOW_LUA });
    const send = () => (down as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[COMMAND](...args('down', 3));
    const batch = new CommandBatch(down);
    const results = await Promise.allSettled([batch.defer(send), batch.defer(send)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(batch.batched).toBe(0);
    down.disconnect();
  });

  it('when spans are exported, then each command is sent in the trace context of the request that asked for it', async () => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    try {
      setTraceMode('export');
      const key = createContextKey('request');
      const batch = new CommandBatch(redis);
      const seen: unknown[] = [];
      const ask = (name: string) =>
        context.with(context.active().setValue(key, name), () =>
          batch.defer(() => {
            seen.push(context.active().getValue(key));
            return script(`context:${name}`, 3);
          }),
        );
      const { writes } = await writesDuring(() => Promise.all([ask('first'), ask('second'), ask('third')]));
      expect(seen).toEqual(['first', 'second', 'third']);
      expect(writes).toEqual([3]);
    } finally {
      context.disable();
    }
  });
});

describe('limiterClient', () => {
  it("when the driver counts several requests in one turn, then their scripts go out in one write", async () => {
    const db = limiterClient(redis, 1000) as unknown as { ratelimiter(...a: unknown[]): Promise<number[]> };
    const { result, writes } = await writesDuring(() => Promise.all(Array.from({ length: 5 }, () => db.ratelimiter(...args('client', 100)))));
    expect(writes).toEqual([5]);
    expect(result.map((a) => a[0]).sort((a, b) => b - a)).toEqual([100, 99, 98, 97, 96]);
  });
});
