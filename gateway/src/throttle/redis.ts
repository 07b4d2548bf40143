import type Redis from 'ioredis';
import { SLIDING_WINDOW_LUA } from './script';

/** A Redis call that did not answer within the throttle's deadline. */
export class RedisDeadlineError extends Error {
  constructor(ms: number) {
    super(`Redis did not answer within ${ms} ms`);
    this.name = 'RedisDeadlineError';
  }
}

/** `promise`, or a RedisDeadlineError after `ms` (the call itself is left to settle on its own). */
export function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisDeadlineError(ms)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** The command koa-ratelimit's redis driver calls, and the name our fixed script is defined under. */
const DRIVER_COMMAND = 'ratelimiter';
const FIXED_COMMAND = 'ptwThrottleWindow';

/**
 * The client koa-ratelimit gets: the gateway's own, seen through a proxy that
 * - answers the driver's `ratelimiter` command with SLIDING_WINDOW_LUA (the driver defines its own
 *   script only when the client has no such command), so counting stays exact across replicas;
 * - puts a deadline on every command that returns a promise. The gateway's client fails fast when
 *   Redis refuses connections, but a Redis that accepts them and never answers (paused,
 *   overloaded, black-holed) would otherwise hang requests.
 * The command is defined once on the client; ioredis re-sends the script itself (EVAL after
 * NOSCRIPT) when a restarted Redis has lost it.
 */
export function limiterClient(redis: Redis, ms: number): Redis {
  if (typeof (redis as unknown as Record<string, unknown>)[FIXED_COMMAND] !== 'function') {
    redis.defineCommand(FIXED_COMMAND, { numberOfKeys: 1, lua: SLIDING_WINDOW_LUA });
  }
  return new Proxy(redis, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop === DRIVER_COMMAND ? FIXED_COMMAND : prop, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const out: unknown = value.apply(target, args);
        return out instanceof Promise ? withDeadline(out, ms) : out;
      };
    },
  });
}
