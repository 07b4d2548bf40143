import type Redis from 'ioredis';
import type { RedisOptions } from 'ioredis';
import type { ThrottleConfig } from './config';
import { SLIDING_WINDOW_LUA } from './script';

/**
 * The command koa-ratelimit's redis driver (async-ratelimiter) calls for every request. The driver
 * defines it with its own script only when the client has no such command (script.test.ts fails if
 * that changes), so defining it first makes the driver run SLIDING_WINDOW_LUA.
 */
const DRIVER_COMMAND = 'ratelimiter';

/**
 * Options for the client the throttle is given (the gateway's one Redis client): fail fast while
 * Redis refuses connections (no offline queue, one retry), and `commandTimeout` as the throttle's
 * deadline, because a Redis that accepts connections and never answers (paused, overloaded,
 * black-holed) would otherwise hang every throttled request. A command past the deadline fails with
 * ioredis's "Command timed out" and the scope's failure mode decides.
 */
export function throttleRedisOptions(config: Pick<ThrottleConfig, 'PTW_THROTTLE_REDIS_TIMEOUT_MS'>): RedisOptions {
  return { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: config.PTW_THROTTLE_REDIS_TIMEOUT_MS };
}

/**
 * Defines the driver's command on `redis` as SLIDING_WINDOW_LUA with ioredis's `defineCommand`
 * (EVALSHA, and EVAL when a restarted Redis has lost the script), so counting stays exact across
 * replicas. Defining it again is harmless.
 */
export function defineLimiterScript(redis: Redis): void {
  redis.defineCommand(DRIVER_COMMAND, { numberOfKeys: 1, lua: SLIDING_WINDOW_LUA });
}
