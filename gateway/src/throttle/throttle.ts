import type { Context, Middleware, Next } from 'koa';
import ratelimit from 'koa-ratelimit';
import type Redis from 'ioredis';
import type { Logger, Metrics } from '@ptw/common';
import { HttpError } from '../errors';
import type { GatewayState } from '../state';
import { DEFAULT_KEY_PREFIX, scopeSettings, THROTTLE_SCOPES, type ScopeSettings, type ThrottleConfig, type ThrottleScope } from './config';
import { defineLimiterScript } from './redis';
import { readUsage, type ScopeUsage } from './status';

export { DEFAULT_KEY_PREFIX };

const HEADERS = { total: 'X-RateLimit-Limit', remaining: 'X-RateLimit-Remaining', reset: 'X-RateLimit-Reset' } as const;

export interface ThrottleDeps {
  /**
   * The gateway's client, made with `throttleRedisOptions` (fails fast when Redis is down; its
   * `commandTimeout` is the deadline of every throttle command: without it a hung Redis hangs requests).
   */
  redis: Redis;
  config: ThrottleConfig;
  log: Logger;
  metrics: Metrics;
  keyPrefix?: string;
}

export interface Throttle {
  /** Middleware for a throttled route; mount it after authentication so the caller is known. */
  middleware(scope: ThrottleScope): Middleware;
  /** A user's usage of every scope, read without counting a request; Redis down → 503. */
  status(userId: string): Promise<ScopeUsage[]>;
}

const userCaller = (userId: string) => `user:${userId}`;

/** Whose counter a request uses: the authenticated user, else the client address. */
export function callerId(ctx: Context): string {
  const user = (ctx.state as Partial<GatewayState>).principal?.user_id;
  return user ? userCaller(user) : `ip:${ctx.ip}`;
}

/** Whole seconds until `admitAtMs`, rounded up and at least 1 (a client told 0 would retry at once). */
export function retryAfterSeconds(admitAtMs: number, nowMs: number): number {
  return Math.max(1, Math.ceil((admitAtMs - nowMs) / 1000));
}

/** The 429 of SPEC §4. */
export function throttledError(scope: ThrottleScope, retryAfter: number, headers: Record<string, string>): HttpError {
  return new HttpError(
    429,
    'throttled',
    `Request was throttled. Expected available in ${retryAfter} seconds.`,
    { scope, retry_after: retryAfter },
    { ...headers, 'Retry-After': String(retryAfter) },
  );
}

/** What koa-ratelimit leaves on `ctx.state.rateLimit` when it refuses a request. */
interface RateLimitState {
  id: string;
  headers: Record<string, number>;
}

/**
 * Redis-backed throttling of SPEC §4. Counting is koa-ratelimit's redis driver: one Lua script per
 * request that trims, counts and adds atomically (the library's script with its timestamp-collision
 * fix, see script.ts), so replicas sharing one Redis admit exactly the limit in any sliding window,
 * and refused requests are not counted. Around it this adds the JSON 429 with a rounded-up
 * `Retry-After`, per-scope fail-open/fail-closed when Redis cannot answer (refused, or past the
 * client's `commandTimeout`), logs and metrics. The client is used as it is (ioredis's public API).
 * Nothing here caches Redis state: ioredis reconnects by itself and the next request counts again.
 */
export function createThrottle(deps: ThrottleDeps): Throttle {
  const settings = scopeSettings(deps.config);
  const prefix = deps.keyPrefix ?? DEFAULT_KEY_PREFIX;
  const db = deps.redis;
  defineLimiterScript(db);
  const decisions = deps.metrics.counter('ptw_throttle_decisions_total', 'Throttle decisions by scope', ['scope', 'decision']);
  const fallbacks = deps.metrics.counter('ptw_throttle_fallback_total', 'Requests decided without Redis, by scope and failure mode', ['scope', 'mode']);
  const namespace = (scope: ThrottleScope) => `${prefix}:${scope}`;

  /** The 429, timed by when the window will next have room (read from the window itself). */
  async function refuse(ctx: Context, s: ScopeSettings): Promise<never> {
    decisions.inc({ scope: s.scope, decision: 'throttled' });
    const rl = ctx.state.rateLimit as RateLimitState | undefined;
    const now = Date.now();
    // The script floors its reset to whole seconds: its next second is a safe upper bound.
    let admitAt = rl ? (Number(rl.headers[HEADERS.reset]) + 1) * 1000 : now + s.windowSeconds * 1000;
    if (rl) {
      try {
        // A request is admitted again when the limit-th newest counted request leaves the window.
        const [, score] = await db.zrange(`${namespace(s.scope)}:${rl.id}`, -s.limit, -s.limit, 'WITHSCORES');
        if (score !== undefined) admitAt = Number(score) + s.windowSeconds * 1000;
      } catch {
        // Redis went away after refusing: the script's upper bound above still holds.
      }
    }
    const retryAfter = retryAfterSeconds(admitAt, now);
    throw throttledError(s.scope, retryAfter, {
      [HEADERS.total]: String(s.limit),
      [HEADERS.remaining]: '0',
      [HEADERS.reset]: String(Math.ceil((now + retryAfter * 1000) / 1000)),
    });
  }

  function fallback(ctx: Context, next: Next, s: ScopeSettings, err: unknown): Promise<void> {
    fallbacks.inc({ scope: s.scope, mode: s.failMode });
    const state = ctx.state as Partial<GatewayState>;
    deps.log.warn(
      {
        req_id: state.reqId ?? 'process',
        event: 'throttle_fallback',
        outcome: s.failMode,
        endpoint: state.endpoint,
        user_id: state.principal?.user_id,
        error_type: err instanceof Error ? err.name : 'Error',
        ...state.trace?.fields,
      },
      `throttle ${s.scope}: Redis unavailable, failing ${s.failMode}`,
    );
    if (s.failMode === 'closed') {
      throw new HttpError(503, 'throttle_unavailable', 'Rate limiting is temporarily unavailable, try again shortly', { scope: s.scope }, { 'Retry-After': '5' });
    }
    return next();
  }

  function middleware(scope: ThrottleScope): Middleware {
    const s = settings[scope];
    if (!s) throw new Error(`unknown throttle scope ${scope}`);
    const limiter = ratelimit({
      driver: 'redis',
      db,
      namespace: namespace(scope),
      duration: s.windowSeconds * 1000,
      max: s.limit,
      id: callerId,
      headers: HEADERS,
      throw: false,
      errorMessage: 'throttled',
    });
    return async (ctx, next) => {
      let admitted = false;
      try {
        await limiter(ctx, () => {
          admitted = true;
          decisions.inc({ scope, decision: 'allowed' });
          return next();
        });
      } catch (err) {
        if (admitted) throw err; // the route's own error, not the limiter's
        return fallback(ctx, next, s, err);
      }
      if (!admitted) await refuse(ctx, s);
    };
  }

  async function status(userId: string): Promise<ScopeUsage[]> {
    if (!userId) throw new HttpError(400, 'invalid_argument', 'A user id is required', { field: 'user' });
    try {
      return await readUsage(
        db,
        THROTTLE_SCOPES.map((scope) => settings[scope]),
        (scope) => `${namespace(scope)}:${userCaller(userId)}`,
      );
    } catch (err) {
      deps.log.warn({ event: 'throttle_status', outcome: 'unavailable', error_type: err instanceof Error ? err.name : 'Error' }, 'throttle status: Redis unavailable');
      throw new HttpError(503, 'throttle_unavailable', 'Throttle counters are temporarily unavailable, try again shortly', undefined, { 'Retry-After': '5' });
    }
  }

  return { middleware, status };
}
