import { SLIDING_WINDOW_LUA } from './script';

/** koa-ratelimit's redis driver (async-ratelimiter), as koa-ratelimit itself loads it. */
interface DriverModule {
  new (opts: { db: unknown; id: string; max: number; duration: number; namespace: string }): { get(): Promise<{ remaining: number; reset: number; total: number }> };
  defineCommand: Record<string, { numberOfKeys: number; lua: string }>;
}
const Driver = require('koa-ratelimit/limiter/redis') as DriverModule;

const FIX = ['-- PTW fix: a timestamp another request already holds would not be counted again.', "while redis.call('ZSCORE', key, now) do", 'now = now + 0.001', 'end'];
const lines = (lua: string) =>
  lua
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);

describe('the sliding-window script', () => {
  it("when compared with the installed driver's script, then it differs only by the timestamp fix before ZADD", () => {
    const stock = lines(Driver.defineCommand.ratelimiter.lua);
    const at = stock.indexOf("redis.call('ZADD', key, now, now)");
    expect(at).toBeGreaterThan(0);
    expect(lines(SLIDING_WINDOW_LUA)).toEqual([...stock.slice(0, at), ...FIX, ...stock.slice(at)]);
    expect(Driver.defineCommand.ratelimiter.numberOfKeys).toBe(1);
  });

  it('when the client already has the ratelimiter command, then the driver calls it and defines nothing', async () => {
    const db = { defineCommand: jest.fn(), ratelimiter: jest.fn().mockResolvedValue([3, 1_700_000_060, 3]) };
    const limit = await new Driver({ db, id: 'user:u1', max: 3, duration: 60_000, namespace: 'ns:ptw_sync' }).get();
    expect(db.defineCommand).not.toHaveBeenCalled();
    expect(db.ratelimiter.mock.calls[0]).toEqual(['ns:ptw_sync:user:u1', expect.any(Number), 60_000, 3, '0']);
    expect(limit).toEqual({ remaining: 3, reset: 1_700_000_060, total: 3 });
  });
});
